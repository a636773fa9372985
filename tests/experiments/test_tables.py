"""The measured tables of the README and docs/ are the scripts' output: every table block names
a registered script's README table, with that script's header; the one command
replaces blocks exactly.

No benchmark runs here: the scripts' own tests (test_gradient_equivalence.py and the others)
run them with --tiny and check the README tables they write (conftest.assert_readme_table)."""

from __future__ import annotations

import pytest
import torch

from experiments import gradient_equivalence, report, tables

# (file, experiment, stem, body) of every table block in the README and the other documents.
BLOCKS = [(path.name, *block)
          for path in dict.fromkeys(tables.document(e) for e in tables.REGISTRY)
          for block in tables.blocks(path.read_text())]
REGISTERED = {
    (experiment.name, stem): columns
    for experiment in tables.REGISTRY
    for stem, columns in tables.readme_tables(experiment.name).items()
}


def test_registry_names_scripts_once():
    names = [experiment.name for experiment in tables.REGISTRY]
    assert len(names) == len(set(names))
    assert all(experiment.duration for experiment in tables.REGISTRY)


@pytest.mark.parametrize("name", [e.name for e in tables.REGISTRY if not e.gpu])
def test_every_cpu_script_declares_its_readme_tables(name):
    module = __import__(f"experiments.{name}", fromlist=["README_TABLES"])
    assert hasattr(module, "README_TABLES"), f"experiments/{name}.py has no README_TABLES"
    assert module.README_TABLES, f"experiments/{name}.py declares no README table"
    for stem, columns in module.README_TABLES.items():
        assert isinstance(columns, tuple) and len(columns) == len(set(columns)) > 1, stem


@pytest.mark.parametrize(("path", "name", "stem", "body"), BLOCKS,
                         ids=[f"{n}/{s}" for _, n, s, _ in BLOCKS])
def test_every_readme_block_has_its_scripts_header(path, name, stem, body):
    assert (name, stem) in REGISTERED, f"{path} block {name}/{stem}: no such registered table"
    assert path == tables.document(tables.registered(name)).name, f"{name}/{stem} is in {path}"
    assert report.table_header(body) == REGISTERED[(name, stem)]
    lines = body.strip().splitlines()
    assert lines[1].startswith("|---") and len(lines) >= 3, body


def test_every_registered_table_is_in_its_document_once():
    in_readme = [(name, stem) for _, name, stem, _ in BLOCKS]
    for key in REGISTERED:
        count = in_readme.count(key)
        assert count == 1, f"{key[0]}/{key[1]} is in the README {count} times"


def test_table_header_reads_escaped_pipes_back():
    text = report.markdown_table([{"a": 1, "max |x - 1|": 2}])
    assert text.splitlines()[0] == r"| a | max \|x - 1\| |"
    assert report.table_header("some text\n" + text) == ("a", "max |x - 1|")
    with pytest.raises(ValueError, match="no Markdown table"):
        report.table_header("no table here\n")


TEXT = """# Title

<!-- table: one/a -->
| x | y |
|---|---|
| 1 | 2 |
<!-- end table -->

between

<!-- table: two/b -->
| z |
|---|
<!-- end table -->
"""


def test_replace_block_changes_only_that_block():
    new = "| x | y |\n|---|---|\n| 3 | 4 |\n\n_Measured now_\n"
    text = tables.replace_block(TEXT, "one", "a", new)
    assert text == TEXT.replace("| 1 | 2 |\n", "| 3 | 4 |\n\n_Measured now_\n")
    assert tables.blocks(text)[0] == ("one", "a", new)
    assert tables.blocks(text)[1] == tables.blocks(TEXT)[1]
    # A table without the final newline gets one, so the end marker stays on its own line.
    assert tables.replace_block(TEXT, "two", "b", "| z |\n|---|\n| 5 |") == TEXT.replace(
        "| z |\n|---|\n", "| z |\n|---|\n| 5 |\n"
    )


def test_replace_block_refuses_missing_duplicate_and_unclosed_blocks():
    with pytest.raises(ValueError, match="0 blocks"):
        tables.replace_block(TEXT, "three", "c", "| q |\n")
    doubled = TEXT + TEXT[TEXT.index("<!-- table: one/a -->"):]
    with pytest.raises(ValueError, match="2 blocks"):
        tables.replace_block(doubled, "one", "a", "| q |\n")
    with pytest.raises(ValueError, match="end table"):
        tables.blocks(TEXT.replace("<!-- end table -->\n\nbetween", "between", 1))


def test_write_readme_table_checks_columns(tmp_path):
    with pytest.raises(ValueError, match=r"row 1 lacks the columns \['b'\]"):
        report.write_readme_table([{"a": 1, "b": 2}, {"a": 2}], tmp_path, "t", ("a", "b"))
    # Columns in the given order; extra keys go to the CSV only.
    text = report.write_readme_table([{"b": "x", "a": 1, "extra": 0.5}], tmp_path, "t", ("a", "b"))
    assert text == (tmp_path / "t.md").read_text()
    assert text.startswith("| a | b |\n|---|---|\n| 1 | x |\n\n_Measured ")
    assert report.read_csv(tmp_path / "t.csv") == [{"b": "x", "a": "1", "extra": "0.5"}]
    smoke = report.write_readme_table([{"a": 1, "b": 2}], tmp_path, "t", ("a", "b"), tiny=True)
    assert smoke.splitlines()[-1].startswith(report.SMOKE_TABLE_MARK + " _Measured ")


def test_only_refuses_an_unknown_name():
    with pytest.raises(SystemExit, match="not registered"):
        tables.main(["--only", "no_such_script", "--list"])


def page_in(root, monkeypatch, name: str):
    """A copy of the page holding experiment name's tables, under root, which tables.py then
    takes for the repository root; returns the copy's path."""
    page = tables.document(tables.registered(name))
    copy = root / page.relative_to(tables.ROOT)
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(page.read_text())
    monkeypatch.setattr(tables, "ROOT", root)
    monkeypatch.setattr(tables, "README", root / "README.md")
    return copy


def test_readme_no_run_copies_results_into_their_page(tmp_path, monkeypatch):
    """--readme --no-run: every table of the chosen script, from results/, into its block."""
    results = tmp_path / "results" / "gradient_equivalence"
    results.mkdir(parents=True)
    rows = [dict(zip(gradient_equivalence.README_TABLES["cases"], ("c", "0.1", "1e-6", "1e-14",
                                                                  "1 – 2")))]
    report.write_readme_table(rows, results, "cases", gradient_equivalence.README_TABLES["cases"])
    readme = page_in(tmp_path, monkeypatch, "gradient_equivalence")
    assert tables.main(["--only", "gradient_equivalence", "--readme", "--no-run",
                        "--results", str(tmp_path / "results")]) == 0
    assert dict(((n, s), b) for n, s, b in tables.blocks(readme.read_text()))[
        ("gradient_equivalence", "cases")] == (results / "cases.md").read_text()
    report.write_readme_table(rows, results, "cases", gradient_equivalence.README_TABLES["cases"],
                              tiny=True)
    with pytest.raises(SystemExit, match="smoke run"):
        tables.main(["--only", "gradient_equivalence", "--readme", "--no-run",
                     "--results", str(tmp_path / "results")])
    (results / "cases.md").unlink()
    with pytest.raises(SystemExit, match="is missing"):
        tables.main(["--only", "gradient_equivalence", "--readme", "--no-run",
                     "--results", str(tmp_path / "results")])


def test_readme_copies_a_gpu_machines_tables_without_a_gpu(tmp_path, monkeypatch):
    """gpu_check.sh's tables, unpacked into results/ on a machine without a GPU, go into
    docs/gpu.md with --readme (the GPU script is not run there, but its tables are not lost)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    results = tmp_path / "results" / "benchmark_gpu"
    results.mkdir(parents=True)
    for stem, columns in tables.readme_tables("benchmark_gpu").items():
        report.write_readme_table([dict.fromkeys(columns, "7")], results, stem, columns)
    readme = page_in(tmp_path, monkeypatch, "benchmark_gpu")
    assert tables.main(["--only", "benchmark_gpu", "--readme", "--no-run",
                        "--results", str(tmp_path / "results")]) == 0
    copied = dict(((n, s), b) for n, s, b in tables.blocks(readme.read_text()))
    for stem in tables.readme_tables("benchmark_gpu"):
        assert copied[("benchmark_gpu", stem)] == (results / f"{stem}.md").read_text()
