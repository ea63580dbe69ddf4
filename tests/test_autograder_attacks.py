"""The corpus of adversarial and broken submissions. Each starts from a notebook that would earn
full marks, then breaks or attacks one thing. For each: the grader survives and writes a
result, no unearned point is given, and the honest work elsewhere keeps its points."""
import json
import pathlib
import subprocess
import sys

import nbformat
import pytest

from autograder import engine
from tests.conftest import ROOT
from tests.test_autograder import ASSIGNMENT, FAST, ROOTED, scores, submission

pytestmark = [pytest.mark.slow]

FULL = {"pick_device": (2, 2), "environment_report": (4, 4), "time_matmul": (4, 4)}
WRONG_REPORT = "def environment_report():\n    return {'python': '2.7'}\n"


def function_cell(code):
    """A solution for pick_device with `code` run inside it first."""
    return ("def pick_device():\n" + "".join(f"    {line}\n" for line in code.splitlines())
            + "    return torch.device('cpu')\n")


def extra_cell(code):
    """Add a code cell with `code` after the imports."""
    def mutate(nb):
        cell = nbformat.v4.new_code_cell(code)
        nb.cells.insert(3, cell)
    return mutate


# attack -> (answers by grade_id, mutate, expected points by function, a phrase in the output)
ATTACKS = {
    "infinite loop": ({"pick-device": function_cell("while True:\n    pass")}, None,
                      {**FULL, "pick_device": (0, 2)}, "ran too long"),
    "memory bomb": ({"pick-device": function_cell("blocks = []\nwhile True:\n    blocks.append(bytearray(2**28))")},
                    None, {**FULL, "pick_device": (0, 2)}, "pick_device failed"),
    "fork bomb": ({"pick-device": function_cell("import os\nwhile True:\n    os.fork()")}, None,
                  {**FULL, "pick_device": (0, 2)}, "pick_device failed"),
    "os._exit": ({"pick-device": function_cell("import os\nos._exit(0)")}, None,
                 {**FULL, "pick_device": (0, 2)}, "ended the process"),
    "sys.exit": ({"pick-device": function_cell("import sys\nsys.exit(0)")}, None,
                 {**FULL, "pick_device": (0, 2)}, "SystemExit"),
    "raise KeyboardInterrupt": ({"pick-device": function_cell("raise KeyboardInterrupt")}, None,
                                {**FULL, "pick_device": (0, 2)}, "KeyboardInterrupt"),
    "segfault via ctypes": ({"pick-device": function_cell("import ctypes\nctypes.string_at(0)")}, None,
                            {**FULL, "pick_device": (0, 2)}, "crashed the interpreter"),
    "100 MB of printing": ({"pick-device": function_cell("for _ in range(200):\n    print('x' * 2**19)")}, None,
                           {**FULL, "pick_device": (0, 2)}, "pick_device failed"),
    "os._exit at load time": ({}, extra_cell("import os\nSTATUS = os._exit(1)"), FULL, "stopped the notebook"),
    "endless loop at load time": ({}, extra_cell("X = next(i for i in iter(int, 1) if i)"), FULL, "stopped the notebook"),
    "patching comparisons and test machinery": (
        {"environment-report": WRONG_REPORT},
        extra_cell("import builtins, numpy, numpy.testing, torch, pytest\n"
                   "torch.allclose = lambda *a, **k: True\n"
                   "torch.Tensor.__eq__ = lambda *a, **k: True\n"
                   "numpy.testing.assert_allclose = lambda *a, **k: None\n"
                   "pytest.approx = lambda *a, **k: True\n"
                   "builtins.isinstance = lambda *a: True\n"
                   "builtins.abs = lambda x: 0\n"),
        {**FULL, "environment_report": (0, 4)}, ""),
    "reading the solution and the hidden suite": (
        {"environment-report": "def environment_report():\n"
                               f"    return open({str(ROOT / 'solutions' / ASSIGNMENT / (ASSIGNMENT + '.ipynb'))!r}).read()\n"},
        extra_cell(f"SUITE = open({str(ROOT / 'autograder' / 'suites' / 'test_a01_colab.py')!r}).read()"),
        {**FULL, "environment_report": (0, 4)}, "Permission denied"),
    "a banned call": ({"time-matmul": "def time_matmul(n, device):\n"
                                      "    from torch.utils import benchmark\n"
                                      "    a = torch.randn(n, n, device=device)\n"
                                      "    t = benchmark.Timer('a @ a', globals={'a': a}).timeit(5)\n"
                                      "    return float(t.median)\n"},
                      None, {**FULL, "time_matmul": (0, 4)}, "does not allow"),
    "a banned module imported at the top": ({"time-matmul": "def time_matmul(n, device):\n"
                                                            "    return timeit.timeit(lambda: torch.randn(n, n) @ torch.randn(n, n), number=1)\n"},
                                            extra_cell("import timeit"), {**FULL, "time_matmul": (0, 4)}, "timeit"),
}


def lost_metadata(nb):
    for cell in nb.cells:
        cell.metadata = {}
        cell.pop("id", None)
    nb.nbformat_minor = 4


def deleted_and_duplicated(nb):
    nb.cells = [c for c in nb.cells if c.get("id") not in ("task-pick-device", "test-pick-device")]
    duplicate = next(c for c in nb.cells if c.get("id") == "time-matmul").copy()
    duplicate.source = duplicate.source.replace("return", "return 0.0 * 0 +", 1)  # an older, wrong copy
    duplicate.id = "copy-of-time-matmul"
    duplicate.metadata = {}
    index = next(i for i, c in enumerate(nb.cells) if c.get("id") == "time-matmul")
    nb.cells.insert(index, duplicate)  # the graded cell (with metadata) comes after it


BROKEN = {
    "lost metadata and cell ids (Colab)": (lost_metadata, 10),
    "deleted and duplicated cells": (deleted_and_duplicated, 10),
    "colab magics and shell lines": (extra_cell("!pip install nothing\n%matplotlib inline\n"
                                                "from google.colab import drive\ndrive.mount('/content/drive')"), 10),
}


@ROOTED
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack(tmp_path, attack):
    answers, mutate, expected, phrase = ATTACKS[attack]
    result = engine.grade(ASSIGNMENT, submission(tmp_path, answers, mutate=mutate), limits=FAST)
    assert scores(result) == expected, [t["output"] for t in result["tests"] if t["score"] < t["max_score"]]
    everything = json.dumps(result)
    assert phrase in everything


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_damaged_but_honest_notebook_is_graded(tmp_path, case):
    mutate, expected = BROKEN[case]
    result = engine.grade(ASSIGNMENT, submission(tmp_path, mutate=mutate), limits=FAST)
    assert result["score"] == expected, [t["output"] for t in result["tests"] if t["score"] < t["max_score"]]


def test_nbformat_3_is_read(tmp_path):
    nb = nbformat.read(submission(tmp_path), as_version=4)
    old = nbformat.convert(nb, 3)
    path = tmp_path / "v3.ipynb"
    path.write_text(json.dumps(old))
    assert json.loads(path.read_text())["nbformat"] == 3
    assert engine.grade(ASSIGNMENT, path, limits=FAST)["score"] == 10


@pytest.mark.parametrize("name", ["Copy of a01-colab.ipynb", "a01-colab (1).ipynb", "élève-a01.ipynb"])
def test_any_file_name(tmp_path, name):
    assert engine.grade(ASSIGNMENT, submission(tmp_path, name=name), limits=FAST)["score"] == 10


def test_non_utf8_file_name(tmp_path):
    path = submission(tmp_path)
    odd = pathlib.Path(str(tmp_path).encode() .decode() + "/" + b"a01-\xe9l\xe8ve.ipynb".decode("latin-1"))
    path.rename(odd)
    assert engine.grade(ASSIGNMENT, odd, limits=FAST)["score"] == 10


@pytest.mark.parametrize("content, phrase", [
    (b"", "empty"),
    (b"{not json", "not a valid notebook"),
    (b"\xff\xfe\x00garbage", "not text in UTF-8"),
    (b'{"hello": 1}', "no notebook cells"),
    (b"[1, 2]", "not a notebook"),
])
def test_unreadable_notebook_gets_a_zero_result_with_the_reason(tmp_path, content, phrase):
    path = tmp_path / "sub.ipynb"
    path.write_bytes(content)
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", ASSIGNMENT, str(path), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["score"] == 0 and len(result["tests"]) == 10
    assert phrase in result["output"] and all(phrase in t["output"] for t in result["tests"])


def test_a_200_MB_notebook_is_refused_in_words(tmp_path):
    nb = nbformat.read(submission(tmp_path), as_version=4)
    nb.cells[-1].source = "x" * (200 * 2**20)
    path = tmp_path / "huge.ipynb"
    nbformat.write(nb, path)
    result = engine.grade(ASSIGNMENT, path, limits=FAST)
    assert result["score"] == 0 and "clear the outputs" in result["output"]


@ROOTED
def test_gradebook_cannot_be_written(tmp_path):
    """A course directory of the instructor's with a gradebook: the student's code cannot touch it."""
    course = tmp_path / "course"
    (course / "submitted" / "s1" / ASSIGNMENT).mkdir(parents=True)
    gradebook = course / "gradebook.db"
    gradebook.write_bytes(b"the gradebook")
    code = f"def environment_report():\n    open({str(gradebook)!r}, 'wb').write(b'pwned')\n    return {{}}\n"
    path = submission(course / "submitted" / "s1" / ASSIGNMENT, {"environment-report": code})
    result = engine.grade(ASSIGNMENT, path, limits=FAST, hide_extra=[course])
    assert gradebook.read_bytes() == b"the gradebook"
    assert scores(result)["environment_report"] == (0, 4)
