"""The checks of a trained sampler's fit: its plateau rule's flags or, without one,
its recorded loss curve still falling."""

from __future__ import annotations

import math

import arviz as az
import numpy as np

from bayeswb.core.verdict.check import Check, group


def training_check(trace: np.ndarray | None) -> Check | None:
    """The plateau test of the package docstring on a (runs, steps) loss trace."""
    if trace is None:
        return None
    steps = trace.shape[-1]
    window = steps // 10
    if window < 5:
        return None
    worst = 0.0
    for run in trace:
        run = run[np.isfinite(run)]
        if run.size < 2 * window:
            continue
        last, before = run[-window:], run[-2 * window : -window]
        se = math.sqrt(last.var(ddof=1) / window + before.var(ddof=1) / window)
        worst = max(worst, float((before.mean() - last.mean()) / se) if se > 0 else 0.0)
    ok = bool(worst <= 3.0)
    return Check(
        "training",
        worst,
        3.0,
        ok,
        "training converged" if ok else "training still improving",
        "more training steps (num_warmup)",
    )


def plateau_flags(idata: az.InferenceData) -> np.ndarray | None:
    """Per run, whether a fit converged: a flow's training stopped by its plateau rule, or
    the Laplace proposal's search found a mode (its Newton decrement; recorded as
    ``training_converged`` per run or ``plateau`` per step), where the run used one."""
    for group_name in ("path_stats", "warmup_sample_stats"):
        data = group(idata, group_name)
        if data is not None and "training_converged" in data:
            return np.asarray(data["training_converged"].values, bool).reshape(-1)
    for group_name in ("warmup_sample_stats", "path_stats"):
        data = group(idata, group_name)
        if data is not None and "plateau" in data:
            flags = np.asarray(data["plateau"].values, bool)
            return np.asarray(flags.reshape(-1, flags.shape[-1]).any(axis=-1))
    return None


def plateau_reached(converged: np.ndarray) -> Check:
    missed = int(np.sum(~converged))
    return Check(
        "training",
        missed,
        0,
        missed == 0,
        "training converged"
        if missed == 0
        else f"training did not converge (or the Laplace fit found no mode of finite "
        f"curvature) in {missed} of {converged.size} runs",
        "a larger num_warmup (the training cap); a Laplace fit without a mode may mean the "
        "density has no maximum (as a funnel's neck: reparameterise the model)",
    )


# the recorded training curves, each with the sign that makes it a loss (lower is better)
TRAINING_CURVES = (("loss", 1.0), ("log_mean_w2", 1.0), ("elbo", -1.0))


def loss_trace(idata: az.InferenceData) -> np.ndarray | None:
    """The training loss per run and step, where the run recorded a training curve."""
    for group_name in ("warmup_sample_stats", "path_stats"):
        data = group(idata, group_name)
        for name, sign in TRAINING_CURVES:
            if data is not None and name in data:
                values = sign * np.asarray(data[name].values, dtype=np.float64)
                return values.reshape(-1, values.shape[-1])
    return None
