"""Every assignment, through the real grader: the reference earns full marks and the released
stub earns zero, saying that nothing is implemented yet."""
import pytest

from autograder import engine
from coursetools.config import assignment_ids
from tests.conftest import ROOT
from tests.proofs import FAST

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("assignment", assignment_ids())
def test_reference_earns_full_marks(assignment):
    result = engine.grade(assignment, ROOT / "solutions" / assignment / f"{assignment}.ipynb", limits=FAST).to_gradescope()
    assert [(t["name"], t["output"]) for t in result["tests"] if t["score"] < t["max_score"]] == []
    assert result["score"] == result["max_score"] > 0
    assert result["output"] == "", result["output"]  # the notebook loads without an error


@pytest.mark.parametrize("assignment", assignment_ids())
def test_released_stub_scores_zero(assignment):
    result = engine.grade(assignment, ROOT / "assignments" / assignment / f"{assignment}.ipynb", limits=FAST).to_gradescope()
    assert result["score"] == 0 and result["max_score"] > 0
    assert all("not implemented yet" in t["output"] for t in result["tests"]), [t["output"] for t in result["tests"]]
