"""Sphinx extension: the "Open the assignment in Colab" link of a chapter page.

    ```{colab-assignment} a01-colab
    ```

renders a visible button to assignments/<id>/<id>.ipynb in Colab, made from the repository
that `_config.yml` names (Jupyter Book passes it on as html_theme_options.repository_url and
repository_branch), so the address is written in one place only.
"""
from __future__ import annotations

import html
import pathlib
import re

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

STATIC = pathlib.Path(__file__).parent / "static"


def colab_link(repository_url: str, branch: str, path: str) -> str:
    owner_repo = re.sub(r"^https://github\.com/", "", repository_url.rstrip("/"))
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/{path}"


class ColabAssignment(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self):
        assignment = self.arguments[0]
        path = f"assignments/{assignment}/{assignment}.ipynb"
        if not (pathlib.Path(self.env.srcdir) / path).exists():
            raise self.error(f"colab-assignment: {path} does not exist (run `make assignments`)")
        options = self.config.html_theme_options
        url = options.get("repository_url")
        if not url:
            raise self.error("colab-assignment: _config.yml has no repository.url")
        href = colab_link(url, options.get("repository_branch") or "main", path)
        markup = (
            f'<p class="colab-assignment"><a class="colab-assignment-button" href="{html.escape(href)}" '
            f'target="_blank" rel="noopener">Open the assignment in Colab: {html.escape(assignment)}</a></p>'
        )
        return [nodes.raw("", markup, format="html")]


def add_static_path(app, config):
    config.html_static_path.append(str(STATIC))


def setup(app):
    app.add_directive("colab-assignment", ColabAssignment)
    app.connect("config-inited", add_static_path)
    app.add_css_file("course.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
