"""``import sklstm`` loads only what every user needs."""

import subprocess
import sys

import pytest

OPTIONAL = ["matplotlib", "onnx", "onnxscript", "onnxruntime", "aeon", "dask"]


def test_import_leaves_optional_dependencies_unloaded():
    code = (
        "import sys, sklstm; "
        f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "module",
    [
        "_base",
        "_classifier",
        "_regressor",
        "_data",
        "_device",
        "_network",
        "_sequences",
        "_targets",
        "_display",
        "_onnx",
        "forecasting",
    ],
)
def test_only_the_trainer_imports_skorch(module):
    # skorch sits behind one door: sklstm._trainer.
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module(f"sklstm.{module}"))
    assert "import skorch" not in source
    assert "from skorch" not in source


def _imported_modules(path):
    """sklstm modules that ``path`` imports, at module level or in functions."""
    import ast

    tree = ast.parse(path.read_text())
    # Imports for type checkers only never run.
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                # ``from . import name``: a module, or a name of the package
                # itself, which imports its __init__.
                package = path.parent
                for alias in node.names:
                    is_module = (package / f"{alias.name}.py").exists()
                    found.add(alias.name if is_module else "__init__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "sklstm."
        ):
            found.add(node.module.split(".")[1])
    return found


def test_no_import_circles():
    # Imports run one way: no module reaches itself again through its
    # imports, the package's __init__ (which imports every module) included.
    from pathlib import Path

    import sklstm

    package = Path(sklstm.__file__).parent
    graph = {path.stem: _imported_modules(path) for path in package.glob("*.py")}
    for start in set(graph) - {"__init__"}:
        seen, stack = set(), list(graph[start])
        while stack:
            module = stack.pop()
            assert module != start, f"sklstm.{start} imports itself back"
            if module not in seen and module in graph:
                seen.add(module)
                stack.extend(graph[module])
