"""The similarity report's comparison, without grading anything: what copying changes is
normalised away (names, order of independent statements, comments, layout), what the data flow
fixes is kept, independent correct solutions of the same function stay apart, the released code
counts for nobody, odd notebooks are skipped in words, and 200 submissions take under a minute.
The class graded by `class` is in tests/test_class_tools.py."""
import itertools
import json
import pathlib
import random
import textwrap

import nbformat
import pytest

from autograder import assignment as assignments
from autograder import similarity
from bench import similarity as bench
from tests.conftest import ROOT

pytestmark = [pytest.mark.xdist_group("similarity")]


def reference(assignment: str, grade_id: str) -> str:
    cells = nbformat.read(assignments.load(assignment).source, as_version=4).cells
    return next(c.source for c in cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def unit(code: str, name: str, owner: str = "x", released=frozenset()) -> similarity.Unit:
    return similarity.Unit.build(owner, name, textwrap.dedent(code), name, set(released))


def score(a: str, b: str, name: str, released=frozenset()) -> float:
    return similarity.similarity(unit(a, name, "a", released), unit(b, name, "b", released))[0]


# Independent correct answers: the reference, the project's different-but-right answer, and two
# more written apart from them, each in its own way.
IOU_LOOPS = """
def box_iou(boxes1, boxes2):
    result = torch.zeros(len(boxes1), len(boxes2), dtype=torch.float32, device=boxes1.device)
    for i, a in enumerate(boxes1.tolist()):
        for j, b in enumerate(boxes2.tolist()):
            w = min(a[2], b[2]) - max(a[0], b[0])
            h = min(a[3], b[3]) - max(a[1], b[1])
            if w <= 0 or h <= 0:
                continue
            inter = w * h
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            result[i, j] = inter / union
    return result
"""
IOU_UNBIND = """
def box_iou(boxes1, boxes2):
    ax1, ay1, ax2, ay2 = boxes1.float().unbind(-1)
    bx1, by1, bx2, by2 = boxes2.float().unbind(-1)
    iw = (torch.min(ax2.unsqueeze(1), bx2.unsqueeze(0)) - torch.max(ax1.unsqueeze(1), bx1.unsqueeze(0))).clamp(min=0)
    ih = (torch.min(ay2.unsqueeze(1), by2.unsqueeze(0)) - torch.max(ay1.unsqueeze(1), by1.unsqueeze(0))).clamp(min=0)
    overlap = iw * ih
    sizes_a = (ax2 - ax1) * (ay2 - ay1)
    sizes_b = (bx2 - bx1) * (by2 - by1)
    return overlap / (sizes_a[:, None] + sizes_b[None, :] - overlap)
"""
# A planted copy of IOU_UNBIND: every name changed, independent statements moved, comments added.
IOU_UNBIND_COPY = """
def box_iou(first, second):
    # split the corners
    p, q, r, s = second.float().unbind(-1)
    a, b, c, d = first.float().unbind(-1)
    area_second = (r - p) * (s - q)   # areas first
    area_first = (c - a) * (d - b)
    height = (torch.min(d.unsqueeze(1), s.unsqueeze(0)) - torch.max(b.unsqueeze(1), q.unsqueeze(0))).clamp(min=0)
    width = (torch.min(c.unsqueeze(1), r.unsqueeze(0)) - torch.max(a.unsqueeze(1), p.unsqueeze(0))).clamp(min=0)
    common = width * height  # the intersection

    return common / (area_first[:, None] + area_second[None, :] - common)
"""
NMS_WHILE = """
def nms(boxes, scores, iou_threshold):
    order = scores.argsort(descending=True, stable=True)
    keep = []
    while order.numel() > 0:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        xx1 = torch.maximum(boxes[best, 0], boxes[rest, 0])
        yy1 = torch.maximum(boxes[best, 1], boxes[rest, 1])
        xx2 = torch.minimum(boxes[best, 2], boxes[rest, 2])
        yy2 = torch.minimum(boxes[best, 3], boxes[rest, 3])
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        area_best = (boxes[best, 2] - boxes[best, 0]) * (boxes[best, 3] - boxes[best, 1])
        area_rest = (boxes[rest, 2] - boxes[rest, 0]) * (boxes[rest, 3] - boxes[rest, 1])
        order = rest[inter / (area_best + area_rest - inter) <= iou_threshold]
    if not keep:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    return torch.stack(keep)
"""
NMS_WHILE_COPY = '''
def nms(boxes, scores, iou_threshold):
    """My NMS."""
    queue = scores.argsort(descending=True, stable=True)
    kept = []
    while queue.numel() > 0:
        top = queue[0]
        others = queue[1:]
        kept.append(top)  # keep the best one
        bottom = torch.minimum(boxes[top, 3], boxes[others, 3])
        right = torch.minimum(boxes[top, 2], boxes[others, 2])
        upper = torch.maximum(boxes[top, 1], boxes[others, 1])
        left = torch.maximum(boxes[top, 0], boxes[others, 0])
        size_others = (boxes[others, 2] - boxes[others, 0]) * (boxes[others, 3] - boxes[others, 1])
        size_top = (boxes[top, 2] - boxes[top, 0]) * (boxes[top, 3] - boxes[top, 1])
        overlap = (right - left).clamp(min=0) * (bottom - upper).clamp(min=0)
        # drop what overlaps too much
        queue = others[overlap / (size_top + size_others - overlap) <= iou_threshold]
    if not kept:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    return torch.stack(kept)
'''
NMS_GREEDY_LIST = """
def nms(boxes, scores, iou_threshold):
    candidates = sorted(range(len(scores)), key=lambda k: (-float(scores[k]), k))
    chosen = []
    coords = boxes.tolist()

    def overlap(p, q):
        ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
        iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        shared = ix * iy
        total = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - shared
        return shared / total if total > 0 else 0.0

    for k in candidates:
        if all(overlap(coords[k], coords[c]) <= iou_threshold for c in chosen):
            chosen.append(k)
    return torch.tensor(chosen, dtype=torch.int64, device=boxes.device)
"""


def independent():
    from tests.test_a02_proposals import DIFFERENT_BUT_RIGHT as A02
    from tests.test_a08_yolo import DIFFERENT_BUT_RIGHT as A08

    return {"box_iou": [reference("a02-proposals", "box-iou"), textwrap.dedent(A02["box-iou"]), IOU_LOOPS, IOU_UNBIND],
            "nms": [reference("a08-yolo", "nms"), A08["nms"], NMS_WHILE, NMS_GREEDY_LIST]}


def test_renamed_reordered_and_commented_code_is_the_same_code():
    tokens, _ = similarity.normalise(IOU_UNBIND, "box_iou")
    assert tokens == similarity.normalise(IOU_UNBIND_COPY, "box_iou")[0]
    assert similarity.normalise(NMS_WHILE, "nms")[0] == similarity.normalise(NMS_WHILE_COPY, "nms")[0]
    assert score(IOU_UNBIND, IOU_UNBIND_COPY, "box_iou") == 1.0


def test_what_the_data_flow_fixes_is_kept():
    first = "def f(a):\n    x = g(a)\n    y = h(x)\n    return y\n"
    swapped = "def f(a):\n    y = h(x)\n    x = g(a)\n    return y\n"  # reads x before it is written: not the same
    appended = "def f(a):\n    out = []\n    out.append(g(a))\n    out.append(h(a))\n    return out\n"
    appended_swapped = "def f(a):\n    out = []\n    out.append(h(a))\n    out.append(g(a))\n    return out\n"
    assert similarity.normalise(first, "f")[0] != similarity.normalise(swapped, "f")[0]
    assert similarity.normalise(appended, "f")[0] != similarity.normalise(appended_swapped, "f")[0]
    # Names taken from outside stay what they are: torch.maximum is not torch.minimum.
    assert similarity.normalise("def f(a):\n    return torch.maximum(a, 0)\n", "f")[0] != \
        similarity.normalise("def f(a):\n    return torch.minimum(a, 0)\n", "f")[0]


def test_planted_copies_rank_above_every_pair_of_independent_solutions():
    rng = random.Random(0)
    for name, codes in independent().items():
        apart = {(i, j): score(codes[i], codes[j], name) for i, j in itertools.combinations(range(len(codes)), 2)}
        assert max(apart.values()) < similarity.LIKELY, f"{name}: independent solutions look copied: {apart}"
        hand = {"box_iou": (IOU_UNBIND, IOU_UNBIND_COPY), "nms": (NMS_WHILE, NMS_WHILE_COPY)}[name]
        planted = [score(*hand, name)]
        # and every independent answer disguised automatically: names, comments, an extra statement
        planted += [score(code, bench.disguise(code, {name}, rng, 7), name) for code in codes]
        assert min(planted) > max(apart.values()), (name, planted, apart)
        assert min(planted) >= similarity.LIKELY, (name, planted)


def test_the_released_code_counts_for_nobody():
    given = """
    def helper(boxes):
        widths = (boxes[:, 2] - boxes[:, 0]).clamp(min=0)
        heights = (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
        return torch.stack([widths, heights], dim=1).prod(dim=1).sqrt()
    """
    released = set(similarity.kgram_hashes(similarity.normalise(textwrap.dedent(given), None)[0]).tolist())
    a, b = textwrap.dedent(given) + IOU_LOOPS, textwrap.dedent(given) + IOU_UNBIND
    apart = score(IOU_LOOPS, IOU_UNBIND, "box_iou")
    assert score(a, b, "box_iou") > apart + 0.2  # the helper shared
    # The helper left out: only the runs across its end and the next def's start remain.
    assert score(a, b, "box_iou", released) <= apart + 0.05
    # Each assignment's released notebook: its runs are what every student got.
    spec = assignments.load("a08-yolo")
    runs = similarity.released_runs(spec)
    assert runs and unit(reference("a08-yolo", "nms"), "nms", released=runs).own_tokens > 100


def write_notebook(course: pathlib.Path, student: str, assignment: str, data) -> None:
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    path = folder / f"{assignment}.ipynb"
    path.write_bytes(data if isinstance(data, bytes) else nbformat.writes(data).encode())


def test_odd_notebooks_are_read_never_run_and_what_was_skipped_is_said(tmp_path):
    from tests.notebook_grading import student_notebook

    course = tmp_path / "course"
    assignment = "a02-proposals"

    def filled(answers=None, fill=True):
        return student_notebook(ROOT, assignment, answers, fill)

    write_notebook(course, "ann", assignment, filled({"box-iou": IOU_LOOPS}))
    write_notebook(course, "bo", assignment, filled({"box-iou": IOU_UNBIND}))
    write_notebook(course, "cy", assignment, filled({"box-iou": IOU_UNBIND_COPY}))
    write_notebook(course, "broken", assignment, b"{not json")
    write_notebook(course, "empty", assignment, b"")
    write_notebook(course, "list", assignment, b"[1, 2]")
    write_notebook(course, "deep", assignment, filled({"box-iou": "def box_iou(a, b):\n    return " + "-" * 200000 + "1\n"}))
    write_notebook(course, "nested", assignment, filled({"box-iou": "def box_iou(a, b):\n    return " + "(" * 150 + "a" + ")" * 150 + "\n"}))
    write_notebook(course, "syntax", assignment, filled({"box-iou": "def box_iou(a, b) return 1\n"}))
    many = "def box_iou(a, b):\n" + "".join(f"    x{i} = a[{i % 4}] * {i}\n" for i in range(3000)) + "    return x0\n"
    write_notebook(course, "many", assignment, filled({"box-iou": many}))
    write_notebook(course, "bigint", assignment, filled({"box-iou": IOU_LOOPS.replace("0 or", "0x" + "f" * 20000 + " or")}))
    write_notebook(course, "stub", assignment, filled(fill=False))
    renamed = filled()
    renamed.cells = [c for c in renamed.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "box-iou"]
    write_notebook(course, "nocell", assignment, renamed)
    against = tmp_path / "public"
    against.mkdir()
    (against / "boxes.py").write_text("import torch\n\n" + IOU_UNBIND.replace("def box_iou", "def pairwise_iou"))
    (against / "broken.py").write_text("def f(:\n")
    (against / "broken.ipynb").write_text("{")
    report = similarity.compare(assignment, course, against)
    by_pair = {(p.function, tuple(p.students)): p.similarity for p in report.pairs}
    for pair in report.pairs:  # the class's fast scoring is the pair's own
        assert pair.similarity == 0 or pair.similarity == round(similarity.similarity(pair.a, pair.b)[0], 4)
    assert by_pair[("box_iou", ("bo", "cy"))] == 1.0
    assert by_pair[("box_iou", ("ann", "bo"))] < similarity.LIKELY
    assert by_pair[("box_iou", ("ann", "bigint"))] > 0.9 and ("box_iou", ("bo", "many")) in by_pair
    assert by_pair[("box_iou", ("bo", "against:boxes.py::pairwise_iou"))] == 1.0
    skipped = {student: " ".join(reasons) for student, reasons in report.skipped.items()}
    for student in ("broken", "empty", "list"):
        assert "unreadable" in skipped[student]
    assert "cannot be parsed" in skipped["syntax"] and "no cell defines it" in skipped["nocell"]
    assert "cannot be parsed" in skipped["deep"] or "nested too deeply" in skipped["deep"]
    assert "left as released" in skipped["stub"]
    assert any(s.startswith("broken.py") for s in report.against_skipped)
    assert any(s.startswith("broken.ipynb") for s in report.against_skipped)
    page, data = similarity.write(report, tmp_path / "out" / "report.html")
    pairs = json.loads(data.read_text())
    assert all(set(p) == {"function", "students", "similarity"} for p in pairs)
    assert [p["similarity"] for p in pairs] == sorted((p["similarity"] for p in pairs), reverse=True)
    assert "broken" in page.read_text() and "unreadable" in page.read_text()


def test_every_pair_of_a_class_sharing_code_is_scored_in_full(tmp_path):
    """The whole command on a class in which every pair shares code (each student has one of two
    answers per function, renamed and commented), the benchmark's class at a tenth of its size:
    every pair is scored for every function. Its time on 200 submissions is bench/similarity.py's."""
    course = tmp_path / "course"
    students = bench.make_class(course, 20)
    _, _, data = bench.run(course, "a08-yolo")
    pairs = json.loads(data.read_text())
    per_function = {f: sum(p["function"] == f for p in pairs) for f in assignments.load("a08-yolo").functions}
    compared = len(students) * (len(students) - 1) // 2
    assert per_function["nms"] == per_function["yolo_loss"] == compared
    assert all(0.0 <= p["similarity"] <= 1.0 for p in pairs)


def test_the_command_says_what_is_wrong_with_its_arguments(tmp_path, capsys):
    from autograder.__main__ import main

    with pytest.raises(SystemExit) as stopped:
        main(["similarity", "a01-colab", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert stopped.value.code == 2 and "no submitted/ folder" in capsys.readouterr().err
    (tmp_path / "submitted").mkdir()
    with pytest.raises(SystemExit) as stopped:
        main(["similarity", "a01-colab", str(tmp_path), "--against", str(tmp_path / "none"), "-o", str(tmp_path / "r.html")])
    assert stopped.value.code == 2 and "is not a folder" in capsys.readouterr().err
    assert main(["similarity", "a01-colab", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 0  # an empty class
    assert json.loads((tmp_path / "r.json").read_text()) == []
