"""The documentation site builds without a warning and documents every name.

The build runs as the docs are published (``doc/conf.py``) but without
executing the examples gallery, so it takes seconds; ``-W`` turns every
Sphinx warning, a broken cross-reference included (``nitpicky``), into a
failure. The full build, gallery executed, is in ``doc/development.rst``.
"""

import importlib
import inspect
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sklstm

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "doc"
API = DOC / "api.rst"
# What the build needs besides Sphinx itself: the doc extra.
DOC_PACKAGES = ["sphinx", "numpydoc", "sphinx_gallery", "furo", "myst_parser"]


def _public_modules():
    """``sklstm`` and each of its submodules whose name has no underscore."""
    modules = [sklstm]
    for info in pkgutil.iter_modules(sklstm.__path__):
        if not info.name.startswith("_"):
            modules.append(importlib.import_module(f"sklstm.{info.name}"))
    return modules


def _api_reference_names():
    """Fully qualified names that ``doc/api.rst`` documents.

    The entries of its ``autosummary`` blocks and its ``data`` (or
    ``auto*``) directives, each under the ``currentmodule`` in force.
    """
    names = set()
    module = None
    in_autosummary = False
    for line in API.read_text().splitlines():
        directive = re.match(r"\.\. ([\w:-]+)::\s*(\S*)", line)
        if directive:
            kind, argument = directive.groups()
            in_autosummary = kind == "autosummary"
            if kind == "currentmodule":
                module = argument
            elif kind in {"data", "autodata", "autoclass", "autofunction"}:
                names.add(argument if "." in argument else f"{module}.{argument}")
            continue
        if in_autosummary:
            entry = line.strip()
            if line.startswith(" ") and entry and not entry.startswith(":"):
                names.add(f"{module}.{entry}")
            elif line and not line.startswith(" "):
                in_autosummary = False
    return names


def _resolve(name):
    module_name, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def test_every_public_name_is_in_the_api_reference():
    documented = _api_reference_names()
    # A re-exported object (sklstm.load is sklstm.persistence.load) needs
    # documenting once, under either name.
    documented_objects = [
        _resolve(name)
        for name in documented
        if inspect.isclass(_resolve(name)) or inspect.isfunction(_resolve(name))
    ]
    missing = []
    for module in _public_modules():
        assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
        for name in module.__all__:
            qualified = f"{module.__name__}.{name}"
            value = getattr(module, name)
            if qualified in documented:
                continue
            if (inspect.isclass(value) or inspect.isfunction(value)) and any(
                value is obj for obj in documented_objects
            ):
                continue
            missing.append(qualified)
    assert not missing, f"public names missing from doc/api.rst: {missing}"


def test_api_reference_names_only_public_objects():
    # An entry for a renamed or removed object would otherwise linger.
    for name in _api_reference_names():
        assert not any(part.startswith("_") for part in name.split(".")[1:-1])
        _resolve(name)


def test_site_builds_without_warnings(tmp_path):
    for package in DOC_PACKAGES:
        pytest.importorskip(
            package, reason=f'{package} is not installed (pip install "sklstm[doc]")'
        )
    # Build from a copy, so that generated sources stay out of the work tree.
    source = tmp_path / "source"
    generated = shutil.ignore_patterns(
        "_build", "generated", "auto_examples", "sg_execution_times.rst"
    )
    shutil.copytree(DOC, source / "doc", ignore=generated)
    shutil.copytree(ROOT / "examples", source / "examples", ignore=generated)
    shutil.copy(ROOT / "CHANGELOG.md", source / "CHANGELOG.md")
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), environment.get("PYTHONPATH")])
    )
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q"]
    command += ["-D", "plot_gallery=0", "-b", "html"]
    command += [str(source / "doc"), str(tmp_path / "html")]
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    for page in ["index", "api", "changelog", "user_guide/troubleshooting"]:
        assert (tmp_path / "html" / f"{page}.html").is_file(), page
    assert (tmp_path / "html" / "generated" / "sklstm.LSTMClassifier.html").is_file()
