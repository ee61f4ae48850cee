"""The mutation of a step: sweeps of a :class:`~.moves.Move` over the whitened particles,
then which states become the new particles.

:func:`sweeps` runs ``num_sweeps`` move steps from every particle at once, retuning the
step size after each sweep (the :class:`~.tuning.Tuner`'s ``update``);
:func:`adaptive_sweeps` runs them until the particles have decorrelated from where they
started (or a pilot run's counts). What is kept is
blackjax's update strategy: :func:`keep_last` (each chain's last state) or
:func:`keep_all` (waste-free SMC: every state of every chain, Dau and Chopin 2022,
Algorithm 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bayeswb.core.weights import add_log_increment
from bayeswb.samplers.smc.moves import Move
from bayeswb.samplers.smc.tuning import moment_whitening

Array = jax.Array


class Sweeps(NamedTuple):
    """The chains run from m whitened particles.

    positions:      (num_sweeps, m, dim) after each sweep (adaptive sweeps: (1, m, dim),
                    the last)
    log_increment:  (num_sweeps, m) each chain's log weight increment so far (0 for an
                    MCMC move; an unadjusted transport's exact weight)
    acceptance:     (num_sweeps,) weighted mean acceptance of each sweep (adaptive: (1,),
                    the mean over the sweeps run)
    log_step_size:  () after the last sweep's retuning
    num_sweeps:     () sweeps run
    """

    positions: Array
    log_increment: Array
    acceptance: Array
    log_step_size: Array
    num_sweeps: Array | int = 0


class Kept(NamedTuple):
    """The new particles (whitened), their log weight increments, the normalised log
    weights the increments multiply, and the moved chain each one comes from."""

    z: Array
    log_increment: Array
    log_weights: Array
    chain: Array


class _SweepCarry(NamedTuple):
    states: Any
    log_step_size: Array
    log_increment: Array


class _SweepTrace(NamedTuple):
    positions: Array
    log_increment: Array
    acceptance: Array


# (key, z, tempered, weights, log_step_size, update, index=step index) -> Sweeps
Mutate = Callable[..., Sweeps]


def _where_tree(ok: Array, new: Any, old: Any) -> Any:
    def select(a: Array, b: Array) -> Array:
        return jnp.where(ok.reshape(ok.shape + (1,) * (a.ndim - ok.ndim)), a, b)

    return jax.tree.map(select, new, old)


def weighted_quantile(values: Array, weights: Array, q: float) -> Array:
    """The smallest of ``values`` whose weighted share of values at or below it reaches
    ``q`` (``weights`` need not be normalised).

    Example:
        >>> values, weights = jnp.array([3.0, 1.0, 2.0]), jnp.array([0.5, 0.25, 0.25])
        >>> [float(weighted_quantile(values, weights, q)) for q in (0.2, 0.3, 0.6)]
        [1.0, 2.0, 3.0]
    """
    order = jnp.argsort(values)
    share = jnp.cumsum(weights[order]) / jnp.sum(weights)
    index = jnp.minimum(jnp.searchsorted(share, q), values.shape[0] - 1)
    return values[order][index]


def _one_sweep(
    move: Move,
    step_size_spread: float,
    tempered: Callable,
    weights: Array,
    update: Callable[[Array, Array], Array],
) -> Callable[[_SweepCarry, Array], tuple[_SweepCarry, _SweepTrace]]:
    """One step of ``move`` from every chain, then the step size's retuning."""

    def one_sweep(carry: _SweepCarry, sweep_key: Array) -> tuple[_SweepCarry, _SweepTrace]:
        m = carry.log_increment.shape[0]
        jitter_key, sweep_key = jax.random.split(sweep_key)
        keys = jax.random.split(sweep_key, m)
        # each particle's step size is drawn independently of its state, so the move
        # is a mixture of pi-invariant kernels (and stays pi-invariant)
        jitter = step_size_spread * jax.random.uniform(jitter_key, (m,))
        new, info = jax.vmap(move.step, (0, 0, None, 0))(
            keys, carry.states, tempered, jnp.exp(carry.log_step_size - jitter)
        )
        ok = jnp.all(jnp.isfinite(new.position), axis=-1) & ~jnp.isnan(new.logdensity)
        states = _where_tree(ok, new, carry.states)
        increment = jnp.where(ok, info.log_weight_increment, -jnp.inf)
        log_increment = add_log_increment(carry.log_increment, increment)
        rates = jnp.where(ok, info.acceptance_rate, 0.0)
        acceptance = jnp.sum(weights * rates)
        tuned_on = acceptance
        if move.acceptance_quantile is not None:
            tuned_on = weighted_quantile(rates, weights, move.acceptance_quantile)
        log_step_size = update(carry.log_step_size, tuned_on)
        trace = _SweepTrace(states.position, log_increment, acceptance)
        return _SweepCarry(states, log_step_size, log_increment), trace

    return one_sweep


def sweeps(move: Move, num_sweeps: int, step_size_spread: float = 0.0) -> Mutate:
    """``mutate(key, z, tempered, weights, log_step_size, update) -> Sweeps``: ``num_sweeps``
    steps of ``move`` for the density ``tempered`` from each row of z.

    A step that gives a non-finite position or a NaN log density is rejected and its
    chain's weight set to zero. ``step_size_spread = s > 0`` draws each particle's step
    size at each sweep as ``h exp(-s U)``, ``U ~ U(0, 1)``, independently of its state: a
    mixture of pi-invariant kernels, which reaches regions of very different scales (a
    funnel's neck and mouth) with one adapted ``h``. After each sweep
    ``log h = update(log h, acceptance)``, acceptance averaged with ``weights`` (or their
    ``move.acceptance_quantile``: :func:`weighted_quantile`).

    Example:
        >>> from bayeswb.samplers.smc.moves import mala_move
        >>> mutate = sweeps(mala_move(), num_sweeps=3)
        >>> out = mutate(jax.random.key(0), jnp.zeros((8, 2)), lambda z: -0.5 * z @ z,
        ...              jnp.full(8, 1 / 8), jnp.log(0.5), lambda h, a: h)
        >>> out.positions.shape, out.acceptance.shape, float(out.log_increment.max())
        ((3, 8, 2), (3,), 0.0)
    """

    def mutate(
        key: Array,
        z: Array,
        tempered: Callable,
        weights: Array,
        log_step_size: Array,
        update: Callable[[Array, Array], Array],
        index: Array | None = None,
    ) -> Sweeps:
        one_sweep = _one_sweep(move, step_size_spread, tempered, weights, update)
        states = jax.vmap(move.init, (0, None))(z, tempered)
        start = _SweepCarry(states, log_step_size, jnp.zeros(z.shape[0]))
        end, trace = jax.lax.scan(one_sweep, start, jax.random.split(key, num_sweeps))
        return Sweeps(
            trace.positions,
            trace.log_increment,
            trace.acceptance,
            end.log_step_size,
            jnp.array(num_sweeps),
        )

    return mutate


# adaptive sweeps stop once the weighted mean squared jump, each coordinate's against
# the population's variance of it, reaches DECORRELATED_JUMP * dim, half of the 2 * dim
# between independent draws (the lag correlation is then <= 1/2), or once a sweep adds
# less than SATURATION of it (the chains explore all they can reach, e.g. within the
# modes of a multimodal target)
DECORRELATED_JUMP = 1.0
SATURATION = 0.1
MIN_SWEEPS = 2


class _AdaptiveCarry(NamedTuple):
    key: Array
    sweep: _SweepCarry
    num_sweeps: Array
    acceptance_sum: Array
    jump: Array  # weighted mean squared distance from the start, after the last sweep
    done: Array


def adaptive_sweeps(
    move: Move,
    max_sweeps: int,
    step_size_spread: float = 0.0,
    replay: Array | None = None,
) -> Mutate:
    """``mutate(key, z, tempered, weights, log_step_size, update, index) -> Sweeps``:
    sweeps of ``move`` (as :func:`sweeps`) until the particles have moved away from where
    they started, at most ``max_sweeps``; with ``replay`` (a pilot run's
    :attr:`~.state.Tuning.num_sweeps`), step ``index`` runs exactly ``replay[index]``.

    The number of MCMC steps per temperature is adapted from the particles' movement, as
    Buchholz, Chopin and Jacob (2021, "Adaptive tuning of Hamiltonian Monte Carlo within
    sequential Monte Carlo", Bayesian Analysis, section 3) tune HMC within SMC from the
    expected squared jumping distance of the population. After sweep k, each coordinate's
    weighted mean squared jump ``sum_i W_i (z_k,i,d - z_0,i,d)^2`` is divided by ``v_d``,
    the starting population's weighted variance of that coordinate (about 1 in whitened
    coordinates, anything with ``precondition=False``), and ``J_k``, the sum over
    coordinates, is compared with ``2 dim``, its value for independent draws: the sweeps
    stop at the first ``k >= 2`` with ``J_k >= dim`` (lag correlation at most 1/2;
    resampled copies of one particle are then as far apart as independent draws are on
    average) or with ``J_k < 1.1 J_(k-1)`` (the chains' reach has saturated: more sweeps
    would not move them further, as within the modes of a multimodal target). Without
    the division, unwhitened particles were measured in the target's own units: on the
    dim-10 funnel (coordinates of sd 3 and about 9) every step stopped at 2 sweeps (smc
    with ``move="local_hmc", precondition=False``, 8 runs, seed 0: |delta log Z| 0.76;
    with it, 3-8 sweeps and 0.42). Whitened runs hardly change: in the defaults sweep
    (``benchmarks/defaults.py``, 20 models, seeds 0 and 1) every ais cell and 38 of 40
    smc cells gave the same gradient counts and scores; smc on bnn_classification
    diverged (seed 0: largest mean error 4.3 to 3.7 MCSE; seed 1: 2.2 to 6.0, flagged),
    by our reading a step whose jump lay near the bound, where the resampled particles'
    variance, 1 only up to the resampling's noise, tipped the count. The rule reads only
    the population's own positions, so like the step-size retuning it is an adaptation
    with an O(1/N) effect on log Z, removed by replaying a pilot's counts
    (``pilot_particles``). Static shapes: a ``lax.while_loop`` with the count carried;
    the gradient cost is exact from ``Sweeps.num_sweeps``.

    Example:
        >>> from bayeswb.samplers.smc.moves import mala_move
        >>> mutate = adaptive_sweeps(mala_move(), max_sweeps=50)
        >>> out = mutate(jax.random.key(0), jax.random.normal(jax.random.key(1), (64, 2)),
        ...              lambda z: -0.5 * z @ z, jnp.full(64, 1 / 64), jnp.log(1.0),
        ...              lambda h, a: h, index=0)
        >>> out.positions.shape, 2 <= int(out.num_sweeps) < 50
        ((1, 64, 2), True)
    """

    def mutate(
        key: Array,
        z: Array,
        tempered: Callable,
        weights: Array,
        log_step_size: Array,
        update: Callable[[Array, Array], Array],
        index: Array | None = None,
    ) -> Sweeps:
        one_sweep = _one_sweep(move, step_size_spread, tempered, weights, update)
        m, dim = z.shape
        states = jax.vmap(move.init, (0, None))(z, tempered)
        limit = max_sweeps if replay is None else replay[index].astype(int)
        # each coordinate's weighted variance (1 where it is 0: copies of one point)
        spread = moment_whitening(jnp.asarray(0), z, weights).scale ** 2

        def body(carry: _AdaptiveCarry) -> _AdaptiveCarry:
            key, sweep_key = jax.random.split(carry.key)
            sweep, trace = one_sweep(carry.sweep, sweep_key)
            count = carry.num_sweeps + 1
            jump = jnp.sum(weights @ ((sweep.states.position - z) ** 2) / spread)
            decorrelated = jump >= DECORRELATED_JUMP * dim
            saturated = jump < (1.0 + SATURATION) * carry.jump
            stop = (count >= MIN_SWEEPS) & (decorrelated | saturated)
            done = count >= limit if replay is not None else stop | (count >= limit)
            acceptance_sum = carry.acceptance_sum + trace.acceptance
            return _AdaptiveCarry(key, sweep, count, acceptance_sum, jump, done)

        start = _AdaptiveCarry(
            key=key,
            sweep=_SweepCarry(states, log_step_size, jnp.zeros(m)),
            num_sweeps=jnp.array(0),
            acceptance_sum=jnp.zeros(()),
            jump=jnp.zeros(()),
            done=jnp.asarray(limit) <= 0,
        )
        end = jax.lax.while_loop(lambda carry: ~carry.done, body, start)
        count = jnp.maximum(end.num_sweeps, 1)
        return Sweeps(
            end.sweep.states.position[None],
            end.sweep.log_increment[None],
            (end.acceptance_sum / count)[None],
            end.sweep.log_step_size,
            end.num_sweeps,
        )

    return mutate


def keep_last(z: Array, chains: Sweeps, log_weights: Array) -> Kept:
    """Each chain's last state, with the weights it started with."""
    chain = jnp.arange(z.shape[0])
    return Kept(chains.positions[-1], chains.log_increment[-1], log_weights, chain)


def keep_all(z: Array, chains: Sweeps, log_weights: Array) -> Kept:
    """Waste-free: the M starts and all ``num_sweeps`` states of each chain, as
    ``M (num_sweeps + 1)`` equally weighted particles (Dau and Chopin 2022, Algorithm 2).

    Example:
        >>> chains = Sweeps(jnp.ones((3, 2, 1)), jnp.zeros((3, 2)), jnp.zeros(3), 0.0)
        >>> kept = keep_all(jnp.zeros((2, 1)), chains, jnp.log(jnp.full(2, 0.5)))
        >>> kept.z[:, 0].tolist(), jnp.exp(kept.log_weights).tolist()[:2]
        ([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [0.125, 0.125])
    """
    z = jnp.concatenate([z, chains.positions.reshape(-1, z.shape[-1])])
    starts = jnp.zeros(chains.log_increment.shape[1])
    log_increment = jnp.concatenate([starts, chains.log_increment.reshape(-1)])
    n, num_chains = z.shape[0], starts.shape[0]
    chain = jnp.tile(jnp.arange(num_chains), n // num_chains)
    return Kept(z, log_increment, jnp.full(n, -math.log(n)), chain)
