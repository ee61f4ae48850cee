"""The API reference builds from the docstrings (bayeswb/docs_api.py): a docstring pdoc
cannot render is a warning, and pytest makes every warning an error."""

from bayeswb import docs_api


def test_the_api_reference_builds_and_covers_the_public_api(tmp_path):
    pages = docs_api.build(tmp_path)
    names = {page.relative_to(tmp_path).as_posix() for page in pages}
    for page in [
        "bayeswb.html",
        "bayeswb/core/result.html",
        "bayeswb/execution/sample.html",
        "bayeswb/samplers/smc.html",
        "bayeswb/models/bayesian.html",
        "bayeswb/figures/sendera2024_logz.html",
    ]:
        assert page in names, page
    index = (tmp_path / "bayeswb.html").read_text()
    for name in ("sample", "resume", "score", "summary", "predictive", "set_compile_cache"):
        assert f'id="{name}"' in index, name
