"""Chapter 1 (Colab): measuring what a runtime gives you.

Timing here uses ``torch.utils.benchmark``, the library's way; assignment a01 asks students to
time a product by hand (and does not allow this module or ``torch.utils.benchmark`` there).
"""
from __future__ import annotations

import logging

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

# torch.utils.benchmark imports cpp_extension, which logs a warning on machines that have a
# CUDA toolkit but no GPU; the notebook's reader can do nothing about it.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils import benchmark  # noqa: E402

from .widgets import Explorer


def available_devices() -> list[str]:
    """The device types this runtime can run on: always 'cpu', plus 'cuda' with a GPU."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def matmul_gflops(n: int, device: str = "cpu", dtype: torch.dtype = torch.float32,
                  min_run_time: float = 0.05) -> float:
    """Measured speed of an (n, n) @ (n, n) product on `device`, in GFLOP/s (2 n^3 flops)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    # Timer synchronises CUDA itself and repeats until min_run_time has passed.
    timer = benchmark.Timer(stmt="a @ b", globals={"a": a, "b": b}, num_threads=torch.get_num_threads())
    seconds = timer.blocked_autorange(min_run_time=min_run_time).median
    return 2 * n**3 / seconds / 1e9


class MatmulExplorer(Explorer):
    """How fast is a matrix product here? Pick the size, the device and the precision.

    Draws GFLOP/s against matrix size for sizes up to the chosen ``n``, one curve per device
    measured (the chosen one highlighted).
    """

    DTYPES = {"float32": torch.float32, "float64": torch.float64}

    def __init__(self, n: int = 512, device: str = "cpu", dtype: str = "float32"):
        super().__init__({
            "n": widgets.IntSlider(value=n, min=64, max=2048, step=64, description="n",
                                   continuous_update=False),
            "device": widgets.Dropdown(options=available_devices(), value=device, description="device"),
            "dtype": widgets.Dropdown(options=list(self.DTYPES), value=dtype, description="dtype"),
        })

    def sizes(self, n: int) -> list[int]:
        """The sizes measured for a chosen n: a doubling ladder from 64 that ends at n."""
        ladder = [64]
        while ladder[-1] * 2 < n:
            ladder.append(ladder[-1] * 2)
        return sorted(set(ladder + [n]))

    def draw(self, n: int, device: str, dtype: str) -> Figure:
        sizes = self.sizes(n)
        speeds = [matmul_gflops(size, device, self.DTYPES[dtype]) for size in sizes]
        figure = Figure(figsize=(6.4, 3.6))
        axes = figure.subplots()
        axes.plot(sizes, speeds, marker="o", label=f"{device}, {dtype}")
        axes.scatter([sizes[-1]], [speeds[-1]], s=120, facecolors="none", edgecolors="crimson",
                     label=f"n = {n}: {speeds[-1]:.1f} GFLOP/s")
        axes.set_xscale("log", base=2)
        axes.set_xlabel("matrix size n (an n x n @ n x n product)")
        axes.set_ylabel("GFLOP/s")
        axes.set_title(f"Matrix product speed on {device} ({dtype})")
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right")
        figure.tight_layout()
        return figure
