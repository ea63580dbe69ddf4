"""The screening reads every cell before anything runs: what no assignment needs is refused,
wherever it is and however it is spelled, and what honest notebooks write is not. Banned names are
found by the object they name, whatever name reaches it. Fast: nothing here runs student code."""
import textwrap

import pytest

from autograder.notebook import Cell, locate, statements
from autograder.screening import banned_uses, screen

GRADED = {"nms": "nms", "box_iou": "box-iou"}
BANNED = {"nms": ["torchvision.ops", "odcourse"], "box_iou": ["torchvision.ops", "odcourse"]}
IMPORTS = "import math\nimport os\nimport sys\nimport numpy as np\nimport torch\nimport torchvision\nimport torch.nn.functional as F\n"
HONEST_NMS = "def nms(boxes, scores, iou_threshold):\n    return scores.argsort(descending=True)\n"
HONEST_IOU = "def box_iou(boxes1, boxes2):\n    return torch.zeros(len(boxes1), len(boxes2))\n"


def cells(*sources, graded=None) -> list[Cell]:
    graded = graded or {}
    return [Cell(i, "code", textwrap.dedent(s).strip() + "\n", graded.get(i)) for i, s in enumerate(sources)]


def screened(*sources):
    notebook = cells(IMPORTS, HONEST_NMS, HONEST_IOU, *sources, graded={1: "nms", 2: "box-iou"})
    located = {name: locate(notebook, name, grade_id) for name, grade_id in GRADED.items()}
    return screen(notebook, located, BANNED, set(), statements(notebook, located))


REFUSED = {
    # dynamic code and imports
    "exec": "exec('x = 1')",
    "eval": "y = eval('1 + 1')",
    "compile": "c = compile('1', 'f', 'eval')",
    "__import__": "m = __import__('os')",
    "importlib": "import importlib",
    "importlib from": "from importlib import import_module",
    "computed getattr": "f = getattr(torch, 'n' + 'n')",
    "getattr as a value": "g = getattr",
    "setattr computed": "setattr(torch, name, 1)",
    "globals": "g = globals()",
    "vars": "v = vars(torch)",
    "locals": "def f():\n    return locals()",
    "operator.attrgetter computed": "import operator\nf = operator.attrgetter(name)",
    "operator.attrgetter dunder": "import operator\nf = operator.attrgetter('__globals__')",
    "star import": "from torch import *",
    "relative import": "from . import helpers",
    # the interpreter's and the grader's internals
    "frames": "import sys\nf = sys._getframe(0)",
    "f_back": "def f(frame):\n    return frame.f_back",
    "f_globals of a traceback": "def f(e):\n    return e.__traceback__.tb_frame.f_globals",
    "code objects": "def f(g):\n    return g.__code__",
    "globals of a function": "def f(g):\n    return g.__globals__",
    "closure": "def f(g):\n    return g.__closure__",
    "subclasses": "s = object.__subclasses__()",
    "builtins": "b = __builtins__",
    "dict of a module": "d = torch.__dict__",
    "mro": "m = int.__mro__",
    "sys.modules": "import sys\nm = sys.modules",
    "sys.settrace": "import sys\nsys.settrace(None)",
    "sys through another module": "m = torch.sys.modules",
    "os through another module": "m = torch.os.system",
    "gc": "import gc",
    "ctypes": "import ctypes",
    "ctypes attribute": "def f(a):\n    return a.ctypes.data",
    "inspect": "import inspect",
    "torch._C": "f = torch._C._nn.adaptive_max_pool2d",
    "torch._C imported": "from torch import _C",
    "torch.ops": "f = torch.ops.torchvision.nms",
    "torch.ops through another module": "f = torch.nn.functional.torch.ops",
    "torch.library": "import torch.library",
    "torch.compile": "f = torch.compile(print)",
    "cpp extension": "from torch.utils import cpp_extension",
    "torch.load (pickle)": "w = torch.load('w.pt')",
    "numpy.load": "a = np.load('a.npy', allow_pickle=True)",
    "numpy as_strided": "from numpy.lib.stride_tricks import as_strided",
    "a private module": "import torch._dynamo",
    "a private attribute of a library": "f = torch._utils",
    "a library's private copy of a pickle loader": "from sklearn.utils import _joblib",
    "a private module of any library": "import scipy._lib",
    "a private attribute deep in a library": "f = torchvision.models._api",
    "a private name through getattr": "f = getattr(torchvision, '_C')",
    "torch.ops through getattr of a value": "def f(t):\n    return getattr(t, 'ops')",
    "torch.ops through attrgetter": "import operator\nf = operator.attrgetter('ops.torchvision.nms')",
    "sys through methodcaller": "import operator\nf = operator.methodcaller('sys')",
    "torch.fx": "import torch.fx",
    "torch.jit": "f = torch.jit.script",
    "torch.onnx": "import torch.onnx",
    "jiterator": "f = torch.cuda.jiterator._create_jit_fn",
    "dispatch modes": "from torch.utils._python_dispatch import TorchDispatchMode",
    "dunder name bound": '__name__ = "torch.autograd.notebook"',
    "dunder name bound in a function": 'def f():\n    global __name__\n    __name__ = "x"',
    "a finalizer": "class A:\n    def __del__(self):\n        pass",
    "pickle": "import pickle",
    "marshal": "import marshal",
    # processes, threads, signals, sockets
    "subprocess": "import subprocess",
    "os.fork": "p = os.fork()",
    "os.system": "r = os.system('ls')",
    "os._exit": "os._exit(0)",
    "os.kill": "os.kill(1, 9)",
    "os.write": "os.write(3, b'x')",
    "os.fdopen": "f = os.fdopen(3)",
    "multiprocessing": "import multiprocessing",
    "torch.multiprocessing": "import torch.multiprocessing",
    "threading": "import threading",
    "concurrent": "from concurrent.futures import ThreadPoolExecutor",
    "signal": "import signal",
    "socket": "import socket",
    "asyncio": "import asyncio",
    "io.FileIO": "import io\nf = io.FileIO(3)",
    # changing a library
    "patching torch": "torch.allclose = lambda *a, **k: True",
    "patching a tensor method": "torch.Tensor.__eq__ = lambda *a: True",
    "patching through an alias": "T = torch.Tensor\nT.add = print",
    "setattr on a library": "setattr(torch, 'allclose', print)",
    "deleting from a library": "del torch.allclose",
    "patching gradcheck": "torch.autograd.gradcheck = lambda *a, **k: True",
    "patching numpy.testing": "np.testing.assert_allclose = print",
    "writing os.environ": "os.environ['OMP_NUM_THREADS'] = '64'",
    # modules as values
    "a module in a list": "f = [torch][0]",
    "a module as an argument": "x = id(torch)",
    "a module returned": "def f():\n    return torch",
    "a submodule as a value": "x = id(torch.nn)",
    # graded names
    "rebinding a graded name": "nms = torchvision.ops.nms",
    "a graded name in a for": "for nms in [1]:\n    pass",
    "a graded name imported": "from torchvision.ops import nms",
    "a graded name made global": "def f():\n    global nms\n    nms = print",
    "deleting a graded name": "del box_iou",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_no_assignment_needs_is_refused_in_any_cell(case):
    result = screened(REFUSED[case])
    assert 3 in result.refused_cells, (case, result.refusals)
    refusal = [r for r in result.refusals if r.cell == 3][0]
    assert refusal.line >= 1 and refusal.construct and refusal.why


@pytest.mark.parametrize("case", ["exec", "frames", "torch.ops", "patching torch", "subprocess", "a module returned"])
def test_a_graded_function_using_a_refused_construct_is_not_graded(case):
    code = REFUSED[case]
    body = textwrap.indent(code, "    ")
    notebook = cells(IMPORTS, f"def nms(boxes, scores, iou_threshold):\n{body}\n    return scores", HONEST_IOU,
                     graded={1: "nms", 2: "box-iou"})
    located = {name: locate(notebook, name, grade_id) for name, grade_id in GRADED.items()}
    result = screen(notebook, located, BANNED, set(), statements(notebook, located))
    assert "nms" in result.blocked and "box_iou" not in result.blocked
    assert "cell 2, line" in result.blocked["nms"]


HONEST = [
    "import torch\nfrom torch import Tensor, nn\nimport torch.nn.functional as F",
    "from collections import defaultdict, Counter, deque\nimport itertools, functools, heapq, bisect",
    "from dataclasses import dataclass\nfrom typing import Optional, List\n\n@dataclass\nclass Box:\n    x1: float\n    y1: float",
    "@functools.lru_cache(maxsize=None)\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "def shape_of(x):\n    return getattr(x, 'shape', None), hasattr(x, 'dtype')",
    "def kind(x):\n    return type(x).__name__, x.__class__.__name__",
    "class Head(nn.Module):\n    def __init__(self, c):\n        super().__init__()\n        self.conv = nn.Conv2d(c, c, 3)\n"
    "        self._cache = {}\n\n    def forward(self, x):\n        return F.relu(self.conv(x))\n\n"
    "    def __repr__(self):\n        return 'Head'",
    "class Pool(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n"
    "        return x.clone()\n\n    @staticmethod\n    def backward(ctx, grad):\n        (x,) = ctx.saved_tensors\n"
    "        return grad * 1",
    "def report():\n    with open('/proc/cpuinfo') as f:\n        text = f.read()\n"
    "    return sys.version.split()[0], os.cpu_count(), os.sysconf('SC_PAGE_SIZE'), text[:10]",
    "import platform, time, statistics\nt = time.perf_counter()\nv = platform.python_version()",
    "NF = torch.nn.functional\n\ndef act(x):\n    return NF.relu(x)",
    "@torch.no_grad()\ndef infer(model, x):\n    model.eval()\n    return model(x)",
    "def f(x):\n    with torch.enable_grad():\n        y = x.detach().requires_grad_(True)\n    return y._version",
    "rng = np.random.default_rng(0)\nA = np.lib.stride_tricks.sliding_window_view(np.arange(10), 3)",
    "def f(xs):\n    return [y for x in xs if (y := x * 2) > 1]",
    "def g(x):\n    match x:\n        case [a, b]:\n            return a + b\n        case _:\n            return 0",
    "print(f'{math.pi:.3f}', torch.__version__)",
    "if __name__ == '__main__':\n    pass",
    "COUNT = 0\n\ndef bump():\n    global COUNT\n    COUNT += 1",
    "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2])",
    "x = torch.zeros(3)\nx[0] = 1\nstate = {}\nstate['k'] = x",
    "def area(b):\n    return (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)",
    "from torchvision.ops import box_iou as reference_iou\nexpected = 0",  # allowed outside graded code
    "import einops\nimport tqdm",
    "x = torch.backends.cudnn.deterministic",
    "from torchvision.models.detection._utils import BoxCoder\ncoder = BoxCoder((1.0, 1.0, 1.0, 1.0))",
    "import contextlib\n\n@contextlib.contextmanager\ndef quiet():\n    yield",
    "import operator\nby_score = operator.itemgetter(1)\nname = operator.attrgetter('shape')",
]


@pytest.mark.parametrize("source", HONEST)
def test_honest_notebook_code_is_not_refused(source):
    result = screened(source)
    assert not result.refusals, result.refusals


def test_banned_names_are_found_by_the_object_they_name():
    symbols_cells = cells(IMPORTS, "import torchvision.models.detection.rpn as rpn\nH = torchvision.ops.batched_nms")
    from autograder.screening import Symbols, _import_bindings, parse

    symbols = Symbols()
    for cell in symbols_cells:
        for statement in parse(cell.source).body:
            for name, dotted in _import_bindings(statement):
                symbols.bind(name, dotted)
    banned = ["torchvision.ops"]
    assert banned_uses("def f(a, b):\n    return rpn.box_ops.box_iou(a, b)\n", symbols, banned) == ["torchvision.ops"]
    assert banned_uses("from torchvision.models.detection.roi_heads import box_ops\n", symbols, banned) == \
        ["torchvision.ops"]
    assert banned_uses("def f(a):\n    return torch.relu(a)\n", symbols, banned) == []
    assert banned_uses("import odcourse.proposals as p\nx = p.oversegment\n", symbols,
                       ["odcourse", "!odcourse.proposals.oversegment"]) == []
    assert banned_uses("import odcourse.proposals as p\nx = p.selective_search\n", symbols,
                       ["odcourse", "!odcourse.proposals.oversegment"]) == ["odcourse"]


def test_a_graded_function_reaches_the_statements_that_bind_or_fill_what_it_uses():
    notebook = cells(IMPORTS, "def nms(boxes, scores, iou_threshold):\n    return TABLE['f'](boxes, scores, iou_threshold)",
                     HONEST_IOU, "TABLE = {}", "TABLE['f'] = torchvision.ops.nms", graded={1: "nms", 2: "box-iou"})
    located = {name: locate(notebook, name, grade_id) for name, grade_id in GRADED.items()}
    result = screen(notebook, located, BANNED, set(), statements(notebook, located))
    assert result.banned == {"nms": ["torchvision.ops"]}


def test_the_released_notebooks_own_cells_are_exempt_but_only_unchanged():
    setup = "import importlib, subprocess\nCOURSE = subprocess.run"
    notebook = cells(IMPORTS, HONEST_NMS, HONEST_IOU, setup, graded={1: "nms", 2: "box-iou"})
    located = {name: locate(notebook, name, grade_id) for name, grade_id in GRADED.items()}
    exempt = {setup.strip()}
    assert not screen(notebook, located, BANNED, exempt, statements(notebook, located)).refusals
    notebook[3].source = setup + "\nx = subprocess.run(['ls'])"
    assert screen(notebook, located, BANNED, exempt, statements(notebook, located)).refusals
