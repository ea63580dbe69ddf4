"""A Gradescope autograder bundle for one assignment.

    python -m autograder gradescope <assignment-id> -o bundle.zip

The zip holds Gradescope's `setup.sh` (installs the pinned packages the grader needs) and
`run_autograder` (grades the uploaded notebook into /autograder/results/results.json), and
under source/ the grader, the assignment's hidden suite, its reference notebook and the helper
package. Gradescope runs each submission in its own container, so a course that outgrows one
machine grades at scale there with the same engine and the same results.
"""
from __future__ import annotations

import pathlib
import re
import stat
import zipfile

from . import assignment as assignments
from .assignment import ROOT
# What the grader, the hidden suites and the helper package import (their own dependencies follow).
NEEDED = ("torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "pytest", "nbformat", "pillow", "psutil",
          "hypothesis", "scikit-image", "scipy", "networkx")

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once to build the image.
set -euo pipefail
apt-get update -qq && apt-get install -y -qq python3 python3-pip python3-venv >/dev/null
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet -r /autograder/source/requirements.txt
# the course's helper package, importable by the workers (the rest of source/ is hidden from them)
/autograder/venv/bin/python -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'odcourse-source.pth').write_text('/autograder/source\\n')"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for each submission: grade the uploaded notebook.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
mkdir -p "$ROOT/results"
notebook=$(find "$ROOT/submission" -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort | head -n 1)
if [ -z "$notebook" ]; then
  printf '{"score": 0, "tests": [], "output": "No .ipynb file was uploaded: upload your notebook (File > Download > .ipynb)."}' > "$ROOT/results/results.json"
  exit 0
fi
cd "$ROOT/source" && "$PYTHON" -m autograder grade {assignment} "$notebook" --json "$ROOT/results/results.json"
"""


def requirements() -> str:
    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line.strip())
        if match:
            pins[match.group(1).lower()] = line.strip()
    return "\n".join(pins[name] for name in NEEDED if name in pins) + "\n"


def bundle(assignment: str, target: pathlib.Path) -> pathlib.Path:
    """Write the bundle zip for `assignment` to `target`."""
    spec = assignments.load(assignment)  # UnknownAssignment (a KeyError) for an unknown id
    files = {
        "source/requirements.txt": requirements(),
        f"source/solutions/{assignment}/{assignment}.ipynb": spec.source.read_text(),
        f"source/assignments/{assignment}/{assignment}.ipynb": spec.release.read_text(),
    }
    for path in sorted((ROOT / "autograder").glob("*.py")) + sorted((ROOT / "autograder" / "worker").glob("*.py")):
        files[f"source/{path.relative_to(ROOT)}"] = path.read_text()
    suites = ROOT / "autograder" / "suites"
    shared = [p.name for p in sorted(suites.glob("*.py")) if not p.name.startswith("test_")]  # support, detections
    for name in shared + ["pytest.ini", spec.suite.name]:
        files[f"source/autograder/suites/{name}"] = (suites / name).read_text()
    for path in sorted((ROOT / "odcourse").rglob("*.py")):
        files[f"source/odcourse/{path.relative_to(ROOT / 'odcourse')}"] = path.read_text()
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in sorted(files.items()):
            archive.writestr(name, text)
        for name, text in (("setup.sh", SETUP), ("run_autograder", RUN.replace("{assignment}", assignment))):
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            archive.writestr(info, text)
    return target
