"""The estimators' rendered parameter documentation: complete, once, true.

The shared entries of ``sklstm._docs`` are written into the class docstrings
when the classes are defined; these tests read the result as a user sees it
(``help``, Sphinx), so a missing, doubled or misstated parameter fails here.
"""

import ast
import inspect
import re
from collections import Counter

import pytest

from sklstm import LSTMClassifier, LSTMForecaster, LSTMRegressor
from sklstm._docs import PARAMETERS, fill_doc, format_default

ESTIMATORS = [LSTMClassifier, LSTMRegressor, LSTMForecaster]

# A numpydoc parameter line, once the docstring is dedented: "name : type".
_ENTRY = re.compile(r"^(?P<name>\w+) : (?P<spec>.+)$")


def _signature_defaults(cls):
    parameters = inspect.signature(cls.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name != "self"}


def _parameters_section(doc):
    """Lines of the "Parameters" section, up to the next section header."""
    lines = inspect.cleandoc(doc).splitlines()
    start = lines.index("Parameters") + 2
    assert lines[start - 1] == "-" * len("Parameters")
    for end in range(start, len(lines) - 1):
        if lines[end] and set(lines[end + 1]) == {"-"}:
            return lines[start:end]
    return lines[start:]


def _documented(cls):
    """``[(name, spec)]`` of each parameter entry, in order."""
    entries = []
    for line in _parameters_section(cls.__doc__):
        match = _ENTRY.match(line)
        if match:
            entries.append((match["name"], match["spec"]))
    return entries


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_parameter_documented_once_in_order(cls):
    names = [name for name, _ in _documented(cls)]
    twice = [name for name, count in Counter(names).items() if count > 1]
    assert not twice, f"documented more than once: {twice}"
    assert names == list(_signature_defaults(cls))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_documented_defaults_are_the_signature_defaults(cls):
    defaults = _signature_defaults(cls)
    for name, spec in _documented(cls):
        match = re.search(r", default=(?P<default>.+)$", spec)
        assert match, f"{name}: no default in {spec!r}"
        assert spec.count("default=") == 1, f"{name}: {spec!r}"
        documented = ast.literal_eval(match["default"])
        # The type too: default=1 must not pass for 1.0, nor True for 1.
        assert type(documented) is type(defaults[name]), name
        assert documented == defaults[name], name


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_no_placeholder_left(cls):
    # Type sets such as {"lstm", "gru"} hold quotes; a placeholder does not.
    assert re.findall(r"\{[A-Za-z_]\w*\}", cls.__doc__) == []


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_numpydoc_reads_the_parameters(cls):
    docscrape = pytest.importorskip("numpydoc.docscrape")
    parsed = docscrape.ClassDoc(cls, config={"show_class_members": False})
    names = [parameter.name for parameter in parsed["Parameters"]]
    assert names == list(_signature_defaults(cls))


def test_every_shared_entry_is_used():
    rendered = {name for cls in ESTIMATORS for name, _ in _documented(cls)}
    assert set(PARAMETERS) <= rendered


def test_shared_entries_name_no_default():
    # fill_doc adds each estimator's own default; one written into the
    # shared name line would be wrong for some estimator.
    for name, entry in PARAMETERS.items():
        assert "default=" not in entry.splitlines()[0], name


@pytest.mark.parametrize(
    "value, text",
    [("auto", '"auto"'), (1e-3, "1e-3"), (0.3, "0.3"), (0.0, "0.0"), (None, "None")]
    + [((64, 128, 64), "(64, 128, 64)"), (False, "False"), (100, "100")],
)
def test_format_default(value, text):
    assert format_default(value) == text


def test_fill_doc_refuses_unknown_placeholder():
    class Model:
        """Model.

        Parameters
        ----------
        {no_such_parameter}
        """

        def __init__(self, no_such_parameter=1):
            pass

    with pytest.raises(KeyError, match="no_such_parameter"):
        fill_doc(Model)


def test_fill_doc_refuses_parameter_without_default():
    class Model:
        """Model.

        Parameters
        ----------
        {lr}
        """

        def __init__(self, lr):
            pass

    with pytest.raises(TypeError, match="lr"):
        fill_doc(Model)
