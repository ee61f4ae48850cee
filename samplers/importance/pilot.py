"""A short Gaussian pilot fit that places a sampler's first proposal: its location and
per-coordinate scale, widened so that the proposal it seeds stays safe.

The flows (``flow_vi``, ``flow_is``, ``smc_flow``) start their trainable affine layer
there, and ``amis`` its first mixture component, instead of at ``N(0, s^2 I)`` for a fixed
``s``: the pilot sees only the target's log density (and a starting point), never a truth.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from bayeswb.core.probe import probe_evaluations, probe_scale
from bayeswb.core.target import Target
from bayeswb.core.whitening import Whitening
from bayeswb.samplers.importance.gaussian_fits import fit_chi2

Array = jax.Array


class GaussianPilot(NamedTuple):
    """A pilot ``N(loc, diag(scale^2))``, ``scale`` already widened; ``curve``: the fit's
    objective per step."""

    loc: Array
    scale: Array
    curve: Array


def gaussian_pilot(
    key: Array,
    target: Target,
    num_steps: int = 300,
    num_mc_samples: int = 64,
    learning_rate: float = 0.05,
    widen: float = 1.5,
) -> GaussianPilot:
    """A mass-covering pilot: the mean-field Gaussian fitted by forward chi^2 (Li, Wang,
    Li and Wu 2024, section 3; :func:`fit_meanfield_chi2`, ``num_steps`` Adam steps of
    ``num_mc_samples`` draws, from ``N(0, s^2 I)`` with ``s`` the ray probe's scale,
    :func:`~bayeswb.core.probe.probe_scale`), its standard deviations
    times ``widen``, and never narrower than the spread of 256 ``target.init`` draws
    (where the target says a sampler may start).

    Why forward chi^2 and not the ELBO: a proposal for importance sampling, or the start
    of a reverse-KL flow, must cover the target's mass. The reverse KL is mode seeking: on
    a two-mode target it settles on one mode (Bishop 2006, "Pattern recognition and
    machine learning", section 10.1.2), and a flow started there keeps only that mode (on
    ``rezende_u1`` such a start lost one of the two arcs: log Z off by log 2). The forward
    chi^2 is mass covering and minimises the variance of the importance weights (Li et
    al. 2024, eq. 2), and its self-normalised score gradient uses no target gradients.
    ``widen`` (1.5) leaves a margin for the fit's noise, as a proposal lighter than the
    target gives unbounded weights (Owen 2013, "Monte Carlo theory, methods and
    examples", section 9.7). A fit that is not finite falls back to ``N(0, I)``.

    Why from the probe's scale: the self-normalised gradient sees only the mass its draws
    reach, so a fit started narrower than the target stays on what it started on. From
    ``N(0, I)`` the fit on gmm25 (modes 5 apart, sd 7.1 over the mixture) kept the central
    mode, scale 1.2; from the probe's ``N(0, 16^2 I)`` it covers them all, scale 10-12.
    Measured by the Kish ESS of 20000 draws from the widened pilot, as a fraction of
    them (19 registry models, pilot seeds 0-2): on gmm25 4e-4 before, 8e-2 now; on the
    others the same within the seeds' spread (a scratch script; the gmm25 case is
    ``tests/samplers/test_importance.py::test_the_gaussian_pilot_covers_every_mode_of_gmm25``).

    Cost: ``num_steps * num_mc_samples`` target log densities and the probe's
    (:func:`~bayeswb.core.probe.probe_evaluations`), no gradients (the ``target.init``
    draws evaluate nothing).

    Example:
        >>> import bayeswb as bw
        >>> pilot = gaussian_pilot(jax.random.key(0), bw.models.get("gaussian", dim=2), 50)
        >>> pilot.loc.shape, pilot.scale.shape, bool(jnp.all(pilot.scale > 0.5))
        ((2,), (2,), True)
    """
    fit_key, init_key, probe_key = jax.random.split(key, 3)
    start = probe_scale(probe_key, target.log_density, target.dim)
    loc, sd, curve = fit_meanfield_chi2(
        fit_key, target, num_steps, learning_rate, num_mc_samples, start
    )
    scale = widen * sd
    starts = jax.vmap(target.init)(jax.random.split(init_key, PILOT_INIT_DRAWS))
    scale = jnp.maximum(scale, jnp.std(starts, axis=0))
    good = jnp.all(jnp.isfinite(loc)) & jnp.all(jnp.isfinite(scale) & (scale > 0))
    return GaussianPilot(jnp.where(good, loc, 0.0), jnp.where(good, scale, 1.0), curve)


def fit_meanfield_chi2(
    key: Array,
    target: Target,
    num_steps: int,
    learning_rate: float,
    num_mc_samples: int,
    init_scale: Array | float = 1.0,
) -> tuple[Array, Array, Array]:
    """``(mean, sd, curve)`` of ``q = N(mean, diag(sd^2))`` fitted by the forward chi^2 in
    log space, ``log E_q[w^2]``, ``w = pi / q``, with the self-normalised score gradient
    of Li, Wang, Li and Wu (2024, section 3), ``-E_q[w^2 grad log q] / E_q[w^2]``, by
    Adam from ``N(0, init_scale^2 I)``; ``curve`` is ``log mean w^2`` per step.

    The mean-field case of :func:`~.gaussian_fits.fit_gaussian_chi2` (the same
    :func:`~.gaussian_fits.fit_chi2` steps) with a diagonal ``numpyro`` Normal, so that
    the program holds no LAPACK call (the batched LAPACK kernels that hung vmapped
    ``amis`` runs, issue 6; ``MultivariateNormal`` solves a triangular system even for a
    diagonal factor).

    Example:
        >>> import bayeswb as bw
        >>> mean, sd, curve = fit_meanfield_chi2(
        ...     jax.random.key(0), bw.models.get("gaussian", dim=2), 100, 0.05, 32)
        >>> mean.shape, sd.shape, curve.shape
        ((2,), (2,), (100,))
    """
    log_sd = jnp.full(target.dim, jnp.log(init_scale))
    params = {"mu": jnp.zeros(target.dim), "log_sd": log_sd}

    def distribution(p: dict) -> dist.Distribution:
        return dist.Normal(p["mu"], jnp.exp(p["log_sd"])).to_event(1)

    params, curve = fit_chi2(
        key, target, params, distribution, num_steps, learning_rate, num_mc_samples
    )
    return params["mu"], jnp.exp(params["log_sd"]), curve


PILOT_INIT_DRAWS = 256
"""``target.init`` draws whose spread is the pilot's smallest scale."""


def pilot_evaluations_of(num_chains: int, pilot_steps: int, mc_samples: int) -> int:
    """Target log densities of the Gaussian pilots of ``num_chains`` runs,
    ``pilot_steps * mc_samples`` each and the probe's; no gradients, and the
    ``target.init`` draws evaluate nothing; 0 with ``pilot_steps=0`` (no pilot).

    Example:
        >>> pilot_evaluations_of(2, 300, 64) == 2 * (300 * 64 + probe_evaluations())
        True
    """
    if pilot_steps == 0:
        return 0
    return num_chains * (pilot_steps * mc_samples + probe_evaluations())


def moments_pilot(draws: Array, widen: float = 1.5) -> GaussianPilot:
    """The same kind of start from draws the sampler already has (exact target draws of a
    forward-KL fit): their mean and ``widen`` times their standard deviation (no target
    evaluations).

    Example:
        >>> pilot = moments_pilot(jax.random.normal(jax.random.key(0), (500, 3)))
        >>> pilot.loc.shape, bool(jnp.all(jnp.abs(pilot.scale - 1.5) < 0.2))
        ((3,), True)
    """
    loc = jnp.mean(draws, axis=0)
    scale = widen * jnp.std(draws, axis=0)
    scale = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0)
    return GaussianPilot(loc, scale, jnp.zeros(0))


def pilot_whitening(key: Array, target: Target, pilot_steps: int, mc_samples: int) -> Whitening:
    """The coordinates ``x = loc + scale z`` of the Gaussian pilot's loc and widened scale
    (:func:`gaussian_pilot` of ``pilot_steps`` steps of ``mc_samples`` draws), or loc 0 and
    scale 1 with ``pilot_steps=0``: where the diffusion samplers and craft work."""
    if pilot_steps == 0:
        x = target.init(key)
        return Whitening(jnp.zeros_like(x), jnp.ones_like(x))
    pilot = gaussian_pilot(key, target, pilot_steps, mc_samples)
    return Whitening(pilot.loc, pilot.scale)
