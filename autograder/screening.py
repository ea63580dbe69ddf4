"""Reading a notebook before any of it runs: the constructs the grader refuses in every cell, and
the banned names each graded function reaches.

Refused (autograder/worker/policy.py has the lists), in any cell but the released notebook's own
unchanged cells (the setup cell):
- dynamic code and imports: exec, eval, compile, __import__, importlib, computed getattr/setattr;
- the interpreter's and the grader's internals: frames, code objects, dunder attributes outside a
  short list (__globals__, __code__, __subclasses__, __dict__...), sys.modules, gc, inspect, ctypes,
  torch._C, torch.ops, torch.library, and any private (_name) part of a library;
- processes, threads, signals, sockets, pickles: only the modules on the allow-list can be imported;
- changing a library (an attribute or item of a module or a library object assigned or deleted),
  using a module as a value (`m = [torch][0]`), binding a dunder name (`__name__ = ...`);
- binding a graded name anywhere but its own `def` (`box_iou = torchvision.ops.box_iou`).
A refused cell is not run; a graded function whose cell is refused, or whose code depends on a
statement of a refused cell, earns nothing, with a message naming the construct and its line.

Banned names (each suite's BANNED): the code a graded function reaches (its cell, and the
statements that bind or fill the globals it uses, transitively) is resolved name by name, aliases
followed, and each name compared by identity with the banned objects: `rpn.box_ops.box_iou` is
torchvision.ops.box_iou whatever it is called. A function found so earns nothing on any test.
"""
from __future__ import annotations

import ast
import functools
import importlib
import sys
import types
from dataclasses import dataclass, field

from .notebook import Cell, Located, neutralise, parse
from .worker import policy
from .worker.recording import ALLOW, OPERATOR

MAX_DESCRIPTION = 60


@dataclass
class Refusal:
    cell: int  # index of the cell in the notebook
    line: int
    construct: str  # what was refused, as the student wrote it (shortened)
    why: str  # the rule, in words

    def sentence(self) -> str:
        return f"`{self.construct}` (cell {self.cell + 1}, line {self.line}): {self.why}"


@dataclass
class Screening:
    refusals: list[Refusal] = field(default_factory=list)
    refused_cells: set = field(default_factory=set)
    course_cells: set = field(default_factory=set)  # the released notebook's own cells, unchanged
    banned: dict = field(default_factory=dict)  # graded function -> sorted banned names it reaches
    blocked: dict = field(default_factory=dict)  # graded function -> the sentence saying why it is not graded

    def cell_refused(self, index: int) -> bool:
        return index in self.refused_cells


# ------------------------------------------------------------------------------------------------
# resolving names to library objects, in the grading process (only allowed modules are imported)

_MISSING = object()
# What the grader may import to look names up: what it imports anyway to run a suite, and the
# standard library. Names in other packages (the course's helpers, matplotlib, scikit-image...)
# are judged by their spelling alone, which costs no import of theirs in the grading process.
LOOKED_UP = {"torch", "torchvision", "numpy", "math", "cmath", "statistics", "random", "itertools", "functools",
             "operator", "collections", "heapq", "bisect", "copy", "dataclasses", "enum", "typing", "abc", "string",
             "re", "json", "time", "datetime", "platform", "os", "sys", "pathlib", "io", "warnings", "contextlib",
             "textwrap", "fractions", "decimal", "numbers", "array", "struct", "glob", "shutil", "tempfile"}


@functools.lru_cache(maxsize=4096)
def resolve(dotted: str):
    """The library object a dotted name names, importing modules of LOOKED_UP as needed (or any
    module already imported); _MISSING if there is none, or it would need another import."""
    parts = dotted.split(".")
    if not policy.module_allowed(parts[0]) or (parts[0] not in LOOKED_UP and parts[0] not in sys.modules):
        return _MISSING
    try:
        value = importlib.import_module(parts[0])
    except Exception:
        return _MISSING
    for i, part in enumerate(parts[1:], start=1):
        try:
            value = getattr(value, part)
            continue
        except Exception:
            pass
        if not isinstance(value, types.ModuleType):
            return _MISSING
        name = f"{value.__name__}.{part}"
        if not policy.module_allowed(name) or (parts[0] not in LOOKED_UP and name not in sys.modules):
            return _MISSING
        try:
            value = importlib.import_module(name)
        except Exception:
            return _MISSING
    return value


def refused_objects() -> dict[int, str]:
    """id -> name of the refused places among the modules imported here (torch.ops, torch._C,
    numpy.load...; what is not imported cannot be reached through an imported module)."""
    found = {}
    for name in sorted(policy.REFUSED_INSIDE) + ["sys.modules", "sys._getframe", "os.system", "os.fork",
                                                 "builtins.exec", "builtins.eval", "builtins.__import__"]:
        parts = name.split(".")
        value = sys.modules.get(parts[0])
        try:
            for part in parts[1:]:
                value = getattr(value, part)
        except Exception:
            continue
        if value is not None:
            found[id(value)] = name
    return found


_RESTRICTED = {}  # id(module) -> its allowed attributes (sys, os, io, platform)


def restricted_modules() -> dict[int, tuple[str, frozenset]]:
    if not _RESTRICTED:
        for name, allowed in policy.ALLOWED_ATTRIBUTES.items():
            _RESTRICTED[id(importlib.import_module(name))] = (name, allowed)
    return _RESTRICTED


# ------------------------------------------------------------------------------------------------
# the notebook's names

@dataclass
class Symbols:
    """What the notebook's top-level names stand for: imports ("np" -> "numpy") and aliases of
    library attributes ("F" -> "torch.nn.functional"), each possibly bound several times."""

    targets: dict = field(default_factory=dict)  # name -> set of dotted names

    def bind(self, name: str, dotted: str) -> None:
        self.targets.setdefault(name, set()).add(dotted)

    def expand(self, dotted: str) -> set[str]:
        head, _, rest = dotted.partition(".")
        return {t + ("." + rest if rest else "") for t in self.targets.get(head, ())}


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    return parents


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 1] + "…"


def _import_bindings(node) -> list[tuple[str, str]]:
    """(bound name, dotted module or object) of an import statement."""
    if isinstance(node, ast.Import):
        return [(a.asname or a.name.split(".")[0], a.name if a.asname else a.name.split(".")[0]) for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [(a.asname or a.name, f"{node.module}.{a.name}") for a in node.names if a.name != "*"]
    return []


# ------------------------------------------------------------------------------------------------
# the rules

class CellReader:
    """Reads one cell's syntax tree against the policy; collects refusals."""

    def __init__(self, cell: Cell, tree: ast.Module, symbols: Symbols, graded: set[str], own: str | None):
        self.cell, self.tree, self.symbols, self.graded, self.own = cell, tree, symbols, graded, own
        self.parents = _parents(tree)
        self.refusals: list[Refusal] = []

    def refuse(self, node, construct: str, why: str) -> None:
        self.refusals.append(Refusal(self.cell.index, getattr(node, "lineno", 1), _short(construct), why))

    def read(self) -> list[Refusal]:
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self.imports(node)
            elif isinstance(node, ast.Name):
                self.name(node)
            elif isinstance(node, ast.Attribute):
                self.attribute(node)
            elif isinstance(node, ast.Call):
                self.call(node)
            elif isinstance(node, ast.Global):
                for name in node.names:
                    if name in self.graded or name.startswith("__"):
                        self.refuse(node, f"global {name}", "a graded function's name (or a dunder name) is bound by "
                                                            "its own def only")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.definition(node)
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)):
                self.library_change(node.value, node)
        self.module_bindings()
        return self.refusals

    # imports --------------------------------------------------------------------------------
    def imports(self, node) -> None:
        if isinstance(node, ast.ImportFrom) and (node.level or not node.module):
            self.refuse(node, "from . import", "relative imports are not available")
            return
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            self.refuse(node, f"from {node.module} import *", "a star import binds names the grader cannot see")
            return
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
        for module in modules:
            if not policy.module_allowed(module):
                self.refuse(node, f"import {module}", "this module is not available to notebook code (processes, "
                                                      "threads, signals, sockets, pickles, the interpreter's "
                                                      "internals and dynamic imports are not)")
                return
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                self.dotted_path(node, f"{node.module}.{alias.name}")

    # names ----------------------------------------------------------------------------------
    def name(self, node: ast.Name) -> None:
        if node.id in policy.REFUSED_BUILTINS or node.id in policy.NAMED_ATTRIBUTE_BUILTINS and not self._direct_call(node):
            if node.id in policy.NAMED_ATTRIBUTE_BUILTINS:
                self.refuse(node, node.id, "getattr, setattr, delattr and hasattr are allowed only as a call with a "
                                           "literal attribute name")
            elif node.id.startswith("__"):
                self.refuse(node, node.id, "the interpreter's internals are not available")
            else:
                self.refuse(node, node.id, "dynamic code and the interpreter's namespaces are not available")
            return
        if node.id.startswith("__") and node.id.endswith("__") and isinstance(node.ctx, (ast.Store, ast.Del)) \
                and not self._in_class_body(node):
            self.refuse(node, f"{node.id} = ...", "dunder names are the interpreter's, not the notebook's")
        unavailable = sorted(t for t in self.symbols.targets.get(node.id, ()) if not policy.module_allowed(t.split(".")[0]))
        if unavailable and not isinstance(self.parents.get(id(node)), (ast.Import, ast.ImportFrom)):
            parent = self.parents.get(id(node))
            if not (isinstance(parent, ast.Attribute) and parent.value is node):  # chains are judged whole
                self.refuse(node, node.id, f"{unavailable[0].split('.')[0]} is not available to notebook code")
                return
        if isinstance(node.ctx, ast.Load) and self.symbols.targets.get(node.id):
            parent = self.parents.get(id(node))
            used_as_base = isinstance(parent, ast.Attribute) and parent.value is node
            alias = isinstance(parent, ast.Assign) and parent.value is node and len(parent.targets) == 1 \
                and isinstance(parent.targets[0], ast.Name) and self._module_level(parent)
            if not used_as_base and not alias and self._is_module(node.id):
                self.refuse(node, node.id, "a module is used through its attributes, not passed around as a value")

    def _is_module(self, name: str) -> bool:
        return any(isinstance(resolve(t), types.ModuleType) for t in self.symbols.targets.get(name, ()))

    def _direct_call(self, node) -> bool:
        parent = self.parents.get(id(node))
        if not (isinstance(parent, ast.Call) and parent.func is node and len(parent.args) >= 2):
            return False
        literal = parent.args[1]
        return isinstance(literal, ast.Constant) and isinstance(literal.value, str)

    def _in_class_body(self, node) -> bool:
        parent = self.parents.get(id(node))
        while parent is not None and not isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                                             ast.ClassDef, ast.Module)):
            parent = self.parents.get(id(parent))
        return isinstance(parent, ast.ClassDef)

    def _module_level(self, statement) -> bool:
        return self.parents.get(id(statement)) is self.tree

    # attributes -----------------------------------------------------------------------------
    def attribute_name(self, node, attr: str, base_text: str) -> bool:
        """The attribute's own name against the rules; False if refused."""
        if attr.startswith("__") and attr.endswith("__") and attr not in policy.ALLOWED_DUNDER_ATTRIBUTES:
            self.refuse(node, f"{base_text}.{attr}", "this dunder attribute reaches the interpreter's internals")
            return False
        if attr in policy.FRAME_ATTRIBUTES:
            self.refuse(node, f"{base_text}.{attr}", "frames, code objects and raw memory are not available")
            return False
        return True

    def named_attribute(self, node, attr: str, base_text: str) -> bool:
        """An attribute name given as a string, read from an object the screening may not know:
        the name's own rules, and none of the names of refused places. False if refused."""
        if not self.attribute_name(node, attr, base_text):
            return False
        if policy.named_attribute_refused(attr):
            self.refuse(node, f"{base_text}.{attr}", "an attribute named in a string may not be private or the name "
                                                     "of a refused module")
            return False
        return True

    def attribute(self, node: ast.Attribute) -> None:
        base = _dotted(node.value)
        if not self.attribute_name(node, node.attr, base or "…"):
            return
        parent = self.parents.get(id(node))
        if isinstance(parent, ast.Attribute) and parent.value is node:
            return  # the whole chain is judged at its outermost attribute
        dotted = _dotted(node)
        if dotted:
            for full in self.symbols.expand(dotted):
                if not self.dotted_path(node, full):
                    return
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.library_change(node.value, node)
        elif dotted and isinstance(node.ctx, ast.Load):
            self.module_value(node, dotted, parent)

    def module_value(self, node, dotted: str, parent) -> None:
        alias = isinstance(parent, ast.Assign) and parent.value is node and len(parent.targets) == 1 \
            and isinstance(parent.targets[0], ast.Name) and self._module_level(parent)
        if alias or (isinstance(parent, ast.Call) and parent.func is node):
            return
        for full in self.symbols.expand(dotted):
            if isinstance(resolve(full), types.ModuleType):
                self.refuse(node, dotted, "a module is used through its attributes, not passed around as a value")
                return

    def dotted_path(self, node, full: str) -> bool:
        """A library path (imports expanded) against the refused places; False if refused."""
        parts = full.split(".")
        if not policy.module_allowed(parts[0]):
            self.refuse(node, full, f"{parts[0]} is not available to notebook code")
            return False
        for i in range(len(parts)):  # also what a library keeps of another: torch.nn.functional.torch.ops
            refused = policy.refused_inside(".".join(parts[i:]))
            if refused or (i and parts[i] in policy.NOT_REACHABLE):
                self.refuse(node, full, f"{refused or parts[i]} is not available to notebook code")
                return False
            restricted = policy.ALLOWED_ATTRIBUTES.get(parts[i]) if i and parts[i] in policy.RESTRICTED_BY_NAME else None
            if restricted is not None and i + 1 < len(parts) and parts[i + 1] not in restricted:
                self.refuse(node, full, f"only some of {parts[i]}'s attributes are available ({parts[i]}.{parts[i + 1]} "
                                        "is not)")
                return False
        if policy.private_refused(full):
            self.refuse(node, full, "the private (_name) parts of a library are not available")
            return False
        value = resolve(parts[0])
        restricted = restricted_modules()
        refused_ids = refused_objects()
        for i, part in enumerate(parts[1:], start=1):
            if value is _MISSING:
                return True
            if id(value) in restricted and part not in restricted[id(value)][1]:
                name = restricted[id(value)][0]
                self.refuse(node, full, f"only some of {name}'s attributes are available ({name}.{part} is not)")
                return False
            value = resolve(".".join(parts[:i + 1]))
            if value is not _MISSING and id(value) in refused_ids:
                self.refuse(node, full, f"this is {refused_ids[id(value)]}, which is not available to notebook code")
                return False
        return True

    def library_change(self, base, node) -> None:
        """An attribute or item of a library object assigned or deleted (a patch)."""
        dotted = _dotted(base)
        if dotted is None:
            return
        targets = self.symbols.expand(dotted)
        if any(resolve(t) is not _MISSING for t in targets):
            self.refuse(node, dotted + ("[…]" if isinstance(node, ast.Subscript) else "." + getattr(node, "attr", "")),
                        "changing a library (torch, numpy, builtins, the grader's) is not allowed")

    # calls ------------------------------------------------------------------------------------
    def call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in policy.NAMED_ATTRIBUTE_BUILTINS and len(node.args) >= 2:
            literal = node.args[1]
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                if self.named_attribute(node, literal.value, _dotted(node.args[0]) or "…"):
                    base = _dotted(node.args[0])
                    if base:
                        for full in self.symbols.expand(base):
                            self.dotted_path(node, f"{full}.{literal.value}")
                    if func.id in ("setattr", "delattr"):
                        self.library_change(node.args[0], node)
        dotted = _dotted(func)
        if dotted:
            for full in self.symbols.expand(dotted) | {dotted}:
                if full in policy.NAMED_ATTRIBUTE_CALLABLES:
                    literals = [a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                    if len(literals) != len(node.args) or node.keywords:
                        self.refuse(node, full, "allowed only with literal attribute names")
                    for literal in literals:
                        for attr in literal.value.split("."):
                            self.named_attribute(node, attr, "…")

    # definitions and bindings ---------------------------------------------------------------
    def definition(self, node) -> None:
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                names = [statement.name] if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) else [
                    t.id for t in getattr(statement, "targets", [getattr(statement, "target", None)])
                    if isinstance(t, ast.Name)]
                for name in names:
                    if name in policy.REFUSED_CLASS_DUNDERS:
                        self.refuse(statement, f"def {name}", "this special method runs at times the grader does "
                                                              "not control")

    def module_bindings(self) -> None:
        """Graded names bound anywhere but their own def; dunder names bound at the top level."""
        for statement in self.tree.body:
            for name, node in _bound_names(statement):
                if name in self.graded and not (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                                                and name == node.name):
                    self.refuse(node, f"{name} = …", f"{name} is graded: it is bound by its own def only")


def _bound_names(statement) -> list[tuple[str, ast.AST]]:
    """The top-level names a statement binds (or deletes), with the node that binds each."""
    found = []
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [(statement.name, statement)]
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return [(name, statement) for name, _ in _import_bindings(statement)]
    stack = [statement]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            if node is not statement:
                if not isinstance(node, ast.Lambda):
                    found.append((node.name, node))
                continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            found.append((node.id, node))
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue  # comprehension variables are local
        stack.extend(ast.iter_child_nodes(node))
    return found


# ------------------------------------------------------------------------------------------------
# the whole notebook

def screen(cells: list[Cell], located: dict[str, Located], banned: dict[str, list[str]],
           exempt: set[str], statements: list[dict]) -> Screening:
    """Screen every code cell (but the exempt ones: sources of the released notebook's own cells,
    unchanged) and find the banned names each graded function reaches. `statements` are the
    notebook's top-level statements as the worker would run them (notebook.statements)."""
    graded = set(located)
    own_cells = {loc.cell.index: name for name, loc in located.items() if loc.cell is not None}
    symbols = Symbols()
    parsed = {}
    for cell in cells:
        if cell.kind != "code":
            continue
        tree = parse(neutralise(cell.source))
        if tree is None:
            continue
        parsed[cell.index] = tree
        for statement in tree.body:
            for name, dotted in _import_bindings(statement):
                symbols.bind(name, dotted)
    for cell in cells:  # aliases of library attributes: F = torch.nn.functional
        tree = parsed.get(cell.index)
        for statement in tree.body if tree else ():
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
                    and isinstance(statement.targets[0], ast.Name):
                dotted = _dotted(statement.value)
                if dotted and symbols.expand(dotted):
                    for full in symbols.expand(dotted):
                        symbols.bind(statement.targets[0].id, full)
    result = Screening()
    for cell in cells:
        if cell.kind == "code" and _normal(cell.source) in exempt:
            result.course_cells.add(cell.index)
        if cell.kind != "code" or _normal(cell.source) in exempt:
            continue
        source = neutralise(cell.source)
        tree = parsed.get(cell.index)
        if tree is None:
            problem = unreadable(source)
            if problem:
                result.refusals.append(Refusal(cell.index, 1, "the cell", problem))
                result.refused_cells.add(cell.index)
            continue
        refusals = CellReader(cell, tree, symbols, graded, own_cells.get(cell.index)).read()
        if refusals:
            result.refusals += refusals
            result.refused_cells.add(cell.index)
    for name in located:
        # A function whose own cell is refused, or that needs a name only a refused cell defines
        # (it would fail on it anyway), is not graded, and the message says why.
        needs = closure(name, located[name], statements, fills=False)
        cell_refusals = [r for r in result.refusals if r.cell in {s["cell"] for s in needs}
                         or (located[name].cell is not None and r.cell == located[name].cell.index)]
        if cell_refusals:
            first = cell_refusals[0]
            via = "" if located[name].cell is not None and first.cell == located[name].cell.index else \
                f" (it depends on cell {first.cell + 1}, which was not run)"
            result.blocked[name] = f"{name} was not graded: it uses {first.sentence()}{via}"
        reached = closure(name, located[name], statements)
        uses = banned_uses("".join(s["code"] for s in reached), symbols, banned.get(name, []))
        if uses:
            result.banned[name] = uses
    return result


def _normal(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.replace("\r\n", "\n").strip().splitlines())


def exempt_sources(release_cells: list[Cell]) -> set[str]:
    """The released notebook's own code cells that a student does not write in (not solution
    cells): unchanged, they are course code and not screened."""
    return {_normal(c.source) for c in release_cells if c.kind == "code" and not c.solution}


def unreadable(source: str) -> str | None:
    """Why a cell's code cannot be read, or None if it can."""
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in source):
        return "the cell holds characters that are not valid text (lone surrogates)"
    if "\x00" in source:
        return "the cell holds a NUL character"
    if parse(source) is None:
        return "the cell's code cannot be read (a syntax error, or nesting too deep for the parser)"
    return None


def closure(name: str, located: Located, statements: list[dict], fills: bool = True) -> list[dict]:
    """The statements a graded function's code reaches: those of its own cell, then, for each
    global name they use, the statements that bind it (and with `fills` those that fill it,
    `T[k] = ...`), transitively."""
    if located.cell is None:
        return []
    chosen = [s for s in statements if s["cell"] == located.cell.index]
    binders: dict[str, list[dict]] = {}
    for statement in statements:
        for bound in list(statement.get("binds", ())) + (list(statement.get("fills", ())) if fills else []):
            binders.setdefault(bound, []).append(statement)
    seen = {id(s) for s in chosen}
    queue = list(chosen)
    while queue:
        statement = queue.pop()
        for used in statement.get("uses", ()):
            for other in binders.get(used, ()):
                if id(other) not in seen:
                    seen.add(id(other))
                    chosen.append(other)
                    queue.append(other)
    return chosen


def banned_uses(code: str, symbols: Symbols, banned: list[str]) -> list[str]:
    """The banned entries (modules, callables, dotted) that `code` refers to, by name (imports and
    aliases expanded) or by identity of the object it names."""
    rules = [r for r in banned if not r.startswith(ALLOW) and OPERATOR not in r]
    allowed = [r[len(ALLOW):] for r in banned if r.startswith(ALLOW)]
    if not rules:
        return []
    tree = parse(code)
    if tree is None:
        return []
    local = Symbols({k: set(v) for k, v in symbols.targets.items()})
    for node in ast.walk(tree):
        for bound, dotted in _import_bindings(node):
            local.bind(bound, dotted)
    found = []
    bases = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        names = set()
        if isinstance(node, (ast.Attribute, ast.Name)) and id(node) not in bases:  # each chain once
            dotted = _dotted(node)
            if dotted:
                parts = dotted.split(".")
                names |= local.expand(dotted) or {dotted}
                for end in range(1, len(parts)):  # what the chain passes through: `f.box_iou.__call__`
                    for prefix in local.expand(".".join(parts[:end])):
                        value = resolve(prefix)
                        if value is not _MISSING and not isinstance(value, types.ModuleType):
                            names.add(prefix)
        elif isinstance(node, ast.ImportFrom) and node.module:  # (`import m as x` counts where x is used)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        found += [(full, resolve(full) if "." in full else _MISSING) for full in names]
    # The banned objects, among the modules imported by now (importing a banned module only to
    # compare would cost time: what the notebook's names reach is imported above).
    rule_objects = [(rule, _imported(rule)) for rule in rules]
    allowed_objects = [_imported(a) for a in allowed]
    used = set()
    for full, value in found:
        if any(full == a or full.startswith(a + ".") for a in allowed):
            continue
        if value is not _MISSING and any(value is a for a in allowed_objects):
            continue
        for rule, rule_object in rule_objects:
            if full == rule or full.startswith(rule + ".") or _same(value, rule, rule_object):
                used.add(rule)
    return sorted(used)


def _imported(dotted: str):
    """The object a dotted name names among the modules already imported, or _MISSING."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        value = sys.modules.get(".".join(parts[:split]))
        if value is None:
            continue
        try:
            for part in parts[split:]:
                value = getattr(value, part)
        except Exception:
            return _MISSING
        return value
    return _MISSING


def _same(value, rule: str, rule_object) -> bool:
    """Whether a resolved object is the banned one, or lives in the banned module."""
    if value is _MISSING or rule_object is _MISSING:
        return False
    if value is rule_object:
        return True
    if isinstance(rule_object, types.ModuleType):
        module = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        return isinstance(module, str) and (module == rule or module.startswith(rule + "."))
    return False
