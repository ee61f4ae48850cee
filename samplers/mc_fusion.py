"""Monte Carlo fusion: the shards' sub-posterior draws joined through Brownian bridges into
weighted draws of the full posterior (``mc_fusion``).

The sub-posteriors ``f_s`` (``s = 1..S``) and their shards are fusion's
(:mod:`samplers.fusion`): ``f(y) ∝ prod_s f_s(y)``. Dai, Pollock and Roberts (2019),
"Monte Carlo fusion", J. Appl. Probab. 56(1), take for each shard the Langevin diffusion
``dX = grad A_s(X) dt + dW`` with ``A_s = log f_s`` (invariant density ``f_s^2``) and its
transition density ``p_s`` over a time ``T``. The joint density on ``(x_1..x_S, y)``

    g(x_1, .., x_S, y) ∝ prod_s f_s(x_s)^2 p_s(y | x_s) / f_s(y)

has ``y``-marginal ``f`` (each ``f_s^2`` is invariant for ``p_s``). Propose from
``h``: ``x_s ~ f_s`` independently (the shards' draws), ``y ~ N(xbar, T / S)`` around their
average. By Girsanov's formula along the Brownian bridge ``omega`` from ``x_s`` (time 0) to
``y`` (time ``T``), ``g / h`` is, up to a constant,

    rho_0 * prod_s Q_s,    rho_0 = exp(-sum_s |x_s - xbar|^2 / (2 T)),
    Q_s = E[exp(-int_0^T phi_s(omega_t) dt)],    phi_s = (|grad A_s|^2 + Laplacian A_s) / 2.

Dai et al. accept a proposal with probability ``rho_0 Q``, which needs bounds on ``phi_s``
over the bridge's range; here, as in the sequential Monte Carlo form of Chan, Pollock,
Johansen and Roberts (2021, "Divide-and-conquer Monte Carlo fusion", JMLR 24(193)), the
proposal is kept with the importance weight ``rho_0 prod_s Q_hat_s``: self-normalised
importance sampling, exact as the draws grow. ``Q_hat_s`` is the Poisson estimator
(Beskos, Papaspiliopoulos and Roberts 2006; Fearnhead, Papaspiliopoulos and Roberts 2008,
eq. 9): with ``kappa ~ Poisson(lambda T)`` uniform times ``tau_i`` on ``(0, T)``,

    Q_hat = exp((lambda - c) T) prod_{i <= kappa} (c - phi(omega_{tau_i})) / lambda,

unbiased for any ``c`` and ``lambda > 0``, and non-negative when ``c >= phi`` along the
path. Its second moment is ``E exp(-2 int phi + int (lambda - (c - phi))^2 / lambda)``, so
the best ``lambda`` is near ``c - phi`` and a larger ``c`` (with ``lambda`` following)
lowers the variance at the cost of more points. A general model gives no bound on
``phi``, so ``c`` is read from an independent bridge between the same ends (``phi`` at its
ends and ``PILOT_POINTS`` times): ``BOUND_MARGIN`` times their range above their largest
value, and ``lambda = c - mean``; where that would make ``lambda T`` more than a quarter of
``max_poisson_points``, ``lambda`` is that quarter and ``c = mean + lambda`` (not below
the largest value). A wider margin and more
points both cut the negative estimates and raised the weights' ESS, measured on the two
low-dimensional models of tests/samplers/test_mc_fusion.py (8 runs of 1000, 4 shards;
weight share lost on the skewed model, mean ESS per run on it and on the Gaussian one):
margin 2 with 64 points 1.1%, ESS 101 and 108; margin 4 with 32, 0.2%, 101 and 123;
margin 4 with 64, 0.3%, 107 and 126; margin 8 with 64 (the defaults) 0.01%, 112 and 133;
margin 8 with 128, 0.003%, 116 and 130. An estimate that comes out
negative (a point above ``c``) is set to zero and counted: the share of weight lost that
way (``negative_weight``, against the weights kept) is in ``path_stats`` and in the
verdict, since it biases the run. A count beyond ``max_poisson_points`` (probability below
1e-9 at the cap) is counted as ``truncated``.

Preconditioning (Chan et al. 2021 section 3's preconditioned fusion, with one matrix for
all shards): the fusion runs in coordinates ``z = L^{-1} (x - m)``, where ``m`` and ``L L^T
/ S`` are the mean and covariance of the product of the shards' Gaussian fits, so each
sub-posterior has about unit covariance; a common linear map leaves ``prod_s f_s`` the
target. ``T`` (``fusion_time``, in those units) trades ``rho_0``, which wants a long time,
against ``Q``, which wants a short one. By default each run picks it from
``TIME_CANDIDATES`` by the Kish ESS of the weights of a pilot on its first
``PILOT_PAIRS`` proposals (with their own bridges), a choice made without the truth.

Dimension. The weights' spread grows with the dimension and the number of shards (Dai et
al. 2019, section 4; Chan et al. 2021, section 4): for Gaussian sub-posteriors with unit
covariance, ``log rho_0`` alone has a standard deviation of about ``S sqrt((S - 1) d / 2) /
(2 T)``, and ``int phi`` grows with ``d`` too. It is the exact method for a few
parameters; for many, ``fusion`` (the annealed merge) is the one to use, and the verdict's
weights ESS and k-hat say when this one has failed.

Cost, in sub-posterior evaluations (each over about ``N / S`` rows, as fusion's): the
sub-posterior sampler's own counts, then per proposal and shard ``2 + PILOT_POINTS +
max_poisson_points`` evaluations of ``phi`` (all are computed, masked beyond ``kappa``:
static shapes), each one gradient and ``d`` Hessian-vector products, counted as ``1 + d``
gradient evaluations; the time pilot adds ``len(TIME_CANDIDATES) * PILOT_PAIRS``
proposals; ``lp`` of the draws ``S`` log-density evaluations each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bayeswb.core.config import option, optional, positive, positive_int
from bayeswb.core.draws import Count, Draws
from bayeswb.core.target import Target
from bayeswb.core.weights import kish_ess
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers import register
from bayeswb.samplers.fusion import (
    ShardedConfig,
    ShardedTarget,
    _runs_layout,
    gaussian_product,
    map_shards,
    sharded_target,
)
from bayeswb.samplers.importance.output import weighted_output

Array = jax.Array

# bridge points whose phi sets the Poisson estimator's bound c, and c's margin over them
PILOT_POINTS = 8
BOUND_MARGIN = 8.0
# fusion times tried by the pilot (in units of a sub-posterior's variance), on this many
# proposals of each run
TIME_CANDIDATES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
PILOT_PAIRS = 256


def brownian_bridge(key: Array, start: Array, end: Array, duration: Array, times: Array) -> Array:
    """A Brownian bridge from ``start`` (time 0) to ``end`` (time ``duration``) at
    ``times`` (K,) in any order: ``(K, d)``, one path through all of them.

    ``omega_t = start + (t / T)(end - start) + B_t - (t / T) B_T`` for a standard Brownian
    motion ``B``, built from independent increments between the sorted times.

    Example:
        >>> path = brownian_bridge(jax.random.key(0), jnp.zeros(2), jnp.ones(2), 1.0,
        ...                        jnp.array([0.5, 1e-6]))
        >>> path.shape, bool(jnp.allclose(path[1], 0.0, atol=1e-2))
        ((2, 2), True)
    """
    order = jnp.argsort(times)
    ordered = times[order]
    steps = jnp.diff(jnp.concatenate([jnp.zeros(1), ordered, jnp.full(1, duration)]))
    increments = jnp.sqrt(jnp.maximum(steps, 0.0))[:, None] * jax.random.normal(
        key, (times.shape[0] + 1, start.shape[-1]), start.dtype
    )
    walk = jnp.cumsum(increments, axis=0)
    fraction = (ordered / duration)[:, None]
    path = start + fraction * (end - start) + walk[:-1] - fraction * walk[-1]
    return path[jnp.argsort(order)]


class PathEstimate(NamedTuple):
    """A Poisson estimate of ``E[exp(-int_0^T phi(omega_t) dt)]`` over a bridge:
    ``log_abs`` its log absolute value, ``negative`` its sign, ``truncated`` whether the
    Poisson count exceeded the points computed."""

    log_abs: Array
    negative: Array
    truncated: Array


def poisson_estimate(
    key: Array,
    phi: Callable[[Array], Array],
    start: Array,
    end: Array,
    duration: Array,
    max_points: int,
) -> PathEstimate:
    """The Poisson estimator (module docstring) of ``E[exp(-int_0^T phi(omega_t) dt)]``
    for the Brownian bridge from ``start`` to ``end`` over ``duration``, its bound from an
    independent pilot bridge. Unbiased (signed); ``phi`` is evaluated ``2 + PILOT_POINTS +
    max_points`` times.

    Example (Levy's formula: for the bridge from 0 to 0 over ``T``,
    ``E exp(-int b_t^2 dt) = (sqrt(2) T / sinh(sqrt(2) T))^(1/2)``, 0.8549 at ``T = 1``):
        >>> keys = jax.random.split(jax.random.key(0), 20000)
        >>> one = lambda k: poisson_estimate(k, lambda x: x @ x, jnp.zeros(1), jnp.zeros(1),
        ...                                  1.0, 32)
        >>> out = jax.vmap(one)(keys)
        >>> values = jnp.where(out.negative, -1.0, 1.0) * jnp.exp(out.log_abs)
        >>> round(float(values.mean()), 2)
        0.85
    """
    pilot_key, count_key, times_key, path_key = jax.random.split(key, 4)
    pilot_times = duration * (jnp.arange(PILOT_POINTS) + 0.5) / PILOT_POINTS
    pilot = brownian_bridge(pilot_key, start, end, duration, pilot_times)
    values = jax.vmap(phi)(jnp.concatenate([start[None], end[None], pilot]))
    high, typical = jnp.max(values), jnp.mean(values)
    width = jnp.maximum(high - jnp.min(values), 1.0 / duration)
    most = max_points / (4 * duration)  # the largest rate: counts stay within the points
    bound = jnp.maximum(high, jnp.minimum(high + BOUND_MARGIN * width, typical + most))
    rate = jnp.minimum(bound - typical, most)
    expected = rate * duration
    count = jax.random.poisson(count_key, expected)
    times = duration * jax.random.uniform(times_key, (max_points,), start.dtype)
    path = brownian_bridge(path_key, start, end, duration, times)
    factors = (bound - jax.vmap(phi)(path)) / rate
    used = jnp.arange(max_points) < count
    log_abs = (rate - bound) * duration + jnp.sum(jnp.where(used, jnp.log(jnp.abs(factors)), 0.0))
    negatives = jnp.sum(used & (factors < 0))
    return PathEstimate(log_abs, negatives % 2 == 1, count > max_points)


def diffusion_phi(log_density: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """``phi = (|grad A|^2 + Laplacian A) / 2`` for ``A = log_density``: one gradient and
    ``d`` Hessian-vector products (forward over reverse).

    Example (``A = -|x|^2 / 2`` in 3-d: ``phi = (|x|^2 - 3) / 2``):
        >>> phi = diffusion_phi(lambda x: -0.5 * x @ x)
        >>> float(phi(jnp.array([1.0, 2.0, 0.0])))
        1.0
    """
    grad = jax.grad(log_density)

    def phi(x: Array) -> Array:
        gradient = grad(x)
        hessian_columns = jax.vmap(lambda v: jax.jvp(grad, (x,), (v,))[1])(
            jnp.eye(x.shape[-1], dtype=x.dtype)
        )
        return 0.5 * (gradient @ gradient + jnp.trace(hessian_columns))

    return phi


@dataclasses.dataclass(frozen=True)
class MCFusionConfig(ShardedConfig):
    """Monte Carlo fusion: ``num_samples`` draws per shard and run, joined into as many
    weighted draws; ``fusion_time`` None picks it per run (module docstring)."""

    fusion_time: float | None = option(
        None, optional(positive), "time T of the bridges (None: chosen by a pilot's ESS)"
    )
    max_poisson_points: int = option(64, positive_int, "bridge points of each estimate")


class Whitening(NamedTuple):
    """``x = mean + z @ scale.T``: coordinates where each sub-posterior has about unit
    covariance."""

    mean: Array
    scale: Array


class Fused(NamedTuple):
    """Proposals joined at one time: ``positions`` (n, d) in the whitened coordinates,
    ``log_weights`` (n,) (zero weight where an estimate was negative), ``negative`` and
    ``truncated`` (n,) booleans, and the log weights before the clip (n,), whose
    absolute values measure what the clip removed."""

    positions: Array
    log_weights: Array
    negative: Array
    truncated: Array
    log_abs_weights: Array


def fuse(
    key: Array,
    sharded: ShardedTarget,
    whitening: Whitening,
    z: Array,
    duration: Array,
    max_points: int,
) -> Fused:
    """Join the shards' whitened draws ``z`` (S, n, d), proposal ``g`` from the ``g``-th
    draw of every shard, over bridges of time ``duration``."""
    num_shards, n, _ = z.shape
    centre = jnp.mean(z, axis=0)
    log_rho0 = -jnp.sum((z - centre) ** 2, axis=(0, 2)) / (2.0 * duration)
    end_key, bridge_key = jax.random.split(key)
    ends = centre + jnp.sqrt(duration / num_shards) * jax.random.normal(end_key, centre.shape)
    keys = jax.random.split(bridge_key, (num_shards, n))

    def shard_estimates(shard_keys: Array, starts: Array, shard: Any, mask: Array) -> Any:
        def log_density(point: Array) -> Array:
            x = whitening.mean + whitening.scale @ point
            return sharded.log_density(x, shard, mask)

        phi = diffusion_phi(log_density)
        one = lambda k, a, b: poisson_estimate(k, phi, a, b, duration, max_points)  # noqa: E731
        return jax.vmap(one)(shard_keys, starts, ends)

    per_shard = (keys, z, sharded.shards.data, sharded.shards.mask)
    estimates = map_shards(shard_estimates, sharded.mesh, per_shard, ())
    negative = jnp.sum(estimates.negative, axis=0) % 2 == 1
    log_abs = log_rho0 + jnp.sum(estimates.log_abs, axis=0)
    log_weights = jnp.where(negative, -jnp.inf, log_abs)
    truncated = jnp.any(estimates.truncated, axis=0)
    return Fused(ends, log_weights, negative, truncated, log_abs)


def pilot_time(
    key: Array, sharded: ShardedTarget, whitening: Whitening, z: Array, max_points: int
) -> Array:
    """The time among ``TIME_CANDIDATES`` whose weights, on the first ``PILOT_PAIRS``
    proposals with their own bridges, have the largest Kish ESS."""
    pilot = z[:, :PILOT_PAIRS]
    candidates = jnp.asarray(TIME_CANDIDATES, z.dtype)

    def ess(duration: Array) -> Array:
        return kish_ess(fuse(key, sharded, whitening, pilot, duration, max_points).log_weights)

    return candidates[jnp.argmax(jax.lax.map(ess, candidates))]


def phi_evaluations(config: MCFusionConfig, dim: int) -> int:
    """Gradient evaluations (one gradient and ``d`` Hessian-vector products each) of
    ``phi`` in one run: all shards, the time pilot included."""
    proposals = config.num_samples
    if config.fusion_time is None:
        proposals += len(TIME_CANDIDATES) * min(PILOT_PAIRS, config.num_samples)
    per_proposal = 2 + PILOT_POINTS + config.max_poisson_points
    return config.num_shards * proposals * per_proposal * (1 + dim)


@register("mc_fusion", MCFusionConfig, family="importance", needs_minibatch=True)
def run_mc_fusion(
    key: Array, target: Target, config: MCFusionConfig, layout: ChainLayout | None = None
) -> Draws:
    """Monte Carlo fusion (Dai, Pollock and Roberts 2019) in the importance-weighted,
    preconditioned form of Chan, Pollock, Johansen and Roberts (2021): each shard's
    sub-posterior sampled by ``subposterior_sampler`` (NUTS), the ``g``-th draws of all
    shards joined into one proposal ``y ~ N(xbar, T / S)`` weighted by ``rho_0`` and a
    Poisson estimate of each shard's bridge expectation (module docstring). Returns
    ``num_samples`` weighted draws per run; ``path_stats`` has the time used, the weights'
    k-hat and ESS, the share of weight lost to negative estimates, and each shard's
    divergences and acceptance rate. No log Z (the sub-posteriors' constants are unknown).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("logistic_breast_cancer", "mc_fusion", num_chains=2,
        ...               num_samples=100, num_warmup=100, max_poisson_points=4)
        >>> r.log_weights.shape, r.idata.path_stats["fusion_time"].shape
        ((2, 100), (2, 1))
    """
    sharded = sharded_target(target, config, layout)

    def one_run(run_key: Array) -> tuple[Any, ...]:
        sub_key, pilot_key, fuse_key = jax.random.split(run_key, 3)
        runs = sharded.subposteriors(sub_key, config)
        product = gaussian_product(runs.positions)
        scale = jnp.linalg.cholesky(config.num_shards * product.covariance)
        whitening = Whitening(product.mean, scale)
        z = jax.scipy.linalg.solve_triangular(
            scale, (runs.positions - product.mean).reshape(-1, target.dim).T, lower=True
        ).T.reshape(runs.positions.shape)
        if config.fusion_time is None:
            duration = pilot_time(pilot_key, sharded, whitening, z, config.max_poisson_points)
        else:
            duration = jnp.asarray(config.fusion_time, z.dtype)
        fused = fuse(fuse_key, sharded, whitening, z, duration, config.max_poisson_points)
        positions = product.mean + fused.positions @ scale.T
        lp = jax.vmap(sharded.full_log_density)(positions)
        shifted = jnp.exp(fused.log_abs_weights - jnp.max(fused.log_abs_weights))
        lost = jnp.sum(jnp.where(fused.negative, shifted, 0.0))
        kept = jnp.sum(jnp.where(fused.negative, 0.0, shifted))
        path = {
            "fusion_time": duration[None],
            "negative_weight": (lost / (lost + kept))[None],
            "truncated": jnp.sum(fused.truncated)[None],
        }
        return positions, lp, fused.log_weights, path, runs

    positions, lp, log_weights, path, runs = run_chains(
        key, config.num_chains, one_run, _runs_layout(layout)
    )
    output = weighted_output(log_weights, psis=False)
    runs_count = config.num_chains
    phi_grads = Count.of(runs_count * phi_evaluations(config, target.dim))
    lp_evals = Count.of(runs_count * config.num_samples, each=config.num_shards)
    return Draws(
        positions=positions,
        stats={"lp": lp},
        log_weights=output.log_weights,
        path_stats={**path, **output.diagnostics, **runs.stats},
        n_grad_evals=runs.grads + phi_grads,
        n_logdensity_evals=runs.logdensity_evals + phi_grads + lp_evals,
    )
