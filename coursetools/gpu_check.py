"""The course on a CUDA GPU, in one command: `make gpu-check` (python -m coursetools.gpu_check).

On a machine with a CUDA GPU (after `make venv`) it
1. grades every assignment's reference with its hidden suite: scored on the CPU, and the same tests
   run on CUDA as the grader's unscored feedback (every CUDA test must pass);
2. compares every graded reference function on CUDA against the CPU: each call the notebook's
   visible checks make is recorded, then replayed with its tensors on CUDA, and the results (back
   on the CPU) must equal the CPU's to a tolerance, on the input's device;
3. executes the student-filled notebooks of a04, a06, a08, a11 and a12 (coursetools.student) in a
   Colab-like environment with the GPU visible (every visible check passing);
4. times bench/roi.py, bench/nms.py, bench/capstone.py and bench/modern.py (shortened runs) on
   CUDA against torchvision's CUDA operators (and scipy's solver);
and prints one table: what ran, whether it passed, and the timing ratios. Exit status 1 if anything
failed. Without a GPU it says so and exits 0 (CI runs it that way, so that it cannot rot).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import math
import pathlib
import re
import subprocess
import sys
import tempfile
import time

from .config import ROOT, assignment_ids

NOTEBOOKS = ("a04-roi-pooling", "a06-roi-align", "a08-yolo", "a11-capstone", "a12-modern-detectors")
BENCHES = (("bench/roi.py", ["--device", "cuda"]), ("bench/nms.py", ["--device", "cuda"]),
           ("bench/capstone.py", ["--device", "cuda", "--steps", "100", "--train-images", "200",
                                  "--test-images", "100"]),
           ("bench/modern.py", ["--device", "cuda", "--steps", "100", "--train-images", "200", "--test-images", "100"]))
CALLS_PER_FUNCTION = 4


# 2. The same reference calls on two devices --------------------------------------------------------

def record_calls(assignment: str, root: pathlib.Path = ROOT) -> tuple[object, dict[str, list]]:
    """(reference, {function: [(args, kwargs), ...]}): the calls the source notebook's visible checks
    make of each graded function of the reference (the first CALLS_PER_FUNCTION of each)."""
    import contextlib
    import copy
    import inspect
    import io

    import nbformat

    from autograder import assignment as assignments

    from .reference import load_reference

    reference = load_reference(assignment, root)
    functions = list(assignments.load(assignment).functions)
    calls: dict[str, list] = {name: [] for name in functions}
    namespace = dict(vars(reference))

    def recorder(name, function):
        def record(*args, **kwargs):
            if len(calls[name]) < CALLS_PER_FUNCTION:
                calls[name].append(copy.deepcopy((args, kwargs)))
            return function(*args, **kwargs)
        return record

    for name in functions:
        if inspect.isfunction(getattr(reference, name, None)):  # classes are checked by the suite's CUDA run
            namespace[name] = recorder(name, getattr(reference, name))
    source = nbformat.read(root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in source.cells:
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
                exec(compile(cell.source, f"<{assignment} {cell.get('id')}>", "exec"), namespace)
    return reference, {name: recorded for name, recorded in calls.items()
                       if inspect.isfunction(getattr(reference, name, None))}


def moved(value, device):
    """value with every tensor (in tuples, lists and dicts) moved to `device`."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(moved(v, device) for v in value)
    if isinstance(value, dict):
        return {k: moved(v, device) for k, v in value.items()}
    return value


def difference(cpu, other, device, values: bool = True) -> str | None:
    """None if `other` (computed on `device`) equals `cpu` to a tolerance (only in shapes and dtypes
    when not `values`) and its tensors are on `device`; else what differs, in words."""
    import torch

    if isinstance(cpu, torch.Tensor):
        if not isinstance(other, torch.Tensor):
            return f"a {type(other).__name__} instead of a tensor"
        if other.device.type != torch.device(device).type:
            return f"the result is on {other.device}, not on the input's device {device}"
        other = other.detach().cpu()
        cpu = cpu.detach()
        if other.shape != cpu.shape or other.dtype != cpu.dtype:
            return f"shape/dtype {tuple(other.shape)}/{other.dtype} instead of {tuple(cpu.shape)}/{cpu.dtype}"
        if not values:
            return None
        if cpu.is_floating_point():
            if not torch.allclose(other, cpu, rtol=1e-4, atol=1e-4, equal_nan=True):
                return f"values differ by up to {(other - cpu).abs().nan_to_num().max().item():.3g}"
        elif not torch.equal(other, cpu):
            return f"{int((other != cpu).sum())} of {cpu.numel()} values differ"
        return None
    if isinstance(cpu, (list, tuple)):
        if not isinstance(other, (list, tuple)) or len(other) != len(cpu):
            return "a sequence of another length"
        return next((f"item {i}: {d}" for i, (a, b) in enumerate(zip(cpu, other))
                     if (d := difference(a, b, device, values))), None)
    if isinstance(cpu, dict):
        if not isinstance(other, dict) or set(other) != set(cpu):
            return "a dict with other keys"
        return next((f"{k!r}: {d}" for k in cpu if (d := difference(cpu[k], other[k], device, values))), None)
    if not values:
        return None
    if isinstance(cpu, float):
        return None if (math.isnan(cpu) and math.isnan(other)) or math.isclose(cpu, other, rel_tol=1e-4, abs_tol=1e-6) \
            else f"{other!r} instead of {cpu!r}"
    if isinstance(cpu, torch.nn.Module):
        return None  # a module is built on both (its forward is what the suite's CUDA run checks)
    return None if cpu == other else f"{other!r} instead of {cpu!r}"


def call(function, args, kwargs, device: str, seed: int = 0):
    """function on a fresh copy of the arguments (tensors on `device`), after seeding: ("value", result)
    or ("raised", the exception's type name)."""
    import copy

    import torch

    args, kwargs = copy.deepcopy((args, kwargs))
    torch.manual_seed(seed)
    try:
        return "value", function(*moved(args, device), **moved(kwargs, device))
    except Exception as error:  # noqa: BLE001 - a refused input must be refused on both devices
        return "raised", type(error).__name__


def compare_devices(assignment: str, device: str = "cuda", root: pathlib.Path = ROOT) -> list[tuple[str, str, bool]]:
    """[(function, what was seen, passed)]: each recorded call of the reference replayed with its
    tensors on `device`, against the same call on the CPU (the same exception where the CPU raises).
    A function whose CPU results change with the seed is random: its results are compared in
    shapes, dtypes and devices only."""
    reference, calls = record_calls(assignment, root)
    rows = []
    for name, recorded in calls.items():
        if not recorded:
            rows.append((name, "no call recorded from the visible checks", False))
            continue
        function = getattr(reference, name)
        problems, random = [], False
        for args, kwargs in recorded:
            kind, expected = call(function, args, kwargs, "cpu")
            other_seed = call(function, args, kwargs, "cpu", seed=1)
            values = kind == "raised" or difference(expected, other_seed[1], "cpu") is None
            random |= not values
            got_kind, got = call(function, args, kwargs, device)
            if kind == "raised" or got_kind == "raised":
                problem = None if (kind, expected) == (got_kind, got) else \
                    f"CPU {kind} {expected if kind == 'raised' else ''}, {device} {got_kind} {got if got_kind == 'raised' else ''}"
            else:
                problem = difference(expected, got, device, values)
            if problem:
                problems.append(problem)
        seen = f"{len(recorded)} call(s): " + (problems[0][:120] if problems else
                                               "same shapes and dtypes (random)" if random else "same results")
        rows.append((name, seen, not problems))
    return rows


# 1, 3, 4 ------------------------------------------------------------------------------------------------

def grade_on_cuda(assignment: str) -> tuple[str, bool]:
    from autograder import engine

    result = engine.grade(assignment, ROOT / "solutions" / assignment / f"{assignment}.ipynb").to_gradescope()
    feedback = result.get("extra", {}).get("cuda_feedback")
    if not feedback:
        return "no CUDA feedback in the grader's result", False
    failed = [f["name"] for f in feedback if not f["passed"]]
    scored = f"{result['score']:g}/{result['max_score']:g} on the CPU"
    return f"{scored}; CUDA {len(feedback) - len(failed)}/{len(feedback)} tests" + (
        f", failed: {', '.join(failed)[:100]}" if failed else ""), not failed and result["score"] == result["max_score"]


def filled_notebook_on_gpu(assignment: str, helpers: str) -> tuple[str, bool]:
    from . import colab_like
    from .student import write_filled_notebook

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"gpu-{assignment}-") as folder:
        folder = pathlib.Path(folder)
        path = write_filled_notebook(assignment, folder / f"{assignment}.ipynb")
        try:
            nb = colab_like.run_notebook(path, folder / "colab", helpers)
        except RuntimeError as error:
            return str(error).splitlines()[-1][:120], False
    setup = colab_like.setup_output(nb).strip()
    gpu = setup.rsplit("| ", 1)[-1]
    errors = colab_like.errors(nb)
    return f"{time.monotonic() - started:.0f} s, {gpu}, {len(errors)} error(s)", not errors and "GPU: none" not in setup


def bench(script: str, options: list[str]) -> tuple[str, bool]:
    done = subprocess.run([sys.executable, script, *options], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["failed"])[-1][:120], False
    ratios = re.findall(r"(\S[^\n]*?)\s+(\d+\.\d+)\s*$", done.stdout, flags=re.M)
    return "; ".join(f"{label.split('  ')[0].strip()} {ratio}" for label, ratio in ratios)[:400] or done.stdout[-200:], True


def table(rows: list[tuple[str, str, str, bool]]) -> str:
    width = max(len(what) for _, what, _, _ in rows)
    lines = [f"{'stage':10} {'what':{width}}  result  seen"]
    lines += [f"{stage:10} {what:{width}}  {'PASS' if ok else 'FAIL':6}  {seen}" for stage, what, seen, ok in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursetools.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU on this machine (torch {torch.__version__}: torch.cuda.is_available() is "
              "False), so nothing was run. Run `make gpu-check` on a machine with a CUDA GPU after `make venv`.")
        return 0
    started = time.monotonic()
    print(f"gpu-check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    from . import colab_like

    rows: list[tuple[str, str, str, bool]] = []
    with tempfile.TemporaryDirectory(prefix="gpu-helpers-") as repo, \
            concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        helpers = colab_like.helper_repository(pathlib.Path(repo) / "public")
        notebooks = {pool.submit(filled_notebook_on_gpu, a, helpers): a for a in NOTEBOOKS}
        for assignment in assignment_ids():
            rows.append(("suite", assignment, *grade_on_cuda(assignment)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        for assignment in assignment_ids():
            for function, seen, ok in compare_devices(assignment, "cuda"):
                rows.append(("cuda=cpu", f"{assignment} {function}", seen, ok))
        for future, assignment in notebooks.items():
            rows.append(("notebook", f"{assignment} (student-filled)", *future.result()))
    for script, options in BENCHES:
        rows.append(("bench", script, *bench(script, options)))
    print()
    print(table(rows))
    failed = sum(not ok for *_, ok in rows)
    print(f"\ngpu-check: {len(rows) - failed} passed, {failed} failed in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
