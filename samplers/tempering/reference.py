"""The reference pi_0 of a tempering run: smc's automatic one, or a fixed N(0, s^2 I).

The automatic reference is the one the SMC family starts its main runs from
(:func:`bayeswb.samplers.smc.annealing.one_run`): a ray probe of the target's density
gives a wide ``N(0, s^2 I)`` (:func:`~bayeswb.core.probe.probe_scale`), an
adaptive tempered SMC pilot of 512 particles, in two independent runs of 256, anneals
from it, and the reference is ``N(mean, diag (2 sd)^2)`` of the pilot's weighted
particles, or ``N(mean, 4 Sigma)`` with their covariance where it predicts each half
from the other (:func:`~bayeswb.samplers.smc.references.moment_matched_reference` with
:func:`~bayeswb.samplers.smc.tuning.held_out_whitening`). Nothing here is
new: the pieces are smc's, assembled as smc's ``one_run`` assembles them.

A run carries the pilot's particles and weights (:class:`ReferenceFit`, arrays that a
checkpoint can hold) and rebuilds the reference and its whitening from them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bayeswb.core.probe import probe_evaluations
from bayeswb.core.sampler import StartCost
from bayeswb.core.target import Target
from bayeswb.core.whitening import Whitening
from bayeswb.samplers.smc.annealing import (
    AUTO_FIT_PARTICLES,
    REFERENCE_WIDENING,
    annealing_plan,
    fit_pilot,
    pooled,
    probed_reference,
)
from bayeswb.samplers.smc.references import (
    Reference,
    moment_matched_reference,
)
from bayeswb.samplers.smc.settings import SMCConfig
from bayeswb.samplers.smc.tuning import particle_whitening

Array = jax.Array


class ReferenceFit(NamedTuple):
    """Weighted particles whose moments make the reference (normalised ``log_weights``):
    the pilot's two halves stacked (:func:`~bayeswb.samplers.smc.annealing.pooled`), or
    one particle at the origin for a fixed ``N(0, s^2 I)`` (its sd is 0, so
    :func:`~bayeswb.samplers.smc.references.moment_matched_reference` falls back to s)."""

    positions: Array  # (n, dim)
    log_weights: Array  # (n,)


def fixed_reference_fit(dim: int) -> ReferenceFit:
    """The fit standing for ``N(0, s^2 I)`` (s given to :func:`reference_of`)."""
    return ReferenceFit(jnp.zeros((1, dim)), jnp.zeros(1))


def automatic_reference_fit(key: Array, target: Target) -> tuple[ReferenceFit, StartCost]:
    """smc's automatic reference for ``target``: the ray probe and the pilot run (see the
    module docstring). Returns the fit and the pilot's and the probe's gradient and
    log-density evaluations, one entry per annealing step (each below 2**31: sweeps x 512
    particles) and, for the log densities, one more for the initial draws and the probe."""
    config = SMCConfig()
    plan = annealing_plan(
        target, config, config.resampling, config.ess_threshold, auto_reference=True,
        fit_reference_particles=AUTO_FIT_PARTICLES,
    )  # fmt: skip
    move = plan.fit_move
    assert move is not None
    probe_key, pilot_key = jax.random.split(key)
    probed, _ = probed_reference(target)(probe_key)
    halves = fit_pilot(plan, pilot_key, probed, AUTO_FIT_PARTICLES)
    # as smc's run_cost, for each half: at each step every particle's move init and its
    # sweeps, then the log density at every particle; before the steps, the initial
    # draws and the probe
    n = halves.positions.shape[1]
    steps = jnp.arange(config.num_steps)[None, :] < halves.num_steps_taken[:, None]
    took_step = jnp.sum(steps, axis=0)
    sweeps = jnp.sum(halves.num_sweeps_taken, axis=0)
    grads = sweeps * (n * move.grads_per_step) + took_step * (n * move.grads_per_init)
    evals = sweeps * (n * move.evals_per_step) + took_step * (n * (move.evals_per_init + 1))
    evals = jnp.append(evals, 2 * n + probe_evaluations())
    fit = ReferenceFit(*pooled(halves))
    return fit, StartCost(grads.astype(int), evals.astype(int))


def reference_of(fit: ReferenceFit, fallback_scale: float) -> tuple[Reference, Whitening]:
    """The reference of the fit, ``N(mean, 4 S S^T)`` with ``(mean, S)`` the fit's
    whitening (``N(0, fallback_scale^2 I)`` for a fixed one), and that whitening, which
    the explorer runs in: the fit's mean and covariance factor where it predicts each of
    the pilot's halves from the other, else its sds, as smc's reference
    (:func:`~bayeswb.samplers.smc.tuning.particle_whitening`; none for a fixed reference,
    which has no particles to whiten by).

    Example:
        >>> q, w = reference_of(fixed_reference_fit(2), 3.0)
        >>> round(float(q.log_prob(jnp.zeros(2))), 4), w.scale.tolist()
        (-4.0351, [1.0, 1.0])
    """
    fitted = fit.positions.shape[0] > 1
    widen = REFERENCE_WIDENING if fitted else 1.0
    whiten = particle_whitening(fit.positions.shape[1], precondition=fitted, halves=fitted)
    whitening = whiten(jnp.asarray(0), fit.positions, jnp.exp(fit.log_weights))
    reference = moment_matched_reference(  # from that whitening, not a second one
        fit.positions, fit.log_weights, fallback_scale, widen, whiten=lambda *_: whitening
    )
    return reference, whitening
