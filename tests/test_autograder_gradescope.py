"""The Gradescope bundle grades a submission in a fake /autograder tree, as Gradescope would."""
import json
import os
import stat
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT
from tests.test_autograder import ASSIGNMENT, submission

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    target = tmp_path_factory.mktemp("bundle") / "a01.zip"
    done = subprocess.run([sys.executable, "-m", "autograder", "gradescope", ASSIGNMENT, "-o", str(target)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return target


def fake_autograder(bundle, tmp_path, notebook_name, content):
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root / "source_zip")
    (root / "source_zip" / "source").rename(root / "source")
    for script in ("setup.sh", "run_autograder"):
        (root / script).write_bytes((root / "source_zip" / script).read_bytes())
        (root / script).chmod(0o755)
    (root / "submission").mkdir()
    (root / "submission" / notebook_name).write_bytes(content)
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable)
    done = subprocess.run([str(root / "run_autograder")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads((root / "results" / "results.json").read_text())


def test_bundle_contents(bundle):
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        mode = archive.getinfo("run_autograder").external_attr >> 16
    assert {"setup.sh", "run_autograder", "source/requirements.txt",
            "source/autograder/suites/test_a01_colab.py", f"source/solutions/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"} <= names
    assert mode & stat.S_IXUSR
    assert not any(n.startswith("source/tests/") for n in names)


def test_bundle_grades_a_submission(bundle, tmp_path):
    content = submission(tmp_path, name="x.ipynb").read_bytes()
    result = fake_autograder(bundle, tmp_path, "Copy of a01-colab.ipynb", content)
    assert result["score"] == 10 and len(result["tests"]) == 10


def test_bundle_with_a_broken_upload(bundle, tmp_path):
    result = fake_autograder(bundle, tmp_path, "a01-colab.ipynb", b"{oops")
    assert result["score"] == 0 and "not a valid notebook" in result["output"]


def test_bundle_of_a_later_assignment_grades_its_reference(tmp_path):
    target = tmp_path / "a02.zip"
    done = subprocess.run([sys.executable, "-m", "autograder", "gradescope", "a02-proposals", "-o", str(target)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(target) as archive:
        requirements = archive.read("source/requirements.txt").decode()
        assert "source/autograder/suites/support.py" in archive.namelist()
    assert "hypothesis==" in requirements and "scikit-image==" in requirements
    reference = (ROOT / "solutions" / "a02-proposals" / "a02-proposals.ipynb").read_bytes()
    result = fake_autograder(target, tmp_path, "a02-proposals.ipynb", reference)
    assert result["score"] == result["max_score"] == 20
