"""The package's layers hold: a part of ``wallaroo`` imports only parts in lower layers.

The order is the one docs/architecture.md ("Layers") draws. Every import that runs counts, at
module level or inside a function; imports under ``if TYPE_CHECKING:`` are exempt (they never
run). A part is a sub-package (``wallaroo.engine``) or a top-level module (``wallaroo.plan``'s
neighbours ``wallaroo.configs``, ``wallaroo.errors``, ...); imports within one part are free.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "wallaroo"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("args", "kafka", "serialization", "logsummary", "decorators"),
    ("configs",),
    ("plan",),
    ("windows", "loader", "builder", "pipeline"),
    ("protocol", "engine"),
    ("resilience", "metrics", "experimental"),
    ("connectors", "worker"),
    ("ray_backend",),
    ("testing",),
    ("cli",),
    ("__main__",),
)
"""Lowest first. ``wallaroo/__init__.py`` (the public façade) is above them all."""

LAYER = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    exempt: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                exempt.update(id(n) for n in ast.walk(child))
    return exempt


def _imported(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import in ``path`` that runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    exempt = _type_checking_nodes(tree)
    package = ".".join(("wallaroo", *path.relative_to(PACKAGE).with_suffix("").parts[:-1]))
    found = []
    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module == "wallaroo":  # ``from wallaroo import x``: x is a part, or a name
                found += [(node.lineno, f"wallaroo.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def _violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _part(path)
        if source == "__init__":
            continue  # the façade may import every part
        assert source in LAYER, f"{path.relative_to(PACKAGE)}: part '{source}' has no layer"
        for line, module in _imported(path):
            parts = module.split(".")
            if parts[0] != "wallaroo" or len(parts) < 2:
                continue
            target = parts[1]
            if target == source or target not in LAYER:
                continue  # within one part, or a name of the façade (``__version__``)
            if LAYER[target] >= LAYER[source]:
                bad.append(
                    f"{path.relative_to(PACKAGE)}:{line}: '{source}' (layer {LAYER[source]}) "
                    f"imports '{module}' (layer {LAYER[target]})"
                )
    return bad


def test_no_part_imports_a_part_at_or_above_its_layer() -> None:
    assert _violations() == []


def test_every_part_has_a_layer() -> None:
    parts = {_part(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert parts <= set(LAYER), sorted(parts - set(LAYER))


def test_the_architecture_doc_draws_the_same_order() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"```text\n(layer \d+:.*?)```", text, re.S)
    assert block, "docs/architecture.md lost its layers block"
    drawn = [
        tuple(sorted(w.strip("`,") for w in line.split(":", 1)[1].split()))
        for line in block.group(1).splitlines()
        if ":" in line
    ]
    assert drawn == [tuple(sorted(layer)) for layer in reversed(LAYERS)]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("from wallaroo.worker.runtime import Worker\n", "imports 'wallaroo.worker.runtime'"),
        ("import wallaroo.cli.main\n", "imports 'wallaroo.cli.main'"),
    ],
)
def test_the_check_catches_an_upward_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str, message: str
) -> None:
    """The check itself can fail: an engine module importing the worker or the CLI."""
    fake = PACKAGE / "engine" / "_layers_probe.py"
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: iter([fake]))
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: code)
    (found,) = _violations()
    assert message in found


def test_type_checking_imports_are_exempt(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = PACKAGE / "engine" / "_layers_probe.py"
    code = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from wallaroo.worker import x\n"
    )
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: iter([fake]))
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: code)
    assert _violations() == []
