"""Every notebook runs top to bottom in a fresh Colab-like environment (coursetools.colab_like):
only the packages a Colab runtime preinstalls and whatever the notebook's own setup cell
installs, the helpers from a git repository as in Colab.

The chapters are executed that way once, for the book: `make book` runs
`python -m coursetools.colab_like` before jupyter-book, and the site shows those outputs. The
test of a chapter reads that execution from the book's cache (and executes the chapter itself
when the cache has none for its current code)."""
import pytest

from coursetools import colab_like
from coursetools.notebooks import course_notebooks
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="session")
def helper_repository(tmp_path_factory):
    """A git repository with what the public repository holds of the helper package."""
    return colab_like.helper_repository(tmp_path_factory.mktemp("public-repo") / "repo")


def run_notebook(path, tmp_path, helper_repository, allow_errors=False):
    nb = colab_like.run_notebook(path, tmp_path, helper_repository, allow_errors=allow_errors)
    assert colab_like.setup_output(nb).startswith("odcourse "), colab_like.setup_output(nb)
    return nb


CHAPTERS = colab_like.chapters()
SOURCES = [p for p in course_notebooks() if p.parts[-3] == "solutions"]
RELEASED = [p for p in course_notebooks() if p.parts[-3] == "assignments"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_chapter_ran_top_to_bottom_for_the_book(path):
    nb = colab_like.cached_execution(path)
    if nb is None:  # not built yet with this code: execute it as the book build does
        colab_like.execute_stale_chapters([path], jobs=1)
        nb = colab_like.cached_execution(path)
    assert nb is not None, f"{path.name}: no execution of its current code in the book's cache"
    assert colab_like.setup_output(nb).startswith("odcourse "), colab_like.setup_output(nb)
    assert colab_like.errors(nb) == []
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.get("execution_count") for c in code), "every code cell of the chapter must have run"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_source_notebook_runs_top_to_bottom(path, tmp_path, helper_repository):
    nb = run_notebook(path, tmp_path, helper_repository)
    assert colab_like.errors(nb) == []


@pytest.mark.parametrize("path", RELEASED, ids=lambda p: str(p.relative_to(ROOT)))
def test_released_notebook_runs_and_only_the_stubs_complain(path, tmp_path, helper_repository):
    nb = run_notebook(path, tmp_path, helper_repository, allow_errors=True)
    errors = {c.id: o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"}
    assert errors, "an untouched assignment must not pass its checks"
    for cell_id, error in errors.items():
        assert error.ename in ("NotImplementedYet", "NotImplementedError"), (cell_id, error.ename, error.evalue)
    checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert all(c.id in errors for c in checks)
    assert any("not implemented yet" in errors[c.id].evalue for c in checks)
