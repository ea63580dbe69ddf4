"""The course's single source of configuration: the root `_config.yml`."""
from __future__ import annotations

import functools
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
ASSIGNMENT_ID = re.compile(r"^a\d\d-[a-z0-9-]+$")


@functools.lru_cache(maxsize=None)
def book_config(root: pathlib.Path = ROOT) -> dict:
    """The parsed `_config.yml`."""
    return yaml.safe_load((root / "_config.yml").read_text())


def repository(root: pathlib.Path = ROOT) -> tuple[str, str]:
    """(url, branch) of the public course repository, e.g. ('https://github.com/o/r', 'main')."""
    repo = book_config(root)["repository"]
    url = repo["url"].rstrip("/")
    if not re.match(r"^https://github\.com/[\w.-]+/[\w.-]+$", url):
        raise ValueError(f"_config.yml repository.url must be https://github.com/<owner>/<name>, not {url!r}")
    return url, repo.get("branch", "main")


def colab_url(path: str, root: pathlib.Path = ROOT) -> str:
    """The Colab address that opens `path` (relative to the repository root) from GitHub."""
    url, branch = repository(root)
    owner_repo = url.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{path}"


def helper_requirement(root: pathlib.Path = ROOT) -> str:
    """What a Colab runtime gives pip to install the helper package from the repository."""
    url, branch = repository(root)
    return f"odcourse @ git+{url}@{branch}"


def assignment_ids(root: pathlib.Path = ROOT) -> list[str]:
    """Ids of the assignments that have a source notebook, in order."""
    return sorted(p.name for p in (root / "solutions").iterdir()
                  if ASSIGNMENT_ID.match(p.name) and (p / f"{p.name}.ipynb").exists())
