"""Every docstring example in the package runs and prints what it claims."""

import doctest
import importlib
import pkgutil

import pytest

import bayeswb


def _modules():
    names = []
    for package in (bayeswb, bayeswb.samplers, bayeswb.models):
        names.append(package.__name__)
        for module in pkgutil.iter_modules(package.__path__):
            full = f"{package.__name__}.{module.name}"
            if full not in ("bayeswb.samplers", "bayeswb.models"):
                names.append(full)
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0
