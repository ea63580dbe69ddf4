"""Fixtures of every hidden suite: `student` and `reference`, proxies to the isolated workers
that run the submission's and the reference's code. Set up by autograder.engine; the suites
themselves are ordinary pytest files."""
import pytest

from autograder import engine


@pytest.fixture
def student():
    return engine.current().student


@pytest.fixture
def reference():
    return engine.current().reference


@pytest.fixture
def device():
    """Where the tests ask for computation: "cpu" for the scored run, "cuda" for the feedback run."""
    return engine.current().device
