"""README tables generated from the registries, so that they cannot drift from the code.

``python -m bayeswb.docs_tables`` rewrites the part of README.md between the ``BEGIN`` and
``END`` marker comments with :func:`markdown`: a table of every sampler (family, name,
method, paper, what it returns), every model (dimension, parameters, ground truth), a
gallery of the figures of :mod:`bayeswb.figures` (name, paper, command) and the notebooks.
``--check`` only compares, exiting 1 when README.md is stale (tests/test_readme.py does the
same).

Where each column comes from, with no per-sampler list kept here:

- method and paper: the sampler's ``run`` docstring, its text before the first
  parenthesis and its first author-year citation; a docstring that cites nothing itself
  but points to ``:func:`name``` (a kernel in the same module) lends that one's citations.
- returns: the structure of the sampler's output (:class:`bayeswb.Draws`), found with
  ``jax.eval_shape`` on a small probe target (traced, never compiled or run): whether the
  draws carry importance weights and log Z, and the names of their statistics.
- models: the built target's ``dim``, ``log_z``, ``sample_exact``, ``reference`` and the
  notes of ``Target.ground_truth``; parameters from the factory's signature.

Example:
    >>> line = citation("No-U-Turn Sampler (Hoffman and Gelman 2014, Algorithm 6)")
    >>> line
    'Hoffman and Gelman 2014'
    >>> method("Adaptive tempered SMC sampler (Del Moral, Doucet and Jasra 2006): more")
    'Adaptive tempered SMC sampler'
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import pathlib
import re
import sys

from bayeswb.core.files import atomic_path

BEGIN = "<!-- BEGIN GENERATED TABLES: python -m bayeswb.docs_tables (do not edit by hand) -->"
END = "<!-- END GENERATED TABLES -->"
README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
# the model table as data, for ``bayeswb models --details`` (which then builds no model)
MODEL_DETAILS = pathlib.Path(__file__).resolve().parents[1] / "models" / "data" / "details.json"

_NAME = r"[A-Z][\w'\-]+(?: [A-Z][\w'\-]+)*"
_AUTHORS = rf"{_NAME}(?:(?:, | and |, and ){_NAME})*(?: et al\.)?"
_CITATION = re.compile(rf"({_AUTHORS}) \(?((?:1[89]|20)\d\d[a-z]?)\b(?:, (\"[^\"]+\"))?")
_SEE_FUNC = re.compile(r":func:`~?([\w.]+)`")


def _flat(text: str | None) -> str:
    return " ".join((text or "").split())


def citations(text: str | None) -> list[str]:
    """Author-year citations in ``text``, in order, as ``Authors YEAR[, "title"]``."""
    found = []
    for authors, year, title in _CITATION.findall(_flat(text)):
        item = f"{authors} {year}" + (f", {title}" if title else "")
        if item not in found:
            found.append(item)
    return found


def citation(text: str | None) -> str:
    """The first author-year citation of ``text``, or ``""``."""
    found = citations(text)
    return found[0] if found else ""


def method(doc: str | None) -> str:
    """The docstring's opening words, up to a citation or "(see ...)", colon or full stop."""
    text = _flat(doc)
    for match in re.finditer(r" \(([^()]*)|: |; |\. ", text):
        inside = match.group(1)
        if inside is None or inside.startswith("see ") or citation(inside):
            return text[: match.start()]
    return text.rstrip(".")


def paper(run) -> str:
    """The paper a sampler's ``run`` cites: its docstring's first citation, else that of a
    helper it refers to with ``:func:``, else its module's."""
    doc = run.__doc__ or ""
    own = citation(doc)
    if own:
        return own
    module = importlib.import_module(run.__module__)
    for name in _SEE_FUNC.findall(doc):
        helper = getattr(module, name.rpartition(".")[2], None)
        if helper is not None and citations(helper.__doc__):
            return "; ".join(citations(helper.__doc__)[:3])
    return citation(module.__doc__)


def _probe_target():
    """A 2-d Gaussian-likelihood target that also has the minibatch interface of SGLD."""
    import jax
    import jax.numpy as jnp

    from bayeswb.core.target import MinibatchData, Target

    data = jnp.linspace(-1.0, 1.0, 64)[:, None]

    def log_prior(x):
        return -0.5 * jnp.sum(x**2)

    def log_likelihood_per_datum(x, y):
        return -0.5 * jnp.sum((y - x) ** 2)

    def log_density(x):
        per_datum = jax.vmap(log_likelihood_per_datum, (None, 0))(x, data)
        return log_prior(x) + jnp.sum(per_datum)

    minibatch = MinibatchData(data, log_likelihood_per_datum, log_prior)
    return Target.from_logdensity(log_density, dim=2, name="probe", minibatch=minibatch)


def returns(spec, target=None) -> str:
    """What ``spec.run`` returns, read from ``jax.eval_shape`` of a tiny run (no compile)."""
    import jax

    target = target or _probe_target()
    config = spec.make_config()
    try:  # small sizes trace faster; a sampler with constraints on them keeps its defaults
        warmup = 2 if config.num_warmup is None else min(2, config.num_warmup)
        config = spec.make_config(num_chains=1, num_samples=8, num_warmup=warmup)
    except ValueError:
        pass
    try:
        draws = jax.eval_shape(lambda key: spec.run(key, target, config), jax.random.key(0))
    except Exception as error:  # reported in the table rather than hidden
        return f"(could not trace: {type(error).__name__})"
    text = "weighted draws" if draws.log_weights is not None else "draws"
    if draws.log_z is not None:
        text += ", log Z per run"
    if draws.stats:
        text += "; stats: " + ", ".join(sorted(draws.stats))
    if draws.path_stats:
        text += "; path: " + ", ".join(sorted(draws.path_stats))
    return text


def sampler_rows() -> list[dict[str, str]]:
    """One row per registered sampler, ordered by family then name."""
    from bayeswb import samplers

    target = _probe_target()
    rows = []
    for name in samplers.names():
        spec = samplers.get(name)
        rows.append(
            {
                "family": spec.family,
                "sampler": f"`{name}`",
                "method": method(spec.run.__doc__),
                "paper": paper(spec.run),
                "returns": returns(spec, target),
            }
        )
    return sorted(rows, key=lambda row: (row["family"], row["sampler"].strip("`")))


def _first_clause(text: str) -> str:
    """``text`` up to its first ``;`` or ``:`` outside brackets."""
    depth = 0
    for i, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif depth == 0 and char in ";:":
            return text[:i]
    return text


def model_rows() -> list[dict[str, str]]:
    """One row per registered model (each is built with its default parameters)."""
    from bayeswb import models

    rows = []
    for name in models.names():
        target = models.get(name)
        notes = target.truth_sources
        params = [
            f"{param}={default!r}"
            for param, default in models.parameters(name).items()
            if default is not inspect.Parameter.empty
        ]
        log_z = ""
        if target.log_z is not None:
            log_z = f"{target.log_z:.6g}"
            if notes.get("log_z"):
                log_z += f" ({_first_clause(_flat(notes['log_z']))})"
        exact = ""
        if target.sample_exact is not None:
            exact = _first_clause(_flat(notes.get("sample_exact", "yes")))
        reference = ""
        if target.reference is not None:
            source = notes.get("reference", target.reference.source)
            reference = _first_clause(_flat(source))
        rows.append(
            {
                "model": f"`{name}`",
                "dim": str(target.dim),
                "parameters": ", ".join(params),
                "log Z": log_z,
                "exact samples": exact,
                "reference moments": reference,
            }
        )
    return rows


def gallery_rows() -> list[dict[str, str]]:
    """One row per runnable figure module (see :mod:`bayeswb.figures`)."""
    from bayeswb import figures

    rows = []
    for name in figures.names():
        module = figures.get(name)
        rows.append(
            {
                "figure": f"`{name}`",
                "what": _flat(module.TITLE),
                "paper": _flat(module.PAPER),
                "full run": _flat(module.FULL_RUNTIME),
                "regenerate": f"`bayeswb figure {name}` (`--quick` for a small run)",
            }
        )
    return rows


def notebook_rows() -> list[dict[str, str]]:
    """One row per notebook in ``notebooks/``: its file and the title of its first cell."""
    import json

    rows = []
    for path in sorted((README.parent / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text()).get("cells", [])
        text = "".join(cells[0].get("source", "")) if cells else ""
        title = text.strip().splitlines()[0].lstrip("# ").strip() if text.strip() else ""
        rows.append({"notebook": f"[`{path.name}`](notebooks/{path.name})", "title": title})
    return rows


def table(rows: list[dict[str, str]]) -> str:
    """A Markdown table of ``rows`` (``|`` in cells escaped)."""
    if not rows:
        return "(none registered)\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def markdown(models: list[dict[str, str]] | None = None) -> str:
    """The generated README section, markers included (``models``: :func:`model_rows`,
    if already made)."""
    return "\n".join(
        [
            BEGIN,
            "",
            "### Samplers",
            "",
            "Generated from `bw.samplers` (method and paper from each sampler's docstring; "
            "what it returns from the structure of its output).",
            "",
            table(sampler_rows()),
            "### Models",
            "",
            "Generated from `bw.models` (default parameters; the ground truth each target "
            "carries, and how it was obtained; `bw.models.get(NAME).describe()` has the full "
            "sources).",
            "",
            table(model_rows() if models is None else models),
            "### Gallery of figures",
            "",
            "Each regenerates a published figure or table into `figures_out/NAME/` (or "
            "`--out DIR`): the figure as PNG and PDF, the numbers behind it as CSV, the "
            "published numbers side by side where the paper has them, and `manifest.json` "
            "(seed, versions, git revision, run time). `bayeswb figure --list` shows them.",
            "",
            table(gallery_rows()),
            "### Notebooks",
            "",
            "Executed top to bottom by the test suite with small settings (`BAYESWB_QUICK=1`).",
            "",
            table(notebook_rows()),
            END,
        ]
    )


def rewrite(text: str, section: str) -> str:
    """``text`` with the part between the markers replaced by ``section``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {BEGIN!r} ... {END!r} markers")
    return text[:start] + section + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    """Rewrite README.md's generated section (``--check``: only report whether it is stale)."""
    parser = argparse.ArgumentParser(prog="python -m bayeswb.docs_tables")
    parser.add_argument("--readme", default=str(README))
    parser.add_argument("--check", action="store_true", help="exit 1 if README is stale")
    args = parser.parse_args(argv)
    from bayeswb import figures

    for name, reason in figures.broken().items():
        print(f"warning: figure {name} left out of the gallery: {reason}", file=sys.stderr)
    path = pathlib.Path(args.readme)
    text = path.read_text()
    models = model_rows()
    updated = rewrite(text, markdown(models))
    details = json.dumps(models, indent=1) + "\n"
    old_details = MODEL_DETAILS.read_text() if MODEL_DETAILS.exists() else ""
    if args.check:
        stale = updated != text or details != old_details
        print(f"{path}: {'stale, run python -m bayeswb.docs_tables' if stale else 'up to date'}")
        return int(stale)
    with atomic_path(path) as temporary:
        temporary.write_text(updated)
    with atomic_path(MODEL_DETAILS) as temporary:
        temporary.write_text(details)
    print(f"{path}: {'rewritten' if updated != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
