"""Proofs for a01-colab: the reference is right (against independent sources) and passes its
visible checks; the released stub fails them, saying it is not implemented. The plausible wrong
answers and the differently written right answers below are graded by the hidden suite in
tests/test_autograder.py (each wrong answer loses points on a test whose message names it)."""
import platform
import textwrap

import psutil
import pytest
import torch

from coursetools.reference import load_reference
from tests.conftest import ROOT
from tests.notebook_grading import run_graded_cells

SOURCE = ROOT / "solutions" / "a01-colab" / "a01-colab.ipynb"
RELEASE = ROOT / "assignments" / "a01-colab" / "a01-colab.ipynb"
TESTS = {"test-pick-device": 2, "test-environment-report": 4, "test-time-matmul": 4}


def answer(code: str) -> str:
    return textwrap.dedent(code).strip() + "\n"


def test_reference_earns_full_marks():
    outcomes = run_graded_cells(SOURCE)
    assert {k: (o.passed, o.message) for k, o in outcomes.items()} == {k: (True, "") for k in TESTS}
    assert sum(o.points for o in outcomes.values()) == 10


def test_released_stub_earns_zero_and_says_not_implemented():
    outcomes = run_graded_cells(RELEASE)
    assert set(outcomes) == set(TESTS)
    for name, outcome in outcomes.items():
        assert not outcome.passed and outcome.points == 0, name
        assert "not implemented yet" in outcome.message, outcome.message


def test_reference_agrees_with_independent_sources():
    ref = load_reference("a01-colab")
    report = ref.environment_report()
    assert report["ram_gb"] == pytest.approx(psutil.virtual_memory().total / 2**30, abs=0.006)
    assert report["cpu_count"] == psutil.cpu_count(logical=True)
    assert report["python"] == platform.python_version()
    with open("/etc/os-release") as handle:  # the project's tests run on Linux
        pretty = [line.split("=", 1)[1].strip().strip('"') for line in handle if line.startswith("PRETTY_NAME=")]
    assert report["os"] == pretty[0]
    assert ref.pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    seconds = ref.time_matmul(512, "cpu")
    assert isinstance(seconds, float) and 0 < seconds < 5


WRONG = {
    # pick_device
    "device as a string": ("pick-device", """
        def pick_device():
            return "cuda" if torch.cuda.is_available() else "cpu"
        """, "test-pick-device", "must return a torch.device"),
    "always the CPU": ("pick-device", """
        def pick_device():
            return torch.device("cpu")
        """, "test-pick-device", "exactly when torch.cuda.is_available()"),
    "decided once, at definition": ("pick-device", """
        _DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        def pick_device():
            return _DEVICE
        """, "test-pick-device", "when it is called"),
    # environment_report
    "memory in bytes": ("environment-report", """
        def environment_report():
            return {"python": platform.python_version(), "os": platform.freedesktop_os_release()["PRETTY_NAME"],
                    "cpu_model": platform.processor() or "unknown", "cpu_count": os.cpu_count(),
                    "ram_gb": float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")),
                    "gpu": None, "torch": torch.__version__, "cuda": torch.version.cuda}
        """, "test-environment-report", "GiB"),
    "memory in GB of 10**9 bytes": ("environment-report", """
        def environment_report():
            with open("/proc/cpuinfo") as f:
                model = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")][0]
            return {"python": platform.python_version(), "os": platform.freedesktop_os_release()["PRETTY_NAME"],
                    "cpu_model": model, "cpu_count": os.cpu_count(),
                    "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 2),
                    "gpu": None, "torch": torch.__version__, "cuda": torch.version.cuda}
        """, "test-environment-report", "ram_gb must be the total physical memory in GiB"),
    "os name with its quotes": ("environment-report", """
        def environment_report():
            with open("/etc/os-release") as f:
                name = [l.strip().split("=", 1)[1] for l in f if l.startswith("PRETTY_NAME=")][0]
            with open("/proc/cpuinfo") as f:
                model = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")][0]
            return {"python": platform.python_version(), "os": name, "cpu_model": model,
                    "cpu_count": os.cpu_count(),
                    "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 2),
                    "gpu": None, "torch": torch.__version__, "cuda": torch.version.cuda}
        """, "test-environment-report", "PRETTY_NAME of /etc/os-release, without quotes"),
    "no fallback when a file is missing": ("environment-report", """
        def environment_report():
            with open("/etc/os-release") as f:
                name = [l.strip().split("=", 1)[1].strip('"') for l in f if l.startswith("PRETTY_NAME=")][0]
            with open("/proc/cpuinfo") as f:
                model = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")][0]
            return {"python": platform.python_version(), "os": name, "cpu_model": model,
                    "cpu_count": os.cpu_count(),
                    "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 2),
                    "gpu": None, "torch": torch.__version__, "cuda": torch.version.cuda}
        """, "test-environment-report", "use the fallbacks"),
    "physical cores instead of logical CPUs": ("environment-report", """
        def environment_report():
            return {"python": platform.python_version(), "os": platform.platform(), "cpu_model": "unknown",
                    "cpu_count": os.cpu_count() // 2, "ram_gb": 1.0, "gpu": None,
                    "torch": torch.__version__, "cuda": torch.version.cuda}
        """, "test-environment-report", "logical CPUs"),
    # time_matmul
    "the sum of the runs": ("time-matmul", """
        def time_matmul(n, device):
            a = torch.randn(n, n, device=device); b = torch.randn(n, n, device=device)
            start = time.perf_counter()
            for _ in range(5):
                a @ b
            return time.perf_counter() - start
        """, "test-time-matmul", "not their sum"),
    "a tensor instead of a float": ("time-matmul", """
        def time_matmul(n, device):
            a = torch.randn(n, n, device=device); b = torch.randn(n, n, device=device)
            times = []
            for _ in range(5):
                start = time.perf_counter(); a @ b; times.append(time.perf_counter() - start)
            return torch.tensor(times).median()
        """, "test-time-matmul", "Python float"),
    "timing nothing": ("time-matmul", """
        def time_matmul(n, device):
            a = torch.randn(n, n, device=device); b = torch.randn(n, n, device=device)
            start = time.perf_counter()
            product = a @ b
            return (time.perf_counter() - start) * 1e-3 * (1 + n / 10**6)
        """, "test-time-matmul", "far less time than one product takes"),
    "a library timer": ("time-matmul", """
        def time_matmul(n, device):
            from torch.utils import benchmark
            a = torch.randn(n, n, device=device); b = torch.randn(n, n, device=device)
            return float(benchmark.Timer("a @ b", globals={"a": a, "b": b}).timeit(5).median)
        """, "test-time-matmul", "does not allow"),
}


DIFFERENT_BUT_RIGHT = {
    "pick-device": """
        def pick_device():
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        """,
    "environment-report": """
        import pathlib, re
        def environment_report():
            def read(path):
                try:
                    return pathlib.Path(path).read_text()
                except OSError:
                    return ""
            os_match = re.search(r'^PRETTY_NAME="?([^"\\n]*)"?$', read("/etc/os-release"), re.M)
            cpu_match = re.search(r"^model name\\s*:\\s*(.*)$", read("/proc/cpuinfo"), re.M)
            mem_match = re.search(r"^MemTotal:\\s*(\\d+) kB", read("/proc/meminfo"), re.M)
            total = int(mem_match.group(1)) * 1024 if mem_match else os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            return dict(python=platform.python_version(),
                        os=os_match.group(1) if os_match else platform.system() + " " + platform.release(),
                        cpu_model=cpu_match.group(1).strip() if cpu_match else (platform.processor() or "unknown"),
                        cpu_count=os.cpu_count(), ram_gb=round(total / 1024**3, 2),
                        gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                        torch=torch.__version__, cuda=torch.version.cuda)
        """,
    "time-matmul": """
        def time_matmul(n, device):
            device = torch.device(device)
            sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
            x, y = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
            torch.mm(x, y)
            runs = []
            while len(runs) < 5:
                sync(device); t = time.monotonic(); torch.mm(x, y); sync(device)
                runs.append(time.monotonic() - t)
            return float(sorted(runs)[2])
        """,
}
