"""Flow annealed importance sampling bootstrap (``fab``; Midgley, Stimper, Simm, Schoelkopf
and Hernandez-Lobato 2023, "Flow Annealed Importance Sampling Bootstrap", ICLR).

A flow q is trained to minimise the alpha = 2 divergence to the target p, i.e.
``log int p^2 / q`` (its minimum, ``2 log Z``, is reached at ``q = p / Z``). Its gradient
is an expectation under ``p^2 / q`` (the paper's loss):

    grad log int p^2 / q_theta  =  -E_{p^2 / q}[grad log q_theta(x)],

estimated by AIS started at q and targeting ``p^2 / q``: this workbench's AIS
(:func:`~bayeswb.samplers.smc.anneal` without resampling), ``num_steps`` temperatures of
the path ``q^(1 - beta) (p^2 / q)^beta`` (linear by default), ``num_mcmc_steps`` sweeps of
``move`` (HMC by default, as the paper) at each, whitened and step-size retuned from the
population. Targeting ``p^2 / q`` puts the AIS where q is too small relative to p, the
regions a mode-seeking loss never visits: the bootstrap of the paper's title.

The paper's prioritised replay buffer: each training iteration
runs one AIS of ``num_mc_samples`` particles and adds them to a buffer of the last
``buffer_runs`` runs with their log weights ``log w`` (toward ``p^2 / q``) and
``log q``; then ``updates_per_ais`` Adam steps each draw ``num_mc_samples`` entries with
probability proportional to w and descend ``-mean log q_theta(x)``. After a step the drawn
entries' weights follow the new flow, ``log w += log q_old(x) - log q_new(x)`` (the
target ``p^2 / q`` changed with q), so ``log w + log q`` of an entry never changes
(:func:`replay_update`); inside the step's loss each drawn entry is weighted by
``q_stored(x) / q(x)``, clipped at 10 (their ``w_adjust``), for the steps since its weight
last moved. ``buffer_runs=1, updates_per_ais=1`` is FAB without the buffer.

The loss an iteration reports is the fresh AIS's estimate of ``log int p^2 / q``, which
falls toward ``2 log Z``; the flows' plateau rule watches it
(:func:`~.training.train_until_plateau`: one compiled loop, at most ``num_warmup``
iterations), from the flows' widened Gaussian pilot.

After training, each run anneals ``num_samples`` flow draws to p by the same AIS
(:func:`~bayeswb.samplers.smc.run_annealing` with the flow as reference, no
resampling), whose weights give the draws and log Z (unbiased on the natural scale for a
fixed tuning; adapted from the population, with an O(1/N) bias, unless
``pilot_particles`` replays a pilot's).

Cost: every iteration's AIS (``num_mc_samples`` particles, ``num_steps`` temperatures,
one gradient of log p per gradient of ``2 log p - log q``; the buffer's updates need only
the flow), the pilot's evaluations and the final AIS, counted exactly (:func:`fab_cost`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from bayeswb.core.config import one_of, option, positive_int
from bayeswb.core.draws import Count, Draws
from bayeswb.core.progress import report_progress
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.samplers import register
from bayeswb.samplers.flows.architectures import INVERTIBLE_FLOW_TYPES
from bayeswb.samplers.flows.fitting import (
    FlowConfig,
    initial_flow,
    pilot_evaluations,
    training_optimizer,
)
from bayeswb.samplers.flows.smc_flow import flow_reference
from bayeswb.samplers.flows.training import (
    all_finite,
    partition_flow,
    plateau_rule,
    run_steps,
    training_cap,
    training_status,
)
from bayeswb.samplers.smc import (
    AnnealingSettings,
    anneal,
    annealing_parts,
    make_move,
    run_annealing,
)
from bayeswb.samplers.smc.annealing import annealing_plan, cost_per_step
from bayeswb.samplers.smc.moves import MCMC_MOVES
from bayeswb.samplers.smc.settings import move_check
from bayeswb.samplers.smc.tempering import SCHEDULES

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class FABConfig(FlowConfig, AnnealingSettings):
    """FAB: flow training by the AIS-estimated alpha = 2 divergence with a replay buffer
    (``num_warmup`` iterations at most, the plateau rule; each one AIS of
    ``num_mc_samples`` particles and ``updates_per_ais`` Adam steps), then AIS from the
    trained flow to the target; ``num_chains`` runs, each with its own flow, of
    ``num_samples`` particles. The AIS options (``move``, ``num_steps``, ``schedule``,
    ``num_mcmc_steps``, step size) are shared by training and the final run."""

    num_warmup: int = training_cap(5000)
    num_mc_samples: int = option(64, positive_int, "AIS particles per training iteration")
    move: Any = option("hmc", move_check(MCMC_MOVES), "MCMC kernel of the AIS: name or smc.Move")
    num_steps: int = option(8, positive_int, "AIS temperatures, in training and the final run")
    schedule: str = option(
        "linear", one_of(*(s for s in SCHEDULES if s != "adaptive")), "AIS temperature schedule"
    )
    num_mcmc_steps: int = option(1, positive_int, "sweeps of the move per temperature")
    buffer_runs: int = option(64, positive_int, "AIS runs the replay buffer holds")
    updates_per_ais: int = option(4, positive_int, "Adam steps from the buffer per AIS run")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.flow_type not in INVERTIBLE_FLOW_TYPES:
            raise ValueError(
                f"flow_type must be one of {INVERTIBLE_FLOW_TYPES} (the AIS needs the flow's "
                f"log density at its particles), got {self.flow_type!r}"
            )
        for name in ("psis", "stl_estimator"):
            if getattr(self, name):
                raise ValueError(f"{name} must be False for fab: its weights come from AIS")
        if self.num_anneal_steps not in (None, 0):
            raise ValueError("num_anneal_steps must be None or 0 for fab (no reverse-KL ramp)")


class Buffer(NamedTuple):
    """The replay buffer: ``capacity`` AIS particles (the last runs), their log weights
    toward ``p^2 / q`` (-inf: empty or dead) and log q under the current flow."""

    positions: Array  # (capacity, dim)
    log_weights: Array  # (capacity,)
    log_q: Array  # (capacity,)
    runs_added: Array  # () int


def empty_buffer(capacity: int, dim: int) -> Buffer:
    dtype = jnp.result_type(float)
    return Buffer(
        jnp.zeros((capacity, dim), dtype),
        jnp.full(capacity, -jnp.inf, dtype),
        jnp.zeros(capacity, dtype),
        jnp.asarray(0),
    )


def add_run(buffer: Buffer, positions: Array, log_weights: Array, log_q: Array) -> Buffer:
    """The buffer with one AIS run's n particles written over its oldest run's."""
    n = positions.shape[0]
    start = (buffer.runs_added * n) % buffer.log_weights.shape[0]
    alive = jnp.isfinite(log_weights) & jnp.isfinite(log_q)
    put = lambda old, new: jax.lax.dynamic_update_slice_in_dim(old, new, start, 0)
    return Buffer(
        put(buffer.positions, jnp.where(alive[:, None], positions, 0.0)),
        put(buffer.log_weights, jnp.where(alive, log_weights, -jnp.inf)),
        put(buffer.log_q, jnp.where(alive, log_q, 0.0)),
        buffer.runs_added + 1,
    )


# the largest factor by which a drawn entry's weight is moved to the current flow inside
# an update's loss (the paper's w_adjust_clip of 10): a stale entry cannot dominate a step
LOG_ADJUST_CLIP = math.log(10.0)


def weighted_indices(key: Array, log_weights: Array, n: int) -> Array:
    """n indices drawn with replacement with probability proportional to
    ``exp(log_weights)``, by inverting the cumulative weights (O(capacity + n log
    capacity); ``jax.random.categorical`` would draw n x capacity Gumbels).

    Example:
        >>> log_w = jnp.log(jnp.array([0.0, 3.0, 1.0]))
        >>> idx = weighted_indices(jax.random.key(0), log_w, 4000)
        >>> round(float(jnp.mean(idx == 1)), 1), int(jnp.sum(idx == 0))
        (0.8, 0)
    """
    top = jnp.max(log_weights)
    cumulative = jnp.cumsum(jnp.exp(log_weights - jnp.where(jnp.isfinite(top), top, 0.0)))
    u = jax.random.uniform(key, (n,), cumulative.dtype) * cumulative[-1]
    index = jnp.searchsorted(cumulative, u, side="right")
    return jnp.minimum(index, log_weights.shape[0] - 1)


class FABCarry(NamedTuple):
    """What one FAB iteration hands to the next."""

    params: Any
    opt_state: Any
    smoothed_loss: Array
    buffer: Buffer


def replay_update(
    static: Any, optimizer: optax.GradientTransformation, batch: int
) -> Callable[[FABCarry, Array], tuple[FABCarry, Array]]:
    """One Adam step on ``batch`` buffer entries drawn with probability proportional to
    their weights, then their weights and log q moved to the new flow (module docstring).
    A step with a non-finite loss or gradient, or from an empty buffer, changes nothing;
    an entry whose new log q is not finite leaves the buffer (weight 0)."""

    def update(carry: FABCarry, key: Array) -> tuple[FABCarry, Array]:
        buffer = carry.buffer
        index = weighted_indices(key, buffer.log_weights, batch)
        x = buffer.positions[index]

        def loss(params: Any) -> Array:
            log_q = jax.vmap(eqx.combine(params, static).log_prob)(x)
            # the entries' weights were last moved at their stored log q: the rest of
            # the way to the current flow, clipped (the paper's w_adjust_clip)
            log_adjust = buffer.log_q[index] - jax.lax.stop_gradient(log_q)
            adjust = jnp.exp(jnp.minimum(log_adjust, LOG_ADJUST_CLIP))
            terms = jnp.where(jnp.isfinite(log_q), adjust * log_q, 0.0)
            return -jnp.mean(terms)

        value, grads = eqx.filter_value_and_grad(loss)(carry.params)
        updates, opt_state = optimizer.update(grads, carry.opt_state, carry.params)
        params = eqx.apply_updates(carry.params, updates)
        ok = all_finite(value, grads) & jnp.any(jnp.isfinite(buffer.log_weights))
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(ok, new, old),
            (params, opt_state),
            (carry.params, carry.opt_state),
        )
        new_log_q = jax.vmap(eqx.combine(params, static).log_prob)(x)
        finite = jnp.isfinite(new_log_q)
        moved = buffer.log_weights[index] + buffer.log_q[index] - new_log_q
        buffer = buffer._replace(
            log_weights=buffer.log_weights.at[index].set(jnp.where(finite, moved, -jnp.inf)),
            log_q=buffer.log_q.at[index].set(jnp.where(finite, new_log_q, 0.0)),
        )
        return carry._replace(params=params, opt_state=opt_state, buffer=buffer), ok

    return update


def fab_iteration(
    target: Target,
    config: FABConfig,
    static: Any,
    optimizer: optax.GradientTransformation,
    progress: str | None,
) -> Callable[[FABCarry, tuple[Array, Array]], tuple[FABCarry, dict[str, Array]]]:
    """One training iteration: an AIS toward ``p^2 / q`` from the current flow, its
    particles into the buffer, then ``updates_per_ais`` replay updates. Records the AIS's
    ``log int p^2 / q`` estimate (``loss``), its weights' ESS fraction (``ess``) and
    whether any update was skipped (``skipped``)."""
    plan = annealing_plan(target, config, None, 0.0)
    parts, n = annealing_parts(plan), config.num_mc_samples
    update = replay_update(static, optimizer, n)

    def iteration(carry: FABCarry, inputs: tuple[Array, Array]) -> tuple[FABCarry, dict]:
        key, index = inputs
        ais_key, update_key = jax.random.split(key)
        flow = eqx.combine(jax.lax.stop_gradient(carry.params), static)

        def doubled(x: Array) -> Array:
            return 2.0 * target.log_density(x) - flow.log_prob(x)

        out = anneal(
            ais_key, doubled, flow_reference(flow), n, parts,
            num_steps=config.num_steps, step_size=plan.step_size,
        )  # fmt: skip
        # raw AIS weights (mean: the run's estimate of int p^2 / q), comparable across runs
        log_w = out.log_z + out.log_weights + math.log(n)
        log_q = jax.vmap(flow.log_prob)(out.positions)
        carry = carry._replace(buffer=add_run(carry.buffer, out.positions, log_w, log_q))
        keys = jax.random.split(update_key, config.updates_per_ais)
        carry, kept = jax.lax.scan(update, carry, keys)
        loss = out.log_z
        average = jnp.where(index == 0, loss, 0.95 * carry.smoothed_loss + 0.05 * loss)
        smoothed = jnp.where(jnp.isfinite(loss), average, carry.smoothed_loss)
        carry = carry._replace(smoothed_loss=smoothed.astype(carry.smoothed_loss.dtype))
        if progress is not None:
            report_progress(progress, index, config.num_warmup, carry.smoothed_loss)
        weights = jnp.exp(out.log_weights)
        record = {"loss": loss, "ess": 1.0 / jnp.sum(weights**2) / n, "skipped": ~jnp.all(kept)}
        return carry, record

    return iteration


def train_fab(key: Array, target: Target, config: FABConfig, flow: Any) -> tuple[Any, dict]:
    """``num_warmup`` FAB iterations at most (:func:`fab_iteration`), stopped by the
    plateau rule unless ``plateau_window=0``; returns the trained flow and the trace."""
    params, static = partition_flow(flow)
    optimizer = training_optimizer(config)
    capacity = config.buffer_runs * config.num_mc_samples
    carry = FABCarry(
        params,
        optimizer.init(params),
        jnp.zeros((), jnp.result_type(float)),
        empty_buffer(capacity, target.dim),
    )
    progress = "fab" if config.progress_bar else None
    iteration = fab_iteration(target, config, static, optimizer, progress)
    rule = plateau_rule(config)
    carry, trace = run_steps(iteration, carry, key, config.num_warmup, rule, progress)
    return eqx.combine(carry.params, static), trace


def fab_cost(config: FABConfig, steps_trained: Array | int) -> tuple[Count, Count]:
    """Exact target (gradients, log-density evaluations) of training ``steps_trained``
    iterations (summed whole: per run) and the pilots: each iteration's AIS of ``num_mc_samples``
    particles, their initial log densities and ``num_steps`` temperatures of
    ``num_mcmc_steps`` sweeps (one target gradient per gradient of ``2 log p - log q``).
    The final AIS is counted by :func:`~bayeswb.samplers.smc.run_annealing`.

    Example:
        >>> import bayeswb as bw
        >>> config = bw.samplers.get("fab").make_config(num_chains=2, init_scale=1.0,
        ...                                             num_mc_samples=4, num_steps=2)
        >>> grads, evals = fab_cost(config, jnp.array([3, 5]))
        >>> int(grads) == 8 * 4 * 2 * (1 + 5), int(evals) == int(grads) + 8 * 4 * 3
        (True, True)
    """
    move = make_move(config.move, config.num_integration_steps)
    n = config.num_mc_samples
    grads, evals = cost_per_step(move, n, config.num_mcmc_steps, n)
    per_step_grads = config.num_steps * grads
    per_step_evals = config.num_steps * evals + n
    pilot = pilot_evaluations(config)
    return (
        Count.of(steps_trained, each=per_step_grads),
        Count.of(steps_trained, each=per_step_evals) + Count.of(pilot),
    )


@register("fab", FABConfig, family="flow")
def run_fab(
    key: Array, target: Target, config: FABConfig, layout: ChainLayout | None = None
) -> Draws:
    """Flow annealed importance sampling bootstrap (Midgley, Stimper, Simm, Schoelkopf and
    Hernandez-Lobato 2023, "Flow Annealed Importance Sampling Bootstrap", with
    the prioritised replay buffer; see the module docstring): per run, a flow trained by the
    AIS-estimated alpha = 2 divergence, then ``num_samples`` AIS particles from it to the
    target, weighted, with the run's log Z.

    Output as ``ais`` (weighted particles, ``log_z`` per run, ``path_stats``), plus
    ``warmup_stats``: ``loss`` (the AIS estimate of ``log int p^2 / q`` per iteration:
    it falls toward ``2 log Z``), ``ess`` (the training AIS weights' ESS fraction),
    ``trained`` and ``plateau`` (as the other flow samplers').

    Example (a run compiles training and AIS: tens of seconds; see
    tests/samplers/test_fab.py for full ones):
        >>> import bayeswb as bw
        >>> config = bw.samplers.get("fab").make_config()
        >>> config.move, config.num_steps, config.schedule, config.num_mc_samples
        ('hmc', 8, 'linear', 64)
    """

    def make_reference(run_key: Array) -> tuple[Any, dict[str, Array]]:
        init_key, train_key = jax.random.split(run_key)
        flow = initial_flow(init_key, target, config, invert=True)
        flow, trace = train_fab(train_key, target, config, flow)
        curves = {
            name: trace[name] for name in ("loss", "ess", "trained", "plateau") if name in trace
        }
        return flow_reference(flow), curves

    draws, curves = run_annealing(
        key, target, config, None, 0.0, make_reference=make_reference, layout=layout
    )
    grads, evals = fab_cost(config, training_status(curves)[0])
    return draws._replace(
        warmup_stats=curves if config.num_warmup else {},
        n_grad_evals=Count.of(draws.n_grad_evals) + grads,
        n_logdensity_evals=Count.of(draws.n_logdensity_evals) + evals,
    )
