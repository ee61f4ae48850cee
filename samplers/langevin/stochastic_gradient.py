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

Cost: ``n_grad_evals`` counts minibatch gradient estimates (each costs ``batch_size / N``
of a full-data gradient); ``n_logdensity_evals`` counts the full-data log densities
computed for ``lp`` (one per reported draw), whole or chunked.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc.diffusions import DiffusionState, overdamped_langevin
from blackjax.sgmcmc.gradients import logdensity_estimator

from bayeswb.core.config import SamplerConfig, option, positive, positive_int
from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register
from bayeswb.samplers.langevin.chain_kernel import LangevinMethod, langevin_chain_kernel
from bayeswb.samplers.langevin.divergence import keep_if_finite
from bayeswb.samplers.langevin.warmup import WarmupPlan

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
    its rows, so order does not matter.

    Example:
        >>> rows = subset_rows(jax.random.key(0), 10, 4)
        >>> rows.shape, len(set(rows.tolist())), bool((rows >= 0).all() & (rows < 10).all())
        ((4,), 4, True)
    """
    position = jnp.arange(batch_size)
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
class SGLDConfig(SamplerConfig):
    """SGLD at a constant step; warmup is burn-in."""

    step_size: float = option(1e-3, positive, "step h (x' = x + h g + sqrt(2h) xi)")
    batch_size: int = option(32, positive_int, "data points per minibatch (<= N)")


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
        lp = target.log_density(position)
        diverging = info.diverging | ~jnp.isfinite(lp)
        return position, {"lp": lp, "diverging": diverging, "step_size": step_size, **extra}

    return LangevinMethod(
        init=init,
        kernel=lambda key, state, estimator, step_size: kernel(
            key, state, estimator, data, step_size
        ),
        trace=warmup_trace,
        warmup=WarmupPlan(config.num_warmup, config.step_size),
        logdensity_fn=make_estimator(log_prior, log_likelihood, num_data),
        draw_trace=draw_trace,
    )


def _sgld(target: Target, config: SGLDConfig) -> LangevinMethod:
    return stochastic_gradient_method(
        target, config, logdensity_estimator, lambda x: x, lambda x: (x, {})
    )


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
        >>> r.cost["n_grad_evals"]
        1202
    """
    return run_whole(key, target, config, SGLD_KERNEL, layout)


# --------------------------------------------------------------------------- Entropy-MCMC


class EntropyPosition(NamedTuple):
    """The joint state of Entropy-MCMC: the parameter and its guiding variable."""

    position: Array
    auxiliary_position: Array


@dataclasses.dataclass(frozen=True)
class EntropyMCMCConfig(SamplerConfig):
    """Entropy-MCMC at a constant step; warmup is burn-in."""

    step_size: float = option(1e-3, positive, "SGLD step h on the joint")
    batch_size: int = option(32, positive_int, "data points per minibatch (<= N)")
    coupling_variance: float = option(
        0.1, positive, "eta: variance of the Gaussian coupling of x and its guide"
    )


def entropy_logdensity_estimator(
    log_prior: Callable, log_likelihood: Callable, num_data: int, coupling_variance: float
) -> Callable[[EntropyPosition, Any], Array]:
    """Minibatch estimate of the joint log density of Entropy-MCMC (Li and Zhang 2024,
    "Entropy-MCMC: Sampling from flat basins with ease", ICLR, section 4, the joint of
    the parameter and its guiding variable):

        log p(x, x_a) = log p(x | data) - |x - x_a|^2 / (2 eta) + const,

    whose x-marginal is the posterior and whose x_a-marginal is the posterior smoothed by
    N(0, eta I) (it favours flat basins). The data term is blackjax's unbiased
    ``logdensity_estimator``; the coupling term is exact.
    """
    posterior = logdensity_estimator(log_prior, log_likelihood, num_data)

    def estimate(state: EntropyPosition, batch: Any) -> Array:
        coupling = jnp.sum((state.position - state.auxiliary_position) ** 2)
        return posterior(state.position, batch) - 0.5 * coupling / coupling_variance

    return estimate


def _entropy_report(state: EntropyPosition) -> tuple[Array, dict[str, Array]]:
    return state.position, {"auxiliary_position": state.auxiliary_position}


def _entropy_mcmc(target: Target, config: EntropyMCMCConfig) -> LangevinMethod:
    return stochastic_gradient_method(
        target,
        config,
        functools.partial(
            entropy_logdensity_estimator, coupling_variance=config.coupling_variance
        ),
        lambda x: EntropyPosition(x, x),
        _entropy_report,
    )


ENTROPY_MCMC_KERNEL = langevin_chain_kernel(_entropy_mcmc, logdensity_evals_per_step=1)


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
    """Entropy-MCMC (Li and Zhang 2024): SGLD updates of the joint (x, x_a) of
    :func:`entropy_logdensity_estimator` (the SGLD kernel of this module). The posterior draws
    are x; the guiding variable x_a is reported as ``sample_stats.auxiliary_position``
    (chain, draw, dim), in unconstrained space. Both start at the same point. Runs whole
    or in chunks (:data:`ENTROPY_MCMC_KERNEL`, :mod:`bayeswb.execution.kernel`).

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
