"""Langevin samplers, overdamped: ULA and MALA; shared pieces for the whole family.

The family lives in three modules: this one (``ula``, ``mala`` and the helpers the others
import), :mod:`bayeswb.samplers.langevin_kinetic` (``kinetic_langevin``,
``randomized_midpoint``) and :mod:`bayeswb.samplers.langevin_stochastic` (``sgld``,
``entropy_mcmc``). Every MCMC kernel follows blackjax's pattern (``init``,
``build_kernel``, ``kernel(key, state, ...) -> (State, Info)``); each sampler is a
:class:`~bayeswb.execution.kernel.ChainKernel` (``start``: initialisation and warmup, ``step``: one
transition), so one code path runs it whole or in chunks with checkpoints.

Diagonal preconditioning is a change of variables: a kernel with preconditioner
``diag(scale**2)`` on ``log p(x)`` is the same kernel, unpreconditioned, on the whitened
density ``y -> log p(scale * y)`` (the Jacobian is constant), with ``x = scale * y``.
So ULA and MALA run blackjax's own overdamped-Langevin step and MALA kernel on the
whitened density instead of re-deriving preconditioned updates; the state moves between
scales without new gradient evaluations (``grad_y = scale * grad_x``).

Non-finite steps: an unadjusted step whose new log density, gradient or position is not
finite is rejected (the chain stays put) and flagged ``diverging``; NaN never reaches a
later draw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.adaptation.step_size import dual_averaging_adaptation
from blackjax.mcmc.diffusions import DiffusionState, overdamped_langevin

from bayeswb.core.config import SamplerConfig, boolean, option, positive, unit_interval
from bayeswb.core.draws import Draws
from bayeswb.core.sampler import ChainKernel
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout, sample_chain
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register

Array = jax.Array

# Stan's regularisation of a warmup variance estimate towards 1e-3 (Stan manual, "HMC
# algorithm parameters", mass matrix adaptation): var * n/(n+5) + 1e-3 * 5/(n+5).
_SHRINK_COUNT = 5.0
_SHRINK_TARGET = 1e-3
MIN_WARMUP_FOR_MASS_MATRIX = 100


# --------------------------------------------------------------------------- shared helpers


def positive_tuple_or_none(value: Any) -> str | None:
    """None, or a non-empty tuple of positive numbers (hashable, so configs stay keys)."""
    if value is None:
        return None
    if (
        isinstance(value, tuple)
        and value
        and all(not isinstance(v, bool) and isinstance(v, int | float) and v > 0 for v in value)
    ):
        return None
    return "must be None or a non-empty tuple of positive numbers"


def whitened(
    logdensity_fn: Callable[[Array], Array], scale: Array | None
) -> Callable[[Array], Array]:
    """``y -> logdensity_fn(scale * y)``: the density in coordinates ``y = x / scale``
    (``scale=None`` is the identity, with no extra arithmetic per evaluation)."""
    return logdensity_fn if scale is None else (lambda y: logdensity_fn(scale * y))


def to_position(scale: Array | None, y: Array) -> Array:
    """x from whitened y."""
    return y if scale is None else scale * y


def to_whitened(scale: Array | None, x: Array) -> Array:
    """Whitened y from x."""
    return x if scale is None else x / scale


def all_finite(*trees: Any) -> Array:
    """True when every leaf of every tree is finite (a scalar boolean)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for tree in trees for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


def keep_if_finite(old: Any, new: Any) -> tuple[Any, Array]:
    """``(new, False)`` if every leaf of ``new`` is finite, else ``(old, True)``."""
    diverging = ~all_finite(new)
    state = jax.tree.map(lambda o, n: jnp.where(diverging, o, n), old, new)
    return state, diverging


def regularised_scale(positions: Array) -> Array:
    """sqrt of Stan's regularised diagonal variance of ``positions`` (n, dim) -> (dim,)."""
    n = positions.shape[0]
    variance = jnp.var(positions, axis=0, ddof=1)
    weight = n / (n + _SHRINK_COUNT)
    return jnp.sqrt(weight * variance + (1.0 - weight) * _SHRINK_TARGET)


def initial_scale(target: Target, inverse_mass_matrix: tuple[float, ...] | None) -> Array | None:
    """The fixed diagonal preconditioner as a scale vector (None: identity)."""
    if inverse_mass_matrix is None:
        return None
    if len(inverse_mass_matrix) != target.dim:
        raise ValueError(
            f"inverse_mass_matrix has {len(inverse_mass_matrix)} entries, "
            f"the target has dim {target.dim}"
        )
    return jnp.sqrt(jnp.asarray(inverse_mass_matrix))


def rescale_diffusion_state(state: Any, old_scale: Array | None, new_scale: Array) -> Any:
    """Move a (position, logdensity, logdensity_grad) state between whitenings, exactly."""
    ratio = new_scale if old_scale is None else new_scale / old_scale
    return state._replace(
        position=state.position / ratio, logdensity_grad=state.logdensity_grad * ratio
    )


def dual_averaging_warmup(
    key: Array,
    kernel_step: Callable[[Array, Any, Array], tuple[Any, Any]],
    state: Any,
    initial_step_size: Array,
    num_steps: int,
    target_acceptance_rate: float,
    trace_fn: Callable[[Any, Any, Array], Any],
) -> tuple[Any, Array, Any]:
    """Adapt the step size of any Metropolis-adjusted kernel by dual averaging.

    blackjax's ``dual_averaging_adaptation`` (Hoffman and Gelman 2014, eq. 6, with their
    defaults t0=10, gamma=0.05, kappa=0.75) drives ``log step_size`` so that the mean of
    ``info.acceptance_rate`` reaches ``target_acceptance_rate``.

    ``kernel_step(key, state, step_size) -> (state, info)``; ``trace_fn(state, info,
    step_size)`` is what to keep per step (the step size is the one used in that step).
    Returns the final state, the averaged step size and the trace.
    """
    da_init, da_update, da_final = dual_averaging_adaptation(target_acceptance_rate)

    def step(key: Array, carry: tuple[Any, Any]) -> tuple[tuple[Any, Any], tuple[Any, Array]]:
        state, da_state = carry
        step_size = jnp.exp(da_state.log_step_size)
        state, info = kernel_step(key, state, step_size)
        # a divergent step has acceptance 0: it pushes the step size down, as it should
        acceptance_rate = jnp.nan_to_num(info.acceptance_rate)
        return (state, da_update(da_state, acceptance_rate)), (info, step_size)

    (state, da_state), trace = sample_chain(
        key,
        step,
        (state, da_init(initial_step_size)),
        num_steps,
        lambda carry, used: trace_fn(carry[0], used[0], used[1]),
    )
    return state, da_final(da_state), trace


def concatenate_traces(first: Any, second: Any) -> Any:
    """Join two per-step traces (leading step axis) of the same structure."""
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), first, second)


def _check_mass_matrix_options(config: Any) -> None:
    if config.adapt_mass_matrix and config.inverse_mass_matrix is not None:
        raise ValueError(
            "adapt_mass_matrix must be False when inverse_mass_matrix is given, got True"
        )
    if config.adapt_mass_matrix and config.num_warmup < MIN_WARMUP_FOR_MASS_MATRIX:
        raise ValueError(
            f"num_warmup must be >= {MIN_WARMUP_FOR_MASS_MATRIX} when adapt_mass_matrix "
            f"is True, got {config.num_warmup!r}"
        )


# --------------------------------------------------------------------------- ULA


class ULAInfo(NamedTuple):
    """diverging: the proposed step was not finite and was rejected."""

    diverging: Array


def ula_init(position: Array, logdensity_fn: Callable[[Array], Array]) -> DiffusionState:
    """State at ``position`` (one gradient evaluation)."""
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(position)
    return DiffusionState(position, logdensity, logdensity_grad)


def ula_build_kernel() -> Callable[..., tuple[DiffusionState, ULAInfo]]:
    """The unadjusted Langevin algorithm (Euler-Maruyama for the overdamped diffusion
    ``dX = grad log p(X) dt + sqrt(2) dW``; Roberts and Tweedie 1996, eq. 1.3; Durmus and
    Moulines 2017, eq. 2): ``x' = x + h grad log p(x) + sqrt(2 h) xi``.

    The step is blackjax's ``mcmc.diffusions.overdamped_langevin``; this kernel only adds
    the rejection of non-finite steps. One gradient evaluation per step.
    """

    def kernel(
        key: Array,
        state: DiffusionState,
        logdensity_fn: Callable[[Array], Array],
        step_size: Array,
    ) -> tuple[DiffusionState, ULAInfo]:
        euler_maruyama = overdamped_langevin(jax.value_and_grad(logdensity_fn))
        new_state = euler_maruyama(key, state, step_size)
        new_state, diverging = keep_if_finite(state, DiffusionState(*new_state))
        return new_state, ULAInfo(diverging)

    return kernel


@dataclasses.dataclass(frozen=True)
class ULAConfig(SamplerConfig):
    """Unadjusted Langevin; ``num_warmup`` steps are burn-in (and preconditioner fitting).

    The chain is biased at any fixed step size: on a Gaussian coordinate of variance
    ``s**2`` with preconditioner ``m`` its stationary variance is
    ``s**2 / (1 - h m / (2 s**2))`` (stable for ``h m < 2 s**2``).
    """

    step_size: float = option(0.01, positive, "Euler-Maruyama step h")
    inverse_mass_matrix: tuple[float, ...] | None = option(
        None, positive_tuple_or_none, "fixed diagonal preconditioner (None: identity)"
    )
    adapt_mass_matrix: bool = option(
        False, boolean, "estimate a diagonal preconditioner in the first half of warmup"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_mass_matrix_options(self)


def _ula_trace(scale: Array | None, step_size: Array) -> Callable[[Any, Any], Any]:
    def trace(state: DiffusionState, info: ULAInfo) -> tuple[Array, dict[str, Array]]:
        stats = {"lp": state.logdensity, "diverging": info.diverging, "step_size": step_size}
        return to_position(scale, state.position), stats

    return trace


def _ula_start(key: Array, target: Target, config: ULAConfig) -> tuple[Any, Any, Array]:
    kernel = ula_build_kernel()
    step_size = jnp.asarray(config.step_size)
    scale = initial_scale(target, config.inverse_mass_matrix)

    def burn_in(key: Array, state: Any, scale: Array | None, num_steps: int) -> tuple[Any, Any]:
        step = lambda k, s: kernel(k, s, whitened(target.log_density, scale), step_size)
        return sample_chain(key, step, state, num_steps, _ula_trace(scale, step_size))

    init_key, warmup_key = jax.random.split(key)
    chain_scale = scale
    position = to_whitened(scale, target.init(init_key))
    state = ula_init(position, whitened(target.log_density, scale))
    warmup_trace = None
    if config.adapt_mass_matrix:
        first_key, second_key = jax.random.split(warmup_key)
        first = config.num_warmup // 2
        state, warmup_trace = burn_in(first_key, state, scale, first)
        chain_scale = regularised_scale(warmup_trace[0][first // 2 :])
        state = rescale_diffusion_state(state, scale, chain_scale)
        state, second = burn_in(second_key, state, chain_scale, config.num_warmup - first)
        warmup_trace = concatenate_traces(warmup_trace, second)
    elif config.num_warmup > 0:
        state, warmup_trace = burn_in(warmup_key, state, scale, config.num_warmup)
    # one gradient at initialisation, one per warmup step
    return (state, chain_scale, step_size), warmup_trace, jnp.asarray(1 + config.num_warmup)


def _ula_step(key: Array, carry: Any, target: Target, config: ULAConfig) -> tuple[Any, Any]:
    state, scale, step_size = carry
    state, info = ula_build_kernel()(key, state, whitened(target.log_density, scale), step_size)
    return (state, scale, step_size), _ula_trace(scale, step_size)(state, info)


def one_grad_per_step(stats: dict[str, Array]) -> Array:
    """``ChainKernel.grads`` of a kernel with one gradient evaluation per transition."""
    return jnp.ones_like(stats["lp"], dtype=jnp.int32)


# the carry: (whitened DiffusionState, preconditioner scale or None, step size)
ULA_KERNEL = ChainKernel(_ula_start, _ula_step, one_grad_per_step)


@register("ula", ULAConfig, family="langevin", kernel=ULA_KERNEL)
def run_ula(
    key: Array, target: Target, config: ULAConfig, layout: ChainLayout | None = None
) -> Draws:
    """Unadjusted Langevin algorithm (see :func:`ula_build_kernel`), optionally with a
    diagonal preconditioner, fixed or estimated from the first half of warmup.

    Runs whole or in chunks (:data:`ULA_KERNEL`, :mod:`bayeswb.execution.kernel`).
    Cost: one gradient per chain at the start and one per step (warmup included).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "ula", num_chains=2, num_samples=200, step_size=0.01)
        >>> r.idata.sample_stats["step_size"].shape
        (2, 200)
    """
    return run_whole(key, target, config, ULA_KERNEL, layout)


# --------------------------------------------------------------------------- MALA


@dataclasses.dataclass(frozen=True)
class MALAConfig(SamplerConfig):
    """Metropolis-adjusted Langevin with dual-averaging step size adaptation in warmup.

    With ``adapt_mass_matrix`` the warmup is two halves: the first adapts the step size
    and estimates a diagonal inverse mass matrix from its second quarter; the second
    re-adapts the step size with that preconditioner.
    """

    step_size: float = option(0.01, positive, "initial step h (fixed if num_warmup=0)")
    target_acceptance_rate: float = option(
        0.574, unit_interval, "dual-averaging target (Roberts and Rosenthal 1998: 0.574)"
    )
    inverse_mass_matrix: tuple[float, ...] | None = option(
        None, positive_tuple_or_none, "fixed diagonal inverse mass matrix (None: identity)"
    )
    adapt_mass_matrix: bool = option(
        False, boolean, "estimate a diagonal inverse mass matrix in warmup"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_mass_matrix_options(self)


def _mala_trace(scale: Array | None) -> Callable[[Any, Any, Array], Any]:
    def trace(state: Any, info: Any, step_size: Array) -> tuple[Array, dict[str, Array]]:
        stats = {
            "lp": state.logdensity,
            "acceptance_rate": info.acceptance_rate,
            # blackjax maps a non-finite proposal to acceptance exactly 0 (safe_energy_diff);
            # a finite one only reaches 0 when exp underflows, itself a blown-up step
            "diverging": info.acceptance_rate == 0.0,
            "step_size": step_size,
        }
        return to_position(scale, state.position), stats

    return trace


def _mala_start(key: Array, target: Target, config: MALAConfig) -> tuple[Any, Any, Array]:
    kernel = blackjax.mala.build_kernel()
    scale = initial_scale(target, config.inverse_mass_matrix)

    def warmup(
        key: Array, state: Any, scale: Array | None, step_size: Array, num_steps: int
    ) -> Any:
        return dual_averaging_warmup(
            key,
            lambda k, s, h: kernel(k, s, whitened(target.log_density, scale), h),
            state,
            step_size,
            num_steps,
            config.target_acceptance_rate,
            _mala_trace(scale),
        )

    init_key, warmup_key = jax.random.split(key)
    position = to_whitened(scale, target.init(init_key))
    state = blackjax.mala.init(position, whitened(target.log_density, scale))
    step_size = jnp.asarray(config.step_size, dtype=position.dtype)
    chain_scale = scale
    warmup_trace = None
    if config.adapt_mass_matrix:
        first_key, second_key = jax.random.split(warmup_key)
        first = config.num_warmup // 2
        state, step_size, warmup_trace = warmup(first_key, state, scale, step_size, first)
        chain_scale = regularised_scale(warmup_trace[0][first // 2 :])
        state = rescale_diffusion_state(state, scale, chain_scale)
        state, step_size, second = warmup(
            second_key, state, chain_scale, step_size, config.num_warmup - first
        )
        warmup_trace = concatenate_traces(warmup_trace, second)
    elif config.num_warmup > 0:
        state, step_size, warmup_trace = warmup(
            warmup_key, state, scale, step_size, config.num_warmup
        )
    # one gradient at initialisation, one per warmup step
    return (state, chain_scale, step_size), warmup_trace, jnp.asarray(1 + config.num_warmup)


def _mala_step(key: Array, carry: Any, target: Target, config: MALAConfig) -> tuple[Any, Any]:
    state, scale, step_size = carry
    kernel = blackjax.mala.build_kernel()
    state, info = kernel(key, state, whitened(target.log_density, scale), step_size)
    return (state, scale, step_size), _mala_trace(scale)(state, info, step_size)


# the carry: (whitened MALAState, preconditioner scale or None, adapted step size)
MALA_KERNEL = ChainKernel(_mala_start, _mala_step, one_grad_per_step)


@register("mala", MALAConfig, family="langevin", kernel=MALA_KERNEL)
def run_mala(
    key: Array, target: Target, config: MALAConfig, layout: ChainLayout | None = None
) -> Draws:
    """Metropolis-adjusted Langevin algorithm (Roberts and Tweedie 1996, section 1.4;
    Besag 1994): blackjax's ``mala`` kernel, run on the whitened density for a diagonal
    mass matrix (see the module docstring), with step size adapted by dual averaging
    (Hoffman and Gelman 2014, eq. 6) to ``target_acceptance_rate`` during warmup.
    ``step_size`` is blackjax's h in ``x' = x + h grad log p(x) + sqrt(2h) xi``.

    A non-finite proposal is rejected by blackjax (acceptance 0) and flagged diverging.
    Runs whole or in chunks (:data:`MALA_KERNEL`, :mod:`bayeswb.execution.kernel`).
    Cost: one gradient per chain at the start and one per step (warmup included).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "mala", num_chains=2, num_samples=200, num_warmup=200)
        >>> float(r.idata.sample_stats["acceptance_rate"].mean()) > 0.3
        True
    """
    return run_whole(key, target, config, MALA_KERNEL, layout)


__all__ = [
    "MALAConfig",
    "MALA_KERNEL",
    "ULAConfig",
    "ULAInfo",
    "ULA_KERNEL",
    "all_finite",
    "dual_averaging_warmup",
    "keep_if_finite",
    "one_grad_per_step",
    "run_mala",
    "run_ula",
    "ula_build_kernel",
    "ula_init",
    "whitened",
]
