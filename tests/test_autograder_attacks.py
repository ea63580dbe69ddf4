"""The grader's trust boundary, attacked as a determined student would, through the real command
(`python -m autograder grade ...` and `class -j 2`). Each submission starts from a notebook that
earns full marks and cheats, breaks or attacks one thing. For each, the promise: the notebook gets
a results.json (exit status 0) in bounded time; no point is earned that honest work would not
earn; the honest work elsewhere keeps its points; nothing hidden reaches the feedback; another
student's grade is untouched. The instructor guide's table "What the grader guarantees" names
the test of each class."""
import contextlib
import io
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import textwrap
import time

import nbformat
import pytest

from autograder import __main__ as command_line
from autograder import assignment as assignments
from tests.conftest import ROOT
from tests.notebook_grading import student_notebook

pytestmark = [pytest.mark.slow]
ROOTED = pytest.mark.skipif(os.geteuid() != 0,
                            reason="namespaces, private mounts and cgroups need root (CI and graders have it)")
A01 = {"pick_device": (2, 2), "environment_report": (4, 4), "time_matmul": (4, 4)}


def code(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def notebook(folder: pathlib.Path, assignment: str, answers: dict | None = None, cells=(), mutate=None,
             name: str | None = None) -> pathlib.Path:
    """The released notebook filled with the reference, except `answers` (grade id -> code), with
    extra code `cells` after its imports cell; `mutate(nb)` may change it further."""
    nb = student_notebook(ROOT, assignment, {k: code(v) for k, v in (answers or {}).items()})
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "imports") + 1
    for offset, text in enumerate(cells):
        nb.cells.insert(at + offset, nbformat.v4.new_code_cell(code(text)))
    if mutate:
        mutate(nb)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{assignment}.ipynb")
    path.write_text(json.dumps(nb, ensure_ascii=True))  # any text, lone surrogates included
    return path


def grade(path: pathlib.Path, assignment: str, *options: str, timeout: float = 600) -> tuple[dict, str, float]:
    """(results.json, what the command printed, seconds) of `python -m autograder grade`: the
    command's own main(), in this process, so that the fork server it starts serves the next
    attack too (a new interpreter per attack would add seconds of imports to each)."""
    out = path.parent / "results.json"
    printed = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(printed):
        status = command_line.main(["grade", assignment, str(path), "--json", str(out), *options])
    seconds = time.monotonic() - started
    assert status == 0 and seconds < timeout
    text = printed.getvalue()
    text.encode("utf-8")  # what it printed is text a terminal can show
    return json.loads(out.read_bytes()), text, seconds


def points(result: dict) -> dict:
    by_function = {}
    for test in result["tests"]:
        got, top = by_function.get(test["tags"][0], (0, 0))
        by_function[test["tags"][0]] = (got + test["score"], top + test["max_score"])
    return by_function


def failed_outputs(result: dict, function: str) -> list[str]:
    return [t["output"] for t in result["tests"] if t["tags"] == [function] and t["score"] < t["max_score"]]


# graded functions whose reference code calls another graded function (which the student wrote)
DEPENDENTS = {"box_area": {"box_iou", "proposal_recall"}, "box_iou": {"proposal_recall"},
              "nms": {"batched_nms", "decode_yolo"}, "batched_nms": {"decode_yolo"}, "roi_pool": {"RoIPoolFunction"},
              "smooth_l1": {"ssd_loss"}}


def assert_only_loses(result: dict, function: str, phrase: str = "") -> None:
    """`function` earns nothing (with `phrase` in its tests' outputs); the reference's code for the
    others keeps all its points (but the functions built on `function`, which may lose some)."""
    got = points(result)
    assert got[function][0] == 0, (function, got[function], failed_outputs(result, function))
    for name, (earned, top) in got.items():
        if name != function and name not in DEPENDENTS.get(function, ()):
            assert earned == top, (name, failed_outputs(result, name))
    if phrase:
        assert all(phrase in output for output in failed_outputs(result, function)), failed_outputs(result, function)


# 1. Banned operations reached by another name -------------------------------------------------

BANNED_ELSEWHERE = {
    "torch.ops.torchvision.nms inside nms": ("a08-yolo", "nms", {"nms": """
        def nms(boxes, scores, iou_threshold):
            return torch.ops.torchvision.nms(boxes, scores, iou_threshold)
        """}, (), "torch.ops"),
    "torch._C._VariableFunctions.conv_transpose2d": ("a07-transposed-conv", "conv_transpose2d", {"conv-transpose2d": """
        def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
            return torch._C._VariableFunctions.conv_transpose2d(x, weight, bias, stride, padding, output_padding)
        """}, (), "torch._C"),
    "torch._C._nn.adaptive_max_pool2d": ("a04-roi-pooling", "spatial_pyramid_pool", {"spatial-pyramid-pool": """
        def spatial_pyramid_pool(x, levels=(1, 2, 4)):
            return torch.cat([torch._C._nn.adaptive_max_pool2d(x, (n, n))[0].flatten(1) for n in levels], dim=1)
        """}, (), "torch._C"),
    "torch.ops.aten.smooth_l1_loss": ("a09-ssd", "smooth_l1", {"smooth-l1": """
        def smooth_l1(x, beta=1.0):
            return torch.ops.aten.smooth_l1_loss(x, torch.zeros_like(x), 0, beta)
        """}, (), "torch.ops"),
    "an alias bound in another cell": ("a08-yolo", "batched_nms", {"batched-nms": """
        def batched_nms(boxes, scores, idxs, iou_threshold):
            return _helper(boxes, scores, idxs, iou_threshold)
        """}, ["import torchvision\n_helper = torchvision.ops.batched_nms"], "torchvision.ops"),
    "the same object under another module's name": ("a02-proposals", "box_iou", {"box-iou": """
        import torchvision.models.detection.rpn as rpn

        def box_iou(boxes1, boxes2):
            return rpn.box_ops.box_iou(boxes1, boxes2)
        """}, (), "torchvision.ops"),
    "exec of a computed import": ("a02-proposals", "box_iou", {"box-iou": """
        def box_iou(boxes1, boxes2):
            scope = {}
            exec("from torchvision" + ".ops import box_iou as f", scope)
            return scope["f"](boxes1, boxes2)
        """}, (), "exec"),
    "importlib and a computed getattr": ("a02-proposals", "box_iou", {"box-iou": """
        import importlib

        def box_iou(boxes1, boxes2):
            ops = importlib.import_module("torch" + "vision.ops")
            return getattr(ops, "box_" + "iou")(boxes1, boxes2)
        """}, (), "importlib"),
    "__import__ and vars": ("a02-proposals", "box_iou", {"box-iou": """
        def box_iou(boxes1, boxes2):
            return vars(__import__("torchvision").ops)["box_iou"](boxes1, boxes2)
        """}, (), "not graded"),
}


@pytest.mark.parametrize("attack", sorted(BANNED_ELSEWHERE))
def test_banned_operation_reached_by_another_name_earns_nothing(tmp_path, attack):
    assignment, function, answers, cells, phrase = BANNED_ELSEWHERE[attack]
    result, _, _ = grade(notebook(tmp_path, assignment, answers, cells), assignment)
    assert_only_loses(result, function, phrase)


def test_graded_name_rebound_in_a_later_cell_earns_nothing(tmp_path):
    """The graded cell left as the stub, a later cell binding the graded name to torchvision's."""
    path = notebook(tmp_path, "a02-proposals", {"box-area": """
        def box_area(boxes):
            # YOUR CODE HERE
            raise NotImplementedError()
        """}, ["import torchvision\nbox_area = torchvision.ops.box_area"])
    result, _, _ = grade(path, "a02-proposals")
    got = points(result)
    assert got["box_area"][0] == 0 and got["sliding_windows"] == (4, 4) and got["selective_search"][0] > 0
    assert "box_area is graded" in result["output"]
    assert any("refused" in flag for flag in result["extra"]["flags"])


# 2. The worker's trusted code is out of reach ---------------------------------------------------

def test_a_cell_setting_dunder_name_is_refused_and_autograd_in_the_backward_still_counts(tmp_path):
    path = notebook(tmp_path, "a04-roi-pooling", {"roi-pool-function": """
        class RoIPoolFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, boxes, output_size, spatial_scale):
                ctx.save_for_backward(x, boxes)
                ctx.extra = (output_size, spatial_scale)
                return roi_pool(x, boxes, output_size, spatial_scale)

            @staticmethod
            def backward(ctx, grad):
                x, boxes = ctx.saved_tensors
                with torch.enable_grad():
                    x = x.detach().requires_grad_(True)
                    out = roi_pool(x, boxes, *ctx.extra)
                    (dx,) = torch.autograd.grad(out, x, grad)
                return dx, None, None, None
        """}, ['__name__ = "torch.autograd.notebook"'])
    result, _, _ = grade(path, "a04-roi-pooling")
    assert_only_loses(result, "RoIPoolFunction", "torch.autograd")
    assert "__name__" in result["output"]


@pytest.mark.parametrize("attack, construct", [
    # the recorder's set of banned uses, cleared from the student's call by walking up the frames
    ("import sys\nsys._getframe(1).f_back.f_locals['used'].clear()", "frames"),
    # the recorder's trust replaced through the worker's module
    ("import sys\nsys.modules['__main__'].trusted_caller = lambda frame: True", "sys.modules"),
])
def test_the_recorder_cannot_be_reached(tmp_path, attack, construct):
    """In a graded function (which then earns nothing) or in a top-level cell (which is not run;
    the honest functions keep their points). tests/test_screening.py reads every other construct
    of the kind; tests/test_workers.py shows the recorder at work behind the screening."""
    body = attack.replace("\n", "\n    ")
    in_function = {"pick-device": f"def pick_device():\n    {body}\n    return torch.device('cpu')\n"}
    result, _, _ = grade(notebook(tmp_path / "function", "a01-colab", in_function), "a01-colab")
    assert_only_loses(result, "pick_device", construct)
    result, _, _ = grade(notebook(tmp_path / "cell", "a01-colab", cells=[attack]), "a01-colab")
    assert points(result) == A01 and "was not run" in result["output"]
    assert result["extra"]["flags"]


def test_patched_gradcheck_cannot_pass_a_wrong_backward(tmp_path):
    """The backward is judged by finite differences of value-only calls, computed by the grader."""
    wrong_backward = """
        class RoIPoolFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, boxes, output_size, spatial_scale):
                ctx.shape = x.shape
                return roi_pool(x, boxes, output_size, spatial_scale)

            @staticmethod
            def backward(ctx, grad):
                return torch.zeros(ctx.shape, dtype=grad.dtype, device=grad.device), None, None, None
        """
    path = notebook(tmp_path, "a04-roi-pooling", {"roi-pool-function": wrong_backward},
                    ["torch.autograd.gradcheck = lambda *args, **kwargs: True"])
    result, _, _ = grade(path, "a04-roi-pooling")
    outputs = failed_outputs(result, "RoIPoolFunction")
    assert any("finite differences" in o for o in outputs), outputs
    assert points(result)["roi_pool"] == (points(result)["roi_pool"][1],) * 2


def test_an_in_place_change_is_seen_by_the_grader_whatever_the_worker_says(tmp_path):
    path = notebook(tmp_path, "a02-proposals", {"box-area": """
        def box_area(boxes):
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            boxes[:, 0] = 0
            return area
        """}, ["_modified = lambda *args: []"])
    result, _, _ = grade(path, "a02-proposals")
    assert any("changed its input" in o for o in failed_outputs(result, "box_area")), failed_outputs(result, "box_area")


SLOW_NMS = """
    def nms(boxes, scores, iou_threshold):
        {prelude}
        order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
        x1, y1, x2, y2 = (boxes[:, k].tolist() for k in range(4))
        keep, dropped = [], set()
        for a in order:
            if a in dropped:
                continue
            keep.append(a)
            for b in order:
                if b == a or b in dropped:
                    continue
                w = max(0.0, min(x2[a], x2[b]) - max(x1[a], x1[b]))
                h = max(0.0, min(y2[a], y2[b]) - max(y1[a], y1[b]))
                inter = w * h
                union = (x2[a] - x1[a]) * (y2[a] - y1[a]) + (x2[b] - x1[b]) * (y2[b] - y1[b]) - inter
                if union > 0 and inter / union > iou_threshold:
                    dropped.add(b)
        result = torch.tensor(keep, dtype=torch.int64, device=boxes.device)
        {postlude}
        return result
    """


@pytest.mark.parametrize("trick", ["forged reply", "memoised by input bytes"])
def test_a_slow_nms_cannot_pass_the_speed_test(tmp_path, trick):
    """The speed test times, from outside, calls in fresh forks on inputs no call has seen."""
    if trick == "forged reply":
        prelude = ("for fd in range(3, 12):\n"
                   "            try:\n"
                   "                sink = type(open('/dev/null', 'rb').raw)(fd, 'wb', closefd=False)\n"
                   "                sink.write(len(b'{\"op\":\"result\",\"ok\":true,\"seconds\":0.0001}\\n1').to_bytes(8, 'big')\n"
                   "                           + b'{\"op\":\"result\",\"ok\":true,\"seconds\":0.0001}\\n1')\n"
                   "            except Exception:\n"
                   "                pass")
        postlude = "pass"
    else:
        prelude = ("key = (boxes.numpy().tobytes(), scores.numpy().tobytes(), iou_threshold)\n"
                   "        if key in CACHE:\n"
                   "            return CACHE[key]")
        postlude = "CACHE[key] = result"
    answer = SLOW_NMS.replace("{prelude}", prelude).replace("{postlude}", postlude)
    path = notebook(tmp_path, "a08-yolo", {"nms": answer}, ["CACHE = {}"])
    result, _, _ = grade(path, "a08-yolo", "--call-seconds", "20")
    speed = [t for t in result["tests"] if t["name"] == "nms: speed"][0]
    assert speed["score"] == 0, speed


# 3. One submission cannot reach another, or the host -------------------------------------------

ATTACKER = """
    import os
    import pathlib

    def pick_device():
        found = []
        for folder in ("/tmp", "/dev/shm", "/dev", "/run", os.getcwd()):
            try:
                found += [folder + "/" + name for name in os.listdir(folder)]
            except OSError:
                pass
        for target in ("/tmp/planted-by-attacker", "/dev/shm/planted-by-attacker", "/dev/planted-by-attacker"):
            try:
                pathlib.Path(target).write_text("\\n".join(found))
            except OSError:
                pass
        for victim in ("/dev/null", "/dev/urandom"):
            try:
                os.rename(victim, victim + ".moved")
            except OSError:
                pass
        for socket_file in [f for f in found if "socket" in f or f.endswith(".sock")]:
            try:
                open(socket_file, "wb").write(b"\\x00" * 16)
            except OSError:
                pass
        return torch.device("cpu")
    """


@ROOTED
def test_an_attacker_graded_beside_a_victim_cannot_reach_it(tmp_path):
    course = tmp_path / "course"
    for student in ("attacker", "victim"):
        folder = course / "submitted" / student / "a01-colab"
        notebook(folder, "a01-colab", {"pick-device": ATTACKER} if student == "attacker" else None)
    before = {path: os.stat(path) for path in ("/dev/null", "/dev/urandom")}
    done = subprocess.run([sys.executable, "-m", "autograder", "class", "a01-colab", str(course), "-j", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    victim = json.loads((course / "autograder-results" / "a01-colab" / "victim.json").read_text())
    assert victim["score"] == 10, victim
    for path in ("/tmp/planted-by-attacker", "/dev/shm/planted-by-attacker", "/dev/planted-by-attacker",
                 "/dev/null.moved", "/dev/urandom.moved"):
        assert not os.path.exists(path), path
    for path, status in before.items():
        assert stat.S_ISCHR(os.stat(path).st_mode) and os.stat(path).st_rdev == status.st_rdev


# 4. Every notebook gets a result ---------------------------------------------------------------

def test_json_nested_100000_deep_gets_a_result(tmp_path):
    path = tmp_path / "deep.ipynb"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result, printed, _ = grade(path, "a01-colab")
    assert result["score"] == 0 and len(result["tests"]) == 10 and "not a notebook" in result["output"]
    assert "0 / 10" in printed


UNREADABLE_CELLS = [
    "x = " + "-" * 200_000 + "1",  # a MemoryError or RecursionError in the parser
    "x = " + "1+" * 100_000 + "1",  # a RecursionError when compiled
    "x = '\ud800'",  # a lone surrogate
    "x = 1\x00",  # a NUL
    "x = (" * 300 + "1" + ")" * 300,  # too deeply nested for the parser
    "x = '" + "\x1b[2J" * 10 + "'",  # terminal escapes
]


def test_cells_the_parser_cannot_read_are_reported_and_the_rest_is_graded(tmp_path):
    path = notebook(tmp_path, "a01-colab", cells=UNREADABLE_CELLS)
    result, printed, _ = grade(path, "a01-colab")
    assert points(result) == A01
    for index in range(4, 4 + len(UNREADABLE_CELLS) - 1):
        assert f"cell {index}" in result["output"], (index, result["output"])
    assert "a01-colab.ipynb: 10 / 10" in printed and "\x1b" not in printed


def test_an_error_message_of_control_characters_reaches_neither_results_nor_the_summary(tmp_path):
    path = notebook(tmp_path, "a01-colab", {"environment-report": """
        def environment_report():
            raise ValueError("\\ud800 \\x00 \\x1b[31mred\\x1b[0m \\u202e reversed hidden-marker")
        """})
    result, printed, _ = grade(path, "a01-colab")
    raw = json.dumps(result)
    assert "hidden-marker" not in raw and "hidden-marker" not in printed
    assert "\\u001b" not in raw and "\x1b" not in printed and "\\u202e" not in raw
    assert all(ch == "\n" or ch == "\t" or ord(ch) >= 32 for t in result["tests"] for ch in t["output"])
    assert points(result)["environment_report"][0] == 0


def test_a_non_utf8_file_gets_a_result(tmp_path):
    path = tmp_path / "latin.ipynb"
    path.write_bytes(b'{"cells": [], "x": "\xe9\xff"}')
    result, _, _ = grade(path, "a01-colab")
    assert result["score"] == 0 and "not text in UTF-8" in result["output"]


# 5. Bounded time -------------------------------------------------------------------------------

@ROOTED
def test_a_half_written_message_on_the_channel_does_not_block_the_grader(tmp_path):
    forge = ("for fd in range(3, 12):\n"
             "    try:\n"
             "        type(open('/dev/null', 'rb').raw)(fd, 'wb', closefd=False).write(b'\\x00\\x00\\x00\\x00\\x00\\x10\\x00\\x00{')\n"
             "    except Exception:\n"
             "        pass\n")
    path = notebook(tmp_path, "a01-colab", cells=["import time\n\ndef forge():\n" + textwrap.indent(forge, "    ")
                                                  + "    time.sleep(1000)\n\nSTALL = forge()"])
    result, _, seconds = grade(path, "a01-colab", "--call-seconds", "5", timeout=300)
    assert points(result) == A01
    assert seconds < 120, seconds


@ROOTED
def test_statements_that_crash_the_worker_while_loading_are_capped(tmp_path):
    crash = "import sys\n\ndef down(n):\n    return sorted([n], key=down)\n\nLIMIT = sys.setrecursionlimit(10**7)\n"
    crash += "".join(f"CRASH_{i} = down(0)\n" for i in range(600))
    result, _, seconds = grade(notebook(tmp_path, "a01-colab", cells=[crash]), "a01-colab", timeout=600)
    assert points(result) == A01
    assert "stopped the grader's worker" in result["output"]
    assert seconds < 120, seconds


def test_a_whole_grading_has_a_time_budget(tmp_path):
    """A correct nms that sleeps just under the per-call limit: the budget ends the grading, what
    was earned is written, the rest says why it was not run."""
    path = notebook(tmp_path, "a08-yolo", {"nms": """
        import time

        def nms(boxes, scores, iou_threshold):
            time.sleep(4)
            return scores.argsort(descending=True)[:0]
        """})
    result, _, seconds = grade(path, "a08-yolo", "--budget", "25", "--call-seconds", "5", timeout=300)
    assert seconds < 120, seconds
    assert any("budget" in t["output"] for t in result["tests"]), [t["output"] for t in result["tests"]]
    assert any("budget" in flag for flag in result["extra"]["flags"])


@ROOTED
def test_killing_the_grader_ends_its_fork_server_and_workers(tmp_path):
    path = notebook(tmp_path, "a01-colab", {"pick-device": """
        import time

        def pick_device():
            time.sleep(600)
        """})
    process = subprocess.Popen([sys.executable, "-m", "autograder", "grade", "a01-colab", str(path), "--json",
                                str(tmp_path / "r.json")], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    descendants: set[int] = set()
    for _ in range(60):  # the fork server and both workers are running, the student's call sleeping
        time.sleep(1)
        descendants = _descendants(process.pid)
        if len(descendants) >= 4:
            break
    assert len(descendants) >= 4, "the fork server and its workers did not start"
    time.sleep(2)
    descendants = _descendants(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    for _ in range(100):
        if not [pid for pid in descendants if _running(pid)]:
            break
        time.sleep(0.1)
    assert not [pid for pid in descendants if _running(pid)]


def _parents() -> dict[int, int]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found[int(entry)] = int(pathlib.Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return found


def _descendants(pid: int) -> set[int]:
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_function_starting_processes_earns_nothing_and_costs_no_time(tmp_path):
    """300 sleeping children and a constant: refused (tests/test_screening.py has the other ways
    to start processes); the reference is never timed beside a student's process anyway."""
    path = notebook(tmp_path, "a01-colab", {"time-matmul": """
        import subprocess

        def time_matmul(n, device):
            [subprocess.Popen(["sleep", "60"]) for _ in range(300)]
            return 0.001
        """})
    result, _, seconds = grade(path, "a01-colab")
    assert_only_loses(result, "time_matmul", "not graded")
    assert seconds < 90, seconds


# 6. Feedback never carries what student code printed or raised ---------------------------------

def test_an_exception_echoing_hidden_inputs_does_not_reach_the_feedback(tmp_path):
    path = notebook(tmp_path, "a08-yolo", {"batched-nms": """
        def batched_nms(boxes, scores, idxs, iou_threshold):
            print("LEAK-PRINT", boxes.tolist())
            raise ValueError(f"LEAK-RAISE idxs={idxs.tolist()} boxes={boxes.tolist()}")
        """})
    result, printed, _ = grade(path, "a08-yolo")
    everything = json.dumps(result) + printed
    assert "LEAK-RAISE" not in everything and "LEAK-PRINT" not in everything and "idxs=" not in everything
    outputs = failed_outputs(result, "batched_nms")
    assert outputs and all("ValueError" in o for o in outputs if "batched_nms" in o), outputs


def test_a_function_that_fails_only_on_a_first_call_gets_no_falsifying_example(tmp_path):
    path = notebook(tmp_path, "a02-proposals", {"box-area": """
        SEEN = set()

        def box_area(boxes):
            key = boxes.numpy().tobytes()
            if key not in SEEN:
                SEEN.add(key)
                return torch.zeros(len(boxes), dtype=boxes.dtype)
            return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        """})
    result, printed, _ = grade(path, "a02-proposals")
    everything = json.dumps(result) + printed
    assert "Falsifying" not in everything and "Flaky" not in everything and "params=" not in everything
    assert points(result)["box_area"][0] < points(result)["box_area"][1]


# 7. The classic failures: each costs the function its points, nothing else ---------------------

def in_pick_device(body: str) -> dict:
    return {"pick-device": "def pick_device():\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ")
                           + "\n    return torch.device('cpu')\n"}


CLASSIC = {
    "infinite loop": (in_pick_device("while True:\n    pass"), "ran too long"),
    "printing without end": (in_pick_device("while True:\n    print('x' * 1000)"), "ran too long"),
    "memory bomb": (in_pick_device("blocks = []\nwhile True:\n    blocks.append(bytearray(2**28))"), "MemoryError"),
    "os._exit": (in_pick_device("import os\nos._exit(0)"), "not graded"),
    "sys.exit": (in_pick_device("import sys\nsys.exit(0)"), "SystemExit"),
    "raise KeyboardInterrupt": (in_pick_device("raise KeyboardInterrupt"), "KeyboardInterrupt"),
    "a segfault": (in_pick_device("import sys\nsys.setrecursionlimit(10**7)\ndef down(n):\n"
                                  "    return sorted([n], key=down)\ndown(0)"), "crashed the interpreter"),
    "reading the solution": ({"pick-device": "def pick_device():\n"
                                             f"    open({str(ROOT / 'solutions' / 'a01-colab' / 'a01-colab.ipynb')!r}).read()\n"
                                             "    return torch.device('cpu')\n"}, "PermissionError"),
}


@ROOTED
@pytest.mark.parametrize("case", sorted(CLASSIC))
def test_classic_failures_cost_only_their_function(tmp_path, case):
    answers, phrase = CLASSIC[case]
    result, _, seconds = grade(notebook(tmp_path, "a01-colab", answers), "a01-colab", "--call-seconds", "10")
    assert_only_loses(result, "pick_device", phrase)
    assert seconds < 120, seconds


def test_a_hundred_megabytes_of_printing_costs_nothing(tmp_path):
    """Printing is not feedback: it goes nowhere, and a right answer that prints is right."""
    answers = {"pick-device": "def pick_device():\n    for _ in range(200):\n        print('x' * 2**19)\n"
                              "    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')\n"}
    result, printed, _ = grade(notebook(tmp_path, "a01-colab", answers), "a01-colab")
    assert points(result) == A01 and "xxxx" not in printed


@ROOTED
def test_the_gradebook_cannot_be_written(tmp_path):
    course = tmp_path / "course"
    gradebook = course / "gradebook.db"
    (course / "submitted" / "s1" / "a01-colab").mkdir(parents=True)
    gradebook.write_bytes(b"the gradebook")
    path = notebook(course / "submitted" / "s1" / "a01-colab", "a01-colab", {"environment-report": f"""
        def environment_report():
            open({str(gradebook)!r}, "wb").write(b"pwned")
            return {{}}
        """})
    result, _, _ = grade(path, "a01-colab", "--hide", str(course))
    assert gradebook.read_bytes() == b"the gradebook"
    assert points(result)["environment_report"] == (0, 4)


# 8. Honest notebooks damaged by Colab or the LMS are graded in full -----------------------------

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


def colab_lines(nb):
    nb.cells.insert(3, nbformat.v4.new_code_cell("!pip install nothing\n%matplotlib inline\n"
                                                 "from google.colab import drive\ndrive.mount('/content/drive')"))


@pytest.mark.parametrize("damage", [lost_metadata, deleted_and_duplicated, colab_lines])
def test_damaged_but_honest_notebook_is_graded_in_full(tmp_path, damage):
    result, _, _ = grade(notebook(tmp_path, "a01-colab", mutate=damage), "a01-colab")
    assert result["score"] == 10, [t["output"] for t in result["tests"] if t["score"] < t["max_score"]]


def test_nbformat_3_and_any_file_name(tmp_path):
    nb = nbformat.read(notebook(tmp_path, "a01-colab"), as_version=4)
    path = tmp_path / "Copy of a01-colab (1) élève.ipynb"
    path.write_text(json.dumps(nbformat.convert(nb, 3)))
    result, _, _ = grade(path, "a01-colab")
    assert result["score"] == 10


@pytest.mark.parametrize("content, phrase", [
    (b"", "empty"),
    (b"{not json", "not a valid notebook"),
    (b'{"hello": 1}', "no notebook cells"),
    (b"[1, 2]", "not a notebook"),
])
def test_unreadable_notebook_gets_a_zero_result_with_the_reason(tmp_path, content, phrase):
    path = tmp_path / "sub.ipynb"
    path.write_bytes(content)
    result, _, _ = grade(path, "a01-colab")
    assert result["score"] == 0 and len(result["tests"]) == 10
    assert phrase in result["output"] and all(phrase in t["output"] for t in result["tests"])


def test_a_notebook_cannot_choose_which_tests_run(tmp_path):
    """Test selection (the proofs' only and skip_tests) belongs to the grading process: pytest hooks
    and selection names defined in the notebook reach neither, and every test of every function runs."""
    path = notebook(tmp_path, "a02-proposals", {"box-area": """
        def box_area(boxes):
            return boxes[:, 0] * 0

        skip_tests = {"test_box_area_of_random_boxes"}
        only = {"sliding_windows"}

        def pytest_collection_modifyitems(config, items):
            items[:] = []
        """})
    result, _, _ = grade(path, "a02-proposals", timeout=300)
    functions = {t["tags"][0] for t in result["tests"]}
    assert functions == set(assignments.load("a02-proposals").functions), functions
    area = [t for t in result["tests"] if t["tags"] == ["box_area"]]
    assert area and all(t["score"] == 0 for t in area), area
