"""Notebook hygiene: no outputs, nbformat 4.5 with ids, the setup cell from _config.yml, and
assignments/ regenerated from solutions/ (byte for byte)."""
import json
import re
import shutil

import nbformat
import pytest

from coursetools import notebooks, release
from coursetools.config import assignment_ids, colab_url, helper_requirement
from tests.conftest import ROOT

ALL = notebooks.course_notebooks()


def test_there_are_notebooks_in_each_folder():
    folders = {p.relative_to(ROOT).parts[0] for p in ALL}
    assert folders == {"book", "solutions", "assignments"}


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_notebook_is_clean(path):
    assert notebooks.problems(path) == []


def test_problems_are_found(tmp_path):
    nb = nbformat.read(ALL[0], as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi")] if nb.cells[1].cell_type == "code" else []
    nb.cells[0].source = nb.cells[0].source.replace("git+https://github.com/", "git+https://example.org/")
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nb, bad)
    found = " | ".join(notebooks.problems(bad))
    assert "setup cell is not the one made from _config.yml" in found
    if nb.cells[1].cell_type == "code":
        assert "committed with outputs" in found


def test_sync_strips_outputs_and_restores_the_setup_cell(tmp_path):
    nb = nbformat.read(ROOT / "book" / "01-colab.ipynb", as_version=4)
    code = next(c for c in nb.cells[1:] if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", text="out")]
    code.execution_count = 3
    nb.cells[0].source = "print('stale')"
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert notebooks.sync(path) is True
    assert notebooks.problems(path) == []
    assert notebooks.sync(path) is False


def test_setup_cell_takes_the_repository_from_config():
    import yaml
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert f"git+{url}@main" in notebooks.setup_source()
    assert helper_requirement() in notebooks.setup_source()
    assert colab_url("book/01-colab.ipynb") == (
        "https://colab.research.google.com/github/" + url.removeprefix("https://github.com/")
        + "/blob/main/book/01-colab.ipynb")


@pytest.mark.parametrize("assignment", assignment_ids())
def test_released_notebook_is_current(assignment, tmp_path):
    produced = release.generate(assignment, tmp_path)
    committed = ROOT / "assignments" / assignment / f"{assignment}.ipynb"
    assert committed.exists(), f"run `make assignments`: {committed} is missing"
    assert produced.read_bytes() == committed.read_bytes(), (
        f"{committed} is not what nbgrader makes of solutions/{assignment}: run `make assignments`")


@pytest.mark.parametrize("assignment", assignment_ids())
def test_released_notebook_keeps_ids_and_drops_solutions(assignment):
    source = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    released = nbformat.read(ROOT / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)
    assert (released.nbformat, released.nbformat_minor) == (4, 5)
    assert [c.id for c in released.cells] == [c.id for c in source.cells]
    for cell in released.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            assert "raise NotImplementedError()" in cell.source


def test_every_assignment_has_a_chapter_link():
    toc_files = (ROOT / "_toc.yml").read_text()
    chapters = [p for p in (ROOT / "book").glob("[0-9][0-9]-*.ipynb")]
    linked = set()
    for chapter in chapters:
        assert chapter.stem in toc_files, f"{chapter} is not in _toc.yml"
        text = json.dumps(json.loads(chapter.read_text())["cells"])
        linked.update(a for a in assignment_ids() if "{colab-assignment} " + a in text)
    assert linked == set(assignment_ids())


def test_release_refuses_an_unknown_assignment(capsys):
    with pytest.raises(SystemExit):
        release.main(["a99-nothing"])
    assert "unknown assignment 'a99-nothing'" in capsys.readouterr().err


def test_release_of_a_missing_source_says_so(tmp_path):
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    (tmp_path / "solutions").mkdir()
    with pytest.raises(FileNotFoundError, match="no source notebook"):
        release.generate("a01-colab", tmp_path / "out", root=tmp_path)


SPEED_LIMITS = [(suite.stem.removeprefix("test_"), name, factor)
                for suite in sorted((ROOT / "autograder" / "suites").glob("test_a*.py"))
                for name, factor in re.findall(r'expect_fast\(student, reference, "([\w.]+)",.*?factor=(\d+)',
                                               suite.read_text(), flags=re.DOTALL)]


@pytest.mark.parametrize("suite, function, factor", SPEED_LIMITS, ids=[f"{s}:{f}" for s, f, _ in SPEED_LIMITS])
def test_every_speed_limit_of_a_suite_is_stated_where_its_task_is(suite, function, factor):
    """A student reads the limit the hidden suite applies (a multiple of the reference's time) in the
    markdown of the task that describes the function (its heading names it)."""
    assignment = next(a for a in assignment_ids() if a.replace("-", "_") == suite)
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    task = [c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## ")
            and f"`{function}(" in c.source.split("\n")[0]]
    assert task, f"{assignment}: no task heading names {function}"
    assert f"{factor} times" in task[0].replace("*", ""), f"{assignment}: the task of {function} does not state " \
                                                           f"its speed limit ({factor} times the reference)"
