"""Point the course at a public repository: _config.yml's repository and every notebook's setup cell.

    python -m coursetools.repository https://github.com/OWNER/NAME [--branch main]

rewrites `repository.url` and `repository.branch` in _config.yml (the one place the address is
written: Colab buttons and links are made from it at build time) and the setup cell of every
notebook in book/, solutions/ and assignments/ (the pip requirement of the helpers), outputs left
as they are. The publishing workflow (.github/workflows/pages.yml) runs it with the repository it
runs in, so that a fork's site links to the fork; a maintainer runs it once (then `make
assignments` and commit) when the course moves.
"""
from __future__ import annotations

import argparse
import pathlib
import re
import sys

import nbformat

from . import config
from .config import ROOT

URL = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+$")


def set_repository(url: str, branch: str, root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """Rewrite _config.yml and the setup cells; return the files that changed."""
    url = url.rstrip("/")
    if not URL.match(url):
        raise ValueError(f"the repository must be https://github.com/<owner>/<name>, not {url!r}")
    if not re.fullmatch(r"[\w./-]+", branch):
        raise ValueError(f"not a branch name: {branch!r}")
    path = root / "_config.yml"
    text = path.read_text()
    block = re.search(r"^repository:\n((?:[ \t]+.*\n)+)", text, flags=re.M)
    if block is None:
        raise ValueError(f"{path} has no repository: block")
    body = re.sub(r"^([ \t]+url:).*$", rf"\1 {url}", block.group(1), flags=re.M)
    body = re.sub(r"^([ \t]+branch:).*$", rf"\1 {branch}", body, flags=re.M)
    new = text[:block.start(1)] + body + text[block.end(1):]
    changed = []
    if new != text:
        path.write_text(new)
        changed.append(path)
    config.book_config.cache_clear()
    from .notebooks import SETUP_CELL_ID, course_notebooks, setup_source

    setup = setup_source(root)
    for notebook in course_notebooks(root):
        raw = notebook.read_text()
        nb = nbformat.reads(raw, as_version=4)
        if nb.cells and nb.cells[0].get("id") == SETUP_CELL_ID and nb.cells[0].source != setup:
            nb.cells[0].source = setup
            notebook.write_text(nbformat.writes(nb) + "\n")
            changed.append(notebook)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursetools.repository", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="https://github.com/<owner>/<name>")
    parser.add_argument("--branch", default="main")
    args = parser.parse_args(argv)
    try:
        changed = set_repository(args.url, args.branch)
    except ValueError as error:
        parser.error(str(error))
    print(f"the course's repository is {args.url.rstrip('/')} ({args.branch}): {len(changed)} file(s) rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
