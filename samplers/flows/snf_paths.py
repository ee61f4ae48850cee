"""Stochastic normalizing flows (Wu, Koehler and Noe 2020): the SNF and its paths.

An SNF is a chain of ``num_blocks`` blocks; block ``k`` is a deterministic flowjax
bijection (``layers_per_block`` affine or rational-quadratic-spline coupling layers and an
elementwise affine map) followed by a stochastic block: ``num_mcmc_steps`` steps of a
Markov kernel (blackjax's MALA or random-walk Metropolis, or unadjusted Langevin) that
targets the intermediate density ``pi_k(x) ∝ q0(x)^(1 - lambda_k) p(x)^lambda_k`` with
``lambda_k = (k + 1) / num_blocks`` (Wu et al.'s interpolated energies, prior -> target,
the last block targets ``p`` itself); ``q0 = N(0, init_scale^2 I)`` is the base.

Path weights (their importance-weight identity and the Delta S of each block type; we cite
them by name, not by equation number). A forward path ``z = y_0 -> ... -> y_T = x`` has
``log w = log p(x) - log q0(z) + sum_t Delta S_t`` with ``Delta S_t = log |det J_t|`` for
a flow layer and ``Delta S_t = log q_b(y_{t+1} -> y_t) - log q_f(y_t -> y_{t+1})`` for a
stochastic step whose backward kernel is the same kernel. For a Metropolis kernel in
detailed balance with ``pi_k`` that ratio is ``log pi_k(y_t) - log pi_k(y_{t+1})``
(their Metropolis Delta S, accepted or not); for an unadjusted Langevin step it is the
ratio of the two Gaussian transition densities (their Langevin Delta S). ``E[w] = Z``
exactly for any parameters, so ``log mean w`` estimates log Z and ``w`` reweights the
samples to ``p`` without the marginal density of ``x`` (which would need an integral over
paths).

Training and the ``snf`` sampler: :mod:`.snf`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
import paramax
from blackjax.mcmc.diffusions import DiffusionState, overdamped_langevin
from flowjax.bijections import Affine, Chain, RationalQuadraticSpline
from flowjax.distributions import StandardNormal
from flowjax.flows import coupling_flow

from bayeswb.core.weights import safe_log_weights

Array = jax.Array
LogDensity = Callable[[Array], Array]

SNF_FLOW_TYPES = ("affine_coupling", "spline_coupling")
"""RealNVP affine coupling (Dinh et al. 2017) or neural-spline coupling (Durkan et al.
2019), both flowjax's ``coupling_flow``."""

STOCHASTIC_BLOCKS = ("mala", "rwm", "ula", "none")
"""Kernel of the stochastic blocks: Metropolis-adjusted Langevin, random-walk Metropolis
(both blackjax), unadjusted Langevin (blackjax's overdamped-Langevin step), or none (a
plain normalizing flow / Boltzmann generator)."""


SAMPLING_BATCH = 8192
"""Paths vmapped at once when drawing many (more are drawn batch after batch)."""


class StochasticNormalizingFlow(eqx.Module):
    """The SNF's parameters: ``num_blocks`` flowjax bijections stacked on a leading axis,
    the log step size of each stochastic block and its interpolation ``lambdas``
    (the latter never trained). ``kernel`` and ``num_mcmc_steps`` are static."""

    blocks: Any
    log_step_size: Any
    lambdas: Any
    base_scale: Any
    dim: int = eqx.field(static=True)
    kernel: str = eqx.field(static=True)
    num_mcmc_steps: int = eqx.field(static=True)

    @property
    def num_blocks(self) -> int:
        return int(paramax.unwrap(self.lambdas).shape[0])


def make_snf(
    key: Array,
    dim: int,
    flow_type: str = "affine_coupling",
    num_blocks: int = 3,
    layers_per_block: int = 2,
    hidden_width: int = 64,
    hidden_depth: int = 2,
    num_knots: int = 8,
    spline_interval: float = 4.0,
    init_scale: float = 1.0,
    kernel: str = "mala",
    num_mcmc_steps: int = 10,
    step_size: float = 0.05,
    train_step_size: bool = False,
) -> StochasticNormalizingFlow:
    """An SNF on R^dim whose flow blocks start at the identity (flowjax's initialisation).

    Example:
        >>> snf = make_snf(jax.random.key(0), 2, num_blocks=2, hidden_width=8)
        >>> snf.num_blocks, snf.kernel
        (2, 'mala')
    """
    if flow_type not in SNF_FLOW_TYPES:
        raise ValueError(f"flow_type must be one of {SNF_FLOW_TYPES}, got {flow_type!r}")
    if kernel not in STOCHASTIC_BLOCKS:
        raise ValueError(f"kernel must be one of {STOCHASTIC_BLOCKS}, got {kernel!r}")
    if dim < 2:
        raise ValueError(f"coupling layers need dim >= 2, got dim={dim}")
    transformer = None
    if flow_type == "spline_coupling":
        transformer = RationalQuadraticSpline(knots=num_knots, interval=spline_interval)

    def make_block(block_key: Array) -> Any:
        flow = coupling_flow(
            block_key,
            # equinox types the base's AbstractVar cond_shape as a field, which mypy
            # then wants in __init__; flowjax fills it with a ClassVar (equinox #1123)
            base_dist=StandardNormal((dim,)),  # type: ignore[call-arg]
            transformer=transformer,
            flow_layers=layers_per_block,
            nn_width=hidden_width,
            nn_depth=hidden_depth,
            invert=False,
        )
        return Chain([flow.bijection, Affine(jnp.zeros(dim), jnp.ones(dim))])

    blocks = eqx.filter_vmap(make_block)(jax.random.split(key, num_blocks))
    log_step_size: Array | paramax.NonTrainable[Array]
    log_step_size = jnp.full((num_blocks,), math.log(step_size))
    if not train_step_size:
        log_step_size = paramax.NonTrainable(log_step_size)
    lambdas = jnp.arange(1, num_blocks + 1, dtype=float) / num_blocks
    return StochasticNormalizingFlow(
        blocks=blocks,
        log_step_size=log_step_size,
        lambdas=paramax.NonTrainable(lambdas),
        base_scale=paramax.NonTrainable(jnp.asarray(init_scale, dtype=float)),
        dim=dim,
        kernel=kernel,
        num_mcmc_steps=num_mcmc_steps,
    )


# --------------------------------------------------------------------------- pieces


def _finite_or_minus_inf(value: Array) -> Array:
    return jnp.where(jnp.isfinite(value), value, -jnp.inf)


def base_logdensity(z: Array, scale: Array) -> Array:
    """``log N(z; 0, scale^2 I)`` for one point z of shape (dim,)."""
    dim = z.shape[-1]
    return -0.5 * jnp.sum((z / scale) ** 2) - dim * (jnp.log(scale) + 0.5 * math.log(2 * math.pi))


def intermediate_logdensity(logdensity_fn: LogDensity, scale: Array, lam: Array) -> LogDensity:
    """``y -> (1 - lam) log q0(y) + lam log p(y)``, NaN and +inf mapped to -inf."""

    def logdensity(y: Array) -> Array:
        value = (1.0 - lam) * base_logdensity(y, scale) + lam * logdensity_fn(y)
        return _finite_or_minus_inf(value)

    return logdensity


def markov_steps(
    kernel: str, key: Array, position: Array, logdensity: LogDensity, step_size: Array, num: int
) -> tuple[Array, Array, Array]:
    """``num`` steps of ``kernel`` on ``logdensity`` from ``position`` (shape (dim,)).

    Returns ``(position, log_ratio, acceptance_rate)`` where ``log_ratio = sum_t log
    q(y_{t+1} -> y_t) - log q(y_t -> y_{t+1})`` is the stochastic block's contribution to
    the path weight (Wu et al. 2020, Delta S of Langevin and Metropolis blocks), and the
    acceptance rate is the mean Metropolis acceptance probability (1 for ULA).

    Example:
        >>> y, log_ratio, acc = markov_steps("rwm", jax.random.key(0), jnp.zeros(2),
        ...                                  lambda x: -0.5 * x @ x, 0.5, 3)
        >>> y.shape, log_ratio.shape
        ((2,), ())
    """
    keys = jax.random.split(key, num)
    if kernel == "mala":
        step = blackjax.mcmc.mala.build_kernel()
        state = blackjax.mcmc.mala.init(position, logdensity)

        def mala_step(state: Any, step_key: Array) -> tuple[Any, Array]:
            new_state, info = step(step_key, state, logdensity, step_size)
            return new_state, info.acceptance_rate

        final, acceptance = jax.lax.scan(mala_step, state, keys)
        return final.position, state.logdensity - final.logdensity, jnp.mean(acceptance)
    if kernel == "rwm":
        step = blackjax.mcmc.random_walk.build_additive_step()
        proposal = blackjax.mcmc.random_walk.normal(step_size * jnp.ones_like(position))
        state = blackjax.mcmc.random_walk.init(position, logdensity)

        def rwm_step(state: Any, step_key: Array) -> tuple[Any, Array]:
            new_state, info = step(step_key, state, logdensity, proposal)
            return new_state, info.acceptance_rate

        final, acceptance = jax.lax.scan(rwm_step, state, keys)
        return final.position, state.logdensity - final.logdensity, jnp.mean(acceptance)
    # unadjusted Langevin: y' = y + eps grad log pi(y) + sqrt(2 eps) xi; the backward
    # kernel is the same step from y', so the ratio is of two N(., 2 eps I) densities
    value_and_grad = jax.value_and_grad(logdensity)
    one_step = overdamped_langevin(value_and_grad)
    state = DiffusionState(position, *value_and_grad(position))

    def ula_step(state: Any, step_key: Array) -> tuple[Any, Array]:
        new_state = one_step(step_key, state, step_size)
        forward = new_state.position - state.position - step_size * state.logdensity_grad
        backward = state.position - new_state.position - step_size * new_state.logdensity_grad
        log_ratio = (jnp.sum(forward**2) - jnp.sum(backward**2)) / (4.0 * step_size)
        return new_state, log_ratio

    final, log_ratios = jax.lax.scan(ula_step, state, keys)
    return final.position, jnp.sum(log_ratios), jnp.ones(())


def _unwrapped(snf: StochasticNormalizingFlow) -> tuple[Any, Any, Array, Array, Array]:
    snf = paramax.unwrap(snf)
    block_params, block_static = eqx.partition(snf.blocks, eqx.is_array)
    return block_params, block_static, jnp.exp(snf.log_step_size), snf.lambdas, snf.base_scale


def forward_path(
    snf: StochasticNormalizingFlow, logdensity_fn: LogDensity, key: Array, z: Array
) -> tuple[Array, Array, Array, Array]:
    """Run one base point ``z`` (dim,) through the SNF.

    Returns ``(x, log_weight, log_density, acceptance_rate)``: the end point, its path
    log weight ``log p(x) - log q0(z) + sum_t Delta S_t`` (Wu et al. 2020, importance weights),
    ``log p(x)`` and the mean acceptance rate of the stochastic blocks.

    Example:
        >>> snf = make_snf(jax.random.key(0), 2, num_blocks=2, hidden_width=8)
        >>> x, log_w, lp, acc = forward_path(snf, lambda x: -x @ x, jax.random.key(1),
        ...                                  jnp.zeros(2))
        >>> x.shape, log_w.shape
        ((2,), ())
    """
    block_params, block_static, step_sizes, lambdas, scale = _unwrapped(snf)
    log_w0 = -base_logdensity(z, scale)

    def through_block(carry: tuple[Array, Array], inputs: Any) -> tuple[Any, Array]:
        y, log_w = carry
        params, lam, step_size, block_key = inputs
        y, log_det = eqx.combine(params, block_static).transform_and_log_det(y)
        if snf.kernel == "none":
            return (y, log_w + log_det), jnp.ones(())
        pi = intermediate_logdensity(logdensity_fn, scale, lam)
        y, log_ratio, acceptance = markov_steps(
            snf.kernel, block_key, y, pi, step_size, snf.num_mcmc_steps
        )
        return (y, log_w + log_det + log_ratio), acceptance

    keys = jax.random.split(key, lambdas.shape[0])
    (x, log_w), acceptance = jax.lax.scan(
        through_block, (z, log_w0), (block_params, lambdas, step_sizes, keys)
    )
    lp = _finite_or_minus_inf(logdensity_fn(x))
    return x, log_w + lp, lp, jnp.mean(acceptance)


def backward_path(
    snf: StochasticNormalizingFlow, logdensity_fn: LogDensity, key: Array, x: Array
) -> tuple[Array, Array]:
    """Run a target point ``x`` (dim,) backwards through the SNF (stochastic blocks with
    their backward kernel, here the same kernel, then the inverse flows).

    Returns ``(z, log_weight)`` with the forward-path log weight of the sampled path,
    ``log p(x) - log q0(z) + sum_t Delta S_t``, whose mean under ``p`` times the backward
    kernels is the forward path KL plus log Z (Wu et al. 2020, ML loss).
    """
    block_params, block_static, step_sizes, lambdas, scale = _unwrapped(snf)
    lp = _finite_or_minus_inf(logdensity_fn(x))

    def back_through_block(carry: tuple[Array, Array], inputs: Any) -> tuple[Any, None]:
        y, log_w = carry
        params, lam, step_size, block_key = inputs
        if snf.kernel != "none":
            pi = intermediate_logdensity(logdensity_fn, scale, lam)
            y, log_ratio, _ = markov_steps(
                snf.kernel, block_key, y, pi, step_size, snf.num_mcmc_steps
            )
            # the forward path crosses these steps in the opposite direction
            log_w = log_w - log_ratio
        y, inverse_log_det = eqx.combine(params, block_static).inverse_and_log_det(y)
        return (y, log_w - inverse_log_det), None

    keys = jax.random.split(key, lambdas.shape[0])
    (z, log_w), _ = jax.lax.scan(
        back_through_block, (x, lp), (block_params, lambdas, step_sizes, keys), reverse=True
    )
    return z, log_w - base_logdensity(z, scale)


def sample_paths(
    snf: StochasticNormalizingFlow, logdensity_fn: LogDensity, key: Array, num: int
) -> tuple[Array, Array, Array, Array]:
    """``num`` forward paths from the base: ``(x (num, dim), log_w (num,), lp (num,),
    acceptance (num,))``; a non-finite log weight or end point gets weight zero (-inf) and
    position zero."""
    base_key, path_key = jax.random.split(key)
    scale = paramax.unwrap(snf.base_scale)
    z = scale * jax.random.normal(base_key, (num, snf.dim))
    keys = jax.random.split(path_key, num)
    if num <= SAMPLING_BATCH:
        x, log_w, lp, acceptance = jax.vmap(forward_path, in_axes=(None, None, 0, 0))(
            snf, logdensity_fn, keys, z
        )
    else:  # bounded memory: vmap within batches, lax.map over them
        x, log_w, lp, acceptance = jax.lax.map(
            lambda args: forward_path(snf, logdensity_fn, *args),
            (keys, z),
            batch_size=SAMPLING_BATCH,
        )
    good = jnp.isfinite(log_w) & jnp.all(jnp.isfinite(x), axis=1)
    return (
        jnp.where(good[:, None], x, 0.0),
        safe_log_weights(jnp.where(good, log_w, -jnp.inf)),
        jnp.where(good, lp, -jnp.inf),
        acceptance,
    )
