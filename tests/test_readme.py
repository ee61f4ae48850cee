"""README's sampler, model and figure tables are what the registries generate now."""

import difflib
import json

import pytest

import bayeswb as bw
from bayeswb import docs_tables


def test_generated_columns_come_from_docstrings_and_output_structure():
    assert docs_tables.citation("No-U-Turn Sampler (Hoffman and Gelman 2014, Alg. 6)") == (
        "Hoffman and Gelman 2014"
    )
    assert docs_tables.citation('VI (Rezende and Mohamed 2015, "Flows", ICML)') == (
        'Rezende and Mohamed 2015, "Flows"'
    )
    assert docs_tables.method("SGLD (see :func:`kernel`) on a target") == "SGLD"
    nuts = docs_tables.returns(bw.samplers.get("nuts"))
    assert nuts.startswith("draws; stats: ") and "diverging" in nuts and "log Z" not in nuts
    smc = docs_tables.returns(bw.samplers.get("smc"))
    assert smc.startswith("weighted draws, log Z per run; stats: family, lp; path: ")
    with pytest.raises(ValueError, match="markers"):
        docs_tables.rewrite("no markers here", "x")
    section = f"{docs_tables.BEGIN}\nnew\n{docs_tables.END}"
    old = f"a\n{docs_tables.BEGIN}\nold\n{docs_tables.END}\nb\n"
    assert docs_tables.rewrite(old, section) == f"a\n{section}\nb\n"


@pytest.mark.slow
def test_readme_tables_are_current():
    """Builds every model (about half a minute): fails when README.md has drifted."""
    text = docs_tables.README.read_text()
    start = text.index(docs_tables.BEGIN)
    end = text.index(docs_tables.END) + len(docs_tables.END)
    models = docs_tables.model_rows()
    expected = docs_tables.markdown(models)
    # the data file `bayeswb models --details` prints is the same table
    stored = json.loads(docs_tables.MODEL_DETAILS.read_text())
    assert stored == models, "models/data/details.json is stale; run python -m bayeswb.docs_tables"
    diff = "\n".join(
        difflib.unified_diff(
            text[start:end].splitlines(), expected.splitlines(), "README.md", "generated", n=0
        )
    )
    assert text[start:end] == expected, (
        f"README tables are stale; run `python -m bayeswb.docs_tables`:\n{diff}"
    )
