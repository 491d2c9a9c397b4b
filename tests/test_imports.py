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
