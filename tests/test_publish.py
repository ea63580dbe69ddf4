"""`make publish`: the student-facing tree, complete and leak-free."""
import pytest

from coursetools import publish
from coursetools.config import assignment_ids
from tests.conftest import ROOT


def test_publish_assembles_a_clean_tree(tmp_path):
    if not (ROOT / "_build" / "html" / "index.html").exists():
        pytest.fail("the book is not built: `make test` builds it first (or run `make book`)")
    assert publish.main([str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert (out / "site" / "index.html").exists()
    assert (out / "site" / "book" / "01-colab.html").exists()
    assert (out / "book" / "01-colab.ipynb").exists()
    assert (out / "pyproject.toml").exists() and (out / "odcourse" / "__init__.py").exists()
    for assignment in assignment_ids():
        assert (out / "assignments" / assignment / f"{assignment}.ipynb").exists()
    names = {p.name for p in out.rglob("*")}
    assert not names & {"solutions", "autograder", "tests", "nbgrader_config.py", "gradebook.db"}


def test_publish_refuses_to_ship_a_leak(tmp_path, monkeypatch):
    original = publish.assemble

    def assemble_with_a_leak(target, root=ROOT):
        original(target, root)
        (target / "book" / "notes.md").write_text("### BEGIN SOLUTION\n")
        return target

    monkeypatch.setattr(publish, "assemble", assemble_with_a_leak)
    if not (ROOT / "_build" / "html" / "index.html").exists():
        pytest.fail("the book is not built")
    assert publish.main([str(tmp_path / "out")]) == 1


def test_publish_without_a_built_book_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make book` first"):
        publish.assemble(tmp_path / "out", root=tmp_path)
