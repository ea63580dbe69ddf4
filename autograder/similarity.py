"""Which students share code, function by function: the similarity report of a graded class.

    python -m autograder similarity <assignment-id> <course-dir> [--against DIR] -o report.html

For every graded function, the code each student wrote for it (the cell `notebook.locate` finds
in submitted/<student>/<id>/, read and never run) is compared with every other student's, and with
the functions of the files in --against (known public implementations, .py or .ipynb).

What copying changes is normalised away before comparing. The cell is parsed (comments and
layout vanish); docstrings and other bare strings, signatures, annotations and decorators are
dropped; every name the code binds becomes one placeholder (renamed variables look alike), while
the names it takes from outside (`torch`, `.clamp`, keyword arguments) stay; the statements of
each block are put in a canonical order wherever their data flow allows (independent statements
written in another order look alike). The result is a stream of syntax tokens.

Fingerprints: every run of K tokens is hashed and copydetect's winnowing (MOSS's algorithm)
keeps a few of them: two codes that share a passage of K + WINDOW - 1 tokens or more are
guaranteed to share a fingerprint. Runs that occur in the released notebook (what every student
got) count for nobody. A pair that shares a fingerprint is scored exactly: the similarity is the
share of both codes' own tokens (outside the released code) that lie in runs of K tokens found in
the other code; 1 is the same code up to names, order, comments and layout; a pair sharing no
fingerprint scores 0.

Writes report.html (pairs ranked per function, the two codes side by side, shared lines marked;
no network needed to open it) and report.json beside it: a list of
{"function", "students": [a, b], "similarity"}, most similar first, every pair of students that
both wrote code of their own for the function, and every public implementation that shares a
fingerprint with a student's code (as `against:<file>::<name>`). A copy of the top pairs goes to
<course>/autograder-similarity/<id>.json for the class report.
"""
from __future__ import annotations

import ast
import base64
import datetime
import hashlib
import heapq
import html
import io
import itertools
import json
import pathlib
import re
from dataclasses import dataclass, field

import numpy as np

from . import assignment as assignments
from .classreport import results
from .notebook import SubmissionError, locate, neutralise, parse, read_cells
from .result import clean

K = 12  # tokens in a fingerprinted run: shorter shared passages are idioms, not copying
WINDOW = 5  # winnowing window: a shared passage of K + WINDOW - 1 tokens always shares a fingerprint
MIN_TOKENS = 30  # less code of its own than this (a one-line function) cannot tell copying from the one way to write it
LIKELY = 0.5  # pairs at or above this are marked for the instructor to read
SHOWN_PER_FUNCTION = 15  # pairs shown with their code: every pair at or above LIKELY, at least this many,
MAX_SHOWN_PER_FUNCTION = 100  # at most this many (report.json has them all)
TOP_FOR_CLASS_REPORT = 20
MAX_AGAINST_BYTES = 2 * 2**20
MAX_REORDERED = 400  # statements in one block put in canonical order (more keep their order)
AGAINST = "against:"

_MUTATORS = {"append", "extend", "insert", "pop", "remove", "clear", "update", "add", "discard", "sort",
             "reverse", "setdefault", "popitem", "appendleft", "extendleft", "popleft"}
_EXITS = (ast.Return, ast.Raise, ast.Break, ast.Continue, ast.Global, ast.Nonlocal)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_SKIPPED_FIELDS = {"ctx", "type_comment", "kind", "type_ignores", "decorator_list", "returns", "annotation",
                   "type_params", "args"}  # `args` of a def or lambda only: see _fields
PLACEHOLDER, SELF = "v", "SELF"


class Unreadable(Exception):
    """The code cannot be compared; the message says why."""


# normalising ---------------------------------------------------------------------------------
def _bound_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(every name the code binds, the names bound only by imports)."""
    bound, imported, other = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            other.add(node.id)
        elif isinstance(node, ast.arg):
            other.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            other.add(node.name)
        elif isinstance(node, ast.alias):
            imported.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            other.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            other.add(node.name)
    bound = other | imported
    return bound, imported - other


def _is_bare_string(node: ast.AST) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, (str, bytes)))


def _effects(node: ast.stmt, local: set[str], imported: set[str], memo: dict) -> tuple[set, set, bool]:
    """(names read, names written, whether it exits) of a statement, for ordering independent
    statements. Writes: stores, items and attributes set (`t[k] = v` writes t), in-place methods
    (`x.append(...)`, `x.add_(...)`). Exits: it leaves its block (return, raise, break, continue),
    changes scoping (global, nonlocal) or yields, outside nested functions: nothing moves across it.
    Statements inside it are taken from `memo`, so a cell is walked once however deep its blocks."""
    if id(node) in memo:
        return memo[id(node)]
    reads, writes = set(), set()
    exits = isinstance(node, _EXITS)
    stack = [(child, False) for child in ast.iter_child_nodes(node)]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        writes.add(node.name)
    while stack:
        sub, in_lambda = stack.pop()
        if isinstance(sub, ast.stmt):
            inner_reads, inner_writes, inner_exits = _effects(sub, local, imported, memo)
            reads |= inner_reads
            writes |= inner_writes
            exits = exits or (inner_exits and not isinstance(node, _SCOPES))
            continue
        if isinstance(sub, ast.Name):
            (reads if isinstance(sub.ctx, ast.Load) else writes).add(sub.id)
        elif isinstance(sub, ast.alias):
            writes.add(sub.asname or sub.name.split(".")[0])
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            writes.add(sub.name)
        elif isinstance(sub, (ast.Subscript, ast.Attribute)) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            base = sub.value
            while isinstance(base, (ast.Subscript, ast.Attribute)):
                base = base.value
            if isinstance(base, ast.Name):
                writes.add(base.id)
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute):
            base = sub.func.value
            method = sub.func.attr
            if (isinstance(base, ast.Name) and base.id in local and base.id not in imported
                    and (method in _MUTATORS or (method.endswith("_") and not method.startswith("_")))):
                writes.add(base.id)
        elif isinstance(sub, (ast.Yield, ast.YieldFrom, ast.Await)) and not in_lambda \
                and not isinstance(node, _SCOPES):
            exits = True
        in_lambda = in_lambda or isinstance(sub, ast.Lambda)
        stack += [(child, in_lambda) for child in ast.iter_child_nodes(sub)]
    memo[id(node)] = (reads, writes, exits)
    return reads, writes, exits


class _Normaliser:
    """Turns one unit of code (a cell, or a public function) into canonical tokens, each with the
    line of the source it comes from."""

    def __init__(self, tree: ast.Module, own_name: str | None, context: set[str] = frozenset()):
        bound, self.imported = _bound_names(tree)
        # Names bound by imports alone are modules and library calls: they stay what they are.
        self.local = (bound | set(context)) - self.imported
        self.own_name = own_name
        self.memo: dict = {}  # id(statement) -> its effects

    def tokens(self, tree: ast.Module) -> tuple[list[str], list[int]]:
        tokens, lines = [], []
        for toks, lns in self._block(tree.body, 1):
            tokens += toks
            lines += lns
        return tokens, lines

    def _name(self, name: str) -> str:
        if name == self.own_name:
            return SELF
        return PLACEHOLDER if name in self.local else name

    def _block(self, statements: list, line: int) -> list[tuple[list[str], list[int]]]:
        """The statements of a block as (tokens, lines) each, in canonical order: a topological
        order of their dependencies, the smallest tokens first where the order is free."""
        items = []
        for statement in statements:
            if _is_bare_string(statement):
                continue
            toks, lns = self._emit(statement)
            items.append((toks, lns) + _effects(statement, self.local, self.imported, self.memo))
        count = len(items)
        if count > MAX_REORDERED:  # no student writes such a block: it keeps its order
            return [(item[0], item[1]) for item in items]
        after = [[] for _ in range(count)]  # after[i]: the statements that must stay after i
        waiting = [0] * count  # how many statements must come before each
        for j in range(count):
            reads_j, writes_j, exit_j = items[j][2], items[j][3], items[j][4]
            for i in range(j):
                reads_i, writes_i, exit_i = items[i][2], items[i][3], items[i][4]
                if exit_i or exit_j or writes_i & (reads_j | writes_j) or writes_j & reads_i:
                    after[i].append(j)
                    waiting[j] += 1
        ready = [(items[j][0], j) for j in range(count) if waiting[j] == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, chosen = heapq.heappop(ready)
            order.append(chosen)
            for j in after[chosen]:
                waiting[j] -= 1
                if waiting[j] == 0:
                    heapq.heappush(ready, (items[j][0], j))
        return [(items[j][0], items[j][1]) for j in order]

    def _emit(self, root: ast.AST) -> tuple[list[str], list[int]]:
        """Pre-order tokens of a statement (iterative: deep expressions cannot exhaust the stack);
        the blocks inside it are canonicalised by `_block`, between braces."""
        tokens, lines = [], []
        stack: list = [(root, getattr(root, "lineno", 1))]
        while stack:
            node, line = stack.pop()
            if isinstance(node, list):  # tokens already made: a block, or an attribute's name
                for token, token_line in node:
                    tokens.append(token)
                    lines.append(token_line)
                continue
            line = getattr(node, "lineno", line)
            emitted = self._token(node)
            if emitted is not None:
                tokens.append(emitted)
                lines.append(line)
            children = []
            for value in self._fields(node):
                if isinstance(value, list) and value and all(isinstance(v, ast.stmt) for v in value):
                    flat = [("{", line)]
                    for toks, lns in self._block(value, line):
                        flat += zip(toks, lns)
                    children.append((flat + [("}", line)], line))
                elif isinstance(value, list):
                    children += [(v, line) for v in value if isinstance(v, ast.AST)]
                else:
                    children.append((value, line))
            if isinstance(node, ast.Attribute):
                children.append(([("." + node.attr, line)], line))
            stack += reversed(children)
        return tokens, lines

    @staticmethod
    def _fields(node: ast.AST):
        """The children worth a token: sub-trees and lists, without contexts, annotations,
        decorators and a def's or lambda's parameters."""
        for name in node._fields:
            if name in _SKIPPED_FIELDS and (name != "args" or isinstance(
                    node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))):
                continue
            value = getattr(node, name, None)
            if isinstance(value, (ast.AST, list)):
                yield value

    def _token(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, (str, bytes)):
                return "S"
            if isinstance(value, int) and value.bit_length() > 64:
                return "BIGINT"  # its decimal digits may be too many to write out
            return repr(value)[:40]
        if isinstance(node, ast.Attribute):
            return None  # its value's tokens, then ".attr"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return "def"
        if isinstance(node, ast.ClassDef):
            return "class"
        if isinstance(node, ast.keyword):
            return f"kw:{node.arg or '**'}"
        if isinstance(node, ast.alias):
            return f"import:{node.name}"
        if isinstance(node, ast.ImportFrom):
            return f"from:{node.module or ''}"
        if isinstance(node, (ast.Load, ast.Store, ast.Del)):
            return None
        return type(node).__name__


def normalise(source: str, own_name: str | None, context: set[str] = frozenset()) -> tuple[list[str], list[int]]:
    """Canonical tokens of a cell's (or a public function's) code, and the source line of each;
    Unreadable when the code cannot be parsed or is too deeply nested to walk. `own_name` (the graded
    function) becomes SELF; `context` are names bound around the code, which become placeholders."""
    tree = parse(neutralise(source))
    if tree is None:
        raise Unreadable("its cell cannot be parsed (a syntax error, or code nested too deeply)")
    try:
        return _Normaliser(tree, own_name, context).tokens(tree)
    except (RecursionError, MemoryError, ValueError):
        raise Unreadable("its code is nested too deeply or too large to compare") from None


# fingerprints --------------------------------------------------------------------------------
_TOKEN_IDS: dict[str, int] = {}
_BASE = np.uint64(1099511628211)


def _token_id(token: str) -> int:
    found = _TOKEN_IDS.get(token)
    if found is None:
        digest = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        found = _TOKEN_IDS[token] = int.from_bytes(digest, "little")
    return found


def kgram_hashes(tokens: list[str]) -> np.ndarray:
    """The hash of every run of K tokens (deterministic across runs and machines, unlike the
    salted `hash()` copydetect uses; 53 bits, exact in copydetect's float window)."""
    count = len(tokens) - K + 1
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    ids = np.array([_token_id(t) for t in tokens], dtype=np.uint64)
    hashes = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(K):
            hashes = hashes * _BASE + ids[offset:offset + count]
    return (hashes >> np.uint64(11)).astype(np.int64)


def _winnowed(hashes: np.ndarray) -> np.ndarray:
    from copydetect.utils import winnow

    if len(hashes) == 0:
        return hashes
    selected, _ = winnow(hashes, WINDOW, remove_duplicates=False)
    return np.asarray(selected, dtype=np.int64)


_RUN = np.ones(K, dtype=np.int8)


def _covered(matches: np.ndarray, length: int) -> np.ndarray:
    """Tokens covered by the runs of K tokens starting where `matches` is true."""
    if length == 0 or len(matches) == 0:
        return np.zeros(length, dtype=bool)
    return np.convolve(matches.view(np.int8), _RUN, "full")[:length] > 0


@dataclass
class Unit:
    """One student's code for one graded function (or one public implementation)."""

    owner: str
    function: str
    source: str
    tokens: list[str]
    lines: np.ndarray
    hashes: np.ndarray  # every run of K tokens
    released: np.ndarray  # per run: found in the released notebook
    own: np.ndarray  # per token: outside every released run
    fingerprints: set = field(default_factory=set)
    distinct: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # sorted run hashes
    own_tokens: int = 0

    @classmethod
    def build(cls, owner: str, function: str, source: str, own_name: str | None, released: set,
              context: set[str] = frozenset()) -> "Unit":
        tokens, lines = normalise(source, own_name, context)
        hashes = kgram_hashes(tokens)
        in_release = np.isin(hashes, np.fromiter(released, dtype=np.int64, count=len(released))) \
            if released else np.zeros(len(hashes), dtype=bool)
        own = ~_covered(in_release, len(tokens))
        winnowed = _winnowed(hashes)
        fingerprints = set(winnowed.tolist()) - released
        return cls(owner, function, source, tokens, np.array(lines, dtype=np.int64), hashes, in_release, own,
                   fingerprints, np.unique(hashes), int(own.sum()))

    def shared_with(self, other: "Unit") -> np.ndarray:
        """Per token: own tokens in a run of K tokens that the other code also has."""
        if len(other.distinct) == 0:
            return np.zeros(len(self.tokens), dtype=bool)
        where = other.distinct.searchsorted(self.hashes)
        where[where == len(other.distinct)] = 0
        matches = other.distinct[where] == self.hashes
        matches &= ~self.released
        return _covered(matches, len(self.tokens)) & self.own


def similarity(a: Unit, b: Unit) -> tuple[float, np.ndarray, np.ndarray]:
    """(similarity from 0 to 1, a's shared tokens, b's shared tokens)."""
    shared_a, shared_b = a.shared_with(b), b.shared_with(a)
    total = a.own_tokens + b.own_tokens
    return ((int(shared_a.sum()) + int(shared_b.sum())) / total if total else 0.0), shared_a, shared_b


# reading a class -----------------------------------------------------------------------------
def released_runs(spec: assignments.Assignment) -> set[int]:
    """The runs of K tokens of every code cell of the released notebook: shared by all students."""
    runs: set[int] = set()
    try:
        cells = read_cells(spec.release)
    except SubmissionError:
        return runs
    names = {grade_id: name for name, grade_id in spec.functions.items()}
    for cell in cells:
        if cell.kind != "code":
            continue
        try:
            tokens, _ = normalise(cell.source, names.get(cell.grade_id))
        except Unreadable:
            continue
        runs |= set(kgram_hashes(tokens).tolist())
    return runs


def released_stubs(spec: assignments.Assignment) -> dict[str, list[str]]:
    """graded function -> the tokens of its cell as released (the stub a student may leave)."""
    try:
        cells = read_cells(spec.release)
    except SubmissionError:
        return {}
    stubs = {}
    for name, grade_id in spec.functions.items():
        located = locate(cells, name, grade_id)
        if located.cell is not None:
            try:
                stubs[name] = normalise(located.cell.source, name)[0]
            except Unreadable:
                pass
    return stubs


def student_units(spec: assignments.Assignment, course: pathlib.Path, released: set,
                  stubs: dict[str, list[str]] | None = None) \
        -> tuple[dict[str, list[Unit]], dict[str, list[str]], list[str]]:
    """(function -> units, student -> what was skipped and why, students)."""
    stubs = released_stubs(spec) if stubs is None else stubs
    from .classroom import submissions

    units: dict[str, list[Unit]] = {name: [] for name in spec.functions}
    skipped: dict[str, list[str]] = {}
    found = submissions(course, spec.id)
    for student, path in found.items():
        try:
            cells = read_cells(path)
        except SubmissionError as error:
            skipped.setdefault(student, []).append(f"the notebook is unreadable: {error}")
            continue
        for name, grade_id in spec.functions.items():
            # Only cells that could be the function's (by metadata, cell id, or a mention of its
            # name) are given to `locate`, which parses each cell it is given: the same answer, faster.
            maybe = [c for c in cells if c.kind == "code" and (grade_id in (c.grade_id, c.cell_id) or name in c.source)]
            located = locate(maybe, name, grade_id)
            if located.cell is None:
                skipped.setdefault(student, []).append(f"`{name}`: no cell defines it")
                continue
            try:
                unit = Unit.build(student, name, located.cell.source, name, released)
            except Unreadable as error:
                skipped.setdefault(student, []).append(f"`{name}`: {error}")
                continue
            if unit.own_tokens == 0 or unit.tokens == stubs.get(name):
                skipped.setdefault(student, []).append(f"`{name}`: left as released (nothing of its own)")
            elif unit.own_tokens < MIN_TOKENS or not unit.fingerprints:
                skipped.setdefault(student, []).append(
                    f"`{name}`: {unit.own_tokens} tokens of its own, too short to tell copying from the one way "
                    "to write it")
            else:
                units[name].append(unit)
    return units, skipped, sorted(found)


def against_units(folder: pathlib.Path, released: set) -> tuple[list[Unit], list[str]]:
    """Every top-level function and class of the .py and .ipynb files under `folder`."""
    units, skipped = [], []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".py", ".ipynb") and p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if path.stat().st_size > MAX_AGAINST_BYTES:
            skipped.append(f"{relative}: over {MAX_AGAINST_BYTES // 2**20} MB")
            continue
        if path.suffix == ".ipynb":
            try:
                sources = [c.source for c in read_cells(path) if c.kind == "code"]
            except SubmissionError as error:
                skipped.append(f"{relative}: {error}")
                continue
        else:
            try:
                sources = [path.read_text(encoding="utf-8", errors="replace")]
            except OSError as error:
                skipped.append(f"{relative}: {error.strerror}")
                continue
        for source in sources:
            tree = parse(neutralise(source))
            if tree is None:
                skipped.append(f"{relative}: a part cannot be parsed")
                continue
            code = neutralise(source)
            bound, imported = _bound_names(tree)
            context = bound - imported
            for node in tree.body:
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    continue
                segment = ast.get_source_segment(code, node) or ""
                try:
                    unit = Unit.build(f"{AGAINST}{relative}::{node.name}", "", segment, node.name, released, context)
                except Unreadable as error:
                    skipped.append(f"{relative}::{node.name}: {error}")
                    continue
                if unit.own_tokens >= MIN_TOKENS and unit.fingerprints:
                    units.append(unit)
    return units, skipped


def _scores(course: pathlib.Path, assignment: str) -> dict[str, dict[str, tuple[float, float]]]:
    """student -> function -> (points, max), from the results `class` kept."""
    return {student: result.points_by_function() for student, result in results(course, assignment).items()}


# comparing -----------------------------------------------------------------------------------
@dataclass
class Pair:
    function: str
    a: Unit
    b: Unit
    similarity: float

    @property
    def students(self) -> list[str]:
        return [self.a.owner, self.b.owner]


def _pairs(units: list[Unit]) -> list[Pair]:
    """Every pair of units (one function), scored where they share a fingerprint, else 0."""
    by_fingerprint: dict[int, list[int]] = {}
    for index, unit in enumerate(units):
        for fingerprint in unit.fingerprints:
            by_fingerprint.setdefault(fingerprint, []).append(index)
    candidates = set()
    for holders in by_fingerprint.values():
        candidates.update(itertools.combinations(holders, 2))
    # The same score as `similarity`, faster for many pairs: each run hash of the function gets a
    # small number, and each unit a table of the numbers it holds.
    counts = [len(u.hashes) for u in units]
    distinct, numbers = np.unique(np.concatenate([u.hashes for u in units]) if units else np.zeros(0, np.int64),
                                  return_inverse=True)
    numbers = np.split(numbers.reshape(-1), np.cumsum(counts)[:-1]) if units else []
    holds = np.zeros((len(units), len(distinct)), dtype=bool)
    for index, held in enumerate(numbers):
        holds[index, held] = True

    def shared(i: int, j: int) -> int:
        unit = units[i]
        matches = holds[j][numbers[i]] & ~unit.released
        return int((_covered(matches, len(unit.tokens)) & unit.own).sum())

    pairs = []
    for i, j in itertools.combinations(range(len(units)), 2):
        a, b = units[i], units[j]
        total = a.own_tokens + b.own_tokens
        score = (shared(i, j) + shared(j, i)) / total if (i, j) in candidates and total else 0.0
        if a.owner > b.owner:
            a, b = b, a
        pairs.append(Pair(a.function, a, b, round(score, 4)))
    return pairs


def _against_pairs(units: list[Unit], public: list[Unit]) -> list[Pair]:
    pairs = []
    index: dict[int, list[int]] = {}
    for position, unit in enumerate(public):
        for fingerprint in unit.fingerprints:
            index.setdefault(fingerprint, []).append(position)
    for unit in units:
        hits = sorted({p for f in unit.fingerprints for p in index.get(f, [])})
        for position in hits:
            score = round(similarity(unit, public[position])[0], 4)
            if score > 0:
                pairs.append(Pair(unit.function, unit, public[position], score))
    return pairs


@dataclass
class Report:
    assignment: str
    course: pathlib.Path
    pairs: list[Pair]
    students: list[str]
    compared: dict[str, int]  # function -> students compared
    skipped: dict[str, list[str]]
    against: pathlib.Path | None = None
    against_count: int = 0
    against_skipped: list[str] = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    seconds: float = 0.0

    def json(self) -> list[dict]:
        return [{"function": p.function, "students": p.students, "similarity": p.similarity} for p in self.pairs]


def compare(assignment: str, course: pathlib.Path, against: pathlib.Path | None = None) -> Report:
    """Compare every pair of submissions (and each with the --against folder), most similar first."""
    import time

    start = time.perf_counter()
    spec = assignments.load(assignment)
    released = released_runs(spec)
    units, skipped, students = student_units(spec, course, released)
    public, against_skipped = against_units(against, released) if against is not None else ([], [])
    pairs = []
    for function in spec.functions:
        pairs += _pairs(units[function])
        pairs += _against_pairs(units[function], public)
    pairs.sort(key=lambda p: (-p.similarity, p.function, p.students))
    return Report(assignment, course, pairs, students, {f: len(u) for f, u in units.items()}, skipped, against,
                  len(public), against_skipped, _scores(course, assignment), time.perf_counter() - start)


# rendering -----------------------------------------------------------------------------------
def _e(text, limit: int = 300) -> str:
    return html.escape(clean(text, limit))


def _code(unit: Unit, shared: np.ndarray) -> str:
    """The unit's code, line by line: lines holding shared tokens marked, lines whose tokens all
    come from the released notebook greyed."""
    marked = set(unit.lines[shared].tolist())
    own = set(unit.lines[unit.own].tolist())
    given = set(unit.lines.tolist()) - own
    rows = []
    for number, line in enumerate(clean(unit.source, 60000).split("\n"), start=1):
        style = " class='shared'" if number in marked else " class='given'" if number in given else ""
        rows.append(f"<span{style}><i>{number:>3}</i> {html.escape(line)}</span>")
    return "<pre>" + "".join(rows) + "</pre>"


def _who(report: Report, unit: Unit) -> str:
    if unit.owner.startswith(AGAINST):
        return f"<span class='public'>{_e(unit.owner.removeprefix(AGAINST))}</span>"
    got = report.scores.get(unit.owner, {}).get(unit.function)
    points = f" <small>({got[0]:g}/{got[1]:g} points)</small>" if got else ""
    return f"<b>{_e(unit.owner, 200)}</b>{points}"


def _histogram(report: Report) -> str:
    """Distribution of the pairs' similarity per function, as an embedded PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    functions = [f for f in report.compared if report.compared[f] > 1]
    if not functions:
        return ""
    figure, axis = plt.subplots(figsize=(8, 2.6), dpi=100)
    bins = np.linspace(0, 1, 41)
    for function in functions:
        values = [p.similarity for p in report.pairs if p.function == function and not p.b.owner.startswith(AGAINST)]
        axis.hist(values, bins=bins, histtype="step", linewidth=1.5, label=function)
    axis.axvline(LIKELY, color="#b03a2e", linestyle="--", linewidth=1)
    axis.yaxis.get_major_locator().set_params(integer=True)
    axis.set_xlabel("similarity of a pair of students")
    axis.set_ylabel("pairs")
    axis.legend(fontsize=8, ncols=min(3, len(functions)), frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='distribution of the pairs' similarity' src='data:image/png;base64,{data}'>"


STYLE = ("body{font-family:sans-serif;max-width:84em;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse}td,th{padding:.25em .6em;text-align:left;vertical-align:top}"
         "tr:nth-child(even){background:#f6f6f6}.bar{display:inline-block;height:.7em;background:#2e86c1}"
         ".likely .bar{background:#b03a2e}.likely td:first-child{color:#b03a2e;font-weight:bold}"
         ".side{display:grid;grid-template-columns:1fr 1fr;gap:1em}.side>div{min-width:0}pre{font-size:12px;"
         "background:#fbfbfb;border:1px solid #ddd;padding:.5em;overflow-x:auto;white-space:pre}"
         "pre span{display:block;min-height:1.2em}pre i{color:#999;font-style:normal}.shared{background:#fde2b3}"
         ".given{color:#999}.public{color:#6c3483}"
         "details summary{cursor:pointer}small{color:#555}")


def render(report: Report) -> str:
    e = _e
    parts = [f"<!doctype html><meta charset='utf-8'><title>{e(report.assignment)}: similarity</title>"
             f"<style>{STYLE}</style><h1>{e(report.assignment)}: who shares code with whom</h1>"]
    compared = ", ".join(f"{e(f)} {n}" for f, n in report.compared.items())
    parts.append(f"<p>{len(report.students)} submissions; students compared per function: {compared}. "
                 f"Code is compared after normalising comments, layout, names and the order of independent "
                 f"statements, without the released notebook's own code. A pair's similarity is the share of "
                 f"both codes' own tokens found in runs of {K} tokens the other code also has; pairs at "
                 f"{LIKELY:g} or above are marked. Open a pair to see the two codes: shared lines are "
                 f"<span class='shared'>marked</span>, lines the released notebook gave everyone are "
                 f"<span class='given'>grey</span>. A high score says where to look, not what happened: "
                 f"read the code. Computed in {report.seconds:.1f} s on "
                 f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}.</p>")
    if report.against is not None:
        parts.append(f"<p>Also compared with {report.against_count} functions from "
                     f"{e(str(report.against), 500)} (shown in <span class='public'>purple</span>).</p>")
    parts.append(_histogram(report))
    for function in report.compared:
        pairs = [p for p in report.pairs if p.function == function]
        likely = [p for p in pairs if p.similarity >= LIKELY]
        shown = pairs[:min(MAX_SHOWN_PER_FUNCTION, max(SHOWN_PER_FUNCTION, len(likely)))]
        more = f" The {len(shown)} most similar are shown; report.json lists them all." if len(shown) < len(pairs) else ""
        parts.append(f"<h2>{e(function)}</h2><p>{len(likely)} pair(s) at {LIKELY:g} or above, "
                     f"of {len(pairs)} compared.{more}</p>")
        if not shown:
            continue
        parts.append("<table><tr><th>similarity</th><th>pair</th></tr>")
        for pair in shown:
            score, shared_a, shared_b = similarity(pair.a, pair.b)
            klass = " class='likely'" if pair.similarity >= LIKELY else ""
            parts.append(
                f"<tr{klass}><td>{pair.similarity:.2f} <span class='bar' style='width:{pair.similarity * 6:.2f}em'>"
                f"</span></td><td><details><summary>{_who(report, pair.a)} and {_who(report, pair.b)}: "
                f"{int(shared_a.sum()) + int(shared_b.sum())} of {pair.a.own_tokens + pair.b.own_tokens} tokens "
                f"shared</summary><div class='side'><div>{_who(report, pair.a)}{_code(pair.a, shared_a)}</div>"
                f"<div>{_who(report, pair.b)}{_code(pair.b, shared_b)}</div></div></details></td></tr>")
        parts.append("</table>")
    if report.skipped or report.against_skipped:
        parts.append("<h2>Not compared</h2><ul>")
        reasons, short = not_compared(report)
        for function, count in short.items():
            parts.append(f"<li><b>{e(function)}</b> of {count} student(s): under {MIN_TOKENS} tokens of their own, "
                         "too short to tell copying from the one way to write it</li>")
        for student, found in sorted(reasons.items()):
            parts.append(f"<li><b>{e(student, 200)}</b>: {e('; '.join(found), 2000)}</li>")
        for reason in report.against_skipped:
            parts.append(f"<li>--against {e(reason, 500)}</li>")
        parts.append("</ul>")
    return "".join(parts)


def write(report: Report, output: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """report.html at `output`, report.json beside it, and the top pairs for the class report."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(report), encoding="utf-8")
    data = output.with_suffix(".json")
    data.write_text(json.dumps(report.json(), indent=1, ensure_ascii=True), encoding="utf-8")
    summary = report.course / "autograder-similarity" / f"{report.assignment}.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"report": str(output.resolve()), "likely": LIKELY,
                                   "created": datetime.datetime.now().isoformat(timespec="seconds"),
                                   "pairs": report.json()[:TOP_FOR_CLASS_REPORT]}, indent=1), encoding="utf-8")
    return output, data


_TOO_SHORT = re.compile(r"^`([^`]+)`: \d+ tokens of its own, too short")


def not_compared(report: Report) -> tuple[dict[str, list[str]], dict[str, int]]:
    """(student -> reasons, function -> how many students' code was too short to compare): a
    one-line function is too short for most of the class, and is said once."""
    reasons, short = {}, {}
    for student, found in report.skipped.items():
        for reason in found:
            match = _TOO_SHORT.match(reason)
            if match:
                short[match.group(1)] = short.get(match.group(1), 0) + 1
            else:
                reasons.setdefault(student, []).append(reason)
    return reasons, short


def table(report: Report) -> str:
    """What the command line prints: the pairs at LIKELY or above, and what was skipped."""
    lines = [f"{report.assignment}: {len(report.students)} submissions compared in {report.seconds:.1f} s"]
    likely = [p for p in report.pairs if p.similarity >= LIKELY]
    lines.append(f"{len(likely)} pair(s) at similarity {LIKELY:g} or above" + (":" if likely else ""))
    for pair in likely[:40]:
        lines.append(f"  {pair.similarity:.2f}  {clean(pair.function, 100)}: "
                     f"{clean(pair.students[0], 200)} and {clean(pair.students[1], 200)}")
    if len(likely) > 40:
        lines.append(f"  ... and {len(likely) - 40} more in the report")
    reasons, short = not_compared(report)
    for function, count in short.items():
        lines.append(f"not compared: `{clean(function, 100)}` of {count} student(s): under {MIN_TOKENS} tokens of "
                     "their own, too short to tell copying from the one way to write it")
    for student, found in sorted(reasons.items()):
        lines.append(f"not compared: {clean(student, 200)}: {clean('; '.join(found), 500)}")
    for reason in report.against_skipped:
        lines.append(f"not compared (--against): {clean(reason, 500)}")
    return "\n".join(lines)
