"""Draws: what every sampler's ``run`` returns, as a JAX pytree."""

from __future__ import annotations

from typing import NamedTuple

import jax

Array = jax.Array


class Draws(NamedTuple):
    """Raw output of ``run(key, target, config)``, all arrays, all in unconstrained space.

    positions:          (chains, draws, dim)
    stats:              dict of (chains, draws) arrays with ArviZ's names (``lp``,
                        ``acceptance_rate``, ``diverging``, ``step_size``, ``n_steps``,
                        ``energy``, ``tree_depth``)
    log_weights:        (chains, draws) unnormalised log importance weights, or None for
                        equally weighted draws
    log_z:              (chains,) one log-evidence estimate per independent run, or None
    warmup_positions:   (chains, warmup, dim) or None
    warmup_stats:       dict of (chains, warmup) arrays (empty without warmup)
    path_stats:         dict of (chains, steps) arrays describing the run's path rather than
                        its draws (an SMC temperature ladder, ESS per step, a loss curve);
                        lands in the ``path_stats`` group of the InferenceData
    n_grad_evals:       total gradient evaluations of the log density (all chains, warmup
                        included), as the algorithm defines them
    n_logdensity_evals: total log-density evaluations (those with a gradient included)
    """

    positions: Array
    stats: dict[str, Array]
    log_weights: Array | None = None
    log_z: Array | None = None
    warmup_positions: Array | None = None
    warmup_stats: dict[str, Array] = {}
    path_stats: dict[str, Array] = {}
    n_grad_evals: Array | int = 0
    n_logdensity_evals: Array | int = 0


def chain_draws(
    warmup_trace: tuple[Array, dict[str, Array]] | None,
    sample_trace: tuple[Array, dict[str, Array]],
    n_grad_evals: Array | int,
    n_logdensity_evals: Array | int | None = None,
) -> Draws:
    """Draws of an MCMC run from its ``(positions, stats)`` traces, warmup kept apart.

    ``n_logdensity_evals`` defaults to ``n_grad_evals`` (gradient-based kernels evaluate
    the log density with each gradient).
    """
    positions, stats = sample_trace
    warmup_positions, warmup_stats = warmup_trace if warmup_trace is not None else (None, {})
    return Draws(
        positions=positions,
        stats=stats,
        warmup_positions=warmup_positions,
        warmup_stats=warmup_stats,
        n_grad_evals=n_grad_evals,
        n_logdensity_evals=n_grad_evals if n_logdensity_evals is None else n_logdensity_evals,
    )
