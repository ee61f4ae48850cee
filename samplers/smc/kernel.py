"""The annealing kernel shared by smc, ais, smc_langevin and smc_flow, in blackjax's shape:
:func:`init` and :func:`step` on a :class:`~.state.State`, and :func:`anneal`, a
``lax.while_loop`` of steps from a :class:`~.references.Reference` (any normalised
density that can be sampled: a Gaussian, a trained flow) to the target.

One :func:`step` is a fixed sequence of :class:`Parts`, each a small function:
``schedule`` (next temperature: fixed or by bisection on the conditional ESS),
``reweight`` (in log space), ``resample`` (ESS-triggered, never, or waste-free),
``weigh`` and ``tune`` (the population's weights, whitening and step size), ``mutate``
(sweeps of the move on whitened particles, retuning the step size) and ``keep`` (the last
states, or all of them for waste-free SMC). ``anneal``'s path arrays are padded to
``num_steps`` (NaN for floats, False for ``resampled``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.smc.ess import log_ess

from bayeswb.core.weights import add_log_increment, safe_log_weights
from bayeswb.core.whitening import Whitening
from bayeswb.samplers.smc.mutation import Kept, Mutate, Sweeps
from bayeswb.samplers.smc.references import Reference
from bayeswb.samplers.smc.resampling import Resample
from bayeswb.samplers.smc.state import PATH_STATS, Info, State, Tuning
from bayeswb.samplers.smc.tempering import Reweighted, Schedule, normalise, reweight
from bayeswb.samplers.smc.tuning import Tuner

Array = jax.Array


class Parts(NamedTuple):
    """The small functions one :func:`step` is made of (see the module docstring).

    schedule:  ``State -> next temperature``  (:mod:`.tempering`)
    resample:  ``(key, positions, log_weights, ess) -> Resampled``  (:mod:`.resampling`)
    weigh:     ``log_weights -> weights`` the tuning averages with  (:mod:`.tuning`)
    tune:      a :class:`~.tuning.Tuner`: whitening, step size and its retuning
    mutate:    ``(key, z, tempered, weights, log_step_size, update, index=) -> Sweeps``
               (:func:`~.mutation.sweeps`, :func:`~.mutation.adaptive_sweeps`)
    keep:      ``(z, Sweeps, log_weights) -> Kept``  (:mod:`.mutation`)
    reweight:  ``(log_weights, log_ratio, delta) -> Reweighted``  (:func:`.tempering.reweight`)
    """

    schedule: Schedule
    resample: Resample
    weigh: Callable[[Array], Array]
    tune: Tuner
    mutate: Mutate
    keep: Callable[[Array, Sweeps, Array], Kept]
    reweight: Callable[[Array, Array, Array], Reweighted] = reweight


class Annealed(NamedTuple):
    """One run of :func:`anneal`: particles at beta = 1 and the path that led there."""

    positions: Array  # (N, dim)
    log_weights: Array  # (N,) normalised
    log_z: Array  # ()
    lp: Array  # (N,) log gamma
    family: Array  # (N,) int, each particle's initial ancestor (see State)
    path: dict[str, Array]  # (num_steps,) each, padded
    num_steps_taken: Array  # () int
    num_sweeps_taken: Array  # (num_steps,) int, sweeps of the move at each step (0: none)
    tuning: Tuning


class _Loop(NamedTuple):
    key: Array
    state: State
    trace: Info  # (num_steps, ...) each, padded


def evaluate(
    logdensity_fn: Callable, reference: Reference, positions: Array
) -> tuple[Array, Array]:
    """``(lp, log_ratio)``: log gamma (NaN -> -inf) and log gamma - log q at each row;
    -inf where the reference density is not finite (a flow at a point it cannot invert),
    which gives the particle weight zero."""
    lp = safe_log_weights(jax.vmap(logdensity_fn)(positions))
    log_q = jax.vmap(reference.log_prob)(positions)
    return lp, jnp.where(jnp.isfinite(log_q), lp - log_q, -jnp.inf)


def tempered_density(
    logdensity_fn: Callable, reference: Reference, temperature: Array, whitening: Whitening
) -> Callable[[Array], Array]:
    """``log pi_beta(x) = (1 - beta) log q + beta log gamma`` as a function of the whitened
    ``z`` of ``x`` (the constant Jacobian left out: it cancels in every ratio a move takes)."""

    def tempered(z: Array) -> Array:
        x = whitening.unwhiten(z)
        log_q = reference.log_prob(x)
        return safe_log_weights(log_q + temperature * (logdensity_fn(x) - log_q))

    return tempered


def init(
    key: Array, logdensity_fn: Callable, reference: Reference, num_particles: int, step_size: Any
) -> State:
    """``num_particles`` equally weighted draws from the reference, at beta = 0.

    Example:
        >>> from bayeswb.samplers.smc.references import gaussian_reference
        >>> state = init(jax.random.key(0), lambda x: -x @ x, gaussian_reference(2, 1.0),
        ...              8, 0.5)
        >>> state.positions.shape, float(state.temperature), float(state.log_z)
        ((8, 2), 0.0, 0.0)
    """
    positions = reference.sample(key, num_particles)
    lp, log_ratio = evaluate(logdensity_fn, reference, positions)
    return State(
        steps_taken=jnp.array(0),
        positions=positions,
        lp=lp,
        log_ratio=log_ratio,
        log_weights=jnp.full(num_particles, -math.log(num_particles)),
        temperature=jnp.array(0.0),
        log_z=jnp.array(0.0),
        log_step_size=jnp.log(jnp.asarray(step_size, dtype=float)),
        family=jnp.arange(num_particles),
    )


def step(
    key: Array, state: State, logdensity_fn: Callable, reference: Reference, parts: Parts
) -> tuple[State, Info]:
    """One tempering step: next temperature, reweight, resample, move, reweight by the
    move's increments (zero for an MCMC move).

    ``key`` is split in three, ``(next loop key, resampling key, move key)``, as
    :func:`anneal` does with its carried key; the first is unused here.
    """
    _, resample_key, move_key = jax.random.split(key, 3)
    index = state.steps_taken
    temperature = parts.schedule(state)
    delta = temperature - state.temperature
    reweighted = parts.reweight(state.log_weights, state.log_ratio, delta)
    ess = jnp.exp(log_ess(reweighted.log_weights))
    population = parts.resample(resample_key, state.positions, reweighted.log_weights, ess)
    # the weights of the particles to be moved average the whitening and the acceptance
    weights = parts.weigh(population.log_weights)
    whitening = parts.tune.whiten(index, population.positions, weights)
    density = tempered_density(logdensity_fn, reference, temperature, whitening)
    z = whitening.whiten(population.positions)
    log_step_size = parts.tune.step_size(index, state.log_step_size)
    chains = parts.mutate(
        move_key, z, density, weights, log_step_size, parts.tune.update, index=index
    )
    kept = parts.keep(z, chains, population.log_weights)
    log_weights, log_z_move = normalise(add_log_increment(kept.log_weights, kept.log_increment))
    positions = whitening.unwhiten(kept.z)
    lp, log_ratio = evaluate(logdensity_fn, reference, positions)
    log_z_step = reweighted.log_z_increment + log_z_move
    new = State(
        steps_taken=index + 1,
        positions=positions,
        lp=lp,
        log_ratio=log_ratio,
        log_weights=log_weights,
        temperature=temperature,
        log_z=state.log_z + log_z_step,
        log_step_size=chains.log_step_size,
        family=state.family[population.parents][kept.chain],
    )
    info = Info(
        temperature=temperature,
        log_z_increment=log_z_step,
        ess=ess,
        acceptance_rate=jnp.mean(chains.acceptance),
        step_size=jnp.exp(chains.log_step_size),
        resampled=population.resampled,
        num_sweeps=jnp.asarray(chains.num_sweeps, dtype=float),
        killed=jnp.sum(jnp.exp(kept.log_weights) * (kept.log_increment == -jnp.inf)),
        mean=whitening.mean,
        scale=whitening.scale,
        sweep_count=jnp.asarray(chains.num_sweeps),
    )
    return new, info


def empty_trace(num_steps: int, dim: int, scale_shape: tuple[int, ...]) -> Info:
    """The padding of a run's :class:`~.state.Info` per step: NaN, False for resampled,
    0 for the sweep count; the whitening's scale is (dim,) or (dim, dim) per step."""
    nan = jnp.full(num_steps, jnp.nan)
    nan_dim = jnp.full((num_steps, dim), jnp.nan)
    nan_scale = jnp.full((num_steps, *scale_shape), jnp.nan)
    resampled, sweeps = jnp.zeros(num_steps, bool), jnp.zeros(num_steps, int)
    return Info(nan, nan, nan, nan, nan, resampled, nan, nan, nan_dim, nan_scale, sweeps)


def anneal(
    key: Array,
    logdensity_fn: Callable,
    reference: Reference,
    num_particles: int,
    parts: Parts,
    *,
    num_steps: int,
    step_size: float,
) -> Annealed:
    """One annealing run of ``num_particles`` from ``reference`` to ``exp(logdensity_fn)``:
    :func:`step` until beta = 1 or ``num_steps`` steps, starting the move at
    ``step_size``.

    Example (adaptive tempered SMC with MALA, as ``smc`` runs it):
        >>> from bayeswb.samplers import smc
        >>> parts = Parts(
        ...     schedule=smc.adaptive_schedule(target_conditional_ess=0.5, num_steps=20),
        ...     resample=smc.ess_resampling("systematic", ess_threshold=0.5),
        ...     weigh=smc.normalised_weights,
        ...     tune=smc.adaptive_tuner(2, precondition=True, adapt_step_size=True,
        ...                             target_acceptance_rate=0.574),
        ...     mutate=smc.sweeps(smc.mala_move(), num_sweeps=2),
        ...     keep=smc.keep_last,
        ... )
        >>> out = anneal(jax.random.key(0), lambda x: -0.5 * x @ x,
        ...              smc.gaussian_reference(2, 2.0), 64, parts, num_steps=20, step_size=0.5)
        >>> out.positions.shape, out.path["temperature"].shape
        ((64, 2), (20,))
    """
    init_key, key = jax.random.split(key)
    state = init(init_key, logdensity_fn, reference, num_particles, step_size)

    def body(loop: _Loop) -> _Loop:
        next_key = jax.random.split(loop.key, 3)[0]
        state, info = step(loop.key, loop.state, logdensity_fn, reference, parts)
        index = loop.state.steps_taken
        trace = jax.tree.map(lambda padded, v: padded.at[index].set(v), loop.trace, info)
        return _Loop(next_key, state, trace)

    def not_done(loop: _Loop) -> Array:
        return (loop.state.temperature < 1.0) & (loop.state.steps_taken < num_steps)

    # the whitening's shape alone: tracing a whole step for it cost 0.09 s per anneal
    whitening = jax.eval_shape(
        parts.tune.whiten, state.steps_taken, state.positions, jnp.exp(state.log_weights)
    )
    dim = state.positions.shape[-1]
    start = _Loop(key, state, empty_trace(num_steps, dim, whitening.scale.shape))
    final = jax.lax.while_loop(not_done, body, start)
    state, trace = final.state, final.trace
    return Annealed(
        positions=state.positions,
        log_weights=state.log_weights,
        log_z=state.log_z,
        lp=state.lp,
        family=state.family,
        path={name: getattr(trace, name) for name in PATH_STATS},
        num_steps_taken=state.steps_taken,
        num_sweeps_taken=trace.sweep_count,
        tuning=Tuning(
            trace.temperature, trace.mean, trace.scale, trace.step_size, trace.num_sweeps
        ),
    )
