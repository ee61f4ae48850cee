"""Wu, Koehler and Noe (2020), "Stochastic Normalizing Flows", NeurIPS, Fig. 3 and Table 1:
the free-energy profile of the 2-D double well along x1 (in kT) sampled by a normalizing
flow alone and by flows with stochastic (Metropolis) blocks, before and after reweighting
with the path weights, and its bias against the exact profile.

The target is ``double_well`` (``u(x) = x1^4 - 6 x1^2 - 0.5 x1 + x2^2 / 2``, the paper's
energy). Three samplers, all the registered ``snf`` with the same training:

- ``RNVP``: three blocks of two RealNVP affine coupling layers, no stochastic blocks (a
  Boltzmann generator);
- ``RNVP+MC``: the same blocks, each followed by random-walk Metropolis steps targeting
  ``q0^(1 - lambda) p^lambda``, ``lambda = 1/3, 2/3, 1`` (the paper's interpolated energies);
- ``NSF+MC``: the same with neural-spline coupling layers.

Each is trained end to end on the mixed path loss (half forward KL on exact target draws,
half reverse KL), as the paper combines maximum likelihood on samples of both wells with
the KL to the energy. Each run trains one SNF and draws ``num_samples`` paths.

Profile and bias. The x1 range [-3, 3] is cut into 30 bins (width 0.2, as the paper's 30
histogram bins); a run's profile is ``F = -log(histogram density)`` of its samples,
unweighted or weighted by the normalised path weights. The exact profile is the bin
average of ``exp(-F_exact)`` (quadrature on :func:`double_well_free_energy`), so that the
finite bin width is not counted as bias. Both are shifted to minimum 0 and compared on the
bins whose centres lie in (-2.25, 2.25), the window of the authors' released analysis
code; empty bins are left out, as there. Two numbers per run:

- ``bias``: ``|mean over bins (F_exact - F_estimate)|``, the absolute mean signed
  difference, which is what the authors' code computes and what Table 1 reports;
- ``mean_abs_diff``: ``mean over bins |F_exact - F_estimate|``, a stricter measure (it
  cannot cancel errors of opposite sign), reported beside it.

The tables give mean and standard deviation over runs (10 in full mode, as the paper).
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import pandas as pd

from bayeswb.core.files import atomic_path

TITLE = "SNF double well: free-energy profile and bias"
PAPER = "Wu, Koehler and Noe (2020), Stochastic Normalizing Flows, Fig. 3 and Table 1"
FULL_RUNTIME = "about 16 min on 2 CPU cores (measured on a shared, loaded machine)"

EDGES = np.linspace(-3.0, 3.0, 31)
WINDOW = 2.25
PUBLISHED = {  # Table 1: bias of the profile, unweighted -> reweighted
    ("RNVP", "unweighted"): 1.365,
    ("RNVP", "reweighted"): 0.265,
    ("RNVP+MC", "unweighted"): 1.482,
    ("RNVP+MC", "reweighted"): 0.147,
    ("NSF+MC", "unweighted"): 0.444,
    ("NSF+MC", "reweighted"): 0.076,
}
SETTINGS = {
    "RNVP": {"flow_type": "affine_coupling", "stochastic": "none"},
    "RNVP+MC": {"flow_type": "affine_coupling", "stochastic": "rwm"},
    "NSF+MC": {"flow_type": "spline_coupling", "stochastic": "rwm"},
}
COMMON = {
    "num_blocks": 3,
    "layers_per_block": 2,
    "hidden_depth": 2,
    "num_mcmc_steps": 20,
    "step_size": 0.25,
    "objective": "mixed",
    "forward_weight": 0.5,
    "init_scale": 1.0,
    "learning_rate": 2e-3,
}
FULL = {
    "num_runs": 10,
    "num_warmup": 600,
    "num_samples": 300_000,
    "hidden_width": 64,
    "batch_size": 256,
    "num_mc_samples": 256,
}
QUICK = {  # compile-bound: each setting's SNF compiles once; few steps and draws
    "num_runs": 2,
    "num_warmup": 20,
    "num_samples": 4000,
    "hidden_width": 16,
    "hidden_depth": 1,
    "batch_size": 64,
    "num_mc_samples": 64,
}


def exact_profile(edges: np.ndarray = EDGES) -> np.ndarray:
    """Exact bin-averaged free energy ``-log(mean of p(x1) over each bin)`` in kT."""
    from bayeswb.models.energies import double_well_free_energy

    fine = np.linspace(0.0, 1.0, 401)
    profile = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        x = lo + (hi - lo) * fine
        density = np.exp(-double_well_free_energy(x))
        profile.append(-np.log(np.trapezoid(density, x) / (hi - lo)))
    return np.asarray(profile)


def sampled_profile(
    x1: np.ndarray, log_weights: np.ndarray | None, edges: np.ndarray = EDGES
) -> np.ndarray:
    """``-log`` histogram density of x1 (all samples count in the normalisation, also those
    outside the edges); weighted by the self-normalised weights when given; inf where a bin
    is empty."""
    if log_weights is None:
        weights = np.full(x1.shape, 1.0 / x1.size)
    else:
        finite = np.where(np.isfinite(log_weights), log_weights, -np.inf)
        weights = np.exp(finite - finite.max())
        weights /= weights.sum()
    mass, _ = np.histogram(x1, bins=edges, weights=weights)
    with np.errstate(divide="ignore"):
        return -np.log(mass / np.diff(edges))


def profile_bias(estimate: np.ndarray, exact: np.ndarray, centres: np.ndarray) -> dict:
    """Both profiles shifted to minimum 0; ``bias`` (absolute mean signed difference, the
    paper's) and ``mean_abs_diff`` over the finite bins with centres in the window."""
    estimate = estimate - np.min(estimate[np.isfinite(estimate)])
    exact = exact - np.min(exact)
    use = (np.abs(centres) < WINDOW) & np.isfinite(estimate)
    difference = exact[use] - estimate[use]
    return {
        "bias": float(np.abs(np.mean(difference))),
        "mean_abs_diff": float(np.mean(np.abs(difference))),
        "empty_bins": int(np.sum((np.abs(centres) < WINDOW) & ~np.isfinite(estimate))),
    }


def compute(
    quick: bool = False, seed: int = 0, sizes: dict | None = None
) -> dict[str, pd.DataFrame]:
    """Train and sample each setting ``num_runs`` times; profiles, biases, published values.

    ``sizes`` overrides entries of the mode's sizes (``num_runs``, ``num_warmup``,
    ``num_samples``, ...), for a run between quick and full.

    Returns ``"results"`` (one row per setting and x1 bin: exact profile, mean and sd over
    runs of the unweighted and reweighted profiles, each run's shifted to minimum 0),
    ``"runs"`` (one row per setting and run: bias and mean absolute difference, unweighted
    and reweighted, the weights' ESS fraction, log Z and its error), ``"summary"`` (mean and
    sd over runs) and ``"published"`` (bias next to Table 1).
    """
    import bayeswb as bw
    from bayeswb.core.progress import tqdm
    from bayeswb.core.verdict import weights_ess

    sizes = {**(QUICK if quick else FULL), **(sizes or {})}
    target = bw.models.get("double_well")
    centres = 0.5 * (EDGES[1:] + EDGES[:-1])
    exact = exact_profile()
    exact_shifted = exact - exact.min()
    options = {k: v for k, v in sizes.items() if k != "num_runs"}
    profile_rows, run_rows = [], []
    for index, (name, setting) in enumerate(
        tqdm(SETTINGS.items(), desc="wu2020_double_well", disable=None)
    ):
        result = bw.sample(
            target,
            "snf",
            seed=seed * 1000 + index,
            num_chains=sizes["num_runs"],
            **{**COMMON, **setting, **options},
        )
        positions = np.asarray(result.positions, dtype=np.float64)
        log_weights = np.asarray(result.log_weights, dtype=np.float64)
        per_run_log_z = np.asarray(result.idata.sample_stats["log_marginal_likelihood"])
        profiles: dict[str, list[Any]] = {"unweighted": [], "reweighted": []}
        for run in range(sizes["num_runs"]):
            row = {"setting": name, "run": run}
            for kind, weights in (("unweighted", None), ("reweighted", log_weights[run])):
                profile = sampled_profile(positions[run, :, 0], weights)
                for metric, value in profile_bias(profile, exact, centres).items():
                    row[f"{metric}_{kind}"] = value
                finite = np.isfinite(profile)
                shifted = np.where(finite, profile - np.min(profile[finite]), np.nan)
                profiles[kind].append(shifted)
            row["ess_fraction"] = weights_ess(log_weights[run]) / log_weights.shape[1]
            row["log_z"] = float(per_run_log_z[run])
            row["log_z_error"] = float(per_run_log_z[run] - target.log_z)
            run_rows.append(row)
        for j, centre in enumerate(centres):
            row = {"setting": name, "x1": centre, "exact": exact_shifted[j]}
            for kind, stack in profiles.items():
                column = np.asarray(stack)[:, j]
                row[f"{kind}_mean"] = (
                    float(np.nanmean(column)) if np.any(~np.isnan(column)) else np.nan
                )
                row[f"{kind}_sd"] = (
                    float(np.nanstd(column)) if np.sum(~np.isnan(column)) > 1 else np.nan
                )
            profile_rows.append(row)
    runs = pd.DataFrame(run_rows)
    metrics = [c for c in runs.columns if c not in ("setting", "run")]
    summary = runs.groupby("setting", sort=False)[metrics].agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    summary = summary.reset_index()
    published_rows = []
    for (name, kind), value in PUBLISHED.items():
        ours = float(runs.loc[runs.setting == name, f"bias_{kind}"].mean())
        published_rows.append(
            {
                "setting": f"{name} ({kind})",
                "metric": "bias of F(x1) [kT]",
                "ours": ours,
                "published": value,
                "difference": ours - value,
            }
        )
    return {
        "results": pd.DataFrame(profile_rows),
        "runs": runs,
        "summary": summary,
        "published": pd.DataFrame(published_rows),
    }


def plot(tables: dict[str, pd.DataFrame], out_dir: pathlib.Path) -> list[pathlib.Path]:
    """One panel per setting: exact profile, unweighted and reweighted mean +- sd over runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, summary = tables["results"], tables["summary"].set_index("setting")
    fine = np.linspace(-3.0, 3.0, 301)
    from bayeswb.models.energies import double_well_free_energy

    exact_line = double_well_free_energy(fine)
    exact_line = exact_line - exact_line.min()
    names = list(dict.fromkeys(results["setting"]))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        rows = results[results.setting == name]
        ax.plot(fine, exact_line, color="0.25", linewidth=2.5, label="exact")
        for kind, color in (("unweighted", "tab:red"), ("reweighted", "tab:green")):
            bias = summary.loc[name, f"bias_{kind}_mean"]
            ax.errorbar(
                rows["x1"],
                rows[f"{kind}_mean"],
                yerr=rows[f"{kind}_sd"],
                color=color,
                linewidth=1.5,
                capsize=2,
                label=f"{kind} (bias {bias:.3f})",
            )
        ax.axvspan(-3.0, -WINDOW, color="0.92")
        ax.axvspan(WINDOW, 3.0, color="0.92")
        ax.set_ylim(-1.0, 14.0)
        ax.set_xlabel("$x_1$")
        ax.set_title(name)
        ax.legend(fontsize=8, loc="upper center")
    np.atleast_1d(axes)[0].set_ylabel("free energy (kT)")
    fig.tight_layout()
    paths = [out_dir / "wu2020_double_well.png", out_dir / "wu2020_double_well.pdf"]
    for path in paths:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=120)
    plt.close(fig)
    return paths
