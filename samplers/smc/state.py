"""What one annealing run carries from step to step (:class:`State`), what a step reports
(:class:`Info`) and the tuning a pilot run hands to a replay (:class:`Tuning`)."""

from __future__ import annotations

from typing import NamedTuple

import jax

Array = jax.Array

# the Info fields that become path_stats, in their output order
PATH_STATS = (
    "temperature",
    "log_z_increment",
    "ess",
    "acceptance_rate",
    "step_size",
    "resampled",
    "num_sweeps",
    "killed",
)


class State(NamedTuple):
    """Weighted particles of one run at ``temperature`` (between two steps).

    steps_taken:    () steps so far, the index of the next step
    positions:      (N, dim)
    lp:             (N,) log gamma (target, unnormalised)
    log_ratio:      (N,) log gamma - log q (-inf where either is not finite)
    log_weights:    (N,) normalised
    temperature:    () beta
    log_z:          () log Z estimate of pi_beta's normaliser
    log_step_size:  () the move's step size carried to the next step (whitened coordinates)
    family:         (N,) int, the initial draw each particle descends from through the
                    resamplings (its "Eve"; Chan and Lai 2013, Lee and Whiteley 2018):
                    particles of one family are correlated, which the weights' ESS
                    ignores and :func:`bayeswb.core.verdict.weighted_mean_variance` and
                    :mod:`.genealogy` use
    """

    steps_taken: Array
    positions: Array
    lp: Array
    log_ratio: Array
    log_weights: Array
    temperature: Array
    log_z: Array
    log_step_size: Array
    family: Array


class Info(NamedTuple):
    """What one step did: a row of ``path_stats`` (see :data:`PATH_STATS`) and of the
    :class:`Tuning`.

    temperature:      beta after the step
    log_z_increment:  the step's log Z increment
    ess:              ESS of the weights after reweighting, before resampling
    acceptance_rate:  weighted mean acceptance of the move, averaged over its sweeps
    step_size:        the step size (in whitened coordinates) at the end of the step
    resampled:        whether the step resampled
    num_sweeps:       sweeps of the move the step ran (adaptive: until the particles
                      decorrelated, see :func:`~.mutation.adaptive_sweeps`)
    killed:           weighted fraction of the moved particles that the move left at
                      weight zero: an unadjusted transport's proposal where the density
                      is zero or NaN (always 0 for a Metropolis-adjusted move, which
                      rejects it). Its backward kernel puts mass there, so the weights
                      are no longer exact (see ``moves.ula_transport``).
    mean, scale:      (dim,) and (dim,) or (dim, dim): the whitening the move ran in
    sweep_count:      ``num_sweeps`` as an integer (0 in the padding), which the cost
                      counts exactly (a float stops holding integers past ``2**24``)
    """

    temperature: Array
    log_z_increment: Array
    ess: Array
    acceptance_rate: Array
    step_size: Array
    resampled: Array
    num_sweeps: Array
    killed: Array
    mean: Array
    scale: Array
    sweep_count: Array


class Tuning(NamedTuple):
    """What a run adapted at each step (padded with NaN after its last step); a pilot
    run's Tuning freezes the main run's (see ``pilot_particles``)."""

    temperature: Array  # (num_steps,)
    mean: Array  # (num_steps, dim) whitening
    scale: Array  # (num_steps, dim) or (num_steps, dim, dim)
    step_size: Array  # (num_steps,)
    num_sweeps: Array  # (num_steps,) sweeps of the move at each step
