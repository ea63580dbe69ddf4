"""Every notebook runs top to bottom in a fresh Colab-like environment (coursetools.colab_like):
the packages of Colab's published runtime at its versions (requirements/colab.txt), with its
Python, and whatever the notebook's own setup cell installs, the helpers from a git repository
as in Colab.

The chapters are executed that way once, for the book: `make book` runs
`python -m coursetools.colab_like` before jupyter-book, and the site shows those outputs. The
test of a chapter reads that execution from the book's cache (and executes the chapter itself
when the cache has none for its current code).

Each assignment runs as a student hands it in: the released notebook with the reference's code
put into each `# YOUR CODE HERE` region (coursetools.student), top to bottom, on the current
runtime and on the oldest one a notebook can pin in Colab (requirements/colab-2026.01.txt), every
visible check passing, and the grader gives that very notebook full marks (the proof, for every
assignment, that the reference's code earns them as students hand it in). The untouched
released notebook runs too, every check saying "not implemented yet"."""
import json
import re
import subprocess

import nbformat
import pytest

from autograder import engine
from coursetools import colab_like, colab_pins
from coursetools.config import assignment_ids
from coursetools.notebooks import course_notebooks
from coursetools.student import write_filled_notebook
from tests.conftest import ROOT
from tests.proofs import FAST

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="session")
def helper_repository(tmp_path_factory):
    """A git repository with what the public repository holds of the helper package."""
    return colab_like.helper_repository(tmp_path_factory.mktemp("public-repo") / "repo")


def run_notebook(path, folder, helper_repository, allow_errors=False, runtime=colab_pins.CURRENT):
    nb = colab_like.run_notebook(path, folder, helper_repository, allow_errors=allow_errors, runtime=runtime)
    setup = colab_like.setup_output(nb)
    assert setup.startswith("odcourse "), setup
    torch = colab_pins.runtime(runtime)["pins"]["torch"]
    assert f"| torch {torch}" in setup, f"the notebook ran on another torch than Colab's {torch}: {setup}"
    return nb


def stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


CHAPTERS = colab_like.chapters()
RELEASED = [p for p in course_notebooks() if p.parts[-3] == "assignments"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_chapter_ran_top_to_bottom_for_the_book(path):
    nb = colab_like.cached_execution(path)
    if nb is None:  # not built yet with this code: execute it as the book build does
        colab_like.execute_stale_chapters([path], jobs=1)
        nb = colab_like.cached_execution(path)
    assert nb is not None, f"{path.name}: no execution of its current code in the book's cache"
    setup = colab_like.setup_output(nb)
    assert setup.startswith("odcourse "), setup
    torch = colab_pins.runtime()["pins"]["torch"]
    assert f"| torch {torch}" in setup, f"the book's execution ran on another torch than Colab's {torch}: {setup}"
    assert colab_like.errors(nb) == []
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.get("execution_count") for c in code), "every code cell of the chapter must have run"


@pytest.mark.parametrize("assignment", assignment_ids())
def test_student_filled_notebook_runs_and_earns_full_marks(assignment, tmp_path, helper_repository):
    filled = write_filled_notebook(assignment, tmp_path / f"{assignment}.ipynb")
    nb = run_notebook(filled, tmp_path / "colab", helper_repository)
    assert colab_like.errors(nb) == []
    checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert checks and all(re.search(r"(\d+)/\1 visible checks passed", stdout(c)) for c in checks), \
        [stdout(c) for c in checks]
    handed_in = tmp_path / "handed-in" / f"{assignment}.ipynb"  # after Restart and run all, with its outputs
    handed_in.parent.mkdir()
    nbformat.write(nb, handed_in)
    result = engine.grade(assignment, handed_in, limits=FAST).to_gradescope()
    assert [(t["name"], t["output"]) for t in result["tests"] if t["score"] < t["max_score"]] == []
    assert result["score"] == result["max_score"] > 0
    assert result["output"] == "", result["output"]  # it loads in the grader without an error or a refusal


@pytest.mark.parametrize("assignment", assignment_ids())
def test_student_filled_notebook_runs_on_the_oldest_runtime(assignment, tmp_path, helper_repository):
    filled = write_filled_notebook(assignment, tmp_path / f"{assignment}.ipynb")
    nb = run_notebook(filled, tmp_path / "colab", helper_repository, runtime=colab_pins.OLDEST)
    assert colab_like.errors(nb) == []


@pytest.mark.parametrize("path", RELEASED, ids=lambda p: str(p.relative_to(ROOT)))
def test_released_notebook_runs_and_only_the_stubs_complain(path, tmp_path, helper_repository):
    nb = run_notebook(path, tmp_path, helper_repository, allow_errors=True)
    errors = {c.id: o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"}
    assert errors, "an untouched assignment must not pass its checks"
    for cell_id, error in errors.items():
        assert error.ename in ("NotImplementedYet", "NotImplementedError"), (cell_id, error.ename, error.evalue)
    checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert checks and all(c.id in errors for c in checks)
    assert {c.id: errors[c.id].evalue for c in checks if "not implemented yet" not in errors[c.id].evalue} == {}


# The environment itself ------------------------------------------------------------------------

def installed(env) -> dict[str, str]:
    done = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "list", "--format", "freeze",
                           "--disable-pip-version-check"], capture_output=True, text=True, check=True)
    return colab_pins.read_freeze(done.stdout)


@pytest.mark.parametrize("runtime", [colab_pins.CURRENT, colab_pins.OLDEST], ids=lambda p: p.name)
def test_colab_like_environment_is_colabs_runtime(runtime, tmp_path):
    pinned = colab_pins.runtime(runtime)
    env = colab_like.colab_like_kernel(tmp_path, runtime)
    found = installed(env)
    assert {name: found.get(name) for name in pinned["pins"] if found.get(name) != pinned["pins"][name]} == {}
    # Colab has no jedi; IPython 7.34 requires it. The CUDA libraries are PyPI's (see colab_pins).
    extra = {name for name in found if name not in pinned["pins"] and not colab_pins.CUDA.match(name)}
    assert extra <= {"jedi"}, f"installed but not pinned (add them to coursetools/colab_pins.py): {sorted(extra)}"
    python = subprocess.run([str(env / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
                            capture_output=True, text=True, check=True).stdout.strip()
    wanted = pinned["python"].rsplit(".", 1)[0]
    assert python.startswith(wanted + ".") or colab_like.find_python(pinned["python"])[1] == python


def test_installing_the_helpers_installs_only_the_helpers(tmp_path, helper_repository):
    """What the setup cell does in Colab, `pip install "odcourse @ git+..."`, read from pip's report:
    nothing Colab already has is reinstalled, upgraded or downgraded."""
    env = colab_like.colab_like_kernel(tmp_path)
    before = installed(env)
    report = tmp_path / "report.json"
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--report", str(report), helper_repository], check=True, cwd=tmp_path)
    chosen = [(item["metadata"]["name"], item["metadata"]["version"]) for item in json.loads(report.read_text())["install"]]
    assert [name for name, _ in chosen] == ["odcourse"], f"pip installed more than the helpers: {chosen}"
    after = installed(env)
    assert after.pop("odcourse") == chosen[0][1]
    assert after == before
