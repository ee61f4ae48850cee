"""Every docstring example in the package runs and prints what it claims."""

import doctest
import importlib
import pkgutil

import pytest

import bayeswb


def _modules():
    # every module and subpackage, however deep (bayeswb.samplers and bayeswb.models are
    # installed from their own folders, so they are walked from their own paths)
    names = []
    for package in (bayeswb, bayeswb.samplers, bayeswb.models):
        names.append(package.__name__)
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            names.append(module.name)
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0
