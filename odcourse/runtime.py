"""Where a notebook runs: Colab or not, live widgets or a static book page."""
from __future__ import annotations

import importlib.util
import os
import platform


def in_colab() -> bool:
    """True inside a Google Colab runtime (its `google.colab` package is importable)."""
    # find_spec("google.colab") raises where no `google` package exists at all.
    return importlib.util.find_spec("google") is not None and importlib.util.find_spec("google.colab") is not None


def static_figures() -> bool:
    """True while the book is being built: explorers then draw one static figure.

    The book build (`make book`) sets ODCOURSE_STATIC=1, because the published site has no
    kernel to drive widgets and must load nothing from the network.
    """
    return os.environ.get("ODCOURSE_STATIC", "") not in ("", "0")


def setup(seed: int = 0) -> None:
    """Called by every notebook's setup cell: seed the generators and say where we run.

    Prints one line such as
    ``odcourse 0.1.0 | Python 3.11.7 | torch 2.14.1 | Colab: no | GPU: none (CPU only)``.
    """
    import matplotlib
    import numpy as np
    import torch

    from . import __version__

    torch.manual_seed(seed)
    np.random.seed(seed)
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "figure.max_open_warning": 0})
    if torch.cuda.is_available():
        gpu = f"GPU: {torch.cuda.get_device_name(0)}"
    else:
        gpu = "GPU: none (CPU only"
        gpu += "; in Colab choose Runtime > Change runtime type > GPU)" if in_colab() else ")"
    print(
        f"odcourse {__version__} | Python {platform.python_version()} | torch {torch.__version__}"
        f" | Colab: {'yes' if in_colab() else 'no'} | {gpu}"
    )


#: The prefix myst-nb gives the outputs of `myst_nb.glue(..., display=False)`.
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value, fmt: str = "") -> None:
    """Record `value` (formatted with `fmt`, e.g. ",.0f" or ".1%") under `name` for the book's text.

    A chapter's prose quotes a number of its own execution as {glue}`name`, so that the sentence
    and the output cannot drift apart. This writes the same invisible output as myst-nb's
    ``glue(name, value, display=False)``, without importing myst-nb, which Colab does not have;
    Jupyter and Colab show nothing for it, and it returns nothing (a cell may end with it).
    """
    from IPython.display import display

    text = format(value, fmt)
    display({GLUE_PREFIX + "text/plain": text}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})
