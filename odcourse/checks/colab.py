"""Visible checks for assignment a01-colab: ``from odcourse.checks import colab as check``."""
from __future__ import annotations

import os
import platform
import time

import torch

from . import Report

REPORT_KEYS = {
    "python": str,
    "os": str,
    "cpu_model": str,
    "cpu_count": int,
    "ram_gb": float,
    "gpu": (str, type(None)),
    "torch": str,
    "cuda": (str, type(None)),
}


def pick_device(fn) -> None:
    """Check ``pick_device()``: a torch.device, CUDA exactly when a GPU is usable."""
    with Report("pick_device") as report:
        device = report.call(fn)
        if not report.expect(
            isinstance(device, torch.device),
            f"returned {type(device).__name__} {device!r}, but must return a torch.device "
            "(so that .type and tensor.to(device) work everywhere)",
        ):
            return
        want = "cuda" if torch.cuda.is_available() else "cpu"
        report.expect(
            device.type == want,
            f"returned a {device.type!r} device, but this runtime "
            + ("has a usable GPU, so it must be 'cuda'" if want == "cuda" else "has no usable GPU, so it must be 'cpu'"),
        )
        try:
            torch.ones(2, device=device).sum().item()
            usable = True
        except Exception as error:  # a device string torch cannot use here
            usable = False
            detail = str(error).splitlines()[0]
        report.expect(usable, "a tensor cannot be made on the returned device: " + (detail if not usable else ""))


def environment_report(fn) -> None:
    """Check ``environment_report()``: the keys, their types and the facts that are easy to verify."""
    with Report("environment_report") as report:
        facts = report.call(fn)
        if not report.expect(isinstance(facts, dict), f"must return a dict, not {type(facts).__name__}"):
            return
        missing = sorted(set(REPORT_KEYS) - set(facts))
        extra = sorted(set(facts) - set(REPORT_KEYS))
        report.expect(not missing, f"keys missing from the report: {missing}")
        report.expect(not extra, f"keys that are not part of the report: {extra}")
        for key, kind in REPORT_KEYS.items():
            if key in facts:
                value = facts[key]
                ok = isinstance(value, kind) and not (kind is float and isinstance(value, bool))
                names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
                report.expect(ok, f"report[{key!r}] is {type(value).__name__} {value!r}; it must be {names}")
        if facts.get("python") is not None:
            report.expect(
                facts["python"] == platform.python_version(),
                f"report['python'] is {facts['python']!r}, but this kernel runs Python {platform.python_version()}",
            )
        if facts.get("cpu_count") is not None:
            report.expect(
                facts["cpu_count"] == os.cpu_count(),
                f"report['cpu_count'] is {facts['cpu_count']!r}, but the runtime has {os.cpu_count()} logical CPUs",
            )
        if isinstance(facts.get("ram_gb"), float):
            report.expect(
                0.1 < facts["ram_gb"] < 65536,
                f"report['ram_gb'] is {facts['ram_gb']}: memory must be given in GiB (2**30 bytes)",
            )
        if "gpu" in facts:
            report.expect(
                (facts["gpu"] is None) == (not torch.cuda.is_available()),
                "report['gpu'] must be the GPU's name when CUDA is available and None otherwise",
            )
        if "torch" in facts:
            report.expect(facts["torch"] == torch.__version__, "report['torch'] must be torch.__version__")


def time_matmul(fn) -> None:
    """Check ``time_matmul(n, device)``: a float number of seconds that is really measured."""
    with Report("time_matmul") as report:
        start = time.perf_counter()
        seconds = report.call(fn, 256, "cpu")
        elapsed = time.perf_counter() - start
        if not report.expect(
            isinstance(seconds, float),
            f"returned {type(seconds).__name__}; it must return a Python float (use .item() or float())",
        ):
            return
        report.expect(seconds > 0, f"returned {seconds}: a measured time is positive")
        # The median of 5 timed runs cannot exceed a third of all the time the call took.
        report.expect(
            seconds <= elapsed / 3 + 1e-4,
            f"returned {seconds:.4f} s, but the whole call took {elapsed:.4f} s: "
            "report the median of the 5 timed products, not their sum",
        )
        # 1024^3 multiply-adds are 250 000 times 16^3: a real measurement cannot confuse them.
        small = report.call(fn, 16, torch.device("cpu"))
        large = report.call(fn, 1024, torch.device("cpu"))
        report.expect(
            isinstance(small, float) and isinstance(large, float) and large > small,
            f"n=1024 took {large} s but n=16 took {small} s: the product of larger matrices must take longer",
        )
