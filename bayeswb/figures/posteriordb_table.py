"""Accuracy table in the style of posteriordb (Magnusson et al. 2025): every registered
sampler on every Bayesian model of the registry that carries a stored reference posterior,
scored against that reference.

The models are those whose target has ``reference`` moments and no exact sampler (the
synthetic targets with exact answers are left to the other figures); they are read from
the registry when ``compute`` runs, so references added later are picked up. Each
(model, sampler) pair is one run (``num_chains`` chains or independent particle runs of
``num_samples`` draws, the sampler's default warmup) scored by :func:`bayeswb.score`:
``abs_mean_error_max`` (largest |posterior mean - reference mean| in reference sds),
``sd_rel_error_max`` (largest |sd / reference sd - 1|), and the same errors in the run's own
Monte Carlo standard errors (``mean_z_max``, ``mean_z_rms``, ``sd_z_max``; roughly standard
normal for an exact sampler, so large values flag bias rather than noise), beside the
run's own ``verdict`` (``Result.diagnostics``, made without the reference). A pair that
cannot run (for example a minibatch sampler on a model without a minibatch interface) or
gives NaN scores is a row whose ``error`` column says why. The figure is a heatmap of the
two reference-sd errors, models by samplers.

posteriordb publishes reference posteriors, not sampler scores for these models, so there
is no "published" table.

Measured (the MCMC rows only: ``compute(samplers=["nuts", "mclmc", "mams", "nrpt",
"sghmc", "csgmcmc"])``, seed 0, one model per process, 4-100 s per model with a warm
compilation cache; the whole table was not run). Largest |mean error| in reference sds
over the 8 models: nuts 0.03-0.09, but 0.37 on brownian_motion; mclmc 0.04-0.40; mams
0.05-0.58; nrpt 0.04-0.47, but 3.8 on brownian_motion; sghmc and csgmcmc (the 3 models
with a minibatch interface) 0.11-0.28 on bnn_classification, 1.1-1.3 on
logistic_breast_cancer and 2.8 on horseshoe_diabetes at their default steps. Every row
with a mean z above 5 (a bias beyond its Monte Carlo error) was marked unreliable by its
own verdict, as were most others (r_hat and ess at 4 x 1000 draws, divergences); the
six rows marked fine (nuts on bnn_classification, gp_regression and
logistic_breast_cancer, mams on eight_schools_noncentered and gp_regression, mclmc on
gp_regression) were 0.03-0.11 sd off, mean z 1.7-3.0. gp_regression's three rows,
rerun against its 16-chain reference (models/data/references.json; the 4-chain one
before it had noise_scale's mean 3-4 of its MCSE too high): nuts 0.03 sd off, largest
mean z 1.3; mams 0.07, 2.2; mclmc 0.09, 2.3; all fine.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pandas as pd

import bayeswb as bw
from bayeswb.core.files import atomic_path
from bayeswb.core.progress import tqdm

TITLE = "Every sampler against the reference posteriors (posteriordb style)"
PAPER = (
    "Magnusson, Torgander, Buerkner, Zhang, Carpenter and Vehtari (2025), posteriordb: "
    "testing, benchmarking and developing Bayesian inference algorithms, reference-posterior "
    "comparison"
)
FULL_RUNTIME = (
    "many hours on 2 CPU cores, not yet run whole (every sampler, the trained ones included, "
    "on 8 models: the first three samplers on bnn_classification took 46 min)"
)

SCORES = ["abs_mean_error_max", "sd_rel_error_max", "mean_z_max", "mean_z_rms", "sd_z_max"]
COLUMNS = ["model", "dim", "sampler", "family", "num_chains", "num_samples", "num_warmup"]
COLUMNS += ["n_grad_evals", "n_logdensity_evals", *SCORES, "pareto_k", "verdict", "error"]
PLOTTED = {
    "abs_mean_error_max": "max |mean error| / reference sd",
    "sd_rel_error_max": "max |sd / reference sd - 1|",
}
QUICK_MODELS = ("eight_schools_centered", "eight_schools_noncentered")
# one sampler per family (MCMC, variational): each pair compiles its own program
QUICK_SAMPLERS = ("nuts", "meanfield_vi")


def has_reference(name: str) -> bool:
    """Whether model ``name`` is a posterior with stored reference moments (and no exact
    sampler, which would make it a synthetic target).

    Example:
        >>> has_reference("eight_schools_noncentered"), has_reference("funnel")
        (True, False)
    """
    target = bw.models.get(name)
    return target.reference is not None and target.sample_exact is None


def reference_models() -> list[str]:
    """Registered models for which ``has_reference`` holds (every model is built: slow)."""
    return [name for name in bw.models.names() if has_reference(name)]


def _settings(quick: bool) -> dict:
    if quick:
        # the classic pair: same posterior, centred (funnel-shaped) and non-centred forms
        models = [m for m in QUICK_MODELS if m in bw.models.names() and has_reference(m)]
        if len(models) < 2:
            models += [m for m in reference_models() if m not in models][: 2 - len(models)]
        names = [s for s in QUICK_SAMPLERS if s in bw.samplers.names()]
        return {"models": models, "samplers": names, "chains": 2, "samples": 200, "warmup": 200}
    return {
        "models": reference_models(),
        "samplers": bw.samplers.names(),
        "chains": 4,
        "samples": 1000,
        "warmup": None,
    }


def select_pairs(
    settings: dict, models: list[str] | None = None, samplers: list[str] | None = None
) -> list[tuple[str, str]]:
    """The (model, sampler) pairs of ``settings`` whose model is in ``models`` and sampler
    in ``samplers`` (None: every one); a name the settings do not hold is an error.

    Example:
        >>> settings = {"models": ["a", "b"], "samplers": ["nuts", "mala"]}
        >>> select_pairs(settings, samplers=["mala"])
        [('a', 'mala'), ('b', 'mala')]
    """
    for kind, chosen in (("models", models), ("samplers", samplers)):
        unknown = sorted(set(chosen or ()) - set(settings[kind]))
        if unknown:
            raise ValueError(f"posteriordb_table has no {kind} {unknown}: {settings[kind]}")
    return [
        (m, s)
        for m in settings["models"]
        for s in settings["samplers"]
        if (models is None or m in models) and (samplers is None or s in samplers)
    ]


def warmup_for(sampler: str, settings: dict) -> int | None:
    """The run's warmup: the settings' (None: the sampler's default), capped at the
    sampler's default; None where the default is None (fusion and consensus: each shard's
    sampler takes its own).

    Example:
        >>> warmup_for("nuts", {"warmup": 200}), warmup_for("fusion", {"warmup": None})
        (200, None)
    """
    default = bw.samplers.get(sampler).make_config().num_warmup
    if default is None:
        return settings["warmup"]
    return default if settings["warmup"] is None else min(settings["warmup"], default)


def _run_pair(target, sampler: str, settings: dict, seed: int) -> dict:
    spec = bw.samplers.get(sampler)
    warmup = warmup_for(sampler, settings)
    row = {
        "model": target.name,
        "dim": target.dim,
        "sampler": sampler,
        "family": spec.family,
        "num_chains": settings["chains"],
        "num_samples": settings["samples"],
        "num_warmup": warmup,
        "error": "",
    }
    try:
        result = bw.sample(
            target,
            sampler,
            seed=seed,
            num_chains=settings["chains"],
            num_samples=settings["samples"],
            num_warmup=warmup,
        )
        scores = bw.score(result, target)
    except Exception as error:  # a pair that cannot run is a row that says why
        row["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        return row
    row["n_grad_evals"] = result.cost["n_grad_evals"]
    row["n_logdensity_evals"] = result.cost["n_logdensity_evals"]
    row.update({k: scores.get(k, np.nan) for k in [*SCORES, "pareto_k"]})
    row["verdict"] = scores.get("verdict", "")
    missing = [k for k in SCORES if not math.isfinite(row[k])]
    if missing:
        row["error"] = f"non-finite scores: {', '.join(missing)}"
    return row


def compute(
    quick: bool = False,
    seed: int = 0,
    models: list[str] | None = None,
    samplers: list[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Run every sampler on every reference model; one row per pair in ``"results"``.
    ``models`` and ``samplers`` restrict the pairs to those named (the whole table is
    hours of work: ``FULL_RUNTIME``).

    Quick mode: eight schools, centred and non-centred, x ``nuts`` and ``meanfield_vi``,
    2 chains of 200 draws after at most 200 warmup steps.
    """
    settings = _settings(quick)
    pairs = select_pairs(settings, models, samplers)
    rows = []
    targets = {}
    for model, sampler in tqdm(pairs, desc="posteriordb_table", disable=None):
        if model not in targets:
            targets[model] = bw.models.get(model)
        rows.append(_run_pair(targets[model], sampler, settings, seed))
    return {"results": pd.DataFrame(rows).reindex(columns=COLUMNS)}


def plot(tables: dict[str, pd.DataFrame], out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Heatmaps (models x samplers) of the two reference-sd errors; failed pairs grey.

    Uses matplotlib's object API (no pyplot), so a notebook's backend is left alone.
    """
    import matplotlib
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    results = tables["results"]
    failed = results["error"].fillna("") != ""
    ok = results[~failed]
    samplers = sorted(ok["sampler"].unique())
    never = sorted(set(results["sampler"]) - set(samplers))
    models = sorted(results["model"].unique())
    width = 2.5 + 0.5 * max(len(samplers), 1)
    fig = Figure(figsize=(2 * width, 2.2 + 0.45 * len(models)))
    axes = fig.subplots(1, len(PLOTTED), squeeze=False)[0]
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
    for axis, (metric, label) in zip(axes, PLOTTED.items(), strict=True):
        grid = ok.pivot_table(index="model", columns="sampler", values=metric) if len(ok) else None
        grid = pd.DataFrame(grid).reindex(index=models, columns=samplers)
        values = grid.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        norm = LogNorm(vmin=1e-2, vmax=max(1.0, float(finite.max())) if finite.size else 1.0)
        shown = np.ma.masked_invalid(np.clip(values, 1e-2, None))
        image = axis.imshow(shown, cmap=cmap, norm=norm, aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            dark = np.isfinite(value) and norm(max(value, 1e-2)) < 0.5
            text = f"{value:.2g}" if np.isfinite(value) else "failed"
            axis.text(j, i, text, ha="center", va="center", fontsize=7, color="w" if dark else "k")
        axis.set_xticks(range(len(samplers)), samplers, rotation=60, ha="right", fontsize=8)
        axis.set_yticks(range(len(models)), models, fontsize=8)
        axis.set_title(label, fontsize=9)
        fig.colorbar(image, ax=axis, shrink=0.8)
    title = "Errors against reference posteriors (grey: the pair failed, see results.csv)"
    if never:
        title += f"\nran on none of these models: {', '.join(never)}"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out_dir = pathlib.Path(out_dir)
    paths = [out_dir / "posteriordb_table.png", out_dir / "posteriordb_table.pdf"]
    for path in paths:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=130)
    return paths
