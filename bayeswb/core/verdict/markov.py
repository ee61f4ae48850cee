"""The checks of Markov chains: split R-hat and ESS, divergences, E-BFMI, tree depth,
acceptance, an unadjusted sampler's energy error and a cyclical schedule's phases
(thresholds and papers: the package docstring)."""

from __future__ import annotations

import math
from typing import Any

import arviz as az
import numpy as np
import xarray as xr
from scipy.stats import norm

from bayeswb.core.verdict.check import (
    MIN_DRAWS,
    Check,
    ess_threshold,
    group,
    max_over,
    min_over,
    whole,
)


def markov_checks(idata: az.InferenceData, config: dict[str, Any]) -> list[Check]:
    posterior = idata.posterior
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    if draws < MIN_DRAWS:
        return [
            Check(
                "too_few_draws",
                draws,
                MIN_DRAWS,
                False,
                f"{draws} draws per chain: too few to judge (R-hat and ESS need {MIN_DRAWS})",
                "more draws (num_samples)",
            )
        ]
    checks = []
    r_hat = max_over(az.rhat(posterior))
    checks.append(
        Check(
            "r_hat",
            r_hat,
            1.01,
            bool(r_hat <= 1.01),
            f"r_hat {r_hat:.3f}" + ("" if r_hat <= 1.01 else " > 1.01"),
            "more warmup and draws, or a sampler that handles this geometry "
            "(reparametrise, or smc for several modes)",
        )
    )
    need = ess_threshold(chains)
    for method in ("bulk", "tail"):
        ess = min_over(az.ess(posterior, method=method))
        checks.append(
            Check(
                f"ess_{method}",
                ess,
                need,
                bool(ess >= need),
                f"ess_{method} {whole(ess)}" + ("" if ess >= need else f" < {need:.0f}"),
                "more draws (num_samples) or more chains",
            )
        )
    stats = group(idata, "sample_stats")
    if stats is not None:
        checks += _hamiltonian_checks(stats, config)
        if "acceptance_rate" in stats and "target_acceptance_rate" in config:
            checks.append(_acceptance(stats["acceptance_rate"].values, config))
        positions = group(idata, "unconstrained_posterior")
        if (
            "energy_change" in stats
            and "desired_energy_variance" in config
            and positions is not None
        ):
            dim = positions["position"].shape[-1]
            checks.append(_energy_error(stats["energy_change"].values, dim, config))
        if "cycle_length" in config and "step_size" in stats:
            checks.append(_cycle_phase(posterior, stats["step_size"].values))
    return checks


def _cycle_phase(posterior: xr.Dataset, step_size: np.ndarray) -> Check:
    """Do the first and the second half of the cycles' sampling stages (csgmcmc) have one
    law? A draw's place in its stage is read off its step, which falls through the stage:
    each chain's draws above its median step are the early half. Per coordinate, the
    halves' means and variances are compared by z-scores with Monte Carlo standard errors
    from ArviZ's ESS of each half; flagged beyond the normal bound at 1% family-wise."""
    early = step_size > np.median(step_size, axis=1, keepdims=True)
    length = int(min(early.sum(axis=1).min(), (~early).sum(axis=1).min()))
    if length < MIN_DRAWS:
        return Check("cycle_phase", math.nan, math.nan, True, "cycle halves: too few draws", "")
    flat = np.concatenate(
        [v.values.reshape(*v.shape[:2], -1) for v in posterior.data_vars.values()], axis=-1
    )
    halves = [
        np.stack([draws[keep][:length] for draws, keep in zip(flat, side, strict=True)])
        for side in (early, ~early)
    ]  # each (chains, length, coordinates)
    centre, variance = flat.mean(axis=(0, 1)), flat.var(axis=(0, 1))
    z, effect = [], []
    for moment, unit in (
        (lambda x: x, np.sqrt(variance)),
        (lambda x: (x - centre) ** 2, variance),
    ):
        means, errors = [], []
        for half in halves:
            values = moment(half)
            ess = az.ess(xr.Dataset({"m": (("chain", "draw", "k"), values)}))["m"].values
            means.append(values.mean(axis=(0, 1)))
            errors.append(values.std(axis=(0, 1)) / np.sqrt(np.maximum(ess, 1.0)))
        with np.errstate(divide="ignore", invalid="ignore"):
            z.append(np.abs(means[0] - means[1]) / np.hypot(*errors))
            effect.append(np.abs(means[0] - means[1]) / unit)
    z_all, effect_all = np.nan_to_num(np.concatenate(z)), np.nan_to_num(np.concatenate(effect))
    bound = float(norm.ppf(1.0 - 0.01 / (2 * 2 * flat.shape[-1])))
    flagged = (z_all > bound) & (effect_all > CYCLE_HALVES_EFFECT)
    worst = float(np.max(np.where(flagged, z_all, 0.0) if flagged.any() else z_all))
    ok = not bool(flagged.any())
    return Check(
        "cycle_phase",
        worst,
        bound,
        ok,
        f"cycle halves' moments z {worst:.1f}"
        + (
            ""
            if ok
            else f" > {bound:.1f}, differing by more than {CYCLE_HALVES_EFFECT:.0%}: the "
            "draws still carry the exploration stage's law"
        ),
        "longer cycles (cycle_length), so that each sampling stage forgets the SGD stage",
    )


# how far the cycle halves' means (in sds) or variances (relative) must differ, besides
# beyond chance, for cycle_phase to flag them (package docstring)
CYCLE_HALVES_EFFECT = 0.2


# how far above its tuning target an unadjusted sampler's energy error may drift (module
# docstring, ``energy_error``)
ENERGY_VARIANCE_FACTOR = 20.0


def _energy_error(energy_change: np.ndarray, dim: int, config: dict[str, Any]) -> Check:
    """Each chain's ``Var[E] / d`` over its draws against the ``desired_energy_variance``
    that its step was tuned to."""
    desired = float(config["desired_energy_variance"])
    worst = float(np.max(np.var(energy_change, axis=-1)) / dim / desired)
    ok = bool(worst <= ENERGY_VARIANCE_FACTOR)
    return Check(
        "energy_error",
        worst,
        ENERGY_VARIANCE_FACTOR,
        ok,
        f"energy error Var[E]/d {worst:.1f} x the tuned {desired:g}"
        + ("" if ok else f" (> {ENERGY_VARIANCE_FACTOR:g} x): the unadjusted draws are biased"),
        "an adjusted sampler (mams, nuts), or a smaller desired_energy_variance",
    )


def _hamiltonian_checks(stats: Any, config: dict[str, Any]) -> list[Check]:
    checks = []
    if "diverging" in stats:
        count = int(np.sum(stats["diverging"].values))
        checks.append(
            Check(
                "divergences",
                count,
                0,
                count == 0,
                f"{count} divergences",
                "a higher target_acceptance_rate (smaller steps) or a reparametrisation "
                "(e.g. non-centred)",
            )
        )
    if "energy" in stats and "n_steps" in stats:
        e_bfmi = float(np.min(az.bfmi(stats["energy"].values)))
        checks.append(
            Check(
                "e_bfmi",
                e_bfmi,
                0.3,
                bool(e_bfmi >= 0.3),
                f"e_bfmi {e_bfmi:.2f}" + ("" if e_bfmi >= 0.3 else " < 0.3"),
                "a reparametrisation: the momentum resampling cannot explore the energy",
            )
        )
    if "tree_depth" in stats and "max_num_doublings" in config:
        depth = stats["tree_depth"].values
        saturated = float(np.mean(depth >= config["max_num_doublings"]))
        checks.append(
            Check(
                "tree_depth",
                saturated,
                0.01,
                bool(saturated < 0.01),
                f"{100 * saturated:.1f}% at max tree depth",
                "a larger max_num_doublings, or a reparametrisation",
            )
        )
    return checks


def _acceptance(rates: np.ndarray, config: dict[str, Any]) -> Check:
    target = float(config["target_acceptance_rate"])
    per_chain = np.nanmean(rates, axis=-1)
    worst = float(per_chain[np.argmax(np.abs(per_chain - target))])
    ok = bool(abs(worst - target) <= 0.25)
    return Check(
        "acceptance",
        worst,
        target,
        ok,
        f"acceptance {worst:.2f}" + ("" if ok else f" (adapted to {target:.2f})"),
        "more warmup (num_warmup) so the step size can adapt",
    )
