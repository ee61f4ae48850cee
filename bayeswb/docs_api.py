"""The API reference, generated from the docstrings with pdoc (Google style).

``python -m bayeswb.docs_api [OUT]`` writes HTML pages (default ``docs/api``) for the public
API, the core, the execution layer, the samplers, the models, the figures and the
applications. tests/test_docs_api.py builds it, so a docstring pdoc cannot render fails CI.
Needs the ``docs`` extra (``pip install -e ".[docs]"``; the test extra includes it).
"""

from __future__ import annotations

import argparse
import pathlib
import warnings

# what the reference covers (packages include all their modules; bayeswb itself brings
# bayeswb.samplers and bayeswb.models, which its __all__ names)
MODULES = (
    "bayeswb",
    "bayeswb.core",
    "bayeswb.execution",
    "bayeswb.samplers.baselines",
    "bayeswb.samplers.langevin",
    "bayeswb.samplers.smc",
    "bayeswb.samplers.importance",
    "bayeswb.samplers.flows",
    "bayeswb.figures",
    "bayeswb.bench",
    "bayeswb.cli",
    "bayeswb.docs_tables",
)

# pdoc resolves string annotations in the module's namespace at run time; names imported
# for type checking only (``if TYPE_CHECKING``) are not there, so it warns and shows the
# annotation as written. That is not a docstring problem.
ANNOTATION_WARNING = r"Error parsing type annotation"


def build(out_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """Write the reference's HTML pages into ``out_dir``; returns the pages written.
    Warnings other than :data:`ANNOTATION_WARNING` are left to the caller (the test
    makes them errors).
    """
    import pdoc
    import pdoc.render

    out = pathlib.Path(out_dir)
    pdoc.render.configure(docformat="google", show_source=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=ANNOTATION_WARNING)
        pdoc.pdoc(*MODULES, *_figure_modules(), output_directory=out)
    return sorted(out.rglob("*.html"))


def _figure_modules() -> list[str]:
    """One page per paper figure (bayeswb.figures lists only its own API in __all__)."""
    import pkgutil

    from bayeswb import figures

    return [f"bayeswb.figures.{m.name}" for m in pkgutil.iter_modules(figures.__path__)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bayeswb.docs_api", description=__doc__)
    parser.add_argument("out", nargs="?", default="docs/api", help="output folder")
    args = parser.parse_args(argv)
    pages = build(args.out)
    print(f"wrote {len(pages)} pages to {args.out} (open {args.out}/index.html)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
