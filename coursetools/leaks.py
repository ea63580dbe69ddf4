"""The leak test: nothing of a solution or a hidden test may reach student-facing material.

    python -m coursetools.leaks [PATH ...]   # default: assignments/ book/ odcourse/ _build/html

What counts as a secret, read from every solutions/<id>/<id>.ipynb:
- the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` and between
  ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, and nbgrader mark schemes;
- any run of 3 consecutive meaningful lines of such a block (a whole block when shorter), so a
  generic line such as ``if torch.cuda.is_available():`` is not a leak but a copied passage is;
- any single meaningful line of 60 characters or more (distinctive on its own), and the
  messages of hidden assertions in notebooks;
- the hidden suites, autograder/suites/test_*.py, by the same runs of lines (their messages are
  written for students and may appear in feedback, so they are not secrets).
A published file leaks when it contains a marker or any secret; HTML is compared by its text.
"""
from __future__ import annotations

import argparse
import html
import json
import pathlib
import re
import sys
from dataclasses import dataclass

from .config import ROOT

MARKERS = re.compile(r"(BEGIN|END) (SOLUTION|HIDDEN TESTS|MARK SCHEME)")
BLOCK = re.compile(r"^[ \t]*(?:###|#) BEGIN (SOLUTION|HIDDEN TESTS)[^\n]*\n(.*?)^[ \t]*(?:###|#) END \1",
                   re.S | re.M)
MARK_SCHEME = re.compile(r"=== BEGIN MARK SCHEME ===(.*?)=== END MARK SCHEME ===", re.S)
WINDOW = 3
LONG_LINE = 60
TEXT_SUFFIXES = {".ipynb", ".md", ".py", ".html", ".txt", ".json", ".js", ".yml", ".yaml", ".toml", ".cfg"}


def meaningful_lines(text: str) -> list[str]:
    """Lines with their whitespace folded, without blanks, comments and lone punctuation."""
    found = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line or line.startswith("#") or not re.search(r"\w", line):
            continue
        found.append(line)
    return found


@dataclass(frozen=True)
class Secret:
    text: str
    source: str  # "<notebook>: <kind>" — for the report, never printed in student material


def secrets(root: pathlib.Path = ROOT) -> list[Secret]:
    """Every secret of every source notebook under root/solutions."""
    found: set[Secret] = set()
    for notebook in sorted((root / "solutions").glob("*/*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        for cell in cells:
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            blocks = [(m.group(1).lower(), m.group(2)) for m in BLOCK.finditer(source)]
            blocks += [("mark scheme", m.group(1)) for m in MARK_SCHEME.finditer(source)]
            for kind, block in blocks:
                where = f"{notebook.relative_to(root)}: {kind}"
                lines = meaningful_lines(block)
                size = min(WINDOW, len(lines))
                for start in range(len(lines) - size + 1):
                    found.add(Secret("\n".join(lines[start:start + size]), where))
                found.update(Secret(line, where) for line in lines if len(line) >= LONG_LINE)
                if kind == "hidden tests":
                    for message in re.findall(r'"([^"\n]{30,})"', block):
                        if len(message.split()) >= 5:  # a sentence, not a format string
                            found.add(Secret(" ".join(message.split()), where + " (message)"))
    for suite in sorted((root / "autograder" / "suites").glob("test_*.py")):
        where = f"{suite.relative_to(root)}: hidden suite"
        lines = meaningful_lines(suite.read_text())
        for start in range(len(lines) - WINDOW + 1):
            window = lines[start:start + WINDOW]
            if all(len(line) < 12 or line.startswith(("import ", "from ")) for line in window):
                continue  # imports and short lines ("try:", "else:") say nothing of the suite
            found.add(Secret("\n".join(window), where))
    return sorted(found, key=lambda s: (s.source, s.text))


def published_text(path: pathlib.Path) -> str:
    """The text of a file as a reader would see it: notebook cells, or HTML without tags."""
    raw = path.read_text(errors="replace")
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(raw).get("cells", [])
        except json.JSONDecodeError:
            return raw
        parts = []
        for cell in cells:
            parts.append("".join(cell.get("source", [])))
            for output in cell.get("outputs", []):
                parts.append(json.dumps(output))
        return "\n".join(parts)
    if path.suffix == ".html":
        return html.unescape(re.sub(r"<[^>]+>", "", raw))
    return raw


@dataclass(frozen=True)
class Leak:
    path: pathlib.Path
    what: str


def scan(paths: list[pathlib.Path], root: pathlib.Path = ROOT) -> list[Leak]:
    """Every leak found in the files under `paths`."""
    known = secrets(root)
    windows = {s.text for s in known if "\n" in s.text}
    singles = {s.text: s for s in known if "\n" not in s.text}
    leaks = []
    files = []
    for path in paths:
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for path in files:
        if path.suffix not in TEXT_SUFFIXES:
            continue
        text = published_text(path)
        marker = MARKERS.search(text)
        if marker:
            leaks.append(Leak(path, f"contains the marker {marker.group(0)!r}"))
        lines = meaningful_lines(text)
        for size in {min(WINDOW, n) for n in range(1, WINDOW + 1)}:
            for start in range(len(lines) - size + 1):
                if "\n".join(lines[start:start + size]) in windows:
                    leaks.append(Leak(path, f"repeats {size} lines of a solution or hidden test near line "
                                            f"{lines[start]!r}"))
        folded = " ".join(text.split())
        for line, secret in singles.items():
            if line in folded:
                leaks.append(Leak(path, f"contains text of {secret.source}"))
    return leaks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursetools.leaks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=pathlib.Path)
    args = parser.parse_args(argv)
    paths = args.paths or [p for p in (ROOT / "assignments", ROOT / "book", ROOT / "odcourse",
                                       ROOT / "_build" / "html") if p.exists()]
    leaks = scan(paths)
    for leak in dict.fromkeys(leaks):
        print(f"LEAK {leak.path}: {leak.what}", file=sys.stderr)
    print(f"leak scan: {len(leaks)} leaks in {', '.join(map(str, paths))}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
