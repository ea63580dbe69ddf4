"""Every assignment, through the real grader: the released stub earns zero, saying that nothing is
implemented yet. (The reference's full marks are proved on the notebook a student would hand in:
tests/test_colab_like.py grades the released notebook filled with the reference's code.)"""
import pytest

from autograder import engine
from coursetools.config import assignment_ids
from tests.conftest import ROOT
from tests.proofs import FAST

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("assignment", assignment_ids())
def test_released_stub_scores_zero(assignment):
    result = engine.grade(assignment, ROOT / "assignments" / assignment / f"{assignment}.ipynb", limits=FAST).to_gradescope()
    assert result["score"] == 0 and result["max_score"] > 0
    assert all("not implemented yet" in t["output"] for t in result["tests"]), [t["output"] for t in result["tests"]]
