"""Reading a graded function's code for calls that would skip the exercise."""
from __future__ import annotations

import ast

ALLOW = "!"  # a banned-list entry "!name" allows name (and what it holds) inside a banned module


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def aliases(module_code: list[str]) -> dict[str, str]:
    """Names bound by the notebook's imports: {"benchmark": "torch.utils.benchmark", "np": "numpy"}."""
    found = {}
    for code in module_code:
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    found[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return found


def static_uses(function_code: str, bound: dict[str, str], banned: list[str]) -> list[str]:
    """The banned names (modules or callables, dotted) that `function_code` refers to; an entry
    ALLOW + name in `banned` allows name (and its attributes) even inside a banned module."""
    try:
        tree = ast.parse(function_code)
    except SyntaxError:
        return []
    rules = [r for r in banned if not r.startswith(ALLOW)]
    allowed = [r[len(ALLOW):] for r in banned if r.startswith(ALLOW)]
    local = dict(bound)
    local.update(aliases([function_code]))
    used = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, (ast.Attribute, ast.Name)):
            dotted = _dotted(node)
            if dotted:
                head, _, rest = dotted.partition(".")
                names.append(local.get(head, head) + ("." + rest if rest else ""))
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if any(name == a or name.startswith(a + ".") for a in allowed):
                continue
            for rule in rules:
                if name == rule or name.startswith(rule + "."):
                    used.add(rule)
    return sorted(used)
