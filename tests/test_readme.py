"""The README's examples do what the README says."""

from __future__ import annotations

import re
import sys
import warnings

import pytest

from exodus_lightning.callbacks import SpikeActivityWarning
from exodus_lightning.cli import build_cli
from tests.test_cli import REPO

README = (REPO / "README.md").read_text()
# The README and the pages it links to.
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_block(first_line: str, page: str = "README.md") -> str:
    """The fenced code block of `page` (README.md or docs/….md) whose first line is `first_line`."""
    for block in re.findall(r"```\w*\n(.*?)```", (REPO / page).read_text(), re.DOTALL):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"no code block of {page} starts with {first_line!r}")


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of Markdown text: lower case, punctuation dropped,
    each space a hyphen (a repeated heading gets -1, -2, ... appended)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    anchors: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_reaches_its_file_and_heading(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif linked.suffix == ".md" and anchor and anchor not in heading_anchors(
                linked.read_text()):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.name}: " + "; ".join(broken)


@pytest.mark.slow
def test_readme_network_trains_and_its_layer_spikes(workdir, monkeypatch):
    (workdir / "my_nets.py").write_text(readme_block("# my_nets.py"))
    monkeypatch.syspath_prepend(str(workdir))
    monkeypatch.delitem(sys.modules, "my_nets", raising=False)
    command = next(line for line in readme_block("exodus-lightning fit --model.network")
                   .splitlines() if "--config" not in line)
    args = command.split()[1:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = build_cli([*args, "--trainer.max_epochs=4", "--trainer.logger=false",
                         "--data.init_args.num_train_samples=2000",
                         "--data.init_args.num_val_samples=500", "--data.init_args.batch_size=32"])
    assert not [w for w in caught if issubclass(w.category, SpikeActivityWarning)]
    assert type(cli.model.network).__name__ == "TwoLayerSNN"
    assert cli.model.network.layers[1].out_features == 32  # --model.network.init_args.hidden 32
    assert float(cli.trainer.callback_metrics["spike_rate/train/layers.2"]) > 0.01
    assert float(cli.trainer.callback_metrics["val/acc"]) > 0.25  # chance: 0.1
