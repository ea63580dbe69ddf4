"""Hidden suite for a01-colab. Graded functions, their nbgrader grade ids, and the calls that
would skip the exercise; then the tests, grouped by function, with points."""
import os
import platform

import pytest
import torch

from autograder.checks import expect

FUNCTIONS = {"pick_device": "pick-device", "environment_report": "environment-report",
             "time_matmul": "time-matmul"}
BANNED = {"time_matmul": ["torch.utils.benchmark", "timeit", "odcourse.colab"]}
KEYS = {"python": str, "os": str, "cpu_model": str, "cpu_count": int, "ram_gb": float,
        "gpu": (str, type(None)), "torch": str, "cuda": (str, type(None))}


# pick_device ----------------------------------------------------------------------------------

@pytest.mark.function("pick_device")
@pytest.mark.points(1)
def test_pick_device_returns_a_torch_device(student, device):
    picked = student.pick_device()
    expect(isinstance(picked, torch.device), "pick_device must return a torch.device, not a string or None")
    expect(picked.type == device, f"on a runtime {'with' if device == 'cuda' else 'without'} a GPU, "
                                  f"pick_device must return {device!r}")


@pytest.mark.function("pick_device")
@pytest.mark.points(1)
def test_pick_device_follows_cuda_availability_at_call_time(student):
    for scenario, wanted in (("cuda_available", "cuda"), ("cuda_unavailable", "cpu")):
        device = student.call("pick_device", scenario=scenario)
        expect(isinstance(device, torch.device) and device.type == wanted,
               "pick_device must return 'cuda' exactly when torch.cuda.is_available() is true "
               "when it is called")


# environment_report ---------------------------------------------------------------------------

def _report(student, scenario=None):
    report = student.call("environment_report", scenario=scenario)
    expect(isinstance(report, dict), "environment_report must return a dict")
    return report


@pytest.mark.function("environment_report")
@pytest.mark.points(1)
def test_environment_report_keys_and_types(student):
    report = _report(student)
    expect(set(report) == set(KEYS), f"the report must have exactly the keys {sorted(KEYS)}")
    for key, kind in KEYS.items():
        value = report[key]
        expect(isinstance(value, kind) and not isinstance(value, bool),
               f"report[{key!r}] has the wrong type: see the table of the task")


@pytest.mark.function("environment_report")
@pytest.mark.points(1)
def test_environment_report_memory_in_gib(student):
    report = _report(student)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    ram = report.get("ram_gb")
    expect(isinstance(ram, float) and abs(ram - total) <= 0.01 + 0.005 * total,
           "ram_gb must be the total physical memory in GiB (2**30 bytes)")
    expect(ram == round(ram, 2), "ram_gb must be rounded to 2 decimals")


@pytest.mark.function("environment_report")
@pytest.mark.points(1)
def test_environment_report_facts_of_this_runtime(student, device):
    report = _report(student)
    expect(report.get("python") == platform.python_version(), "python must be platform.python_version()")
    expect(report.get("cpu_count") == os.cpu_count(), "cpu_count must be the number of logical CPUs")
    expect(report.get("torch") == torch.__version__, "torch must be torch.__version__")
    expect(report.get("cuda") == torch.version.cuda, "cuda must be torch.version.cuda (None for a CPU-only build)")
    if device == "cpu":
        expect(report.get("gpu") is None, "gpu must be None when CUDA is not available")
    else:
        expect(report.get("gpu") == torch.cuda.get_device_name(0), "gpu must be the name of GPU 0")
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        pretty = None
    if pretty:
        expect(report.get("os") == pretty, "os must be the PRETTY_NAME of /etc/os-release, without quotes")
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            models = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        if models:
            expect(report.get("cpu_model") == models[0], "cpu_model must be the first 'model name' of /proc/cpuinfo")


@pytest.mark.function("environment_report")
@pytest.mark.points(1)
def test_environment_report_falls_back_without_system_files(student):
    report = student.call("environment_report", scenario="no_system_files",
                          failure="environment_report must not fail where /etc/os-release, /proc/cpuinfo or "
                                  "/proc/meminfo is missing: use the fallbacks of the table")
    expect(isinstance(report, dict), "environment_report must return a dict")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    expect(report.get("os") == f"{platform.system()} {platform.release()}",
           "without /etc/os-release, os must fall back to platform.system() and platform.release()")
    expect(isinstance(report.get("ram_gb"), float) and abs(report["ram_gb"] - total) <= 0.01 + 0.005 * total,
           "without /proc/meminfo, ram_gb must come from os.sysconf")
    expect(report.get("cpu_model") == (platform.processor() or "unknown"),
           "without /proc/cpuinfo, cpu_model must fall back to platform.processor() (or 'unknown')")


# time_matmul ----------------------------------------------------------------------------------

@pytest.mark.function("time_matmul")
@pytest.mark.points(1)
def test_time_matmul_returns_positive_seconds(student, device):
    seconds = student.time_matmul(256, device)
    expect(isinstance(seconds, float), "time_matmul must return a Python float (not a tensor or an int)")
    expect(seconds > 0, "a measured time is positive")


@pytest.mark.function("time_matmul")
@pytest.mark.points(1)
def test_time_matmul_reports_the_median_not_the_total(student, device):
    # The call's own time, from just before the function starts to just after it returns, with
    # nothing recorded around it: the sum of 5 products is more than a third of it; the median of 5
    # (after a warm-up and two random matrices) is less. n = 1024 makes the products, not the
    # fixed costs of a call, the larger part on any CPU.
    seconds, call = student.timed("time_matmul", 1024, torch.device(device))
    expect(isinstance(seconds, float) and seconds <= call / 3 + 1e-4,
           "time_matmul must return the median of the 5 timed products, not their sum")


@pytest.mark.function("time_matmul")
@pytest.mark.points(1)
def test_time_matmul_measures_the_product(student, reference, device):
    # Each value is a median of 5 products; taking the median of 3 calls on each side keeps one
    # disturbed measurement (another process on the core) from deciding the grade.
    expected = sorted(reference.time_matmul(512, device) for _ in range(3))[1]
    got = sorted(student.time_matmul(512, device) for _ in range(3))
    got = got[1] if all(isinstance(value, float) for value in got) else None
    expect(got is not None and got >= 0.1 * expected,
           "time_matmul reports far less time than one product takes: time the product itself"
           + (" and synchronise the GPU before reading the clock" if device == "cuda" else ""))
    expect(got <= 20 * expected + 0.01, "time_matmul reports far more time than one product takes")


@pytest.mark.function("time_matmul")
@pytest.mark.points(1)
def test_time_matmul_grows_with_the_size(student, device):
    small = student.time_matmul(16, device)
    large = student.time_matmul(512, device)  # 32768 times the work of n=16
    expect(isinstance(small, float) and isinstance(large, float) and large > small,
           "the product of larger matrices must take longer")
