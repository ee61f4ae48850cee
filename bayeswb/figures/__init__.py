"""Paper figures and tables, one module each, run by ``bayeswb figure NAME``.

A module ``bayeswb/figures/<name>.py`` is a figure when it defines ``TITLE``, ``PAPER``,
``FULL_RUNTIME``, ``compute(quick=False, seed=0) -> dict[str, DataFrame]`` (a ``"results"``
table at least) and ``plot(tables, out_dir) -> list[Path]`` (``<name>.png`` and ``.pdf``).
Modules whose name starts with ``_`` are helpers, not figures. A module that fails to import
or lacks part of the protocol does not hide the others: ``broken()`` maps it to the reason and
``bayeswb figure --list`` prints it.

``run(name, out_dir)`` calls compute, writes every table as ``<table>.csv``, calls plot and
writes ``manifest.json`` (figure, paper, seed, quick, package versions, git revision,
platform, start time, elapsed seconds, files), so that a run can be repeated and checked.

Example:
    >>> from bayeswb import figures
    >>> isinstance(figures.names(), list)
    True
    >>> figures.get("no_such_figure")
    Traceback (most recent call last):
    ...
    KeyError: "unknown figure 'no_such_figure' (known: ...)"
"""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import json
import os
import pathlib
import pkgutil
import platform
import sys
import time
from types import ModuleType

import pandas as pd

from bayeswb.core.files import atomic_path
from bayeswb.core.provenance import git_revision, versions
from bayeswb.core.registry import Registry

PROTOCOL = ("TITLE", "PAPER", "FULL_RUNTIME", "compute", "plot")

# figures added with ``register`` (tests, notebooks, figures living outside the package)
_registered: dict[str, ModuleType] = {}


def register(module: ModuleType, name: str | None = None) -> str:
    """Add a figure that lives outside ``bayeswb/figures/``; returns its name.

    ``name`` defaults to the last part of ``module.__name__``. The module must follow the
    protocol (``PROTOCOL`` attributes); a name already used is a ValueError.
    """
    name = name or module.__name__.rpartition(".")[2]
    missing = [attr for attr in PROTOCOL if not hasattr(module, attr)]
    if missing:
        raise ValueError(f"{name!r} is not a figure module: no {', '.join(missing)}")
    if name in _discover()[0]:
        raise ValueError(f"figure {name!r} is already registered")
    _registered[name] = module
    return name


def unregister(name: str) -> None:
    """Remove a figure added with ``register`` (no error when it is not there)."""
    _registered.pop(name, None)


def _discover() -> tuple[dict[str, ModuleType], dict[str, str]]:
    """Import every module of this package: (figures by name, reasons by broken name)."""
    figures: dict[str, ModuleType] = {}
    broken: dict[str, str] = {}
    found = sorted({info.name for info in pkgutil.iter_modules(__path__)})
    for name in found:
        if name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except Exception as error:  # a broken module is reported, not raised: see broken()
            first_line = (str(error).strip().splitlines() or [""])[0]
            broken[name] = f"import failed: {type(error).__name__}: {first_line}"
            continue
        missing = [attr for attr in PROTOCOL if not hasattr(module, attr)]
        if missing:
            broken[name] = f"not a figure module: no {', '.join(missing)}"
        else:
            figures[name] = module
    figures.update(_registered)
    return figures, broken


def names() -> list[str]:
    """Sorted names of the figures that import and follow the protocol."""
    return sorted(_discover()[0])


def broken() -> dict[str, str]:
    """Modules of ``bayeswb/figures/`` that are not runnable figures -> the reason why."""
    return _discover()[1]


def get(name: str) -> ModuleType:
    """The figure module called ``name``; KeyError naming close matches or the import error."""
    figures, failures = _discover()
    if name in failures:
        raise KeyError(f"figure {name!r} cannot run: {failures[name]}")
    registry: Registry[ModuleType] = Registry("figure")
    for known, module in figures.items():
        registry.add(known, module)
    return registry.get(name)


def run(
    name: str, out_dir: str | os.PathLike, quick: bool = False, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Regenerate figure ``name`` into ``out_dir``; returns the tables compute made.

    Writes ``<table>.csv`` for every table, the plot files (PNG and PDF) and
    ``manifest.json``. In full mode a note of the expected run time is printed first.
    """
    module = get(name)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not quick:
        print(f"{name}: full mode, expected {module.FULL_RUNTIME}", file=sys.stderr)
    started = datetime.datetime.now(datetime.UTC)
    clock = time.perf_counter()
    tables = module.compute(quick=quick, seed=seed)
    if not isinstance(tables, dict) or not isinstance(tables.get("results"), pd.DataFrame):
        raise ValueError(f"figure {name!r}: compute must return a dict with a 'results' table")
    written = []
    for table, frame in tables.items():
        path = out_dir / f"{table}.csv"
        # a meaningful index (not 0..n-1) is kept as columns
        with atomic_path(path) as temporary:
            frame.to_csv(temporary, index=not isinstance(frame.index, pd.RangeIndex))
        written.append(path)
    plots = [pathlib.Path(path) for path in module.plot(tables, out_dir)]
    suffixes = {path.suffix for path in plots if path.exists()}
    if not {".png", ".pdf"} <= suffixes:
        raise ValueError(f"figure {name!r}: plot must write a PNG and a PDF, wrote {plots}")
    written += plots
    manifest = {
        "figure": name,
        "title": module.TITLE,
        "paper": module.PAPER,
        "seed": seed,
        "quick": quick,
        "command": f"bayeswb figure {name} --seed {seed}" + (" --quick" if quick else ""),
        "versions": versions(),
        "git_revision": git_revision(),
        "platform": {
            "system": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "started_utc": started.isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - clock, 3),
        "files": [_relative(path, out_dir) for path in written],
    }
    with atomic_path(out_dir / "manifest.json") as temporary:
        temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    return tables


def _relative(path: pathlib.Path, folder: pathlib.Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


__all__ = ["PROTOCOL", "broken", "get", "names", "register", "run", "unregister"]
