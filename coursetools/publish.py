"""Assemble the student-facing tree and leak-test it.

    python -m coursetools.publish _publish

The result is what the public course repository holds (the one _config.yml names, from which
Colab opens notebooks and `pip install` takes the helpers):

    site/                 the built book (HTML), for GitHub Pages or any static host
    book/                 the chapter notebooks, without outputs (the Colab launch buttons open them)
    assignments/<id>/     the released student notebooks
    odcourse/, pyproject.toml, README.md   the helper package, installable with one pip install

Nothing from solutions/, autograder/ or tests/ is copied, and the leak scan must find nothing.
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import sys

from .config import ROOT, colab_url, helper_requirement, repository
from .leaks import scan

STUDENT_README = """\
# Deep Learning for Object Detection: student materials

- The book: {site}
- Open a chapter or an assignment in Colab from its page, or directly, e.g.
  {example}
- The course helpers, as every notebook's setup cell installs them in Colab:

      pip install "{requirement}"

Hand in your notebooks as your instructor says. This repository holds no solutions.
"""


def assemble(target: pathlib.Path, root: pathlib.Path = ROOT) -> pathlib.Path:
    """Build the tree in `target` (emptied first); raise if the book was not built."""
    site = root / "_build" / "html"
    if not (site / "index.html").exists():
        raise FileNotFoundError("the book is not built: run `make book` first")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copytree(site, target / "site", ignore=shutil.ignore_patterns(".buildinfo", "_sources"))
    shutil.copytree(root / "assignments", target / "assignments")
    shutil.copytree(root / "book", target / "book", ignore=shutil.ignore_patterns(
        "_build", ".ipynb_checkpoints", "__pycache__"))
    shutil.copytree(root / "odcourse", target / "odcourse", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "pyproject.toml", target / "pyproject.toml")
    url, _ = repository(root)
    (target / "README.md").write_text(STUDENT_README.format(
        site="https://{}.github.io/{}/".format(*url.removeprefix("https://github.com/").split("/")),
        example=colab_url("assignments/a01-colab/a01-colab.ipynb", root),
        requirement=helper_requirement(root)))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursetools.publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", type=pathlib.Path)
    args = parser.parse_args(argv)
    try:
        target = assemble(args.target.resolve())
    except FileNotFoundError as error:
        print(f"publish: {error}", file=sys.stderr)
        return 1
    leaks = scan([target])
    for leak in dict.fromkeys(leaks):
        print(f"LEAK {leak.path}: {leak.what}", file=sys.stderr)
    if leaks:
        print(f"publish: {len(leaks)} leaks in {target}: do not push it", file=sys.stderr)
        return 1
    print(f"published {target} (leak scan clean)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
