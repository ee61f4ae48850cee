"""The default-settings sweep: does every sampler, with its default options, either get the
answer right or say that it did not?

Every registered sampler runs on every registry model that carries ground truth (exact
log Z, exact samples or reference moments) and that it can run on (the minibatch samplers
need a model with a minibatch interface), with default options only, at (about) the same
budget of gradient evaluations (:func:`bayeswb.bench.bench` sizes the draws from two pilot
runs), for several seeds. The draws are all a budget can size: a trained sampler's
default training runs to its plateau or cap whatever the budget, so those cells spend
more (pis, measured: 135-225 times the budget of 2e5); the results' ``budget_used``
column says how much. Each cell is scored against the truth and compared with the
verdict the run gave of itself, without the truth (``Result.diagnostics``):

- ``accurate``: every posterior mean within 5 Monte Carlo standard errors of the truth
  (``mean_z_max <= 5``) and log Z within 5 of its reported standard errors, where the
  run has them;
- the verdict ``fine`` or ``flagged``.

A cell whose score is bad and whose verdict is ``fine`` is a **silent failure**, the worst
defect of a sampling workbench; the goal is none. ``accurate and fine`` cells are the
defaults that work; ``accurate but flagged`` are false alarms or honest caution (too few
effective draws for the budget); ``bad and flagged`` is a failure the user is told about.
A run with neither score (no moments to compare and no log Z, as MCMC on a model whose
only truth is log Z) is ``unscored``, not counted as accurate. The figure is a heat map
of the worst outcome over seeds, models by samplers.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd

import bayeswb as bw
from bayeswb.bench import bench
from bayeswb.core.files import atomic_path

TITLE = "Default settings of every sampler on every model: accuracy against the verdict"
PAPER = (
    "bayeswb's own sweep; verdict thresholds from Vehtari, Gelman, Simpson, Carpenter and "
    "Buerkner (2021), Rank-normalization, folding, and localization (R-hat, ESS), and "
    "Vehtari, Simpson, Gelman, Yao and Gabry (2024), Pareto smoothed importance sampling "
    "(k-hat)"
)
FULL_RUNTIME = "several hours on 2 CPU cores (about 400 model x sampler cells x 2 seeds)"

# the outcomes, best first after "unscored"; a cell's colour is its worst outcome over seeds.
# "unscored": the run gave nothing the model's truth can score (an MCMC run on vae_digits,
# whose only truth is log Z), so it is no evidence either way and ranks below every other
OUTCOMES = (
    "unscored",
    "accurate, fine",
    "accurate, flagged",
    "bad, flagged",
    "error",
    "SILENT FAILURE",
)
MEAN_Z_BAD = 5.0
LOG_Z_SE_BAD = 5.0
BUDGET = 2e5
QUICK_MODELS = ("gaussian", "banana")
QUICK_SAMPLERS = ("nuts", "mala")


def has_truth(name: str) -> bool:
    """Whether registry model ``name`` carries any ground truth to score against.

    Example:
        >>> has_truth("funnel")
        True
    """
    target = bw.models.get(name)
    return any(x is not None for x in (target.log_z, target.sample_exact, target.reference))


def outcome(row: pd.Series) -> str:
    """The cell's outcome (one of ``OUTCOMES``) from a row of :func:`bayeswb.bench.bench`.

    Example:
        >>> outcome(pd.Series({"error": "", "mean_z_max": 9.0, "verdict": "fine"}))
        'SILENT FAILURE'
    """
    if row.get("error", ""):
        return "error"
    scores = (_number(row.get("mean_z_max")), _number(row.get("log_z_error_in_se")))
    if all(np.isnan(score) for score in scores):
        return "unscored"
    bad = _worse(row.get("mean_z_max"), MEAN_Z_BAD)
    bad = bad or _worse(abs(_number(row.get("log_z_error_in_se"))), LOG_Z_SE_BAD)
    fine = row.get("verdict") == "fine"
    if bad:
        return "SILENT FAILURE" if fine else "bad, flagged"
    return "accurate, fine" if fine else "accurate, flagged"


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _worse(value: object, bound: float) -> bool:
    number = _number(value)
    return bool(np.isfinite(number) and number > bound) or bool(np.isinf(number))


def compute(
    quick: bool = False,
    seed: int = 0,
    models: list[str] | None = None,
    samplers: list[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Run the sweep: ``results`` (one row per model, sampler and seed, with the score,
    the verdict and the outcome) and ``counts`` (cells per outcome).

    ``quick`` runs a handful of cells (``QUICK_MODELS`` x ``QUICK_SAMPLERS``, one seed,
    a small budget), as CI does; ``models`` and ``samplers`` restrict the full sweep.
    Quick mode caps the draws at the second pilot run's (``2 * pilot``): that pilot, run
    at the cell's seed, is then the scored run itself, so a cell compiles and runs twice
    instead of three times; compiling is most of a quick run's time.
    """
    if quick:
        models = models or list(QUICK_MODELS)
        samplers = samplers or list(QUICK_SAMPLERS)
        # 2000 draws per chain: long enough for a "fine" verdict on the Gaussian (measured:
        # both cells fine, so a silent failure there would show), cheap to run; the budget
        # affords more, so every scored run is capped at the second pilot's size
        seeds, budget, pilot = [seed], 1.5e5, 1000
        max_samples = 2 * pilot
    else:
        models = models or [name for name in bw.models.names() if has_truth(name)]
        samplers = samplers or bw.samplers.names()
        seeds, budget, pilot = [seed, seed + 1], BUDGET, 100
        max_samples = 100_000  # bench's default
    rows = []
    for model in models:
        target = bw.models.get(model)
        runnable = [name for name in samplers if bw.samplers.get(name).runs_on(target)]
        if runnable:
            sweep = bench(
                [model],
                runnable,
                budget=budget,
                seeds=seeds,
                pilot_samples=pilot,
                max_samples=max_samples,
            )
            rows.append(sweep)
    results = pd.concat(rows, ignore_index=True)
    results["outcome"] = results.apply(outcome, axis=1)
    counts = results["outcome"].value_counts().reindex(OUTCOMES, fill_value=0)
    return {"results": results, "counts": counts.rename_axis("outcome").reset_index()}


def worst_outcomes(results: pd.DataFrame) -> pd.DataFrame:
    """Models by samplers: the worst outcome of each cell over its seeds.

    Example:
        >>> rows = pd.DataFrame({"model": ["m", "m"], "sampler": ["s", "s"],
        ...                      "outcome": ["accurate, fine", "bad, flagged"]})
        >>> worst_outcomes(rows).loc["m", "s"]
        'bad, flagged'
    """
    rank = results["outcome"].map(OUTCOMES.index)
    worst = results.assign(rank=rank).pivot_table(
        index="model", columns="sampler", values="rank", aggfunc="max"
    )
    return worst.apply(lambda column: column.map(lambda r: _label(r)))


def _label(rank: float) -> str | None:
    return None if not np.isfinite(rank) else OUTCOMES[int(rank)]


def plot(tables: dict[str, pd.DataFrame], out_dir: pathlib.Path) -> list[pathlib.Path]:
    """The heat map of :func:`worst_outcomes` (``defaults_matrix.png`` and ``.pdf``)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    grid = worst_outcomes(tables["results"])
    codes = grid.apply(
        lambda column: column.map(lambda o: np.nan if o is None else OUTCOMES.index(o))
    )
    values = codes.to_numpy(dtype=float)
    colours = ListedColormap(["#f0f0f0", "#1a9850", "#a6d96a", "#fdae61", "#bdbdbd", "#d73027"])
    fig = Figure(figsize=(2.5 + 0.45 * grid.shape[1], 2.0 + 0.4 * grid.shape[0]))
    axis = fig.subplots()
    axis.imshow(
        np.ma.masked_invalid(values),
        cmap=colours,
        vmin=-0.5,
        vmax=len(OUTCOMES) - 0.5,
        aspect="auto",
    )
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value) and OUTCOMES[int(value)] == "SILENT FAILURE":
            axis.text(j, i, "!", ha="center", va="center", fontsize=9, color="w")
    axis.set_xticks(range(grid.shape[1]), grid.columns, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
    counts = tables["counts"].set_index("outcome")["count"]
    legend = ", ".join(f"{name}: {counts.get(name, 0)}" for name in OUTCOMES)
    axis.set_title(
        "worst outcome over seeds (green: accurate and fine; red '!': silent failure)\n" + legend,
        fontsize=8,
    )
    fig.tight_layout()
    out_dir = pathlib.Path(out_dir)
    paths = [out_dir / "defaults_matrix.png", out_dir / "defaults_matrix.pdf"]
    for path in paths:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=150)
    return paths
