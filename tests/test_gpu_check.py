"""`make gpu-check` (coursetools.gpu_check): without a GPU it says so and exits 0 (CI runs it that
way); its CUDA-against-CPU replay of the references' calls works (proved here by replaying on the
CPU, and on CUDA where a GPU is present)."""
import os
import subprocess
import sys

import pytest
import torch

from coursetools import gpu_check
from tests.conftest import ROOT


def test_without_a_gpu_it_says_so_and_exits_0():
    done = subprocess.run([sys.executable, "-m", "coursetools.gpu_check"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "gpu-check: no CUDA GPU on this machine" in done.stdout and "nothing was run" in done.stdout


def test_the_replay_records_every_graded_function_and_finds_no_difference_on_the_same_device():
    rows = gpu_check.compare_devices("a08-yolo", "cpu")
    assert [name for name, _, _ in rows] == ["nms", "batched_nms", "yolo_targets", "yolo_loss", "decode_yolo"]
    assert all(ok for _, _, ok in rows), rows


def test_differences_are_said_in_words():
    a = torch.tensor([1.0, 2.0])
    assert gpu_check.difference(a, a + 1, "cpu") == "values differ by up to 1"
    assert gpu_check.difference(a, a.long(), "cpu").startswith("shape/dtype (2,)/torch.int64")
    assert gpu_check.difference({"x": [a]}, {"x": [a * 2]}, "cpu") == "'x': item 0: values differ by up to 2"
    assert gpu_check.difference(a, a + 1, "cpu", values=False) is None
    if torch.cuda.is_available():
        assert "not on the input's device" in gpu_check.difference(a, a, "cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: `make gpu-check` runs this on one")
def test_references_on_cuda_equal_the_cpu():
    rows = gpu_check.compare_devices("a08-yolo", "cuda")
    assert all(ok for _, _, ok in rows), rows
