"""What notebook code may use, written as allow-lists where the language lets us.

The grader reads every cell against these lists before any code runs (autograder/screening.py);
the worker applies the import list again at run time (a notebook's `import` goes through a
guarded `__import__`). One definition for both, in the worker package because the worker
imports it before anything else (standard library only).

The rule: a course notebook computes with tensors and arrays. It has no use for dynamic code,
the interpreter's or the grader's internals, processes, threads, signals, sockets, foreign
functions or pickles, and none of those is needed by any assignment; so none is allowed.
"""

# Modules a notebook may import (the name or a prefix of it, e.g. "torch" allows torch.nn).
ALLOWED_MODULES = frozenset({
    # the course's scientific stack (what Colab preinstalls and the assignments use)
    "torch", "torchvision", "numpy", "scipy", "skimage", "sklearn", "PIL", "matplotlib", "cv2", "networkx",
    "pycocotools", "odcourse", "ipywidgets", "IPython.display", "tqdm", "einops", "google.colab",
    # the standard library's computing, data and text modules
    "__future__", "abc", "array", "base64", "bisect", "cmath", "collections", "colorsys", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools", "glob", "gzip",
    "hashlib", "heapq", "io", "itertools", "json", "math", "numbers", "operator", "os", "pathlib",
    "platform", "pprint", "random", "re", "shutil", "statistics", "string", "struct", "sys", "tempfile",
    "textwrap", "time", "timeit", "typing", "typing_extensions", "unicodedata", "uuid", "warnings", "zlib",
})

# Inside allowed packages, what is refused anyway (a module, or an attribute of one).
REFUSED_INSIDE = frozenset({
    # PyTorch's native internals, operator registry, compilers, processes, loaders of pickles and code
    "torch._C", "torch.ops", "torch.library", "torch._ops", "torch._dynamo", "torch._inductor", "torch.compile",
    "torch.compiler", "torch.export", "torch.utils.cpp_extension", "torch.multiprocessing", "torch.distributed",
    "torch.hub", "torch.package", "torch.load", "torch.jit.load", "torch.classes", "torch.overrides",
    "torch.utils._python_dispatch", "torch.utils.dlpack", "torch.backends.cudnn.rnn",
    # tracers, scripting and code generators: they rewrite or run code the grader has not read
    "torch.fx", "torch.jit", "torch.onnx", "torch.cuda.jiterator", "torch.utils.benchmark.utils.cpp_jit",
    "torchvision.io.read_file",
    # NumPy's ways to raw memory, compiled code and pickles
    "numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.load", "numpy.memmap", "numpy.fromfile",
    "numpy.lib.stride_tricks.as_strided", "numpy.lib.format",
    "scipy.LowLevelCallable", "sklearn.externals",
    "IPython.display.Javascript",
    "os.path.sys",  # os.path keeps a reference to sys
})

# `os`, `sys`, `io` and `platform` are allowed for these attributes only.
ALLOWED_ATTRIBUTES = {
    "os": frozenset({"path", "environ", "getenv", "cpu_count", "sysconf", "sysconf_names", "sep", "linesep",
                     "pathsep", "curdir", "pardir", "extsep", "altsep", "name", "uname", "getcwd", "listdir",
                     "scandir", "walk", "stat", "makedirs", "mkdir", "remove", "unlink", "rmdir", "rename",
                     "replace", "fspath", "PathLike", "devnull", "urandom", "get_terminal_size", "stat_result"}),
    "sys": frozenset({"version", "version_info", "platform", "maxsize", "float_info", "int_info", "byteorder",
                      "implementation", "hexversion", "getsizeof", "getrecursionlimit", "setrecursionlimit", "stdout",
                      "stderr", "exit",
                      "float_repr_style", "api_version", "executable"}),
    "io": frozenset({"BytesIO", "StringIO"}),
    "platform": frozenset({"python_version", "python_version_tuple", "system", "release", "version", "machine",
                           "processor", "node", "platform", "uname", "python_implementation", "freedesktop_os_release"}),
}

# Builtins with no use but to run or find code the grader cannot read.
REFUSED_BUILTINS = frozenset({"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint",
                              "help", "__build_class__", "__loader__", "__spec__", "__builtins__", "copyright",
                              "credits", "license"})
# Builtins that take an attribute name: allowed with a literal name only.
NAMED_ATTRIBUTE_BUILTINS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
# stdlib callables that take attribute names as strings: literal, allowed names only.
NAMED_ATTRIBUTE_CALLABLES = frozenset({"operator.attrgetter", "operator.methodcaller"})


def named_attribute_refused(name: str) -> bool:
    """Whether a literal attribute name given as a string (getattr(x, "name"), attrgetter("name"))
    may name a refused place whatever object it is read from: a private name, a module no notebook
    may reach, the last part of a refused place (torch's "ops", "library", "_C"...)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) \
        or name in NOT_REACHABLE or name in RESTRICTED_BY_NAME \
        or any(name == place.rsplit(".", 1)[-1] for place in REFUSED_INSIDE)

# Attributes of frames, tracebacks, generators and code objects: the way to the grader's internals.
FRAME_ATTRIBUTES = frozenset({
    "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace", "f_trace_lines", "f_trace_opcodes",
    "tb_frame", "tb_next", "gi_frame", "gi_code", "gi_yieldfrom", "gi_running", "cr_frame", "cr_code", "cr_await",
    "cr_origin", "ag_frame", "ag_code", "ag_await", "co_code", "co_consts", "co_names", "co_varnames",
    "co_filename", "co_freevars", "co_cellvars", "co_lines", "co_positions", "replace", "func_globals",
    "ctypes", "_getframe", "_current_frames",
})
# Names that are not attributes of a frame but reach the interpreter all the same.
FRAME_ATTRIBUTES = FRAME_ATTRIBUTES - {"replace"}  # str.replace, Tensor.replace... are everyday names

# Dunder attributes a notebook may read or call (anything else, __globals__, __code__,
# __subclasses__, __dict__, __builtins__, __class__.__base__ ..., is refused).
ALLOWED_DUNDER_ATTRIBUTES = frozenset({
    "__init__", "__call__", "__name__", "__qualname__", "__doc__", "__version__", "__module__", "__class__",
    "__len__", "__getitem__", "__setitem__", "__delitem__", "__iter__", "__next__", "__contains__", "__repr__",
    "__str__", "__format__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__bool__",
    "__add__", "__sub__", "__mul__", "__matmul__", "__truediv__", "__floordiv__", "__mod__", "__pow__", "__neg__",
    "__pos__", "__abs__", "__radd__", "__rsub__", "__rmul__", "__rtruediv__", "__and__", "__or__", "__xor__",
    "__invert__", "__enter__", "__exit__", "__post_init__", "__annotations__", "__float__", "__int__",
    "__index__", "__array__", "__torch_function__", "__setstate__", "__getstate__",
})
# Dunder names a class body may define; at module level no dunder name may be bound.
REFUSED_CLASS_DUNDERS = frozenset({"__del__", "__init_subclass__", "__class_getitem__", "__set_name__",
                                   "__reduce__", "__reduce_ex__", "__getattribute__", "__instancecheck__",
                                   "__subclasscheck__", "__torch_dispatch__"})


# Modules that libraries keep as attributes (`torch.sys`, `odcourse.runtime.importlib`) and that a
# notebook may not reach that way either.
NOT_REACHABLE = frozenset({"importlib", "builtins", "subprocess", "multiprocessing", "threading", "_thread", "socket",
                           "ctypes", "gc", "inspect", "pickle", "marshal", "shelve", "runpy", "pkgutil", "linecache",
                           "posix", "concurrent", "asyncio", "selectors", "mmap", "pty", "fcntl", "atexit",
                           "tracemalloc", "faulthandler", "zipimport", "sysconfig"})
# Restricted modules whose names are distinctive enough to be recognised as attributes of others.
RESTRICTED_BY_NAME = ("sys", "os")


# A library's private (_name) parts are refused: they are where its internals are (torch._C,
# numpy._core, a library's private copy of joblib and its pickle loader), and no assignment needs
# one, except these, which an assignment hands out (a05's torchvision.models.detection._utils.BoxCoder).
PRIVATE_ALLOWED = frozenset({"torchvision.models.detection._utils"})


def private_refused(dotted: str) -> bool:
    """Whether the library path `dotted` goes through a private part not on PRIVATE_ALLOWED."""
    parts = dotted.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")) \
                and ".".join(parts[:i + 1]) not in PRIVATE_ALLOWED:
            return True
    return False


def module_allowed(name: str) -> bool:
    """Whether `import name` is allowed (the module and its package are on the list, and it is
    not one of the refused places inside them)."""
    parts = name.split(".")
    allowed = any(".".join(parts[:i]) in ALLOWED_MODULES for i in range(1, len(parts) + 1))
    return allowed and refused_inside(name) is None and not private_refused(name) and not parts[0].startswith("_") \
        or name == "__future__"


def refused_inside(dotted: str) -> str | None:
    """The refused place that `dotted` (a module or an attribute path) is, or is inside of."""
    parts = dotted.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix in REFUSED_INSIDE:
            return prefix
    return None
