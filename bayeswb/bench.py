"""Benchmark sweeps: every (model, sampler) pair at an equal gradient budget, scored.

``bench`` returns a pandas DataFrame (one row per model x sampler x seed);
``write_report`` writes it as CSV and Markdown plus one plot per metric. A pair that
fails (an exception, or NaN scores) is a row whose ``error`` column says why.
"""

from __future__ import annotations

import math
import pathlib
import time
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import arviz as az
import numpy as np
import pandas as pd

from bayeswb import models
from bayeswb.core.config import as_count
from bayeswb.core.diagnostics import score
from bayeswb.core.files import atomic_path
from bayeswb.core.progress import progress_bar
from bayeswb.core.result import Result
from bayeswb.core.sampler import SAMPLERS
from bayeswb.core.target import Target
from bayeswb.core.verdict import UnreliableRunWarning, weights_ess
from bayeswb.execution.sample import sample

METRICS = [
    "abs_delta_log_z",
    "log_z_se",
    "mean_z_max",
    "sd_rel_error_max",
    "sliced_wasserstein",
    "ess_per_grad",
    "ess_per_second",
    "divergences",
]


class _Run(NamedTuple):
    """One run of a pair and its wall time, compilation included."""

    result: Result
    seconds: float
    num_samples: int


def _timed_run(
    target: Target, sampler: str, seed: int, num_chains: int, num_samples: int, options: dict
) -> _Run:
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the verdict is a column of the row (score's "verdict"); a pilot's is not read
        warnings.simplefilter("ignore", UnreliableRunWarning)
        result = sample(
            target, sampler, seed=seed, num_chains=num_chains, num_samples=num_samples, **options
        )
    return _Run(result, time.perf_counter() - start, num_samples)


def _spent(result: Result) -> float:
    """A run's cost as the budget counts it: gradient evaluations, or log-density
    evaluations for a gradient-free sampler."""
    return result.cost["n_grad_evals"] or result.cost["n_logdensity_evals"]


def _sized_draws(
    target: Target, sampler: str, num_chains: int, pilot: int, options: dict, budget: float,
    seed: int,
) -> tuple[int, list[_Run]]:  # fmt: skip
    """Draws per chain that spend about ``budget``, from pilot runs at ``seed`` (the
    pair's first seed), and the pilots.

    Cost is fitted as ``intercept + slope * num_samples`` from pilots of ``pilot`` and
    ``2 * pilot`` draws, in gradient evaluations, or in log-density evaluations for a
    sampler whose gradient cost does not grow with the draws (Pathfinder and VI draw for
    free). A first pilot that already spent the budget (a trained sampler's training) fixes
    the draws at ``pilot`` whatever the slope, so the second is not run.
    """
    runs = [_timed_run(target, sampler, seed, num_chains, pilot, options)]
    if _spent(runs[0].result) >= budget:
        return pilot, runs
    runs.append(_timed_run(target, sampler, seed, num_chains, 2 * pilot, options))
    first, second = (run.result.cost for run in runs)
    for counter in ("n_grad_evals", "n_logdensity_evals"):
        slope = (second[counter] - first[counter]) / pilot
        if slope > 0:
            affordable = int((budget - first[counter]) / slope + pilot)
            return max(affordable, pilot), runs
    raise ValueError(f"{sampler}'s cost does not grow with the number of draws")


def _min_ess(result: Result) -> float:
    log_weights = result.log_weights
    if log_weights is not None:
        return weights_ess(log_weights)
    ess = az.ess(result.idata.posterior, method="bulk")
    return float(ess.to_array().min())


def _check_sweep(
    model_names: Sequence[Any], sampler_names: Sequence[str], budget: Any, seeds: Sequence[int]
) -> None:
    """Refuse a sweep that cannot give a row before any run: no model, sampler or seed, an
    unknown name, or a budget that is not a positive number."""
    for what, names in (("model", model_names), ("sampler", sampler_names), ("seed", seeds)):
        if len(names) == 0:
            raise ValueError(f"bench needs at least one {what}, got none")
    for name in model_names:
        if isinstance(name, str):
            models.parameters(name)  # a KeyError naming the registered models
    for name in sampler_names:
        SAMPLERS.get(name)
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
        raise ValueError(
            f"budget must be a positive number of gradient evaluations, got {budget!r}"
        )
    if not math.isfinite(budget):
        raise ValueError(f"budget must be finite, got {budget!r}")


def bench(
    model_names: Sequence[str | Target],
    sampler_names: Sequence[str],
    budget: float = 1e5,
    seeds: Sequence[int] = (0, 1, 2),
    num_chains: int = 4,
    pilot_samples: int = 100,
    max_samples: int = 100_000,
    options: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Run every model x sampler pair at (about) ``budget`` gradient evaluations per run.

    The number of draws per chain is chosen from two pilot runs at the first seed
    (``pilot_samples`` and twice that), fitting cost = intercept + slope x draws, so
    warmup and per-draw costs both count; gradient-free samplers are budgeted in
    log-density evaluations. Each seed is then one run (at most ``max_samples`` draws per
    chain), scored by :func:`bayeswb.score` against the target's truth; a pilot of the
    chosen size is the first seed's run, not run again.

    A sampler whose warmup alone costs more than the budget (a flow's or a diffusion
    sampler's training, to its plateau or its cap) still runs, with ``pilot_samples``
    draws: its ``budget_used`` column (evaluations made / ``budget``) says by how much
    it overspent, rather than its row passing as a run at the budget. Its first pilot
    already shows that, so it trains twice for two seeds, not four times.

    Example:
        >>> df = bench(["gaussian"], ["nuts"], budget=2e4, seeds=[0], num_chains=2,
        ...            pilot_samples=50, max_samples=100)
        >>> df.loc[0, ["model", "sampler", "error"]].tolist()
        ['gaussian', 'nuts', '']
        >>> int(df.loc[0, "num_samples"])  # the budget affords more: capped at max_samples
        100
    """
    _check_sweep(model_names, sampler_names, budget, seeds)
    num_chains = as_count("num_chains", num_chains)
    pilot_samples = as_count("pilot_samples", pilot_samples)
    max_samples = as_count("max_samples", max_samples)
    options = options or {}
    rows = []
    # one bar over the pairs, where a person is watching; a failing pair is a row and the
    # sweep goes on
    bar = progress_bar(None, len(model_names) * len(sampler_names), 0, "pair")
    for model in model_names:
        target = models.get(model) if isinstance(model, str) else model
        for sampler in sampler_names:
            bar.set_postfix(model=target.name, sampler=sampler)
            extra = options.get(sampler, {})
            base = {"model": target.name, "sampler": sampler}
            try:
                num_samples, pilots = _sized_draws(
                    target, sampler, num_chains, pilot_samples, extra, budget, seeds[0]
                )
                config = SAMPLERS.get(sampler).make_config(num_chains=num_chains, **extra)
                num_samples = config.valid_num_samples(min(num_samples, max_samples))
            except Exception as error:  # a failing pair is a row, not a crashed sweep
                rows += [
                    {**base, "seed": s, "error": f"{type(error).__name__}: {error}"} for s in seeds
                ]
                bar.update(1)
                continue
            # a pilot of the scored size at the first seed is that seed's run: a trained
            # sampler's cell trains twice (one pilot, one more seed) rather than four times
            same_size = [run for run in pilots if run.num_samples == num_samples]
            reused = {seeds[0]: same_size[0]} if same_size else {}
            for seed in seeds:
                row: dict[str, Any] = {**base, "seed": seed, "num_samples": num_samples}
                try:
                    run = reused.get(seed) or _timed_run(
                        target, sampler, seed, num_chains, num_samples, extra
                    )
                    result, seconds = run.result, run.seconds
                    grads = _spent(result)
                    row.update(score(result, target))
                    ess = _min_ess(result)
                    stats = getattr(result.idata, "sample_stats", None)
                    row.update(
                        n_grad_evals=result.cost["n_grad_evals"],
                        budget_used=grads / budget,
                        log_z_se=result.log_z_se,
                        ess_per_grad=ess / grads,
                        ess_per_second=ess / max(result.cost["sample_s"], 1e-9),
                        divergences=int(stats["diverging"].sum())
                        if stats is not None and "diverging" in stats
                        else 0,
                        seconds=seconds,
                        error="",
                    )
                    bad = [
                        k for k in METRICS if isinstance(row.get(k), float) and math.isnan(row[k])
                    ]
                    if bad:
                        row["error"] = f"NaN scores: {', '.join(bad)}"
                except Exception as error:
                    row["error"] = f"{type(error).__name__}: {error}"
                rows.append(row)
            bar.update(1)
    bar.close()
    frame = pd.DataFrame(rows)
    for column in ["error", *METRICS]:
        if column not in frame:
            frame[column] = "" if column == "error" else np.nan
    frame["error"] = frame["error"].fillna("")
    return frame


def _markdown(frame: pd.DataFrame) -> str:
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(frame: pd.DataFrame, out_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """Write ``bench.csv``, ``bench.md`` (mean over seeds) and one PNG per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "bench.csv", out / "bench.md"]
    with atomic_path(written[0]) as temporary:
        frame.to_csv(temporary, index=False)
    present = [m for m in METRICS if m in frame and frame[m].notna().any()]
    ok = frame[frame["error"] == ""]
    table = ok.groupby(["model", "sampler"])[present].mean().reset_index() if len(ok) else ok
    failures = frame[frame["error"] != ""][["model", "sampler", "seed", "error"]]
    text = "# bayeswb bench (mean over seeds)\n\n" + _markdown(table)
    if len(failures):
        text += "\n## Failed runs\n\n" + _markdown(failures)
    with atomic_path(written[1]) as temporary:
        temporary.write_text(text)
    for metric in present:
        pivot = ok.pivot_table(index="model", columns="sampler", values=metric, aggfunc="mean")
        if pivot.empty:
            continue
        positive = bool((pivot.fillna(1.0) > 0).all().all())
        axes = pivot.plot.bar(figsize=(6, 3.5), logy=positive and metric != "mean_z_max")
        axes.set_ylabel(metric)
        axes.set_title(f"{metric} (mean over seeds)")
        path = out / f"{metric}.png"
        plt.tight_layout()
        with atomic_path(path) as temporary:
            plt.savefig(temporary, dpi=120)
        plt.close("all")
        written.append(path)
    return written
