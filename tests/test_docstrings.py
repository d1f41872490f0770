"""The examples in the public modules' docstrings run and give what they show.

They are run on the installed modules (the ones ``import skbce`` finds), with
the same option flags as the documentation build promises its readers.
"""

import doctest
import importlib
from pathlib import Path

import pytest

PUBLIC_MODULES = [
    "skbce.metrics", "skbce._scorer", "skbce.linear_model._logistic", "skbce.linear_model._cv",
    "skbce.model_selection._thresholds", "skbce.model_selection._split",
]
OPTIONFLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_docstring_examples(name, capsys):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=OPTIONFLAGS, verbose=False)
    # doctest prints each failure; show them in the assertion message.
    report = capsys.readouterr().out
    assert result.failed == 0, report
    assert result.attempted > 0, f"{name} has no docstring examples"


def test_user_guide_examples():
    # The user guide's >>> examples quote numbers; keep them true. The guide
    # ships in the repository, next to the tests, not in the package.
    guide = Path(__file__).resolve().parents[1] / "docs" / "user_guide.rst"
    if not guide.is_file():
        pytest.skip("docs/ is not beside the tests")
    result = doctest.testfile(
        str(guide), module_relative=False, optionflags=OPTIONFLAGS, verbose=False
    )
    assert result.failed == 0
    assert result.attempted > 0
