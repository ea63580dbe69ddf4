"""No solution text, hidden test or reference value in student-facing material."""
import html
import json
import shutil

import pytest

from coursetools import leaks
from tests.conftest import ROOT

STUDENT_FACING = [ROOT / "assignments", ROOT / "book", ROOT / "odcourse"]


def test_there_are_secrets_to_look_for():
    kinds = {s.source.split(": ")[1] for s in leaks.secrets()}
    assert {"solution", "hidden suite"} <= kinds


def test_student_facing_sources_leak_nothing():
    assert leaks.scan(STUDENT_FACING) == []


def test_built_site_leaks_nothing():
    site = ROOT / "_build" / "html"
    if not (site / "index.html").exists():
        pytest.fail("the book is not built: `make test` builds it first (or run `make book`)")
    assert leaks.scan([site]) == []


def first_secret_block():
    secret = next(s for s in leaks.secrets() if "\n" in s.text and s.source.endswith("solution"))
    return secret.text


@pytest.mark.parametrize("form", ["markdown", "notebook", "html", "marker"])
def test_a_planted_leak_is_found(tmp_path, form):
    block = first_secret_block()
    if form == "markdown":
        (tmp_path / "page.md").write_text("Some prose.\n\n```python\n" + block + "\n```\n")
    elif form == "notebook":
        shutil.copy(ROOT / "assignments" / "a01-colab" / "a01-colab.ipynb", tmp_path / "x.ipynb")
        nb = json.loads((tmp_path / "x.ipynb").read_text())
        nb["cells"][-1]["source"] = "    " + block.replace("\n", "\n    ")
        (tmp_path / "x.ipynb").write_text(json.dumps(nb))
    elif form == "html":
        spans = "".join(f'<span class="n">{html.escape(line)}</span>\n' for line in block.splitlines())
        (tmp_path / "page.html").write_text(f"<pre>{spans}</pre>")
    else:
        (tmp_path / "page.md").write_text("### BEGIN SOLUTION\n")
    found = leaks.scan([tmp_path])
    assert found, f"a {form} leak was not found"


def test_generic_lines_are_not_leaks(tmp_path):
    (tmp_path / "page.md").write_text("if torch.cuda.is_available():\n    print('GPU')\n")
    assert leaks.scan([tmp_path]) == []


def test_command_line_exit_status(tmp_path):
    (tmp_path / "clean.md").write_text("nothing here\n")
    assert leaks.main([str(tmp_path)]) == 0
    (tmp_path / "dirty.md").write_text(first_secret_block())
    assert leaks.main([str(tmp_path)]) == 1
