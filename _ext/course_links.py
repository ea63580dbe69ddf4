"""Sphinx extension: the "Open the assignment in Colab" link of a chapter page.

    ```{colab-assignment} a01-colab
    ```

renders a visible button to assignments/<id>/<id>.ipynb in Colab, made by
coursetools.config.colab_url from the repository that `_config.yml` names, so the address is
written in one place only.
"""
from __future__ import annotations

import html
import pathlib
import sys

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from coursetools import colab_pins  # noqa: E402
from coursetools.config import colab_url  # noqa: E402

STATIC = pathlib.Path(__file__).parent / "static"
EXTRA = pathlib.Path(__file__).parent / "extra"  # copied to the site's root (favicon.ico)


class ColabAssignment(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self):
        assignment = self.arguments[0]
        path = f"assignments/{assignment}/{assignment}.ipynb"
        if not (pathlib.Path(self.env.srcdir) / path).exists():
            raise self.error(f"colab-assignment: {path} does not exist (run `make assignments`)")
        try:
            href = colab_url(path, root=pathlib.Path(self.env.srcdir))
        except (KeyError, ValueError) as error:
            raise self.error(f"colab-assignment: _config.yml repository: {error}")
        markup = (
            f'<p class="colab-assignment"><a class="colab-assignment-button" href="{html.escape(href)}" '
            f'target="_blank" rel="noopener">Open the assignment in Colab: {html.escape(assignment)}</a></p>'
        )
        return [nodes.raw("", markup, format="html")]


def runtime_substitutions() -> dict[str, str]:
    """The Colab runtime the course is checked against, for the pages ({{ colab_torch }}, ...), read from
    requirements/colab.txt and colab-2026.01.txt so that the book says what the tests run."""
    current, oldest = colab_pins.runtime(colab_pins.CURRENT), colab_pins.runtime(colab_pins.OLDEST)
    values = {"colab_source": current["source"], "colab_python": current["python"]}
    for name in ("torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "pycocotools"):
        values[f"colab_{name}"] = current["pins"][name]
    values["colab_oldest"] = (f"Python {oldest['python']}, PyTorch {oldest['pins']['torch']}, torchvision "
                              f"{oldest['pins']['torchvision']}, NumPy {oldest['pins']['numpy']}")
    return values


def configure(app, config):
    config.myst_substitutions = {**(config.myst_substitutions or {}), **runtime_substitutions()}
    config.html_static_path.append(str(STATIC))
    # Browsers ask for /favicon.ico on pages without an icon link (the root redirect page).
    config.html_extra_path.append(str(EXTRA))
    # Without a default mode the theme's script logs a console error ("invalid theme mode").
    config.html_context.setdefault("default_mode", "light")


def drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    """sphinx-thebe adds its inline configuration twice to notebook pages; the second copy
    re-declares a constant and the browser reports a page error. Keep the first of each."""
    scripts = context.get("script_files")
    if isinstance(scripts, list):
        # In place: later handlers add page scripts to this very list. Early (priority 100):
        # the event stops at the first handler that returns a template.
        seen, unique = set(), []
        for script in scripts:
            # One copy was registered with filename None, the other with "": the same script.
            key = (getattr(script, "filename", script) or "", repr(getattr(script, "attributes", "")))
            if key not in seen:
                seen.add(key)
                unique.append(script)
        scripts[:] = unique


def setup(app):
    app.connect("html-page-context", drop_duplicate_scripts, priority=100)
    app.add_directive("colab-assignment", ColabAssignment)
    app.connect("config-inited", configure)
    app.add_css_file("course.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
