"""The package as published: metadata, type information, the built wheel.

The slow test builds the sdist and the wheel, checks them with twine, and
installs the wheel into a fresh virtual environment without the test
extras, where the README's quick start must run.
"""

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sklstm
from sklstm import forecasting, persistence

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()

# The public callables whose signatures carry type hints.
PUBLIC_CALLABLES = [
    *(
        getattr(cls, name)
        for cls in (sklstm.LSTMClassifier, sklstm.LSTMRegressor)
        for name in [
            "fit",
            "partial_fit",
            "predict",
            "predict_proba",
            "score",
            "save",
            "to_onnx",
        ]
        if hasattr(cls, name)
    ),
    forecasting.LSTMForecaster.fit,
    forecasting.LSTMForecaster.predict,
    forecasting.LSTMForecaster.predict_interval,
    forecasting.LSTMForecaster.predict_quantiles,
    forecasting.LSTMForecaster.score,
    forecasting.make_windows,
    forecasting.detect_seasonal_period,
    sklstm.HistoryDisplay.__init__,
    sklstm.HistoryDisplay.plot,
    sklstm.HistoryDisplay.from_estimator,
    sklstm.from_channels_first,
    sklstm.from_long_format,
    sklstm.load,
    persistence.save,
]


def _quick_start():
    return re.findall(r"```python\n(.*?)```", README, re.S)[0]


@pytest.mark.parametrize("function", PUBLIC_CALLABLES, ids=lambda f: f.__qualname__)
def test_public_signatures_are_annotated(function):
    signature = inspect.signature(function)
    for name, parameter in signature.parameters.items():
        if name in {"self", "cls"}:
            continue
        assert parameter.annotation is not inspect.Parameter.empty, name
    assert signature.return_annotation is not inspect.Signature.empty


def test_type_information_is_shipped():
    assert (ROOT / "sklstm" / "py.typed").is_file()
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]["sklstm"]
    assert "py.typed" in package_data


def test_version_is_single_sourced():
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "sklstm._version.__version__"}
    assert "version" not in PYPROJECT["project"]
    for path in ["pyproject.toml", "README.md", "doc/conf.py", ".readthedocs.yaml"]:
        assert sklstm.__version__ not in (ROOT / path).read_text(), path


def test_license_file_matches_metadata():
    assert PYPROJECT["project"]["license"] == "BSD-3-Clause"
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")


def test_readme_links_work_off_the_repository():
    # PyPI and other sites render the README away from the repository, where
    # a relative link leads nowhere.
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    targets += re.findall(r"^\[[^\]]+\]:\s*(\S+)", README, re.M)
    assert targets
    relative = [t for t in targets if not t.startswith(("https://", "http://"))]
    assert not relative, f"relative links in README.md: {relative}"
    # Links into the project go to the addresses the metadata gives.
    urls = PYPROJECT["project"]["urls"]
    for target in targets:
        if "sklstm" in target.split("/")[2]:  # the documentation site
            assert target.startswith(urls["Documentation"]), target
        elif "/sklstm/sklstm" in target:  # the repository
            base = urls["Source"].replace("https://github.com/", "")
            assert base in target, target


def test_readme_quick_start_is_the_docs_quick_start():
    index = (ROOT / "doc" / "index.rst").read_text()
    for line in _quick_start().strip().splitlines():
        assert line in index, line


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} failed:\n"
        + result.stdout[-4000:]
        + result.stderr[-4000:]
    )
    return result


def _pip_version():
    """This Python's pip version; 22.3 added ``--python``."""
    from importlib.metadata import version

    return tuple(int(part) for part in re.findall(r"\d+", version("pip"))[:2])


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """Python of a fresh virtual environment holding the built wheel.

    The sdist and the wheel are built and checked with twine first; the
    environment gets torch (pinned) and the wheel with its dependencies,
    none of the test extras.
    """
    pytest.importorskip("build", reason="build is not installed (pip install build)")
    pytest.importorskip("twine", reason="twine is not installed (pip install twine)")
    folder = tmp_path_factory.mktemp("wheel")
    dist = folder / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)])
    wheels = list(dist.glob("*.whl"))
    sdists = list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    _run([sys.executable, "-m", "twine", "check", "--strict", *wheels, *sdists])

    venv = folder / "venv"
    python = venv / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    if _pip_version() >= (22, 3):
        # Without a pip of its own (installing one takes seconds): this
        # pip installs into it.
        _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        pip = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    else:
        _run([sys.executable, "-m", "venv", str(venv)])
        pip = [str(python), "-m", "pip", "install"]
    # torch pinned (an unpinned one would pull a multi-GB CUDA build), and
    # nothing byte-compiled: torch's thousands of files would take longer
    # than the rest together; modules compile as they are imported instead.
    _run([*pip, "--quiet", "--no-compile", "torch==2.13.0", str(wheels[0])])
    # Run from an empty folder, so that the installed wheel is imported, not
    # the source tree.
    workdir = folder / "run"
    workdir.mkdir()
    yield python, workdir
    # The environment holds about 1 GB (torch); pytest would keep it.
    shutil.rmtree(folder, ignore_errors=True)


def test_wheel_installs_into_a_clean_environment(installed_wheel):
    python, workdir = installed_wheel
    code = """
import importlib.resources, sys
import numpy as np
import sklstm
from sklstm.forecasting import LSTMForecaster
print(sklstm.__file__)
assert importlib.resources.files("sklstm").joinpath("py.typed").is_file()
absent = [m for m in ("pandas", "matplotlib", "pytest", "onnx") if m in sys.modules]
assert not absent, absent
X = np.random.RandomState(0).normal(size=(8, 5, 2))
clf = sklstm.LSTMClassifier(hidden_size=4, conv_filters=None, max_epochs=1)
print(clf.fit(X, [0, 1] * 4).predict(X[:2]))
"""
    output = _run([str(python), "-c", code], cwd=workdir).stdout.splitlines()
    assert output[0].startswith(str(python.parent.parent)), output[0]


@pytest.mark.slow
def test_wheel_runs_the_readme_quick_start(installed_wheel):
    python, workdir = installed_wheel
    output = _run([str(python), "-c", _quick_start()], cwd=workdir).stdout
    score = float(output.split()[0])
    assert 0.5 < score <= 1.0
