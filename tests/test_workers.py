"""The worker side of the boundary, driven directly (no screening in front of it): the second line
of defence sees banned operations where they execute, a worker holds nothing from one call to
the next, what it reports cannot make a call look faster or unchanged, and it lives in a world
of its own."""
import os

import pytest
import torch

from autograder.workers import Deadline, Limits, Worker
from autograder.worker.channel import Channel, ChannelError, ChannelTimeout

pytestmark = [pytest.mark.slow]
ROOTED = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and private mounts need root")


def statements(code: str) -> list[dict]:
    return [{"code": code, "label": "cell 1", "cell": 0, "defines": None, "binds": [], "uses": [], "runs_code": True}]


def worker(code: str, banned=None, operators=None, **options) -> Worker:
    w = Worker(statements(code), limits=Limits(call_seconds=20), banned=banned or {}, operators=operators or {},
               **options)
    w.start()
    assert not w.load_errors, w.load_errors
    return w


BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
SCORES = torch.tensor([0.9, 0.8, 0.7])


@pytest.mark.parametrize("route, expected", [
    ("torch.ops.torchvision.nms(b, s, t)", "torchvision::nms"),
    ("H(b, s, t)", "torchvision.ops"),  # an alias bound when the notebook loaded
    ("rpn.box_ops.nms(b, s, t)", "torchvision.ops"),  # the same function through another module
    ("[f(b, s, t) for f in [H]][0]", "torchvision.ops"),
])
def test_a_banned_operation_is_recorded_whatever_name_reached_it(route, expected):
    code = ("import torch\nimport torchvision\nimport torchvision.models.detection.rpn as rpn\n"
            f"H = torchvision.ops.nms\ndef nms(b, s, t):\n    return {route}\n")
    with worker(code, {"nms": ["torchvision.ops"]}, {"nms": ["torchvision::*"]}) as w:
        reply = w.call("nms", (BOXES, SCORES, 0.5))
        assert reply.ok and reply.value.tolist() == [0, 2]
        assert expected in reply.banned_used, reply.banned_used


def test_library_internals_and_the_graders_own_work_are_not_the_students():
    """F.pad runs torch._C._nn.pad and gradients run autograd, but the student called neither."""
    code = ("import torch\nimport torch.nn.functional as F\n"
            "def padded(x):\n    return F.pad(x, (1, 1)) * 2\n"
            "def uses_grad(x):\n    y = x.detach().requires_grad_()\n    return torch.autograd.grad((y * 2).sum(), y)[0]\n"
            "def pools(x):\n    return torch.nn.AdaptiveMaxPool2d(2)(x)\n")
    banned = {name: ["torch._C._nn", "torch.autograd.grad", "torch.nn.AdaptiveMaxPool2d"]
              for name in ("padded", "uses_grad", "pools")}
    operators = {name: ["aten::adaptive_max_pool2d"] for name in banned}
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    with worker(code, banned, operators) as w:
        reply = w.call("padded", (x,), probe={"kind": "backward", "wrt": [0]})
        assert reply.ok and reply.banned_used == set()
        assert w.call("uses_grad", (x,)).banned_used == {"torch.autograd.grad"}
        assert w.call("pools", (x,)).banned_used == {"torch.nn.AdaptiveMaxPool2d", "aten::adaptive_max_pool2d"}


def test_each_call_starts_from_the_notebook_as_loaded():
    """A call cannot leave anything for the next one: no cache, no counter."""
    code = "CALLS = []\ndef count():\n    CALLS.append(1)\n    return len(CALLS)\n"
    with worker(code) as w:
        assert [w.call("count").value for _ in range(3)] == [1, 1, 1]
        assert [w.call("count", timed=True).value for _ in range(2)] == [1, 1]


def test_a_timed_call_finds_no_file_an_earlier_call_left():
    code = ("import os\n"
            "def remember(key):\n"
            "    path = os.path.join(os.environ['HOME'], str(key))\n"
            "    found = os.path.exists(path)\n"
            "    open(path, 'w').close()\n"
            "    return found\n")
    with worker(code) as w:
        assert w.call("remember", (1,)).value is False
        assert w.call("remember", (1,)).value is True  # ordinary calls share the scratch folder
        assert w.call("remember", (1,), timed=True).value is False


def test_seconds_and_in_place_changes_are_measured_by_the_grader():
    code = ("import time\n"
            "def slow_but_says_fast(x):\n    time.sleep(0.5)\n    x.add_(1)\n    return {'seconds': 0.0001}\n")
    with worker(code) as w:
        x = torch.zeros(3)
        reply = w.call("slow_but_says_fast", (x,))
        assert reply.seconds >= 0.5 and reply.modified == [0]
        assert torch.equal(x, torch.zeros(3))  # the grader's own tensor never left this process


def test_a_call_that_outlives_its_limit_is_cancelled_without_losing_the_worker():
    code = "import time\ndef sleepy():\n    time.sleep(60)\ndef quick():\n    return 1\n"
    with worker(code) as w:
        pid = w._pid
        reply = w.call("sleepy", seconds=1)
        assert not reply.ok and "ran too long" in reply.error and reply.seconds < 10
        assert w.call("quick").value == 1 and w._pid == pid


def test_the_budget_ends_calls():
    code = "import time\ndef sleepy():\n    time.sleep(60)\n"
    with worker(code) as w:
        w.deadline = Deadline(3)
        reply = w.call("sleepy")
        assert not reply.ok and "budget" in reply.error and reply.seconds < 10


def test_an_exception_reports_its_type_and_line_never_its_message():
    code = "def leaks(secret):\n    raise ValueError(f'the hidden input was {secret}')\n"
    with worker(code) as w:
        reply = w.call("leaks", (12345,))
        assert reply.error == "ValueError at line 2 of cell 1"


@ROOTED
def test_a_worker_lives_in_a_world_of_its_own():
    code = ("import os\n"
            "def world():\n"
            "    open('/dev/shm/mine', 'w').write('x')\n"
            "    open('/tmp/mine', 'w').write('x')\n"
            "    return sorted(os.listdir('/dev')), sorted(os.listdir('/dev/shm')), os.path.exists('/proc/self'), \\\n"
            "        sorted(os.listdir('/tmp')), os.getcwd()\n")
    with worker(code) as w:
        assert w.isolation["private_tmp"] and w.isolation["private_dev"] and w.isolation["read_only"]
        assert w.isolation["proc"] == "copied files" and w.isolation["network"]
        devices, shm, proc_self, tmp, cwd = w.call("world").value
        assert set(devices) <= {"null", "zero", "full", "random", "urandom", "shm"}
        assert shm == ["mine"] and not proc_self and "mine" in tmp and cwd == "/tmp/work"
    assert not os.path.exists("/dev/shm/mine") and not os.path.exists("/tmp/mine")


def test_a_channel_read_never_waits_past_its_deadline():
    ours, theirs = os.pipe()
    os.write(theirs, (1000).to_bytes(8, "big") + b"{")  # half a message, then nothing
    channel = Channel(ours, theirs)
    with pytest.raises(ChannelTimeout):
        channel.receive(timeout=0.5)
    os.close(ours)
    os.close(theirs)


def test_a_channel_refuses_what_is_not_a_message():
    for data in (b"[" * 50_000, b"\xff\xfe", b"123"):
        ours, theirs = os.pipe()
        channel = Channel(ours, theirs)
        channel.send_frame(data, timeout=1)
        with pytest.raises(ChannelError):
            channel.receive(timeout=1)
        channel.close()
