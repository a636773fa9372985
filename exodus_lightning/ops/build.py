"""Build the extension ahead of time: ``python -m exodus_lightning.ops.build [--cuda] [--no-cpu]``.

Useful on a cluster login node before a multi-node job, or in a container image. Honours
$EXODUS_LIGHTNING_CACHE (where libraries go) and $TORCH_CUDA_ARCH_LIST (GPU targets; needed
when no GPU is visible).
"""

from __future__ import annotations

import argparse
import time

from ._extension import ExtensionBuildError, cache_root, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", action="store_true", help="also build the CUDA kernels")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU kernels")
    parser.add_argument("--verbose", action="store_true", help="show compiler output")
    options = parser.parse_args(argv)
    kinds = ([] if options.no_cpu else ["cpu"]) + (["cuda"] if options.cuda else [])
    if not kinds:
        parser.error("nothing to build: drop --no-cpu or add --cuda")
    for kind in kinds:
        start = time.perf_counter()
        try:
            path = load(kind, verbose=options.verbose)
        except ExtensionBuildError as error:
            print(error)
            return 1
        print(f"{kind}: {path} ({time.perf_counter() - start:.1f} s)")
    print(f"cache: {cache_root()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
