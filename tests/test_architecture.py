"""The import rule of docs/ARCHITECTURE.md, read from the source with ``ast`` (nothing is imported or run).

* The library (``superpos_kernels``) never imports the trainer (``superpos_trainer``), anywhere, and never imports
  ``transformers`` at module level (inside a function is fine: ``import superpos_kernels`` stays light).
* The trainer (``python/superpos_trainer``) uses the library's public surface only: never its internals
  (the backends ``triton_ops``/``cpp_ops``/``_C``, ``registration``, ``validation``), nor ``torch.ops.superpos``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "superpos_kernels"
TRAINER = ROOT / "python" / "superpos_trainer"
KERNEL_INTERNALS = ("triton_ops", "cpp_ops", "_C", "registration", "validation")


def _imports(tree: ast.AST, package: str, module: str) -> Iterator[tuple[str, int, bool]]:
    """``(absolute module name, line, at module level)`` for every import, ``from`` import (each name too, since
    ``from pkg import sub`` may import a submodule) and ``importlib.import_module("...")`` with a literal name."""

    def absolute(name: str | None, level: int) -> str:
        if not level:
            return name or ""
        base = (package if module == "__init__" else f"{package}.{module}").split(".")
        parent = base[: len(base) - level] if module != "__init__" else base[: len(base) - level + 1]
        return ".".join([*parent, *([name] if name else [])])

    def visit(node: ast.AST, top: bool) -> Iterator[tuple[str, int, bool]]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, top
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node.module, node.level)
            yield base, node.lineno, top
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno, top
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "import_module" and isinstance(node.args[0].value, str):
                yield node.args[0].value, node.lineno, top
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            return  # imports for annotations only: never run
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, True)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _reaches_torch_ops_superpos(tree: ast.AST) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "superpos"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ops"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "torch"
    ]


def library_violations(source: str, package: str = "superpos_kernels", module: str = "m") -> list[str]:
    tree = ast.parse(source)
    found = []
    for name, line, top in _imports(tree, package, module):
        if name.split(".")[0] == "superpos_trainer":
            found.append(f"line {line}: imports the trainer ({name})")
        elif name.split(".")[0] == "transformers" and top:
            found.append(f"line {line}: imports {name} at module level (import it inside the function using it)")
    return found


def trainer_violations(source: str, package: str = "superpos_trainer", module: str = "m") -> list[str]:
    tree = ast.parse(source)
    found = [
        f"line {line}: imports kernel internals ({name}); use superpos_kernels' public API"
        for name, line, _ in _imports(tree, package, module)
        if name.split(".")[:1] == ["superpos_kernels"] and any(part in KERNEL_INTERNALS for part in name.split("."))
    ]
    found += [f"line {line}: calls torch.ops.superpos directly" for line in _reaches_torch_ops_superpos(tree)]
    return found


def _sources(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    assert files, f"no sources under {folder}"
    return files


def _where(path: Path, folder: Path) -> tuple[str, str]:
    """``(package, module)`` of a source file: ``superpos_kernels/model.py`` -> ``("superpos_kernels", "model")``."""
    return ".".join(path.relative_to(folder.parent).parent.parts), path.stem


@pytest.mark.parametrize("path", _sources(LIBRARY), ids=lambda p: p.name)
def test_library_never_imports_the_trainer_nor_transformers_at_module_level(path):
    assert library_violations(path.read_text(encoding="utf-8"), *_where(path, LIBRARY)) == [], path


@pytest.mark.parametrize("path", _sources(TRAINER), ids=lambda p: p.name)
def test_trainer_never_reaches_into_kernel_internals(path):
    assert trainer_violations(path.read_text(encoding="utf-8"), *_where(path, TRAINER)) == [], path


# The checker itself: each kind of import it must catch, and what it must let through.
@pytest.mark.parametrize(
    "source",
    [
        "import superpos_trainer",
        "from superpos_trainer.config import TrainConfig",
        "def f():\n    from superpos_trainer import cli",
        "import transformers",
        "from transformers import AutoModel",
        "try:\n    import transformers\nexcept ImportError:\n    pass",
        "class A:\n    import transformers",
        "import importlib\nimportlib.import_module('superpos_trainer.runner')",
    ],
)
def test_library_checker_catches(source):
    assert library_violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "def f():\n    import transformers",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from transformers import PreTrainedModel",
        "from .layer import SuperPosPrompt\nimport torch",
    ],
)
def test_library_checker_allows(source):
    assert library_violations(source) == []


@pytest.mark.parametrize(
    "source",
    [
        "from superpos_kernels import triton_ops",
        "import superpos_kernels.cpp_ops as c",
        "from superpos_kernels.registration import register_fused_op",
        "def f():\n    from superpos_kernels.validation import check_input_ids",
        "from superpos_kernels import _C",
        "import importlib\nimportlib.import_module('superpos_kernels.triton_ops')",
        "import torch\ntorch.ops.superpos.embed_forward(1)",
    ],
)
def test_trainer_checker_catches(source):
    assert trainer_violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "from superpos_kernels import SuperPosPrompt, io, sample_token_ids",
        "from superpos_kernels.io import atomic_write",
        "from . import validation",  # the trainer's own module of that name would be fine
    ],
)
def test_trainer_checker_allows(source):
    assert trainer_violations(source) == []


def test_relative_imports_are_resolved_against_the_package():
    # superpos_kernels/model.py: ``from .layer import X`` is superpos_kernels.layer; in __init__ ``.`` is the package.
    names = {
        n for n, _, _ in _imports(ast.parse("from .layer import X\nfrom . import io"), "superpos_kernels", "model")
    }
    assert {"superpos_kernels.layer", "superpos_kernels.layer.X", "superpos_kernels.io"} <= names
    names = {n for n, _, _ in _imports(ast.parse("from .ops import f"), "superpos_kernels", "__init__")}
    assert "superpos_kernels.ops" in names
