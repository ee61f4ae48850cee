"""W2 against gradient evaluations for the Langevin discretisations on an ill-conditioned
Gaussian: the comparison behind Shen and Lee (2019, "The randomized midpoint method for
log-concave sampling", NeurIPS; Table 1 and section 5) and Yu, Karagulyan and Dalalyan
(2023, "Langevin Monte Carlo for strongly log-concave distributions: randomized midpoint
revisited"), re-run as an experiment rather than a bound.

Target: ``gaussian(dim=100, condition_number=100)``, variances log-spaced in [0.01, 1]
(curvatures 1 to 100). Methods: ``ula``, ``kinetic_langevin`` with the Euler and BAOAB
integrators, and ``randomized_midpoint`` (friction 2, critical for the flattest direction).
Each (method, step size) pair is one run of ``chains`` chains; a budget of B gradient
evaluations per chain is the prefix of that run, its first half discarded as burn-in and
the second half pooled over chains. The score is the exact 2-Wasserstein distance between
the Gaussian fitted to those draws (sample mean and covariance) and the target,
``W2^2 = |m|^2 + tr C + tr S - 2 tr (S^1/2 C S^1/2)^1/2``. The ``frontier`` table keeps,
per method and budget, the best step of the grid (the error a user tuning the step
would get); ``reach`` is the smallest budget of the grid at which each method's frontier
gets below each W2 level. The ``exact`` rows fit the same number of independent exact
draws: the estimator's own noise floor (correlated chain draws sit above it).

The papers give rates, not numbers for this target, so there is no "published" table.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

from bayeswb.core.files import atomic_path

TITLE = "Langevin discretisations: W2 against gradient evaluations"
PAPER = (
    "Shen and Lee (2019), The randomized midpoint method for log-concave sampling, "
    "Table 1 / section 5 (rates), re-run on a condition-100 Gaussian"
)
FULL_RUNTIME = "a few min on 2 idle CPU cores (21 min measured on a heavily shared machine)"

DIM = 100
CONDITION_NUMBER = 100.0
FRICTION = 2.0
# label -> (sampler, options, gradient evaluations per step)
METHODS: dict[str, tuple[str, dict[str, Any], int]] = {
    "ula": ("ula", {}, 1),
    "kinetic euler": ("kinetic_langevin", {"integrator": "euler", "friction": FRICTION}, 1),
    "kinetic baoab": ("kinetic_langevin", {"integrator": "baoab", "friction": FRICTION}, 1),
    "randomized midpoint": ("randomized_midpoint", {"friction": FRICTION}, 2),
}
W2_LEVELS = (2.0, 1.0, 0.5, 0.3)
BLOWN_UP = 50.0  # W2 of a chain on its way to overflow; not drawn


def _settings(quick: bool) -> dict:
    if quick:
        return {"chains": 4, "budgets": [500, 1000, 2000], "steps": [0.015, 0.06]}
    return {
        "chains": 16,
        "budgets": [250, 500, 1000, 2000, 4000, 8000, 16000],
        "steps": [0.0025, 0.005, 0.01, 0.015, 0.03, 0.06, 0.12, 0.18, 0.25],
    }


def gaussian_w2(mean: np.ndarray, cov: np.ndarray, target_var: np.ndarray) -> float:
    """Exact W2 between N(mean, cov) and N(0, diag(target_var)); shapes (d,), (d, d), (d,).

    Example:
        >>> round(gaussian_w2(np.ones(2), np.eye(2), np.ones(2)), 6)  # shift only
        1.414214
    """
    root = np.sqrt(target_var)
    cross = scipy.linalg.sqrtm(root[:, None] * cov * root[None, :]).real
    squared = mean @ mean + np.trace(cov) + target_var.sum() - 2.0 * np.trace(cross)
    return float(np.sqrt(max(squared, 0.0)))


def _fit_w2(x: np.ndarray, target_var: np.ndarray) -> float:
    """W2 of the Gaussian fit of draws ``x`` (n, d); inf if the draws blew up."""
    if not np.isfinite(x).all() or np.abs(x).max() > 1e6:
        return float("inf")
    return gaussian_w2(x.mean(0), np.cov(x.T), target_var)


def compute(quick: bool = False, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Run every (method, step) pair; tables ``results`` (one row per method, step and
    budget), ``frontier`` (best step per method and budget, plus the exact-draw floor) and
    ``reach`` (gradient evaluations per chain to reach each W2 level; NaN: not reached)."""
    import jax

    import bayeswb as bw
    from bayeswb.core.progress import tqdm

    settings = _settings(quick)
    chains, budgets = settings["chains"], settings["budgets"]
    target = bw.models.get("gaussian", dim=DIM, condition_number=CONDITION_NUMBER)
    sample_exact = target.sample_exact
    if target.reference is None or sample_exact is None:
        raise ValueError("the gaussian target needs its exact reference and sample_exact")
    target_var = np.asarray(target.reference.sd["x"], dtype=np.float64) ** 2
    rows = []
    runs = [(label, h) for label in METHODS for h in settings["steps"]]
    for label, step_size in tqdm(runs, desc="langevin_w2", disable=None):
        name, options, grads_per_step = METHODS[label]
        result = bw.sample(
            target, name, seed=seed, num_chains=chains, num_warmup=0,
            num_samples=budgets[-1] // grads_per_step, step_size=step_size, **options,
        )  # fmt: skip
        draws = np.asarray(result.idata.posterior["x"].values, dtype=np.float64)
        for budget in budgets:
            steps = budget // grads_per_step
            x = draws[:, steps // 2 : steps].reshape(-1, DIM)
            rows.append(
                {
                    "method": label,
                    "step_size": step_size,
                    "grads_per_chain": budget,
                    "draws_used": x.shape[0],
                    "w2": _fit_w2(x, target_var),
                }
            )
    results = pd.DataFrame(rows)
    finite = results[np.isfinite(results["w2"])]
    best = finite.loc[finite.groupby(["method", "grads_per_chain"])["w2"].idxmin()]
    frontier = best[["method", "grads_per_chain", "step_size", "w2"]].reset_index(drop=True)
    # the estimator's floor: the same number of independent exact draws
    exact_key = jax.random.key(seed + 1)
    floor = []
    for budget in budgets:
        n = chains * (budget - budget // 2)
        x = np.asarray(sample_exact(exact_key, n), dtype=np.float64)
        floor.append(
            {
                "method": "exact draws",
                "grads_per_chain": budget,
                "step_size": np.nan,
                "w2": _fit_w2(x, target_var),
            }
        )
    frontier = pd.concat([frontier, pd.DataFrame(floor)], ignore_index=True)
    reach = []
    for label in METHODS:
        curve = frontier[frontier["method"] == label].sort_values("grads_per_chain")
        for level in W2_LEVELS:
            hit = curve[curve["w2"] <= level]
            grads = float(hit["grads_per_chain"].iloc[0]) if len(hit) else np.nan
            reach.append({"method": label, "w2_level": level, "grads_per_chain": grads})
    return {"results": results, "frontier": frontier, "reach": pd.DataFrame(reach)}


def plot(tables: dict[str, pd.DataFrame], out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Left: the frontier (best step per budget) per method, with the exact-draw floor;
    right: every step size of every method. Writes langevin_w2.png and .pdf."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frontier, results = tables["frontier"], tables["results"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    tab10 = matplotlib.color_sequences["tab10"]
    colours = dict(zip(list(METHODS) + ["exact draws"], tab10, strict=False))
    for label, group in frontier.groupby("method", sort=False):
        style = "k--" if label == "exact draws" else "o-"
        kwargs = {} if label == "exact draws" else {"color": colours[label]}
        left.loglog(group["grads_per_chain"], group["w2"], style, label=label, **kwargs)
    left.set_title("best step of the grid per budget")
    left.set_xlabel("gradient evaluations per chain")
    left.set_ylabel("W2(Gaussian fit, target)")
    left.legend(fontsize=8)
    for (label, step_size), group in results.groupby(["method", "step_size"], sort=False):
        group = group[group["w2"] < BLOWN_UP]
        right.loglog(
            group["grads_per_chain"], group["w2"], "-", color=colours[label], alpha=0.6, lw=1
        )
        if len(group):
            last = group.iloc[-1]
            right.annotate(
                f"{step_size:g}", (last["grads_per_chain"], last["w2"]), fontsize=6,
                color=colours[label],
            )  # fmt: skip
    right.set_title(f"every step size h (runs past W2 {BLOWN_UP:g} left out)")
    right.set_xlabel("gradient evaluations per chain")
    fig.suptitle(f"gaussian dim {DIM}, condition number {CONDITION_NUMBER:g}")
    fig.tight_layout()
    paths = [out_dir / "langevin_w2.png", out_dir / "langevin_w2.pdf"]
    for path in paths:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=130)
    plt.close(fig)
    return paths
