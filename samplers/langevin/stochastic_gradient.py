"""Stochastic-gradient Langevin samplers on models with data: ``sgld`` and ``entropy_mcmc``.

The data interface. A target sampled with minibatches has ``target.minibatch``, a
:class:`~bayeswb.core.target.MinibatchData` of

- ``data``: a pytree of arrays sharing a leading axis of length N (one row per datum),
- ``log_likelihood_per_datum``: ``fn(x, datum) -> scalar``, log p(datum | x) for one
  row (``datum`` is the pytree of ``data`` with the leading axis removed),
- ``log_prior``: ``fn(x) -> scalar``, log p(x),

so that ``log_density(x) = log_prior(x) + sum_i log_likelihood_per_datum(x, data_i)`` (up
to a constant). Minibatches of ``batch_size`` rows are drawn without replacement at every
step; the estimate of the log density is blackjax's ``sgmcmc.gradients.logdensity_estimator``
(``log_prior + N/n sum_batch log_lik``), unbiased, and so is its gradient.

Non-finite steps: a step is the Euler-Maruyama step of blackjax's
``mcmc.diffusions.overdamped_langevin`` (the update of blackjax's ``sgld`` kernel) whose
new position is evaluated, value and gradient, on a fresh minibatch; if that estimate or
the position is not finite the step is rejected (the chain stays put) and flagged
``diverging``. A draw whose full-data ``lp`` is not finite (through a datum that was not
in the minibatch) is flagged too; the chain then stays finite but may sit in that region.

Tuning: by default ``sgld`` tunes its step and a diagonal preconditioner in warmup
from minibatch estimates alone, with the step capped so that the minibatch noise
inflates the posterior variance by at most ``noise_variance_inflation``
(:func:`self_tuned`); a given ``step_size`` makes the warmup plain burn-in. ``sghmc``
and ``csgmcmc`` take their steps from the same warmup (:mod:`.sg_hamiltonian`), and
``entropy_mcmc`` runs sgld itself, on the joint of the parameter and its guide.

Cost: ``n_grad_evals`` counts minibatch gradient estimates (each costs ``batch_size / N``
of a full-data gradient); ``n_logdensity_evals`` counts the full-data log densities
computed for ``lp`` (one per reported draw), whole or chunked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc.diffusions import DiffusionState, overdamped_langevin
from blackjax.sgmcmc.gradients import logdensity_estimator

from bayeswb.core.config import SamplerConfig, option, optional, positive, positive_int
from bayeswb.core.draws import Draws
from bayeswb.core.sampler import ChainKernel
from bayeswb.core.target import MinibatchData, Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register
from bayeswb.samplers.langevin.chain_kernel import LangevinMethod, langevin_chain_kernel
from bayeswb.samplers.langevin.divergence import keep_if_finite
from bayeswb.samplers.langevin.overdamped import MALA_OPTIMAL_ACCEPTANCE_RATE, ula_build_kernel
from bayeswb.samplers.langevin.warmup import (
    ENERGY_VARIANCE_TARGET,
    MIN_WARMUP_FOR_MASS_MATRIX,
    WarmupPlan,
    energy_variance_statistic,
    mass_matrix_windows,
    metropolis_tested,
)

Array = jax.Array


class StochasticGradientInfo(NamedTuple):
    """diverging: the step (from a non-finite gradient estimate) was rejected."""

    diverging: Array


def data_interface(target: Target, batch_size: int) -> tuple[Any, Callable, Callable, int]:
    """``(data, log_likelihood_per_datum, log_prior, N)`` from ``target.minibatch``.

    Raises ValueError when the target lacks the interface or ``batch_size`` exceeds N.
    """
    if target.minibatch is None:
        raise ValueError(
            f"target {target.name!r} has no minibatch interface: it has no "
            "minibatch=MinibatchData(data, log_likelihood_per_datum, log_prior) "
            "(see bayeswb.samplers.langevin.stochastic_gradient)"
        )
    data, log_likelihood_per_datum, log_prior = target.minibatch
    num_data = target.minibatch.num_data
    if batch_size > num_data:
        raise ValueError(f"batch_size must be <= the {num_data} data points, got {batch_size}")
    return data, log_likelihood_per_datum, log_prior, num_data


def minibatch(key: Array, data: Any, num_data: int, batch_size: int) -> Any:
    """``batch_size`` rows of ``data`` drawn uniformly without replacement."""
    rows = subset_rows(key, num_data, batch_size)
    return jax.tree.map(lambda leaf: leaf[rows], data)


def subset_rows(key: Array, num_data: int, batch_size: int) -> Array:
    """The indices of a uniformly random ``batch_size``-subset of ``range(num_data)``.

    Floyd's algorithm (Bentley and Floyd 1987, "A sample of brilliance", CACM 30(9)): for
    ``j = N - n, ..., N - 1`` draw ``t`` uniform on ``{0, ..., j}`` and add ``t``, or
    ``j`` if ``t`` is already in. Every subset has probability ``1 / C(N, n)``, as with
    ``jax.random.choice(replace=False)``, but the work is ``O(n^2)`` and nothing of size N
    is made: ``choice`` permutes all N rows, which at N = 1e5 cost 50 times a full-data
    gradient. The order within the subset is not uniform; a minibatch estimate sums over
    its rows, so order does not matter. A batch of all ``N`` rows is ``range(N)``.

    Example:
        >>> rows = subset_rows(jax.random.key(0), 10, 4)
        >>> rows.shape, len(set(rows.tolist())), bool((rows >= 0).all() & (rows < 10).all())
        ((4,), 4, True)
    """
    position = jnp.arange(batch_size)
    if batch_size == num_data:  # every row: nothing to draw
        return position
    highest = num_data - batch_size + position  # the j of each step
    draws = jax.random.randint(key, (batch_size,), 0, highest + 1)

    def add(k: Array, rows: Array) -> Array:
        taken = jnp.any((rows == draws[k]) & (position < k))
        return rows.at[k].set(jnp.where(taken, highest[k], draws[k]))

    return jax.lax.fori_loop(0, batch_size, add, jnp.zeros(batch_size, highest.dtype))


def sgld_build_kernel(num_data: int, batch_size: int) -> Callable[..., Any]:
    """Stochastic gradient Langevin dynamics (Welling and Teh 2011, eq. 4, constant step):
    ``x' = x + h g(x) + sqrt(2 h) xi`` with g an unbiased minibatch estimate of
    grad log p(x | data) (blackjax's ``sgld`` kernel is this update; its ``h`` is Welling
    and Teh's ``epsilon / 2``). Works on any position pytree.

    The state caches ``(position, log density estimate, gradient estimate)`` like ULA's:
    each step moves with the cached gradient, then evaluates the new position on a fresh
    minibatch (drawn independently of the position and the noise, so the chain has SGLD's
    law); a non-finite evaluation rejects the step. One gradient estimate per step.

    ``kernel(key, state, logdensity_estimator_fn, data, step_size) -> (state, info)``,
    ``logdensity_estimator_fn(position, batch) -> scalar``.
    """

    def kernel(
        key: Array,
        state: DiffusionState,
        logdensity_estimator_fn: Callable,
        data: Any,
        step_size: Array,
    ) -> tuple[DiffusionState, StochasticGradientInfo]:
        batch_key, step_key = jax.random.split(key)
        batch = minibatch(batch_key, data, num_data, batch_size)
        euler_maruyama = overdamped_langevin(jax.value_and_grad(logdensity_estimator_fn))
        new_state = DiffusionState(*euler_maruyama(step_key, state, step_size, (batch,)))
        new_state, diverging = keep_if_finite(state, new_state)
        return new_state, StochasticGradientInfo(diverging)

    return kernel


def sgld_init(
    key: Array,
    position: Any,
    logdensity_estimator_fn: Callable,
    data: Any,
    num_data: int,
    batch_size: int,
) -> DiffusionState:
    """State at ``position``: one minibatch estimate of the log density and its gradient."""
    batch = minibatch(key, data, num_data, batch_size)
    value, grad = jax.value_and_grad(logdensity_estimator_fn)(position, batch)
    return DiffusionState(position, value, grad)


@dataclasses.dataclass(frozen=True)
class SelfTunedSettings(SamplerConfig):
    """The options of a stochastic-gradient sampler whose ``step_size=None`` means tuned
    in warmup (:func:`self_tuned`), declared once and checked together."""

    batch_size: int = option(32, positive_int, "data points per minibatch (<= N)")
    noise_variance_inflation: float = option(
        0.03,
        positive,
        "with step_size None: the share by which the minibatch noise may inflate the "
        "posterior variance (caps the tuned step)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        step_size = getattr(self, "step_size", None)
        if step_size is None and self.num_warmup < MIN_WARMUP_FOR_MASS_MATRIX:
            raise ValueError(
                f"num_warmup must be >= {MIN_WARMUP_FOR_MASS_MATRIX} when step_size is None "
                f"(tuned in warmup), got {self.num_warmup!r}; or give a step_size"
            )


@dataclasses.dataclass(frozen=True)
class SGLDConfig(SelfTunedSettings):
    """SGLD at a constant step. By default (``step_size=None``) the warmup tunes it,
    with a diagonal preconditioner (:func:`self_tuned`); a given ``step_size`` makes the
    warmup burn-in at that step, without a preconditioner."""

    step_size: float | None = option(
        None,
        optional(positive),
        "step h (x' = x + h g + sqrt(2h) xi); None: tuned in warmup with a diagonal "
        "preconditioner",
    )


def stochastic_gradient_method(
    target: Target,
    config: Any,
    make_estimator: Callable[[Callable, Callable, int], Callable],
    state_position: Callable[[Array], Any],
    report: Callable[[Any], tuple[Array, dict[str, Array]]],
    build_kernel: Callable[[int, int], Callable[..., Any]] = sgld_build_kernel,
) -> LangevinMethod:
    """An SGLD-type sampler (:func:`sgld_build_kernel`) for one target and config.

    ``make_estimator(log_prior, log_likelihood_per_datum, N)`` gives the minibatch log
    density ``estimator(position, batch) -> scalar`` the kernel runs on. The state is a
    :class:`DiffusionState` (the position, its minibatch log-density estimate and
    gradient estimate), first estimated at ``state_position(x)``, x the target's initial
    point; ``report(position) -> (reported position, extra stats)`` is what a step shows.
    Warmup is burn-in at the configured step and reports ``diverging`` and the extra
    stats; a draw also reports the full-data ``lp`` of its position (a non-finite one is
    flagged ``diverging``) and ``step_size``. ``build_kernel(N, batch_size)`` makes the
    kernel (SGLD's: one gradient estimate per step).
    """
    data, log_likelihood, log_prior, num_data = data_interface(target, config.batch_size)
    kernel = build_kernel(num_data, config.batch_size)

    def init(key: Array, x: Array, estimator: Callable) -> DiffusionState:
        return sgld_init(key, state_position(x), estimator, data, num_data, config.batch_size)

    def warmup_trace(state: DiffusionState, info: StochasticGradientInfo, step_size: Array):
        position, extra = report(state.position)
        return position, {"diverging": info.diverging, **extra}

    def draw_trace(state: DiffusionState, info: StochasticGradientInfo, step_size: Array):
        position, extra = report(state.position)
        return position, {"diverging": info.diverging, "step_size": step_size, **extra}

    return LangevinMethod(
        init=init,
        kernel=lambda key, state, estimator, step_size: kernel(
            key, state, estimator, data, step_size
        ),
        trace=warmup_trace,
        warmup=WarmupPlan(config.num_warmup, config.step_size),
        logdensity_fn=make_estimator(log_prior, log_likelihood, num_data),
        draw_trace=draw_trace,
        position_stats=full_data_lp(target),
    )


def full_data_lp(target: Target) -> Callable[[Array, dict[str, Array]], dict[str, Array]]:
    """A draw's ``lp``, the full-data log density at its position (x coordinates); a
    non-finite one flags the draw ``diverging``."""

    def add_lp(position: Array, stats: dict[str, Array]) -> dict[str, Array]:
        lp = target.log_density(position)
        return {"lp": lp, **stats, "diverging": stats["diverging"] | ~jnp.isfinite(lp)}

    return add_lp


# the tuned warmup's start and its energy rule: ULA's defaults (overdamped.ULAConfig)
INITIAL_TUNED_STEP_SIZE = 0.01
DESIRED_ENERGY_VARIANCE = 1e-4


class TuningInfo(NamedTuple):
    """A tuning step of SGLD: energy_error (minus MALA's log ratio on the step's
    minibatch estimate), diverging, and gradient_noise, an unbiased estimate of the
    per-coordinate variance of one minibatch gradient estimate (whitened coordinates)."""

    energy_error: Array
    diverging: Array
    gradient_noise: Array


def sgld_tuning_kernel(num_data: int, batch_size: int) -> Callable[..., Any]:
    """A warmup step of self-tuned SGLD: a ULA step on a fresh minibatch's estimate
    ``log p_B`` from the state's position, its gradient re-estimated on ``B`` (two
    gradient estimates per step). Its energy error is that of the step on ``log p_B``;
    :func:`~bayeswb.samplers.langevin.warmup.metropolis_tested` wraps it, so a warmup
    step is a MALA step on ``log p_B``. The gradient at the position on ``B`` and the
    cached one (on an independent earlier minibatch, at the same position) give
    ``|g_B - g_cached|^2 / (2 d)``, whose mean is the per-coordinate variance of one
    minibatch gradient estimate.

    ``kernel(key, state, logdensity_estimator_fn, data, step_size) -> (state, info)``.
    """
    ula = ula_build_kernel()

    def kernel(
        key: Array,
        state: DiffusionState,
        logdensity_estimator_fn: Callable,
        data: Any,
        step_size: Array,
    ) -> tuple[DiffusionState, TuningInfo]:
        batch_key, step_key = jax.random.split(key)
        batch = minibatch(batch_key, data, num_data, batch_size)

        def on_batch(position: Array) -> Array:
            return logdensity_estimator_fn(position, batch)

        value, grad = jax.value_and_grad(on_batch)(state.position)
        noise = 0.5 * jnp.mean(jnp.square(grad - state.logdensity_grad))
        new_state, info = ula(
            step_key, DiffusionState(state.position, value, grad), on_batch, step_size
        )
        return new_state, TuningInfo(info.energy_error, info.diverging, noise)

    return kernel


def sgld_draw_step(
    tuned_step: Array, gradient_noise: Array, noise_variance_inflation: float
) -> Array:
    """SGLD's step of the draws: the warmup's tuned step, capped so that the gradient
    noise ``V`` (per whitened coordinate) inflates the variance by at most
    ``noise_variance_inflation``: ``h V / 2 <= noise_variance_inflation``."""
    return jnp.minimum(tuned_step, 2.0 * noise_variance_inflation / gradient_noise)


def self_tuned(
    method: LangevinMethod,
    target: Target,
    config: Any,
    draw_step: Callable[[Array, Array, float], Array] = sgld_draw_step,
    warmup_stats: dict[str, Array] | None = None,
) -> LangevinMethod:
    """``method`` (SGLD at a fixed step) with the step size and a diagonal preconditioner
    tuned in warmup, none of it from the truth.

    The warmup is ULA's (:class:`~bayeswb.samplers.langevin.overdamped.ULAConfig`) run
    on minibatch estimates: Metropolis-tested steps on a fresh minibatch each
    (:func:`sgld_tuning_kernel`), Stan's windows for the preconditioner, the step
    dual-averaged to MALA's efficient acceptance while the preconditioner is learnt and
    then to the energy-error rule of Robnik et al. (2023), ``Var[E] / d = 1e-4``
    (discretisation alone inflates a whitened Gaussian's variance by about 3%). The
    minibatch noise adds its own inflation: on a whitened Gaussian SGLD's stationary
    variance is ``(2 + h V) / (2 - h)`` for gradient noise of variance ``V`` per
    coordinate (the AR(1) law of the chain), about ``1 + h / 2 + h V / 2``; so the step
    of the draws is capped at ``2 noise_variance_inflation / V``, with ``V`` the mean
    ``gradient_noise`` of the warmup's final window. A large ``N / batch_size`` thus
    gives a small step, the known price of minibatches, and the verdict's ESS shows it.
    Warmup steps cost two gradient estimates, draws one.

    ``draw_step(tuned_step, V, config.noise_variance_inflation)`` gives another sampler's
    step of the draws from the same warmup (sghmc's); ``warmup_stats`` are constant
    stats every warmup step adds (sghmc's gradient count ``n_steps``).
    """
    data, _, _, num_data = data_interface(target, config.batch_size)
    tune = metropolis_tested(sgld_tuning_kernel(num_data, config.batch_size))
    windows = mass_matrix_windows(config.num_warmup)
    final_window = windows[-1][1] if windows else config.num_warmup // 2

    def tuning_trace(state: DiffusionState, info: TuningInfo, step_size: Array):
        stats = {"diverging": info.diverging, "gradient_noise": info.gradient_noise}
        return state.position, {**stats, **(warmup_stats or {})}

    def final_step_size(step_size: Array, stats: dict[str, Array]) -> Array:
        noise = stats["gradient_noise"][final_window:]
        finite = jnp.isfinite(noise)
        mean_noise = jnp.sum(jnp.where(finite, noise, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
        step = draw_step(step_size, mean_noise, config.noise_variance_inflation)
        return step.astype(step_size.dtype)

    return method._replace(
        trace=tuning_trace,
        warmup_kernel=lambda key, state, estimator, step_size: tune(
            key, state, estimator, data, step_size
        ),
        warmup=WarmupPlan(
            config.num_warmup,
            INITIAL_TUNED_STEP_SIZE,
            ENERGY_VARIANCE_TARGET,
            adapt_mass_matrix=True,
            statistic=energy_variance_statistic(target.dim, DESIRED_ENERGY_VARIANCE),
            explore_acceptance_rate=MALA_OPTIMAL_ACCEPTANCE_RATE,
        ),
        warmup_grads_per_step=2,
        final_step_size=final_step_size,
    )


def _sgld(target: Target, config: SGLDConfig) -> LangevinMethod:
    method = stochastic_gradient_method(
        target, config, logdensity_estimator, lambda x: x, lambda x: (x, {})
    )
    return method if config.step_size is not None else self_tuned(method, target, config)


# the log density is evaluated on the full data only for each draw's lp
SGLD_KERNEL = langevin_chain_kernel(_sgld, logdensity_evals_per_step=1)


@register("sgld", SGLDConfig, family="langevin", kernel=SGLD_KERNEL, needs_minibatch=True)
def run_sgld(
    key: Array, target: Target, config: SGLDConfig, layout: ChainLayout | None = None
) -> Draws:
    """SGLD (see :func:`sgld_build_kernel`) on a target with the minibatch interface of
    this module; ``lp`` is the full-data log density of each draw. Runs whole or in
    chunks (:data:`SGLD_KERNEL`, :mod:`bayeswb.execution.kernel`).

    Example:
        >>> import jax.numpy as jnp, bayeswb as bw
        >>> y = jnp.linspace(-1.0, 1.0, 50)[:, None]
        >>> prior = lambda x: -0.5 * jnp.sum(x**2)
        >>> lik = lambda x, yi: -0.5 * jnp.sum((yi - x) ** 2)
        >>> t = bw.Target.from_logdensity(
        ...     lambda x: prior(x) + jnp.sum(jax.vmap(lik, (None, 0))(x, y)), dim=1,
        ...     minibatch=bw.MinibatchData(y, lik, prior))
        >>> r = bw.sample(t, "sgld", num_chains=2, num_samples=100, batch_size=10)
        >>> r.cost["n_grad_evals"]  # per chain: 1 + 2 per tuning step (500) + 1 per draw
        2202
    """
    return run_whole(key, target, config, SGLD_KERNEL, layout)


# --------------------------------------------------------------------------- Entropy-MCMC


@dataclasses.dataclass(frozen=True)
class EntropyMCMCConfig(SelfTunedSettings):
    """Entropy-MCMC: SGLD on the joint of the parameter and its guide
    (:func:`entropy_joint_target`). By default (``step_size=None``) the step and a
    diagonal preconditioner of the joint are tuned in warmup as sgld's are
    (:func:`self_tuned`); a given ``step_size`` makes the warmup burn-in at that step,
    without a preconditioner."""

    step_size: float | None = option(
        None,
        optional(positive),
        "SGLD step h on the joint; None: tuned in warmup with a diagonal preconditioner",
    )
    coupling_variance: float = option(
        0.1, positive, "eta: variance of the Gaussian coupling of x and its guide"
    )


def entropy_joint_target(target: Target, coupling_variance: float) -> Target:
    """The joint of Entropy-MCMC (Li and Zhang 2024, "Entropy-MCMC: Sampling from flat
    basins with ease", ICLR, section 4) of the parameter x and its guiding variable x_a,
    as one target on ``z = (x, x_a)`` of dimension ``2 d``:

        log p(x, x_a) = log p(x | data) - |x - x_a|^2 / (2 eta) + const,

    whose x-marginal is the posterior and whose x_a-marginal is the posterior smoothed by
    N(0, eta I) (it favours flat basins). Its minibatch interface puts the exact coupling
    term in the prior, so blackjax's unbiased ``logdensity_estimator`` on it is unbiased
    for the joint. Both halves start at the target's initial point.

    Example:
        >>> import jax.numpy as jnp, bayeswb as bw
        >>> t = bw.Target.from_logdensity(
        ...     lambda x: -0.5 * jnp.sum(x**2), dim=1,
        ...     minibatch=bw.MinibatchData(jnp.zeros((3, 1)), lambda x, y: 0.0 * x[0],
        ...                                lambda x: -0.5 * jnp.sum(x**2)))
        >>> joint = entropy_joint_target(t, coupling_variance=0.5)
        >>> joint.dim, float(joint.log_density(jnp.array([1.0, 0.0])))
        (2, -1.5)
    """
    data, log_likelihood, log_prior, _ = data_interface(target, 1)
    dim = target.dim

    def coupling(z: Array) -> Array:
        return -0.5 * jnp.sum((z[:dim] - z[dim:]) ** 2) / coupling_variance

    def init(key: Array) -> Array:
        x = target.init(key)
        return jnp.concatenate([x, x])

    return Target.from_logdensity(
        lambda z: target.log_density(z[:dim]) + coupling(z),
        dim=2 * dim,
        name=f"{target.name}_entropy_joint",
        init=init,
        minibatch=MinibatchData(
            data,
            lambda z, datum: log_likelihood(z[:dim], datum),
            lambda z: log_prior(z[:dim]) + coupling(z),
        ),
    )


def _entropy_draw_step(tuned_step: Array, mean_noise: Array, inflation: float) -> Array:
    """sgld's cap on the joint: only x's half of the coordinates has gradient noise, so
    its noise per coordinate is twice the joint's mean."""
    return sgld_draw_step(tuned_step, 2.0 * mean_noise, inflation)


def _sgld_on_joint(joint: Target, config: EntropyMCMCConfig) -> LangevinMethod:
    """SGLD on the joint target (the draws' ``lp`` is added by :func:`_entropy_chain_kernel`)."""
    method = stochastic_gradient_method(
        joint, config, logdensity_estimator, lambda z: z, lambda z: (z, {})
    )
    method = method._replace(position_stats=None)
    if config.step_size is not None:
        return method
    method = self_tuned(method, joint, config, draw_step=_entropy_draw_step)
    dim = joint.dim // 2

    def guide_from_x(variance: Array) -> Array:
        # Var(x_a) = Var(x) + eta under the joint: the guide's block in closed form (its
        # own estimate is poor: x_a moves slowly at the minibatch-capped steps)
        return jnp.concatenate([variance[:dim], variance[:dim] + config.coupling_variance])

    return method._replace(warmup=method.warmup._replace(mass_matrix_from_variance=guide_from_x))


def _entropy_chain_kernel() -> ChainKernel:
    """Entropy-MCMC's chain kernel: SGLD's on :func:`entropy_joint_target`, whose steps
    report x as the position, x_a as the stat ``auxiliary_position`` and the full-data
    log density of x as ``lp`` (a non-finite one flags the draw ``diverging``)."""
    joint_kernel = langevin_chain_kernel(_sgld_on_joint, logdensity_evals_per_step=1)

    def split(target: Target, trace: Any) -> tuple[Array, dict[str, Array]]:
        z, stats = trace
        return z[..., : target.dim], {**stats, "auxiliary_position": z[..., target.dim :]}

    def start(key: Array, target: Target, config: EntropyMCMCConfig) -> tuple[Any, Any, Any]:
        joint = entropy_joint_target(target, config.coupling_variance)
        carry, warmup_trace, start_cost = joint_kernel.start(key, joint, config)
        warmup_trace = None if warmup_trace is None else split(target, warmup_trace)
        return carry, warmup_trace, start_cost

    def step(key: Array, carry: Any, target: Target, config: EntropyMCMCConfig) -> Any:
        joint = entropy_joint_target(target, config.coupling_variance)
        carry, trace = joint_kernel.step(key, carry, joint, config)
        x, stats = split(target, trace)
        return carry, (x, full_data_lp(target)(x, stats))

    return joint_kernel._replace(start=start, step=step)


ENTROPY_MCMC_KERNEL = _entropy_chain_kernel()


@register(
    "entropy_mcmc",
    EntropyMCMCConfig,
    family="langevin",
    kernel=ENTROPY_MCMC_KERNEL,
    needs_minibatch=True,
)
def run_entropy_mcmc(
    key: Array, target: Target, config: EntropyMCMCConfig, layout: ChainLayout | None = None
) -> Draws:
    """Entropy-MCMC (Li and Zhang 2024): SGLD (:func:`sgld_build_kernel`) on the joint
    (x, x_a) of :func:`entropy_joint_target`, self-tuned by default as sgld is. The
    posterior draws are x; the guiding variable x_a is reported as
    ``sample_stats.auxiliary_position`` (chain, draw, dim), in unconstrained space. Runs
    whole or in chunks (:data:`ENTROPY_MCMC_KERNEL`, :mod:`bayeswb.execution.kernel`).

    Example:
        >>> import jax.numpy as jnp, bayeswb as bw
        >>> y = jnp.linspace(-1.0, 1.0, 50)[:, None]
        >>> prior = lambda x: -0.5 * jnp.sum(x**2)
        >>> lik = lambda x, yi: -0.5 * jnp.sum((yi - x) ** 2)
        >>> t = bw.Target.from_logdensity(
        ...     lambda x: prior(x) + jnp.sum(jax.vmap(lik, (None, 0))(x, y)), dim=1,
        ...     minibatch=bw.MinibatchData(y, lik, prior))
        >>> r = bw.sample(t, "entropy_mcmc", num_chains=2, num_samples=100, batch_size=10)
        >>> r.idata.sample_stats["auxiliary_position"].shape
        (2, 100, 1)
    """
    return run_whole(key, target, config, ENTROPY_MCMC_KERNEL, layout)
