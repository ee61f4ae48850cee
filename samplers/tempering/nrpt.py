"""``nrpt``: non-reversible parallel tempering as a ChainKernel (one chain = one run of
K + 1 replicas), with the schedule tuned in warmup and a stepping-stone log Z.

Syed, Bouchard-Cote, Deligiannidis and Doucet (2021), "Non-reversible parallel
tempering: a scalable highly parallel MCMC scheme", JRSS B 84(2). See the package
docstring (:mod:`bayeswb.samplers.tempering`) for the method and its outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.adaptation.step_size import dual_averaging_adaptation

from bayeswb.core.config import (
    SamplerConfig,
    non_negative_int,
    one_of,
    option,
    positive_int,
    unit_interval,
)
from bayeswb.core.draws import Draws
from bayeswb.core.sampler import ChainKernel, StartCost
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register
from bayeswb.samplers.smc.moves import MCMC_MOVES, Move, make_move
from bayeswb.samplers.tempering.reference import (
    ReferenceFit,
    automatic_reference_fit,
    fixed_reference_fit,
    reference_of,
)
from bayeswb.samplers.tempering.swaps import (
    RoundTrips,
    SteppingStones,
    add_stepping_stones,
    barrier_schedule,
    deo_partners,
    follow_swaps,
    start_round_trips,
    start_stepping_stones,
    stepping_stone_log_z,
    swap_rejection,
)

Array = jax.Array


def _at_least_two(value: Any) -> str | None:
    return positive_int(value) or (None if value >= 2 else "must be at least 2")


def _optional_positive(value: Any) -> str | None:
    ok = value is None or (isinstance(value, float) and value > 0)
    return None if ok else "must be None or a positive number"


@dataclasses.dataclass(frozen=True)
class NRPTConfig(SamplerConfig):
    """Non-reversible parallel tempering: ``num_chains`` independent runs, each of
    ``num_warmup`` tuning rounds and ``num_samples`` rounds (one draw per round)."""

    num_temperatures: int = option(16, _at_least_two, "replicas K + 1 (beta_0 = 0 ... beta_K = 1)")
    explorer: str = option("mala", one_of(*MCMC_MOVES), "local exploration kernel (smc's moves)")
    num_explore_steps: int = option(3, positive_int, "explorer steps per replica per round")
    num_integration_steps: int = option(5, positive_int, "leapfrog steps of the hmc explorer")
    target_acceptance_rate: float = option(
        0.574, unit_interval, "explorer acceptance each replica's step size is tuned to"
    )
    num_tuning_rounds: int = option(
        5, non_negative_int, "schedule updates in warmup, over windows doubling in length"
    )
    reference_scale: float | None = option(
        None,
        _optional_positive,
        "reference N(0, s^2 I) (None: smc's automatic reference, fitted by a pilot run)",
    )


class NRPTCarry(NamedTuple):
    """One run between rounds; positions whitened (``x = mean + scale z``,
    :class:`~bayeswb.samplers.smc.tuning.Whitening`), by level."""

    positions: Array  # (K + 1, dim)
    betas: Array  # (K + 1,)
    log_step_sizes: Array  # (K + 1,), the explorer's at each level (level 0 unused)
    trips: RoundTrips
    stones: SteppingStones
    round_index: Array  # () int: the parity of the next DEO round
    fit: ReferenceFit


class Round(NamedTuple):
    """What one round reports: log L by level after the swaps, the explorer's mean
    acceptance and whether it diverged (by level, before the swaps), swap rejection."""

    log_l: Array
    acceptance_rate: Array
    diverging: Array
    rejection: Array


def _explore(
    key: Array, z: Array, beta: Array, log_step_size: Array, density: Any, move: Move, steps: int
) -> tuple[Array, Array, Array, Array]:
    """``steps`` explorer steps on ``pi_beta`` (beta > 0) in whitened coordinates; returns
    the position, its log L (read off the tempered density), acceptance and divergence."""
    log_reference, log_target = density

    def tempered(z: Array) -> Array:
        reference = log_reference(z)
        return reference + beta * (log_target(z) - reference)

    def one_step(state: Any, step_key: Array) -> tuple[Any, Array]:
        state, info = move.step(step_key, state, tempered, jnp.exp(log_step_size))
        return state, info.acceptance_rate

    state = move.init(z, tempered)
    state, acceptance = jax.lax.scan(one_step, state, jax.random.split(key, steps))
    log_l = (state.logdensity - log_reference(state.position)) / beta
    # blackjax's kernels (and smc's moves) give a non-finite proposal acceptance exactly 0
    return state.position, log_l, jnp.mean(acceptance), jnp.any(acceptance == 0.0)


def _round(
    key: Array, carry: NRPTCarry, target: Target, config: NRPTConfig, accumulate: bool
) -> tuple[NRPTCarry, Round]:
    """One round (Syed et al. 2021, Algorithm 1): an exact draw at level 0, the explorer at
    levels 1..K, then a DEO swap round; the stepping-stone sums gain the round's states
    (before the swaps) if ``accumulate``."""
    reference, whitening = reference_of(carry.fit, config.reference_scale or 1.0)

    def to_x(z: Array) -> Array:
        return whitening.unwhiten(z)

    density = (lambda z: reference.log_prob(to_x(z)), lambda z: target.log_density(to_x(z)))
    draw_key, explore_key, swap_key = jax.random.split(key, 3)
    x0 = reference.sample(draw_key, 1)[0]
    log_l0 = target.log_density(x0) - reference.log_prob(x0)
    levels = carry.betas.shape[0]
    explore = jax.vmap(_explore, in_axes=(0, 0, 0, 0, None, None, None))
    move = make_move(config.explorer, config.num_integration_steps)
    z, log_l, acceptance, diverging = explore(
        jax.random.split(explore_key, levels - 1),
        carry.positions[1:],
        carry.betas[1:],
        carry.log_step_sizes[1:],
        density,
        move,
        config.num_explore_steps,
    )
    z = jnp.concatenate([whitening.whiten(x0)[None], z])
    log_l = jnp.concatenate([log_l0[None], log_l])
    stones = carry.stones
    if accumulate:
        stones = add_stepping_stones(stones, carry.betas, log_l)
    rejection = swap_rejection(carry.betas, log_l)
    source = deo_partners(swap_key, carry.round_index, rejection)
    carry = carry._replace(
        positions=z[source],
        trips=follow_swaps(carry.trips, source),
        stones=stones,
        round_index=carry.round_index + 1,
    )
    acceptance = jnp.concatenate([jnp.ones(1, acceptance.dtype), acceptance])
    diverging = jnp.concatenate([jnp.zeros(1, bool), diverging])
    return carry, Round(log_l[source], acceptance, diverging, rejection)


def _trace(carry: NRPTCarry, report: Round, config: NRPTConfig) -> tuple[Array, dict]:
    """The draw (the beta = 1 replica after the swaps, in x) and its stats."""
    reference, whitening = reference_of(carry.fit, config.reference_scale or 1.0)
    x = whitening.unwhiten(carry.positions[-1])
    stats = {
        "lp": report.log_l[-1] + reference.log_prob(x),
        "acceptance_rate": report.acceptance_rate[-1],
        "diverging": report.diverging[-1],
        "step_size": jnp.exp(carry.log_step_sizes[-1]),
        "swap_rejection": jnp.mean(report.rejection),
        "communication_barrier": jnp.sum(report.rejection),
        "round_trips": carry.trips.total,
        "n_grad_evals": jnp.asarray(costs_per_round(config)[0], dtype=jnp.int32),
        "n_logdensity_evals": jnp.asarray(costs_per_round(config)[1], dtype=jnp.int32),
    }
    return x, stats


def tuning_ends(num_warmup: int, num_tuning_rounds: int) -> list[int]:
    """The warmup rounds that end a schedule-tuning round (where the schedule is re-placed
    and each level's step-size adaptation restarts): ``num_tuning_rounds + 1`` windows
    whose lengths double (Syed et al. 2021, section 5.4), the last, half the warmup,
    tuning step sizes alone for the final schedule.

    Example:
        >>> tuning_ends(31, 4)
        [0, 2, 6, 14]
    """
    total = 2 ** (num_tuning_rounds + 1) - 1
    ends = [round(num_warmup * (2 ** (k + 1) - 1) / total) - 1 for k in range(num_tuning_rounds)]
    return sorted({end for end in ends if end >= 0})


def costs_per_round(config: NRPTConfig) -> tuple[int, int]:
    """(gradient, log-density) evaluations of one round: at each of the K tempered levels
    the explorer's init and its steps; level 0 is an exact draw (one log density, no
    gradient). The swaps and the stepping stones reuse the levels' log densities."""
    move = make_move(config.explorer, config.num_integration_steps)
    steps = config.num_explore_steps
    grads = move.grads_per_init + steps * move.grads_per_step
    evals = move.evals_per_init + steps * move.evals_per_step
    levels = config.num_temperatures - 1
    return levels * grads, 1 + levels * evals


def _start(key: Array, target: Target, config: NRPTConfig) -> tuple[NRPTCarry, Any, StartCost]:
    """The reference fit, the initial replicas (reference draws, uniform betas) and the
    warmup: the schedule re-placed by :func:`~.swaps.barrier_schedule` at the end of each
    tuning round, each level's step size by dual averaging to the acceptance target."""
    fit_key, init_key, warmup_key = jax.random.split(key, 3)
    if config.reference_scale is None:
        fit, fit_cost = automatic_reference_fit(fit_key, target)
    else:
        nothing = jnp.zeros(0, dtype=int)
        fit, fit_cost = fixed_reference_fit(target.dim), StartCost(nothing, nothing)
    _, whitening = reference_of(fit, config.reference_scale or 1.0)
    levels = config.num_temperatures
    reference, _ = reference_of(fit, config.reference_scale or 1.0)
    x = reference.sample(init_key, levels)
    move = make_move(config.explorer, config.num_integration_steps)
    step_size = jnp.full(levels, move.default_step_size(target.dim), dtype=x.dtype)
    carry = NRPTCarry(
        positions=whitening.whiten(x),
        betas=jnp.linspace(0.0, 1.0, levels, dtype=x.dtype),
        log_step_sizes=jnp.log(step_size),
        trips=start_round_trips(levels),
        stones=start_stepping_stones(levels - 1, x.dtype),
        round_index=jnp.zeros((), dtype=jnp.int32),
        fit=fit,
    )
    da_init, da_update, da_final = dual_averaging_adaptation(config.target_acceptance_rate)
    ends = jnp.array(tuning_ends(config.num_warmup, config.num_tuning_rounds), dtype=int)
    ends_tuning = jnp.isin(jnp.arange(config.num_warmup), ends)

    def warmup_round(state: Any, inputs: tuple[Array, Array]) -> tuple[Any, Any]:
        carry, da, rejection_sum, count = state
        round_key, tuning_end = inputs
        carry, report = _round(round_key, carry, target, config, accumulate=False)
        draw = _trace(carry, report, config)
        da = jax.vmap(da_update)(da, report.acceptance_rate)
        rejection_sum, count = rejection_sum + report.rejection, count + 1
        betas = barrier_schedule(carry.betas, rejection_sum / count)
        restarted = jax.vmap(da_init)(jax.vmap(da_final)(da))
        da = jax.tree.map(lambda new, old: jnp.where(tuning_end, new, old), restarted, da)
        carry = carry._replace(
            betas=jnp.where(tuning_end, betas, carry.betas), log_step_sizes=da.log_step_size
        )
        rejection_sum = jnp.where(tuning_end, 0.0, rejection_sum)
        count = jnp.where(tuning_end, 0, count)
        return (carry, da, rejection_sum, count), draw

    da = jax.vmap(da_init)(step_size)
    state = (carry, da, jnp.zeros(levels - 1, x.dtype), jnp.zeros((), jnp.int32))
    keys = jax.random.split(warmup_key, config.num_warmup)
    (carry, da, _, _), warmup_trace = jax.lax.scan(warmup_round, state, (keys, ends_tuning))
    if config.num_warmup:
        carry = carry._replace(log_step_sizes=jnp.log(jax.vmap(da_final)(da)))
    # the draws count their own round trips
    carry = carry._replace(trips=carry.trips._replace(total=jnp.zeros((), jnp.int32)))
    grads, evals = costs_per_round(config)
    start_cost = StartCost(
        jnp.concatenate([fit_cost.grads, jnp.full(config.num_warmup, grads, dtype=int)]),
        jnp.concatenate(
            [fit_cost.logdensity_evals, jnp.full(config.num_warmup, evals, dtype=int)]
        ),
    )
    return carry, (warmup_trace if config.num_warmup else None), start_cost


def _step(
    key: Array, carry: NRPTCarry, target: Target, config: NRPTConfig
) -> tuple[NRPTCarry, tuple[Array, dict]]:
    carry, report = _round(key, carry, target, config, accumulate=True)
    position, stats = _trace(carry, report, config)
    stats["log_z"] = stepping_stone_log_z(carry.stones)
    return carry, (position, stats)


NRPT_KERNEL = ChainKernel(
    start=_start,
    step=_step,
    grads=lambda stats: stats["n_grad_evals"],
    logdensity_evals=lambda stats: stats["n_logdensity_evals"],
    log_z=lambda carry: stepping_stone_log_z(carry.stones),
)


@register("nrpt", NRPTConfig, family="tempering", kernel=NRPT_KERNEL)
def run_nrpt(
    key: Array, target: Target, config: NRPTConfig, layout: ChainLayout | None = None
) -> Draws:
    """Non-reversible parallel tempering (Syed et al. 2021; see
    :mod:`bayeswb.samplers.tempering`): ``num_chains`` independent runs, each with its
    stepping-stone log Z (``Draws.log_z``, from the last round's sums; the ``log_z`` stat
    is the running estimate). Runs whole or in chunks (:data:`NRPT_KERNEL`).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "nrpt", num_chains=2, num_samples=100, num_warmup=100,
        ...               num_temperatures=4, reference_scale=2.0)
        >>> r.idata.sample_stats["round_trips"].shape, r.log_z is not None
        ((2, 100), True)
    """
    return run_whole(key, target, config, NRPT_KERNEL, layout)
