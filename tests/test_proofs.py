"""The grading proofs' own logic: wrong answers are graded in groups (tests/proofs.graded_together)
only where no function's tests can see another member's mistake."""
import importlib
import itertools

import pytest

from autograder import assignment as assignments
from tests.proofs import grade, graded_together, named_functions, suite_tests, timed_tests, uses

# Every assignment whose wrong answers are graded in groups, with its table of mistakes.
GROUPED = {"a02-proposals": "MISTAKES", "a03-rcnn": "MISTAKES", "a04-roi-pooling": "MISTAKES",
           "a05-rpn": "MISTAKES", "a06-roi-align": "MISTAKES", "a07-transposed-conv": "MISTAKES",
           "a08-yolo": "MISTAKES", "a09-ssd": "MISTAKES", "a10-evaluation": "MISTAKES",
           "a12-modern-detectors": "WRONG"}


def proofs_of(assignment: str):
    return importlib.import_module("tests.test_" + assignment.replace("-", "_"))


@pytest.mark.parametrize("assignment", sorted(GROUPED))
def test_each_mistake_is_graded_once_and_apart_from_what_could_hide_it(assignment):
    module = proofs_of(assignment)
    mistakes = getattr(module, GROUPED[assignment])
    spec = assignments.load(assignment)
    assert sorted(m for group in module.GROUPS for m in group) == sorted(mistakes)
    for group in module.GROUPS:
        for m, n in itertools.permutations(group, 2):
            function, other = spec.function_of(mistakes[m][0]), spec.function_of(mistakes[n][0])
            assert function != other, (m, n)
            assert other not in uses(assignment)[function], f"{function} uses {other}: {m!r} and {n!r}"
            assert other not in mistakes[m][3], f"{m!r} may cost {other} points, where {n!r} is"
            assert other not in named_functions(assignment, mistakes[m][1]), f"{m!r} calls {other}"
    assert len(module.GROUPS) < len(mistakes)


def test_uses_finds_calls_in_the_reference_and_in_the_hidden_tests():
    assert uses("a02-proposals")["proposal_recall"] >= {"box_iou", "box_area"}  # through box_iou
    assert uses("a06-roi-align")["maskrcnn_loss"] >= {"mask_targets", "roi_align"}
    assert uses("a12-modern-detectors")["detr_loss"] >= {"hungarian_match", "generalized_box_iou"}
    assert "box_area" not in uses("a02-proposals")["sliding_windows"]


def test_a_wrong_answer_that_calls_another_function_is_graded_apart_from_its_mistakes():
    wrong = {"sliding windows by box_area": ("sliding-windows", "def sliding_windows(*a):\n    return box_area(a)\n",
                                             "", ()),
             "area +1": ("box-area", "def box_area(boxes):\n    return boxes.sum() + 1\n", "", ()),
             "windows +1": ("sliding-windows", "def sliding_windows(*a):\n    return 1\n", "", ())}
    groups = graded_together("a02-proposals", wrong)
    assert ["area +1", "sliding windows by box_area"] not in [sorted(g) for g in groups]
    assert sorted(sorted(g) for g in groups) == [["area +1", "windows +1"], ["sliding windows by box_area"]]


def test_a_proof_runs_the_tests_of_its_functions_but_those_it_skips(tmp_path):
    """engine.grade's selection for the proofs: `only` the functions named, without `skip_tests`."""
    speed = timed_tests("a02-proposals")["box_iou"]
    result = grade("a02-proposals", tmp_path, only={"box_iou"}, skip_tests=speed)
    expected = {name for name, function in suite_tests("a02-proposals").items() if function == "box_iou"} - speed
    assert {t["tags"][0] for t in result["tests"]} == {"box_iou"}
    assert len(result["tests"]) == len(expected) > 0
    assert result["score"] == result["max_score"]
