"""Fixtures of every hidden suite: `student` and `reference`, proxies to the isolated workers
that run the submission's and the reference's code. Set up by autograder.engine; the suites
themselves are ordinary pytest files."""
import pytest

from autograder import engine


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): what the test is worth")
    config.addinivalue_line("markers", "function(name): the graded function the test is about")


@pytest.fixture
def student():
    return engine.current().student


@pytest.fixture
def reference():
    return engine.current().reference
