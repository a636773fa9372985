"""Run one measurement in a fresh Python process, so its peak memory is its own.

    result = isolated.run(measure, network="shd_mlp", time=100)   # measure(**kwargs) -> dict

The function must be importable (module level) and return something JSON can encode; the
child prints it as its last stdout line. Errors come back with the child's stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run(
    function: Callable[..., Any],
    *,
    threads: int = 0,
    keep_freed_memory: bool = False,
    **kwargs: Any,
) -> Any:
    """function(**kwargs) in a fresh `python -m experiments.isolated` process.

    threads: torch CPU threads in the child (0: torch's default); keep_freed_memory: call
    ops.keep_freed_memory() first (the "reuse" allocator mode of the tables).
    """
    module = function.__module__
    if module == "__main__":  # a script run directly: the child imports it by its real name
        main = sys.modules["__main__"]
        if main.__spec__ is not None:  # python -m experiments.<name>
            module = main.__spec__.name
        else:  # python experiments/<name>.py
            path = Path(main.__file__).resolve().relative_to(ROOT).with_suffix("")
            module = ".".join(path.parts)
    job = {
        "module": module,
        "name": function.__qualname__,
        "threads": threads,
        "keep_freed_memory": keep_freed_memory,
        "kwargs": kwargs,
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    result = subprocess.run(
        [sys.executable, "-m", "experiments.isolated", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{job['module']}.{job['name']}(**{kwargs}) failed in its own process:\n"
            f"{result.stderr[-4000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _child(job: dict) -> None:
    import torch

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    if job["keep_freed_memory"]:
        from exodus_lightning import ops

        from . import provenance

        ops.keep_freed_memory()
        provenance.note_keep_freed_memory()
    function = importlib.import_module(job["module"])
    for part in job["name"].split("."):
        function = getattr(function, part)
    print(json.dumps(function(**job["kwargs"])), flush=True)


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
