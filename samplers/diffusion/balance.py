"""``gfn_tb``: PIS's chain trained by trajectory balance, with Sendera et al. (2024)'s
off-policy exploration, local search and replay buffer.

Every training step draws ``batch_size`` forward paths from a widened copy of the model's
chain (the exploration, decayed to on-policy over the first half of training) and
balances them under the model's own chain (:func:`balance_loss`). With
``local_search`` (the default), as in Sendera et al.'s section 4:

- the forward paths' ends enter a replay buffer;
- ``batch_size`` MALA chains on the target (the local search) start from ends drawn from
  that buffer by rank-based priority (Tripp, Daxberger and Hernandez-Lobato 2020: weight
  ``1 / (k N + rank)``, ``k = RANK_WEIGHT``), run ``SEARCH_LENGTH`` iterations (
  ``search_iterations`` per training step) and restart; after ``SEARCH_BURN_IN``
  iterations their states enter a second buffer;
- a second batch, drawn from that buffer by the same priority, is taken back to the
  start by the reference's own backward chain (the Brownian bridge,
  :func:`bridge_paths`), and its trajectory-balance residuals are added to the loss.

Sendera et al. alternate the forward and the replayed batch from step to step and run a
local search of 200 MALA iterations every 100 steps; here each step takes both batches
and a share of the search, so that the program's shapes and its cost per step stay the
same under ``vmap`` over runs (a ``lax.cond`` with a batched predicate runs both
branches). The training paths' law does not enter the reported weights: they are the
exact path weights of :mod:`.paths` for the trained chain, whatever trained it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from bayeswb.core.config import boolean, non_negative, option, positive, positive_int
from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.samplers import register
from bayeswb.samplers.diffusion.paths import (
    Control,
    Reference,
    brownian_reference,
    clipped_score,
    end_log_prob,
    explored,
    path_log_weights,
    simulate,
)
from bayeswb.samplers.diffusion.samplers import (
    DiffusionConfig,
    DiffusionMethod,
    build_control,
    on_reference,
    optimizer,
    run_diffusion,
    score_cost,
)
from bayeswb.samplers.flows.fab import weighted_indices
from bayeswb.samplers.flows.training import guarded_update, partition_flow, plateau_rule, run_steps

Array = jax.Array

# gfn_tb's default exploration: extra noise sd per unit time of the training chain. The
# coordinates are whitened by the pilot, where the target spreads about 1 per coordinate:
# sd 1 doubles the variance of the training paths' ends, wide enough to reach mass the
# on-policy chain misses, and it decays to 0. The one value tried, measured after it was
# chosen (gmm25, defaults, 8 runs, seed 0, before the local search): |delta log Z| 1.93
# on-policy, 0.91 with it.
EXPLORATION = 1.0

RANK_WEIGHT = 1e-2
"""``k`` of the rank-based priority ``1 / (k N + rank)`` (Tripp et al. 2020), Sendera et
al.'s value: the best of N entries is drawn about 1 / (k N) times as often as the worst."""

SEARCH_LENGTH = 200
"""MALA iterations of a local-search chain before it restarts from the buffer (Sendera et
al.'s 200 iterations per search)."""

SEARCH_BURN_IN = 100
"""Iterations after a restart before a chain's states enter the searched buffer (Sendera
et al.'s burn-in of 100)."""

SEARCH_ACCEPTANCE = 0.574
"""MALA's optimal acceptance rate (Roberts and Rosenthal 1998), the target of the search's
step size: ``log h += SEARCH_ADAPTATION (acceptance - 0.574)`` after each iteration."""

SEARCH_ADAPTATION = 0.5
SEARCH_START_STEP = 0.01
"""The search's first step size ``h`` in the whitened coordinates (MALA's proposal
``x + h grad log pi + sqrt(2 h) xi``), adapted from there."""

BUFFER_BATCHES = 1000
"""Each buffer holds the last ``BUFFER_BATCHES`` batches written to it. Measured (gmm25,
defaults, 8 runs, seed 0; one value each): |delta log Z| 0.89 +- 0.11 with 200, where the
buffer forgets the widely explored ends of early training, and 0.27 +- 0.07 with 1000
(0.91 without local search). Sendera et al. keep 600000 entries."""


@dataclasses.dataclass(frozen=True)
class GFNConfig(DiffusionConfig):
    """A diffusion sampler trained by trajectory balance, with its learnt log Z."""

    log_z_learning_rate: float = option(0.1, positive, "Adam learning rate of the learnt log Z")
    exploration: float = option(
        EXPLORATION,
        non_negative,
        "off-policy exploration: extra noise sd per unit time of the chain that draws the "
        "training paths, decayed linearly to 0 over the first half of training (0: "
        "on-policy)",
    )
    local_search: bool = option(
        True,
        boolean,
        "Sendera et al.'s local search: MALA chains restarted from a replay buffer of the "
        "training paths' ends; their states, taken back by the Brownian bridge, are a "
        "second training batch per step",
    )
    search_iterations: int = option(
        2, positive_int, "local search: MALA iterations of each chain per training step"
    )


class TrajectoryBalanceModel(eqx.Module):
    """What trajectory balance trains: the control and the scalar ``log_z``."""

    control: Control
    log_z: Array


def build_balanced(
    key: Array, logdensity_fn: Callable, dim: int, config: DiffusionConfig
) -> TrajectoryBalanceModel:
    """The untrained control and ``log_z = 0``."""
    control = build_control(key, logdensity_fn, dim, config)
    return TrajectoryBalanceModel(control, jnp.zeros(()))


class Batch(NamedTuple):
    """Training paths held fixed: positions (K + 1, n, dim), the target's scores along
    them (None without a Langevin control) and their ``terminal`` weights ``log pi(x_K) -
    log N(x_K; 0, terminal_variance I)`` (-inf: left out of the loss)."""

    positions: Array
    scores: Array | None
    terminal: Array


def forward_batch(
    key: Array,
    control: Control,
    logdensity_fn: Callable,
    reference: Reference,
    exploration: Array | float,
    n: int,
    dim: int,
) -> tuple[Batch, Array]:
    """n paths of the (frozen) control's chain, widened by ``exploration``
    (:func:`~.paths.explored`; 0: on-policy), and their ends' log densities."""
    behaviour = explored(reference, exploration)
    arrays, static = eqx.partition(control, eqx.is_inexact_array)
    frozen = eqx.combine(jax.lax.stop_gradient(arrays), static)
    paths = simulate(key, frozen, logdensity_fn, behaviour, n, dim, True)
    assert paths.positions is not None
    # the weights under the model's own chain, whichever chain drew the paths
    terminal = paths.terminal_lp - end_log_prob(reference, paths.ends)
    return Batch(paths.positions, paths.scores, terminal), paths.terminal_lp


def balance_loss(
    params: Any, static: Any, reference: Reference, batches: tuple[Batch, ...]
) -> tuple[Array, dict[str, Array]]:
    """Trajectory balance (Malkin et al. 2022; for diffusion samplers Lahlou et al. 2023
    and Sendera et al. 2024): ``E[(log Z_theta + log q(path) - log pi(x_K) - log
    p_B(path | x_K))^2] = E[(log Z_theta - log w)^2]``, ``w`` the path's weight under the
    model's chain, summed over ``batches`` of paths held fixed (no gradient through the
    positions or the target: an off-policy objective, whatever chain drew them);
    ``log Z_theta`` is learnt beside the control. Records the first batch's ``elbo``
    (mean log w) and ``log_z``."""
    model = eqx.combine(params, static)
    value, elbo = jnp.zeros(()), jnp.zeros(())
    for i, batch in enumerate(batches):
        kept = jnp.isfinite(batch.terminal)
        terminal = jnp.where(kept, batch.terminal, 0.0)
        log_w = path_log_weights(model.control, reference, batch.positions, batch.scores, terminal)
        squares = jnp.where(kept, (model.log_z - log_w) ** 2, 0.0)
        value = value + jnp.sum(squares) / jnp.maximum(jnp.sum(kept), 1)
        if i == 0:
            elbo = jnp.mean(jnp.where(kept, log_w, -jnp.inf))
    return value, {"elbo": elbo, "log_z": model.log_z}


def balanced_cost(config: DiffusionConfig) -> tuple[int, int]:
    """As :func:`~.samplers.score_cost`, but the end is only evaluated
    (``end_evaluations``)."""
    training, sampling = score_cost(config)
    return training - 1, sampling


def search_cost(config: DiffusionConfig) -> int:
    """Target gradients of one training step's local search and replayed batch: each of
    ``batch_size`` chains one at its start and one per iteration; each replayed path one
    per step with the Langevin control (its end's density is the buffer's)."""
    if not (isinstance(config, GFNConfig) and config.local_search):
        return 0
    replayed = config.num_steps if config.langevin_control else 0
    return config.batch_size * (config.search_iterations + 1 + replayed)


class ReplayBuffer(NamedTuple):
    """The last ``capacity`` positions written, their log densities (-inf: empty), the
    number of batches written, and ``order``: the entries' indices from the highest
    density down, empty entries last (ties: the earlier-merged first).

    ``order`` is kept by merging each written batch into it (:func:`add_batch`), not by
    sorting the buffer: XLA's CPU sort of a 64000-entry buffer took about 20 ms, and the
    ranks of both buffers, sorted twice each per training step, took most of gfn_tb's
    step time."""

    positions: Array  # (capacity, dim)
    log_density: Array  # (capacity,)
    written: Array  # () int: batches written
    order: Array  # (capacity,) int


def empty_buffer(capacity: int, dim: int) -> ReplayBuffer:
    dtype = jnp.result_type(float)
    return ReplayBuffer(
        jnp.zeros((capacity, dim), dtype),
        jnp.full(capacity, -jnp.inf, dtype),
        jnp.asarray(0),
        jnp.arange(capacity),
    )


def add_batch(buffer: ReplayBuffer, positions: Array, log_density: Array) -> ReplayBuffer:
    """The buffer with ``positions`` (n, dim; n divides the capacity) written over its
    oldest batch; an entry with a non-finite density or position is stored empty.

    ``order`` is updated in O(capacity log n): the overwritten slots leave it, the new
    batch is sorted alone, and each survivor moves down by the new entries above it,
    each new entry to its rank plus the survivors at or above it (a stable merge).

    Example:
        >>> b = add_batch(empty_buffer(4, 1), jnp.zeros((2, 1)), jnp.array([1.0, 3.0]))
        >>> b = add_batch(b, jnp.zeros((2, 1)), jnp.array([2.0, jnp.nan]))
        >>> b.log_density.tolist(), b.order.tolist()
        ([1.0, 3.0, 2.0, -inf], [1, 2, 0, 3])
    """
    n = positions.shape[0]
    capacity = buffer.log_density.shape[0]
    start = (buffer.written * n) % capacity
    ok = jnp.isfinite(log_density) & jnp.all(jnp.isfinite(positions), axis=1)
    new_density = jnp.where(ok, log_density, -jnp.inf)
    put = lambda old, new: jax.lax.dynamic_update_slice_in_dim(old, new, start, 0)
    # the survivors, still in order: every index outside the overwritten slots
    stale = (buffer.order >= start) & (buffer.order < start + n)
    destination = jnp.where(stale, capacity - n, jnp.cumsum(~stale) - 1)
    survivors = jnp.zeros(capacity - n, int).at[destination].set(buffer.order, mode="drop")
    survivor_density = buffer.log_density[survivors]
    batch_order = jnp.argsort(-new_density, stable=True)
    batch_density = new_density[batch_order]
    above_survivor = jnp.searchsorted(-batch_density, -survivor_density, side="left")
    above_new = jnp.searchsorted(-survivor_density, -batch_density, side="right")
    order = jnp.zeros(capacity, int)
    order = order.at[jnp.arange(capacity - n) + above_survivor].set(survivors)
    order = order.at[jnp.arange(n) + above_new].set(start + batch_order)
    return ReplayBuffer(
        put(buffer.positions, jnp.where(ok[:, None], positions, 0.0)),
        put(buffer.log_density, new_density),
        buffer.written + 1,
        order,
    )


def rank_log_priority(filled: Array, capacity: int) -> Array:
    """``log(1 / (k N + r))`` for rank r = 0, 1, ... (0: the highest density) of the
    N = ``filled`` non-empty entries, ``k = RANK_WEIGHT``; -inf for r >= N.

    Example:
        >>> p = jnp.exp(rank_log_priority(jnp.asarray(3), 4))
        >>> [round(float(x), 3) for x in p]  # k N = 0.03
        [33.333, 0.971, 0.493, 0.0]
    """
    rank = jnp.arange(capacity)
    priority = -jnp.log(RANK_WEIGHT * filled + rank)
    return jnp.where(rank < filled, priority, -jnp.inf)


def draw_entries(key: Array, buffer: ReplayBuffer, n: int) -> tuple[Array, Array]:
    """n entries drawn with replacement by rank priority: positions and log densities
    (-inf if the buffer is empty)."""
    capacity = buffer.log_density.shape[0]
    filled = jnp.sum(jnp.isfinite(buffer.log_density))
    rank = weighted_indices(key, rank_log_priority(filled, capacity), n)
    index = buffer.order[rank]
    return buffer.positions[index], buffer.log_density[index]


def bridge_paths(key: Array, reference: Reference, ends: Array) -> Array:
    """Paths (K + 1, n, dim) drawn backward from ``ends`` by the backward chain of a
    reference that starts at 0 and adds independent noise (decay 1: PIS's Brownian
    motion, :func:`~.paths.brownian_reference`): with ``v_k = sum_{j<k} noise_j^2`` the
    variance of ``x_k``, ``x_k | x_{k+1} ~ N(v_k / v_{k+1} x_{k+1}, v_k noise_k^2 /
    v_{k+1})``, the Brownian bridge to 0.

    Example:
        >>> paths = bridge_paths(jax.random.key(0), brownian_reference(4), jnp.ones((3, 2)))
        >>> paths.shape, float(jnp.abs(paths[0]).max()), float(paths[-1].min())
        ((5, 3, 2), 0.0, 1.0)
    """
    variance = jnp.concatenate([jnp.zeros(1), jnp.cumsum(reference.noise**2)])

    def back(x_next: Array, inputs: tuple) -> tuple[Array, Array]:
        step_key, v, v_next, noise = inputs
        sd = jnp.sqrt(v * noise**2 / v_next)
        x = v / v_next * x_next + sd * jax.random.normal(step_key, x_next.shape, x_next.dtype)
        return x, x

    keys = jax.random.split(key, reference.noise.shape[0])
    inputs = (keys, variance[:-1], variance[1:], reference.noise)
    _, starts = jax.lax.scan(back, ends, inputs, reverse=True)
    return jnp.concatenate([starts, ends[None]])


class SearchChains(NamedTuple):
    """The local search's MALA chains: positions (n, dim), log densities (n,), iterations
    since their restart (n,), and the shared log step size."""

    positions: Array
    log_density: Array
    age: Array
    log_step: Array


def start_chains(n: int, dim: int) -> SearchChains:
    """Chains due to restart from the buffer at the first step."""
    dtype = jnp.result_type(float)
    return SearchChains(
        jnp.zeros((n, dim), dtype),
        jnp.full(n, -jnp.inf, dtype),
        jnp.full(n, SEARCH_LENGTH),
        jnp.asarray(math.log(SEARCH_START_STEP), dtype),
    )


def local_search(
    key: Array,
    chains: SearchChains,
    logdensity_fn: Callable,
    buffer: ReplayBuffer,
    iterations: int,
) -> tuple[SearchChains, Array]:
    """Chains of ``SEARCH_LENGTH`` iterations restart from ``buffer`` (rank priority);
    then ``iterations`` MALA iterations (Roberts and Tweedie 1996: proposal ``y = x + h
    grad log pi(x) + sqrt(2 h) xi``, Metropolis-Hastings accept) of every chain, the step
    size adapted toward acceptance ``SEARCH_ACCEPTANCE``. Returns the chains and the
    mean acceptance. Cost: ``iterations + 1`` gradients per chain."""
    restart_key, key = jax.random.split(key)
    n = chains.age.shape[0]
    fresh, _ = draw_entries(restart_key, buffer, n)
    restart = chains.age >= SEARCH_LENGTH
    x = jnp.where(restart[:, None], fresh, chains.positions)
    value_and_grad = jax.vmap(jax.value_and_grad(logdensity_fn))
    lp, grad = value_and_grad(x)

    def iteration(carry: tuple, step_key: Array) -> tuple[tuple, Array]:
        x, lp, grad, log_step = carry
        h = jnp.exp(log_step)
        noise_key, accept_key = jax.random.split(step_key)
        xi = jax.random.normal(noise_key, x.shape, x.dtype)
        y = x + h * grad + jnp.sqrt(2.0 * h) * xi
        lp_y, grad_y = value_and_grad(y)
        forward = jnp.sum((y - x - h * grad) ** 2, axis=1)
        backward = jnp.sum((x - y - h * grad_y) ** 2, axis=1)
        log_accept = lp_y - lp + (forward - backward) / (4.0 * h)
        ok = jnp.isfinite(log_accept) & jnp.all(jnp.isfinite(grad_y), axis=1)
        log_u = jnp.log(jax.random.uniform(accept_key, lp.shape, lp.dtype))
        accept = ok & (log_u < log_accept)
        x = jnp.where(accept[:, None], y, x)
        lp = jnp.where(accept, lp_y, lp)
        grad = jnp.where(accept[:, None], grad_y, grad)
        rate = jnp.mean(jnp.where(ok, jnp.minimum(jnp.exp(log_accept), 1.0), 0.0))
        log_step = log_step + SEARCH_ADAPTATION * (rate - SEARCH_ACCEPTANCE)
        return (x, lp, grad, log_step.astype(chains.log_step.dtype)), rate

    start = (x, lp, grad, chains.log_step)
    (x, lp, _, log_step), rates = jax.lax.scan(iteration, start, jax.random.split(key, iterations))
    age = jnp.where(restart, 0, chains.age) + iterations
    return SearchChains(x, lp, age, log_step), jnp.mean(rates)


class BalanceCarry(NamedTuple):
    """What one trajectory-balance step hands to the next: the optax state, the smoothed
    loss, and the local search's buffers and chains."""

    params: Any
    opt_state: Any
    smoothed_loss: Array
    ends: ReplayBuffer
    searched: ReplayBuffer
    chains: SearchChains


def train_balanced(
    key: Array, logdensity_fn: Callable, dim: int, config: DiffusionConfig, method: DiffusionMethod
) -> tuple[Any, dict[str, Array]]:
    """Train gfn_tb's model on the (whitened) density for at most ``num_warmup`` steps
    (the plateau rule judges from the end of the exploration on); returns it and the
    trace (``loss``, ``elbo``, ``log_z``, ``beta`` the exploration, ``skipped``, with
    local search ``search_acceptance``, and with the plateau rule ``trained`` and
    ``plateau``)."""
    assert isinstance(config, GFNConfig)
    init_key, train_key = jax.random.split(key)
    params, static = partition_flow(method.build(init_key, logdensity_fn, dim, config))
    adam = optimizer(config, config.log_z_learning_rate)
    value_and_grad = eqx.filter_value_and_grad(balance_loss, has_aux=True)
    n, num_steps, decay = config.batch_size, config.num_warmup, config.num_warmup // 2
    reference = brownian_reference(config.num_steps)
    score_fn = jax.vmap(jax.vmap(clipped_score(logdensity_fn)))
    progress = method.name if config.progress_bar else None

    def step(carry: BalanceCarry, inputs: tuple[Array, Array]) -> tuple[BalanceCarry, dict]:
        step_key, index = inputs
        paths_key, search_key, draw_key, bridge_key = jax.random.split(step_key, 4)
        extra_sd = config.exploration * jnp.maximum(1.0 - index / max(decay, 1), 0.0)
        control = eqx.combine(carry.params, static).control
        batch, ends_lp = forward_batch(
            paths_key, control, logdensity_fn, reference, extra_sd, n, dim
        )
        batches: tuple[Batch, ...] = (batch,)
        record = {"beta": extra_sd}
        if config.local_search:
            ends = add_batch(carry.ends, batch.positions[-1], ends_lp)
            chains, record["search_acceptance"] = local_search(
                search_key, carry.chains, logdensity_fn, ends, config.search_iterations
            )
            burnt_in = chains.age >= SEARCH_BURN_IN
            kept = jnp.where(burnt_in, chains.log_density, -jnp.inf)
            searched = add_batch(carry.searched, chains.positions, kept)
            x, lp = draw_entries(draw_key, searched, n)
            positions = bridge_paths(bridge_key, reference, x)
            scores = score_fn(positions[:-1]) if config.langevin_control else None
            batches += (Batch(positions, scores, lp - end_log_prob(reference, x)),)
            carry = carry._replace(ends=ends, searched=searched, chains=chains)
        (loss, aux), grads = value_and_grad(carry.params, static, reference, batches)
        carry, finite = guarded_update(carry, loss, grads, adam, index, num_steps, progress)
        return carry, {**aux, **record, "loss": loss, "skipped": ~finite}

    capacity = BUFFER_BATCHES * n
    carry = BalanceCarry(
        params,
        adam.init(params),
        jnp.zeros((), jnp.result_type(float)),
        empty_buffer(capacity, dim),
        empty_buffer(capacity, dim),
        start_chains(n, dim),
    )
    rule = plateau_rule(config, start=decay if config.exploration > 0 else 0)
    carry, trace = run_steps(step, carry, train_key, num_steps, rule, progress)
    return eqx.combine(carry.params, static), trace


GFN_TB = DiffusionMethod(
    "gfn_tb",
    build_balanced,
    on_reference(brownian_reference),
    None,
    balanced_cost,
    end_evaluations=1,
    train=train_balanced,
    step_grads=search_cost,
)


@register("gfn_tb", GFNConfig, family="flow")
def run_gfn_tb(
    key: Array, target: Target, config: GFNConfig, layout: ChainLayout | None = None
) -> Draws:
    """A GFlowNet diffusion sampler trained by trajectory balance (Lahlou et al. 2023,
    "A theory of continuous generative flow networks", ICML; Sendera et al. 2024,
    "Improved off-policy training of diffusion samplers", NeurIPS):
    PIS's chain (:func:`~.paths.brownian_reference`) with the Brownian bridge as the
    fixed backward policy, its drift and a scalar log Z trained to balance
    ``log Z + log q(path) = log pi(x_K) + log p_B(path | x_K)`` on paths held fixed
    (no gradient through the positions or the target), the Langevin parametrisation by
    default (their "LP"); then ``num_samples`` paths' ends weighted by the exact path
    weight. The training paths come from a wider chain (Sendera et al.'s exploration,
    ``exploration``, :func:`~.paths.explored`; its level per step is
    ``warmup_sample_stats.beta``), decayed to on-policy over the first half of training,
    and, with ``local_search``, from Sendera et al.'s local search and replay buffer
    (module docstring; ``warmup_sample_stats.search_acceptance``).
    The learnt log Z is in the training curve (``warmup_sample_stats.log_z``); the
    reported ``log_z`` is the importance-weighted one.
    Result and cost: as :func:`~.samplers.run_diffusion`'s.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("banana", "gfn_tb", num_chains=2, num_samples=50, num_warmup=5,
        ...               num_steps=10, hidden_width=8, batch_size=8, pilot_steps=10)
        >>> r.idata.warmup_sample_stats["log_z"].shape
        (2, 5)
    """
    return run_diffusion(key, target, config, GFN_TB, layout)
