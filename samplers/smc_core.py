"""The annealing loop shared by smc, ais, smc_langevin and smc_flow (see :mod:`.smc`).

:func:`anneal` runs one independent run in a ``lax.while_loop`` over tempering steps from a
:class:`Reference` (any normalised density that can be sampled: a Gaussian, a trained
flow) to the target:
next temperature (fixed or by bisection on the conditional ESS), reweighting in log space,
ESS-triggered resampling (blackjax's schemes), a move for the new temperature on whitened
particles with the step size retuned from the population. ``path`` arrays are padded to
``num_steps`` (NaN for floats, False for ``resampled``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.smc import resampling as blackjax_resampling
from blackjax.smc.ess import log_ess
from blackjax.smc.solver import dichotomy
from jax.scipy.special import logsumexp

from bayeswb.core.weights import safe_log_weights
from bayeswb.samplers.smc_moves import Move

Array = jax.Array

RESAMPLING_SCHEMES = {
    "systematic": blackjax_resampling.systematic,
    "stratified": blackjax_resampling.stratified,
    "multinomial": blackjax_resampling.multinomial,
    "residual": blackjax_resampling.residual,
}
SCHEDULES = ("adaptive", "linear", "geometric")
# geometric schedules start at 10^GEOMETRIC_START (Neal 2001 uses a geometric spacing)
GEOMETRIC_START = -4.0


class Reference(NamedTuple):
    """The normalised distribution q the annealing starts from.

    sample:    ``(key, n) -> (n, dim)`` draws from q
    log_prob:  ``(dim,) -> ()`` log q(x), normalised (so that Z_0 = 1); differentiable
    """

    sample: Callable[[Array, int], Array]
    log_prob: Callable[[Array], Array]


def gaussian_reference(dim: int, scale: float) -> Reference:
    """``N(0, scale^2 I)`` on R^dim.

    Example:
        >>> q = gaussian_reference(2, 1.0)
        >>> round(float(q.log_prob(jnp.zeros(2))), 4)  # -log(2 pi)
        -1.8379
    """
    constant = dim * (math.log(scale) + 0.5 * math.log(2 * math.pi))

    def sample(key: Array, n: int) -> Array:
        return scale * jax.random.normal(key, (n, dim))

    def log_prob(x: Array) -> Array:
        return -0.5 * jnp.sum((x / scale) ** 2) - constant

    return Reference(sample, log_prob)


def diagonal_gaussian_reference(mean: Array, sd: Array) -> Reference:
    """``N(mean, diag(sd^2))``, e.g. moment-matched to a pilot run's weighted particles.

    Example:
        >>> q = diagonal_gaussian_reference(jnp.ones(2), jnp.full(2, 2.0))
        >>> round(float(q.log_prob(jnp.ones(2))), 4)  # -log(2 pi) - 2 log 2
        -3.2242
    """
    mean, sd = jnp.asarray(mean), jnp.asarray(sd)
    constant = jnp.sum(jnp.log(sd)) + 0.5 * mean.shape[-1] * math.log(2 * math.pi)

    def sample(key: Array, n: int) -> Array:
        return mean + sd * jax.random.normal(key, (n, mean.shape[-1]))

    def log_prob(x: Array) -> Array:
        return -0.5 * jnp.sum(((x - mean) / sd) ** 2) - constant

    return Reference(sample, log_prob)


def student_t_reference(dim: int, scale: float, dof: float) -> Reference:
    """The multivariate Student-t ``t_dof(0, scale^2 I)`` on R^dim: ``scale z / sqrt(g)``
    with ``z ~ N(0, I)``, ``g ~ Gamma(dof / 2, rate dof / 2)``.

    Its tails fall like ``|x|^-(dof + dim)``, so ``q^(1 - beta)`` tempers a target's tails
    (a funnel's mouth) far less than a Gaussian's ``exp(-|x|^2 / 2 s^2)``.

    Example:
        >>> q = student_t_reference(1, 1.0, 1.0)  # Cauchy: log q(0) = -log(pi)
        >>> round(float(q.log_prob(jnp.zeros(1))), 4)
        -1.1447
    """
    half = 0.5 * (dof + dim)
    constant = (
        math.lgamma(half)
        - math.lgamma(0.5 * dof)
        - 0.5 * dim * math.log(dof * math.pi)
        - dim * math.log(scale)
    )

    def sample(key: Array, n: int) -> Array:
        normal_key, gamma_key = jax.random.split(key)
        z = jax.random.normal(normal_key, (n, dim))
        g = jax.random.gamma(gamma_key, 0.5 * dof, (n, 1)) / (0.5 * dof)
        return scale * z / jnp.sqrt(g)

    def log_prob(x: Array) -> Array:
        return constant - half * jnp.log1p(jnp.sum((x / scale) ** 2) / dof)

    return Reference(sample, log_prob)


class Tuning(NamedTuple):
    """What a run adapted at each step (padded with NaN after its last step); a pilot
    run's Tuning freezes the main run's (see ``pilot_particles``)."""

    temperature: Array  # (num_steps,)
    mean: Array  # (num_steps, dim) whitening
    sd: Array  # (num_steps, dim)
    step_size: Array  # (num_steps,)


class Annealed(NamedTuple):
    """One run of :func:`anneal`: particles at beta = 1 and the path that led there."""

    positions: Array  # (N, dim)
    log_weights: Array  # (N,) normalised
    log_z: Array  # ()
    lp: Array  # (N,) log gamma
    path: dict[str, Array]  # (num_steps,) each, padded
    num_steps_taken: Array  # ()
    tuning: Tuning


class _Carry(NamedTuple):
    step: Array
    key: Array
    positions: Array
    lp: Array
    log_ratio: Array  # log gamma - log q
    log_weights: Array  # normalised
    temperature: Array
    log_z: Array
    log_step_size: Array
    path: dict[str, Array]
    tuning: Tuning


def _normalise(log_weights: Array) -> tuple[Array, Array]:
    """Normalised log weights and their log sum; all -inf stays -inf (no NaN)."""
    total = logsumexp(log_weights)
    safe = jnp.where(jnp.isfinite(total), total, 0.0)
    return log_weights - safe, total


def _increment(delta: Array, log_ratio: Array) -> Array:
    # delta * (-inf) must be -inf also at delta = 0 (a dead particle stays dead)
    return jnp.where(log_ratio == -jnp.inf, -jnp.inf, delta * log_ratio)


def _log_conditional_ess(log_weights: Array, increment: Array) -> Array:
    """log CESS = log N + 2 log sum W w - log sum W w^2 (Zhou, Johansen, Aston 2016)."""
    n = log_weights.shape[0]
    return (
        math.log(n)
        + 2.0 * logsumexp(log_weights + increment)
        - logsumexp(log_weights + 2.0 * increment)
    )


def _adaptive_temperature(
    temperature: Array, log_ratio: Array, log_weights: Array, target_conditional_ess: float
) -> Array:
    """Largest beta with CESS = target * N, by bisection on the particles still alive."""
    alive, _ = _normalise(jnp.where(log_ratio == -jnp.inf, -jnp.inf, log_weights))
    log_target = math.log(target_conditional_ess * log_weights.shape[0])
    max_delta = 1.0 - temperature

    def excess(delta: Array) -> Array:
        return _log_conditional_ess(alive, _increment(delta, log_ratio)) - log_target

    delta = dichotomy(excess, jnp.zeros_like(temperature), max_delta)
    # NaN only if no particle is alive: jump to the end, log Z = -inf
    delta = jnp.where(jnp.isnan(delta), max_delta, delta)
    return jnp.where(delta >= max_delta, 1.0, temperature + delta)


def fixed_schedule(name: str, num_steps: int) -> Array:
    """Temperatures ``beta_0 = 0 < ... < beta_T = 1`` (T = num_steps): ``linear`` or
    ``geometric`` (``beta_1 ... beta_T`` equally spaced in log from 1e-4 to 1).

    Example:
        >>> fixed_schedule("linear", 4).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if name == "linear":
        return jnp.linspace(0.0, 1.0, num_steps + 1)
    return jnp.concatenate([jnp.zeros(1), jnp.logspace(GEOMETRIC_START, 0.0, num_steps)])


def _where_tree(ok: Array, new: Any, old: Any) -> Any:
    def select(a: Array, b: Array) -> Array:
        return jnp.where(ok.reshape(ok.shape + (1,) * (a.ndim - ok.ndim)), a, b)

    return jax.tree.map(select, new, old)


def anneal(
    key: Array,
    logdensity_fn: Any,
    reference: Reference,
    dim: int,
    num_particles: int,
    move: Move,
    *,
    num_sweeps: int,
    schedule: str,
    num_steps: int,
    target_conditional_ess: float,
    resampling: str | None,
    ess_threshold: float,
    waste_free_chains: int,
    step_size: float | None,
    target_acceptance_rate: float | None,
    adapt_step_size: bool,
    precondition: bool,
    frozen: Tuning | None = None,
    step_size_spread: float = 0.0,
) -> Annealed:
    """One annealing run from ``reference`` to ``exp(logdensity_fn)`` on R^dim.

    ``step_size`` is the initial step size (None: the move's default for ``dim``), in
    whitened coordinates when ``precondition``. ``step_size_spread = s > 0`` draws each
    particle's step size at each sweep as ``h exp(-s U)``, ``U ~ U(0, 1)``, independently
    of its state: a mixture of pi-invariant kernels, which reaches regions of very
    different scales (a funnel's neck and mouth) with one adapted ``h``.

    ``resampling=None`` never resamples (AIS); ``waste_free_chains = M > 0`` resamples M
    particles at every step and keeps all ``N / M`` states of each chain (Dau and Chopin
    2022, Algorithm 2). With ``frozen`` (a pilot run's :class:`Tuning`), temperatures,
    whitening and step sizes are read from it instead of adapted, so nothing depends on
    this run's own particles. See the module docstring for the step and the outputs.

    Example:
        >>> from bayeswb.samplers.smc_moves import mala_move
        >>> q = gaussian_reference(2, 2.0)
        >>> out = anneal(jax.random.key(0), lambda x: -0.5 * x @ x, q, 2, 64, mala_move(),
        ...              num_sweeps=2, schedule="adaptive", num_steps=20,
        ...              target_conditional_ess=0.5, resampling="systematic",
        ...              ess_threshold=0.5, waste_free_chains=0, step_size=None,
        ...              target_acceptance_rate=None, adapt_step_size=True,
        ...              precondition=True)
        >>> out.positions.shape, out.path["temperature"].shape
        ((64, 2), (20,))
    """
    n = num_particles
    log_n = math.log(n)
    target_acceptance = (
        move.target_acceptance_rate if target_acceptance_rate is None else target_acceptance_rate
    )
    initial_step_size = move.default_step_size(dim) if step_size is None else step_size
    temperatures = None if schedule == "adaptive" else fixed_schedule(schedule, num_steps)

    log_reference = reference.log_prob

    def evaluate(positions: Array) -> tuple[Array, Array]:
        lp = safe_log_weights(jax.vmap(logdensity_fn)(positions))
        log_q = jax.vmap(log_reference)(positions)
        # a reference density that is not finite (a flow at a point it cannot invert)
        # gives the particle weight zero
        return lp, jnp.where(jnp.isfinite(log_q), lp - log_q, -jnp.inf)

    def sweeps(key: Array, z: Array, tempered: Any, weights: Array, log_step_size: Array) -> Any:
        """``num_sweeps`` move steps from each row of z; retune after each sweep."""
        states = jax.vmap(move.init, (0, None))(z, tempered)

        def one_sweep(carry: Any, sweep_key: Array) -> Any:
            states, log_step_size, log_increment = carry
            jitter_key, sweep_key = jax.random.split(sweep_key)
            keys = jax.random.split(sweep_key, z.shape[0])
            # each particle's step size is drawn independently of its state, so the move
            # is a mixture of pi-invariant kernels (and stays pi-invariant)
            jitter = step_size_spread * jax.random.uniform(jitter_key, (z.shape[0],))
            new, info = jax.vmap(move.step, (0, 0, None, 0))(
                keys, states, tempered, jnp.exp(log_step_size - jitter)
            )
            ok = jnp.all(jnp.isfinite(new.position), axis=-1) & ~jnp.isnan(new.logdensity)
            states = _where_tree(ok, new, states)
            log_increment = log_increment + jnp.where(ok, info.log_weight_increment, -jnp.inf)
            acceptance = jnp.sum(weights * jnp.where(ok, info.acceptance_rate, 0.0))
            if adapt_step_size and frozen is None:
                log_step_size = log_step_size + (acceptance - target_acceptance)
            trace = (states.position, log_increment, acceptance)
            return (states, log_step_size, log_increment), trace

        carry = (states, log_step_size, jnp.zeros(z.shape[0]))
        (_, log_step_size, _), trace = jax.lax.scan(
            one_sweep, carry, jax.random.split(key, num_sweeps)
        )
        return trace, log_step_size

    def body(carry: _Carry) -> _Carry:
        key, resample_key, move_key = jax.random.split(carry.key, 3)
        if frozen is not None:
            next_temperature = frozen.temperature[carry.step]
        elif temperatures is None:
            next_temperature = _adaptive_temperature(
                carry.temperature, carry.log_ratio, carry.log_weights, target_conditional_ess
            )
            next_temperature = jnp.where(carry.step == num_steps - 1, 1.0, next_temperature)
        else:
            next_temperature = temperatures[carry.step + 1]
        delta = next_temperature - carry.temperature
        log_weights, log_z_increment = _normalise(
            carry.log_weights + _increment(delta, carry.log_ratio)
        )
        ess = jnp.exp(log_ess(log_weights))

        weights = jnp.exp(log_weights)
        positions = carry.positions
        if waste_free_chains:
            resampled = jnp.array(True)
            ancestors = RESAMPLING_SCHEMES[resampling](resample_key, weights, waste_free_chains)
            positions = positions[ancestors]
            log_weights = jnp.full(waste_free_chains, -math.log(waste_free_chains))
        elif resampling is None:
            resampled = jnp.array(False)
        else:
            resampled = ess < ess_threshold * n
            ancestors = RESAMPLING_SCHEMES[resampling](resample_key, weights, n)
            positions = jnp.where(resampled, positions[ancestors], positions)
            log_weights = jnp.where(resampled, -log_n, log_weights)

        # Whitening and acceptance averages: the weighted particles to be moved, whose ESS
        # is at least ess_threshold * N. AIS has no such bound, and a particle dominating
        # a degenerate population would tune its own kernel (which biases log Z by far
        # more than O(1/N)), so AIS uses the unweighted particles still alive.
        if resampling is None:
            alive = (log_weights > -jnp.inf).astype(positions.dtype)
            alive = alive / jnp.maximum(jnp.sum(alive), 1.0)
        else:
            alive = jnp.exp(log_weights)
        if frozen is not None:
            mean, sd = frozen.mean[carry.step], frozen.sd[carry.step]
        elif precondition:
            mean = alive @ positions
            sd = jnp.sqrt(alive @ (positions - mean) ** 2)
            sd = jnp.where(jnp.isfinite(sd) & (sd > 0), sd, 1.0)
        else:
            mean, sd = jnp.zeros(dim), jnp.ones(dim)

        def tempered(z: Array) -> Array:
            x = mean + sd * z
            log_q = log_reference(x)
            return safe_log_weights(log_q + next_temperature * (logdensity_fn(x) - log_q))

        z = (positions - mean) / sd
        log_step_size = carry.log_step_size
        if frozen is not None:
            log_step_size = jnp.log(frozen.step_size[carry.step])
        trace, log_step_size = sweeps(move_key, z, tempered, alive, log_step_size)
        chain_z, chain_increment, acceptance = trace
        if waste_free_chains:
            # keep every state of every chain (Dau and Chopin 2022, Algorithm 2)
            z = jnp.concatenate([z, chain_z.reshape(-1, dim)])
            log_increment = jnp.concatenate(
                [jnp.zeros(waste_free_chains), chain_increment.reshape(-1)]
            )
            log_weights = jnp.full(n, -log_n)
        else:
            z, log_increment = chain_z[-1], chain_increment[-1]
        # an MCMC move contributes zero; an unadjusted transport its exact weight
        log_weights, log_z_move = _normalise(log_weights + log_increment)
        positions = mean + sd * z
        lp, log_ratio = evaluate(positions)
        log_z_step = log_z_increment + log_z_move

        values = {
            "temperature": next_temperature,
            "log_z_increment": log_z_step,
            "ess": ess,
            "resampled": resampled,
            "acceptance_rate": jnp.mean(acceptance),
            "step_size": jnp.exp(log_step_size),
        }
        path = {k: v.at[carry.step].set(values[k]) for k, v in carry.path.items()}
        tuning = Tuning(
            *(
                old.at[carry.step].set(new)
                for old, new in zip(
                    carry.tuning,
                    (next_temperature, mean, sd, jnp.exp(log_step_size)),
                    strict=True,
                )
            )
        )
        return _Carry(
            step=carry.step + 1,
            key=key,
            positions=positions,
            lp=lp,
            log_ratio=log_ratio,
            log_weights=log_weights,
            temperature=next_temperature,
            log_z=carry.log_z + log_z_step,
            log_step_size=log_step_size,
            path=path,
            tuning=tuning,
        )

    def not_done(carry: _Carry) -> Array:
        return (carry.temperature < 1.0) & (carry.step < num_steps)

    init_key, key = jax.random.split(key)
    positions = reference.sample(init_key, n)
    lp, log_ratio = evaluate(positions)
    nan_path = jnp.full(num_steps, jnp.nan)
    path = {
        name: nan_path
        for name in ("temperature", "log_z_increment", "ess", "acceptance_rate", "step_size")
    }
    path["resampled"] = jnp.zeros(num_steps, bool)
    carry = _Carry(
        step=jnp.array(0),
        key=key,
        positions=positions,
        lp=lp,
        log_ratio=log_ratio,
        log_weights=jnp.full(n, -log_n),
        temperature=jnp.array(0.0),
        log_z=jnp.array(0.0),
        log_step_size=jnp.log(jnp.asarray(initial_step_size, dtype=float)),
        path=path,
        tuning=Tuning(
            nan_path,
            jnp.full((num_steps, dim), jnp.nan),
            jnp.full((num_steps, dim), jnp.nan),
            nan_path,
        ),
    )
    final = jax.lax.while_loop(not_done, body, carry)
    return Annealed(
        positions=final.positions,
        log_weights=final.log_weights,
        log_z=final.log_z,
        lp=final.lp,
        path=final.path,
        num_steps_taken=final.step,
        tuning=final.tuning,
    )
