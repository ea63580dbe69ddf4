"""Generate the student notebooks in assignments/ from the sources in solutions/ (nbgrader).

    python -m coursetools.release            # every assignment
    python -m coursetools.release a01-colab  # one

nbgrader's `generate_assignment` clears the solutions and hidden tests, locks the test cells and
records checksums; cell ids and nbformat 4.5 are kept, so a regenerated file is byte-identical
when its source did not change (tests/test_release.py proves the committed ones are current).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from .config import ROOT, assignment_ids


def nbgrader_env() -> dict:
    """The environment for nbgrader subprocesses: this interpreter's scripts (alembic) on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(pathlib.Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def generate(assignment_id: str, release_directory: pathlib.Path, root: pathlib.Path = ROOT) -> pathlib.Path:
    """Write release_directory/<id>/<id>.ipynb from root/solutions/<id>; return its path."""
    source = root / "solutions" / assignment_id / f"{assignment_id}.ipynb"
    if not source.exists():
        raise FileNotFoundError(f"no source notebook {source}")
    with tempfile.TemporaryDirectory() as scratch:
        # A scratch course root keeps nbgrader's gradebook and logs out of the repository.
        scratch = pathlib.Path(scratch)
        shutil.copytree(root / "solutions" / assignment_id, scratch / "solutions" / assignment_id)
        shutil.copy(root / "nbgrader_config.py", scratch / "nbgrader_config.py")
        command = [sys.executable, "-m", "nbgrader", "generate_assignment", assignment_id,
                   "--force", "--no-db", f"--CourseDirectory.root={scratch}",
                   "--CourseDirectory.release_directory=release"]
        done = subprocess.run(command, cwd=scratch, env=nbgrader_env(), capture_output=True, text=True)
        produced = scratch / "release" / assignment_id / f"{assignment_id}.ipynb"
        if done.returncode != 0 or not produced.exists():
            raise RuntimeError(f"nbgrader generate_assignment {assignment_id} failed:\n{done.stdout}\n{done.stderr}")
        target = release_directory / assignment_id
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(produced, target / produced.name)
        os.chmod(target / produced.name, 0o644)
    return target / produced.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursetools.release", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids", nargs="*", help="assignment ids (default: all)")
    args = parser.parse_args(argv)
    known = assignment_ids()
    for assignment_id in args.ids or known:
        if assignment_id not in known:
            parser.error(f"unknown assignment {assignment_id!r}; known: {', '.join(known)}")
        print(f"released {generate(assignment_id, ROOT / 'assignments').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
