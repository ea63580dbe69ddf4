"""Publishing: the GitHub Actions workflow that builds and deploys the site passes actionlint and
takes the public address from the repository it runs in (coursetools.repository rewrites
_config.yml and the setup cells); the built site's links hold: every internal link and anchor
resolves, and every Colab link opens a notebook that exists at that path in the repository."""
import html.parser
import pathlib
import re
import shutil
import subprocess
import sys
import urllib.parse

import nbformat
import pytest
import yaml

from coursetools import config, repository
from coursetools.notebooks import course_notebooks, setup_source
from tests.conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "pages.yml"
SITE = ROOT / "_build" / "html"


def test_the_workflow_passes_actionlint():
    actionlint = shutil.which("actionlint", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("actionlint")
    assert actionlint, "actionlint is not installed: `make venv` installs it (requirements/dev.in)"
    done = subprocess.run([actionlint, "-no-color", str(WORKFLOW)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_workflow_publishes_main_from_the_repository_it_runs_in():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key "on" as True
    assert triggers["push"]["branches"] == ["main"]
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    steps = {step.get("name", step.get("uses")): step for step in build["steps"]}
    address = steps["The public address is this repository"]
    assert address["env"]["REPOSITORY"] == "${{ github.server_url }}/${{ github.repository }}"
    assert '-m coursetools.repository "$REPOSITORY"' in address["run"]
    order = list(steps)
    assert order.index("The public address is this repository") < order.index(
        "Build the book and the student-facing tree (leak-tested)")
    assert steps["Build the book and the student-facing tree (leak-tested)"]["run"] == "make publish"
    assert any(s.get("uses", "").startswith("actions/upload-pages-artifact") and s["with"]["path"] == "_publish/site"
               for s in build["steps"])
    assert deploy["needs"] == "build" and deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages")


@pytest.fixture
def course_copy(tmp_path):
    """The files coursetools.repository rewrites, copied."""
    for folder in ("book", "solutions", "assignments"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    yield tmp_path
    config.book_config.cache_clear()


def test_a_fork_gets_links_and_setup_cells_of_its_own(course_copy):
    changed = repository.set_repository("https://github.com/a-fork/its-course", "main", root=course_copy)
    assert course_copy / "_config.yml" in changed
    assert config.repository(course_copy) == ("https://github.com/a-fork/its-course", "main")
    assert config.colab_url("book/01-colab.ipynb", course_copy) == \
        "https://colab.research.google.com/github/a-fork/its-course/blob/main/book/01-colab.ipynb"
    text = (course_copy / "_config.yml").read_text()
    assert text.count("a-fork/its-course") == 1 and "# The repository below is the ONE place" in text  # comments kept
    for path in course_notebooks(course_copy):
        first = nbformat.read(path, as_version=4).cells[0]
        assert 'COURSE_HELPERS = "odcourse @ git+https://github.com/a-fork/its-course@main"' in first.source, path
        assert first.source == setup_source(course_copy)
    assert repository.set_repository("https://github.com/a-fork/its-course", "main", root=course_copy) == []


def test_a_bad_address_is_refused_in_words(course_copy, capsys):
    with pytest.raises(ValueError, match=r"https://github.com/<owner>/<name>, not 'https://gitlab.com/x/y'"):
        repository.set_repository("https://gitlab.com/x/y", "main", root=course_copy)
    with pytest.raises(SystemExit):
        repository.main(["github.com/x"])
    assert "https://github.com/<owner>/<name>" in capsys.readouterr().err


# The built site's links -------------------------------------------------------------------------

class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])


def pages() -> dict[pathlib.Path, Links]:
    if not (SITE / "index.html").exists():
        pytest.fail("the book is not built: `make test` builds it first (or run `make book`)")
    parsed = {}
    for path in sorted(SITE.rglob("*.html")):
        if "_static" in path.relative_to(SITE).parts:
            continue
        links = Links()
        links.feed(path.read_text(errors="replace"))
        parsed[path] = links
    return parsed


@pytest.mark.slow  # reads the built book (`make test` builds it first)
def test_every_internal_link_and_anchor_of_the_site_resolves():
    parsed, broken, checked = pages(), [], 0
    for page, links in parsed.items():
        for href in links.hrefs:
            target = urllib.parse.urlsplit(href)
            if target.scheme or target.netloc or href.startswith(("mailto:", "javascript:")):
                continue
            checked += 1
            path = (page.parent / urllib.parse.unquote(target.path)).resolve() if target.path else page
            if path.is_dir():
                path = path / "index.html"
            if not path.exists():
                broken.append(f"{page.relative_to(SITE)}: {href} (no such file)")
            elif target.fragment and path.suffix == ".html":
                ids = parsed[path].ids if path in parsed else Links().ids
                if urllib.parse.unquote(target.fragment) not in ids:
                    broken.append(f"{page.relative_to(SITE)}: {href} (no such anchor)")
    assert checked > 100
    assert broken == []


@pytest.mark.slow  # reads the built book
def test_every_colab_link_opens_a_notebook_of_the_repository():
    url, branch = config.repository()
    owner_name = url.removeprefix("https://github.com/")
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split())
    colab = re.compile(r"^https://colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/([^/]+)/(.+)$")
    seen, wrong = set(), []
    for page, links in pages().items():
        for href in links.hrefs:
            if not href.startswith("https://colab.research.google.com/"):
                continue
            found = colab.match(href)
            if not found:
                wrong.append(f"{page.relative_to(SITE)}: {href} (not a GitHub notebook address)")
                continue
            repo, ref, path = found.groups()
            seen.add(path)
            if (repo, ref) != (owner_name, branch):
                wrong.append(f"{page.relative_to(SITE)}: {href} (not {owner_name}@{branch})")
            if not path.endswith(".ipynb") or path not in tracked:
                wrong.append(f"{page.relative_to(SITE)}: {href} ({path} is not a notebook of the repository)")
    assert wrong == []
    chapters = {str(p.relative_to(ROOT)) for p in course_notebooks() if p.parts[-2] == "book"}
    assignments = {str(p.relative_to(ROOT)) for p in course_notebooks() if p.parts[-3] == "assignments"}
    assert chapters | assignments <= seen, sorted((chapters | assignments) - seen)
