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
Johansen and Roberts (2021, "Divide-and-conquer Monte Carlo fusion"), the proposal is
kept with the importance weight ``rho_0 prod_s Q_hat_s``: self-normalised importance
sampling, exact as the draws grow. ``Q_hat_s`` is the Poisson estimator (Beskos,
Papaspiliopoulos and Roberts 2006, "Retrospective exact simulation of diffusion sample
paths"; Fearnhead, Papaspiliopoulos and Roberts 2008, "Particle filters for partially
observed diffusions"): with ``kappa ~ Poisson(lambda T)`` uniform times ``tau_i`` on
``(0, T)``,

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
low-dimensional models of tests/samplers/test_mc_fusion.py (8 runs of 1000, 4 shards
fused at once;
weight share lost on the skewed model, mean ESS per run on it and on the Gaussian one):
margin 2 with 64 points 1.1%, ESS 101 and 108; margin 4 with 32, 0.2%, 101 and 123;
margin 4 with 64, 0.3%, 107 and 126; margin 8 with 64 (the defaults) 0.01%, 112 and 133;
margin 8 with 128, 0.003%, 116 and 130. An estimate that comes out
negative (a point above ``c``) is set to zero and counted: the share of weight lost that
way (``fusion_negative_weight``, against the weights kept) is in ``path_stats`` and in the
verdict, since it biases the run. A count beyond ``max_poisson_points`` (probability below
1e-9 at the cap) is counted as ``fusion_truncated``.

The tree (``tree``; Chan et al. 2021's divide-and-conquer): ``"fork_join"`` fuses all
``S`` sub-posteriors at once, as Dai et al.; ``"balanced_binary"`` (the default) fuses
them in pairs, then the pairs' fusions in pairs, and so on (an odd node waits a level),
``ceil(log2 S)`` levels. A node's density is the product of its shards' sub-posteriors,
so its ``phi`` takes the sum of their gradients and Laplacians, each computed where its
shard's data are; each fusion but the last resamples its weighted draws (systematic) to
as many equally weighted ones, the children of the next. Fewer children per fusion keep
``rho_0`` and ``Q`` closer to one. Measured with 4 shards on the Gaussian-mean and the
skewed model of tests/samplers/test_mc_fusion.py (16 runs of 1000, seed 0): the final
weights' mean Kish ESS per run 130 and 122 with fork_join, 417 and 379 with
balanced_binary (which counts the duplicates its resampling left as distinct); the
between-run sd of the weighted means, the error itself, fell 1.6 to 2.6 times, for
twice the bridge evaluations (each shard is under a fusion at both levels).

Preconditioning (as Chan et al.'s preconditioned fusion, with one matrix per fusion): a
fusion of ``C`` children runs in coordinates ``z = L^{-1} (x - m)``, where ``m`` and ``L
L^T / C`` are the mean and covariance of the product of the children's Gaussian fits, so
each child has about unit covariance; a linear map leaves ``prod_c f_c`` the target.
``T`` (``fusion_time``, in those units) trades ``rho_0``, which wants a long time,
against ``Q``, which wants a short one. By default each fusion picks it from
``TIME_CANDIDATES`` by the Kish ESS of the weights of a pilot on its first
``PILOT_PAIRS`` proposals (with their own bridges), a choice made without the truth.

Dimension. The weights' spread grows with the dimension and the number of children: for
Gaussian children with unit covariance, ``log rho_0`` alone has a standard deviation of
about ``sqrt((C - 1) d / 2) / T``, and ``int phi`` grows with ``d`` too. It is the
exact method for a few parameters; for many, ``fusion`` (the annealed merge) is the one
to use, and the verdict's weights ESS, k-hat and (for a tree) the lowest ESS of the
intermediate fusions say when this one has failed.

Cost, in sub-posterior evaluations (each over about ``N / S`` rows, as fusion's): the
sub-posterior sampler's own counts, then in every fusion, per proposal and shard under
it, ``2 + PILOT_POINTS + max_poisson_points`` evaluations of the shard's gradient and
Laplacian (all are computed, masked beyond ``kappa``: static shapes), each one gradient
and ``d`` Hessian-vector products, counted as ``1 + d`` gradient evaluations; the time
pilot adds ``len(TIME_CANDIDATES) * PILOT_PAIRS`` proposals per fusion; ``lp`` of the
draws ``S`` log-density evaluations each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.smc.resampling import systematic

from bayeswb.core.config import one_of, option, optional, positive, positive_int
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
# fusion times tried by the pilot (in units of a child's variance), on this many proposals
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
    """Poisson estimates of ``E[exp(-int_0^T phi(omega_t) dt)]`` over bridges, each
    ``(B,)``: ``log_abs`` the log absolute value, ``negative`` the sign, ``truncated``
    whether the Poisson count exceeded the points computed."""

    log_abs: Array
    negative: Array
    truncated: Array


def poisson_estimates(
    key: Array,
    phi_points: Callable[[Array], Array],
    starts: Array,
    ends: Array,
    durations: Array,
    max_points: int,
) -> PathEstimate:
    """The Poisson estimator (module docstring) of ``E[exp(-int_0^T phi(omega_t) dt)]``
    for ``B`` Brownian bridges from ``starts`` (B, d) to ``ends`` (B, d) over
    ``durations`` (B,), each bound from an independent pilot bridge. Unbiased (signed).
    ``phi_points`` maps points ``(B, m, d)`` to ``phi`` at them ``(B, m)``; it is called
    once, on ``2 + PILOT_POINTS + max_points`` points per bridge.

    Example (Levy's formula: for the bridge from 0 to 0 over ``T``,
    ``E exp(-int b_t^2 dt) = (sqrt(2) T / sinh(sqrt(2) T))^(1/2)``, 0.8549 at ``T = 1``):
        >>> zeros = jnp.zeros((20000, 1))
        >>> out = poisson_estimates(jax.random.key(0), lambda x: jnp.sum(x**2, -1), zeros,
        ...                         zeros, jnp.ones(20000), 32)
        >>> values = jnp.where(out.negative, -1.0, 1.0) * jnp.exp(out.log_abs)
        >>> bool(abs(values.mean() - 0.8549) < 0.01)
        True
    """
    num_bridges = starts.shape[0]
    pilot_key, count_key, times_key, path_key = jax.random.split(key, 4)
    bridges = jax.vmap(brownian_bridge)
    pilot_times = durations[:, None] * (jnp.arange(PILOT_POINTS) + 0.5) / PILOT_POINTS
    pilot_keys = jax.random.split(pilot_key, num_bridges)
    pilot = bridges(pilot_keys, starts, ends, durations, pilot_times)
    uniforms = jax.random.uniform(times_key, (num_bridges, max_points), starts.dtype)
    path_keys = jax.random.split(path_key, num_bridges)
    path = bridges(path_keys, starts, ends, durations, durations[:, None] * uniforms)
    # the estimator's points do not depend on the pilot's phi: one evaluation of both
    # (each call of phi_points is a copy of the shards' gradient and Laplacian to compile)
    values = phi_points(jnp.concatenate([starts[:, None], ends[:, None], pilot, path], axis=1))
    values, path_values = values[:, : 2 + PILOT_POINTS], values[:, 2 + PILOT_POINTS :]
    high, typical = jnp.max(values, axis=-1), jnp.mean(values, axis=-1)
    width = jnp.maximum(high - jnp.min(values, axis=-1), 1.0 / durations)
    most = max_points / (4 * durations)  # the largest rate: counts stay within the points
    bound = jnp.maximum(high, jnp.minimum(high + BOUND_MARGIN * width, typical + most))
    rate = jnp.minimum(bound - typical, most)
    count = jax.random.poisson(count_key, rate * durations)
    factors = (bound[:, None] - path_values) / rate[:, None]
    used = jnp.arange(max_points) < count[:, None]
    logs = jnp.sum(jnp.where(used, jnp.log(jnp.abs(factors)), 0.0), axis=-1)
    negatives = jnp.sum(used & (factors < 0), axis=-1)
    return PathEstimate((rate - bound) * durations + logs, negatives % 2 == 1, count > max_points)


def gradient_and_laplacian(log_density: Callable[[Array], Array]) -> Callable:
    """``x -> (grad A(x), Laplacian A(x))`` for ``A = log_density``: one gradient and ``d``
    Hessian-vector products (forward over reverse).

    Example (``A = -|x|^2 / 2`` in 3-d):
        >>> grad, laplacian = gradient_and_laplacian(lambda x: -0.5 * x @ x)(jnp.ones(3))
        >>> grad.tolist(), float(laplacian)
        ([-1.0, -1.0, -1.0], -3.0)
    """
    grad = jax.grad(log_density)

    def both(x: Array) -> tuple[Array, Array]:
        columns = jax.vmap(lambda v: jax.jvp(grad, (x,), (v,))[1])(
            jnp.eye(x.shape[-1], dtype=x.dtype)
        )
        return grad(x), jnp.trace(columns)

    return both


def fusion_tree(num_shards: int, tree: str) -> list[list[tuple[int, ...]]]:
    """The fusions level by level: each level's groups of the nodes before it (numbered in
    order), each group one node of the next level (a group of one waits).

    Example:
        >>> fusion_tree(5, "balanced_binary")
        [[(0, 1), (2, 3), (4,)], [(0, 1), (2,)], [(0, 1)]]
        >>> fusion_tree(5, "fork_join")
        [[(0, 1, 2, 3, 4)]]
    """
    if tree == "fork_join" or num_shards == 1:
        return [[tuple(range(num_shards))]]
    levels, nodes = [], num_shards
    while nodes > 1:
        levels.append([tuple(range(i, min(i + 2, nodes))) for i in range(0, nodes, 2)])
        nodes = len(levels[-1])
    return levels


class Level(NamedTuple):
    """One level of the tree, all static: ``groups`` every group of nodes (one node of the
    next level each), ``fusions`` those fused (all of one size ``C``), and for the shards
    under the fusions
    (``shards``, in order) the fusion (``fusion_of``) and the child (``child_of``, counted
    over all fusions: ``fusion * C + c``) each belongs to."""

    groups: list[tuple[int, ...]]
    fusions: list[tuple[int, ...]]
    shards: np.ndarray
    fusion_of: np.ndarray
    child_of: np.ndarray


def tree_levels(num_shards: int, tree: str) -> list[Level]:
    """:func:`fusion_tree` with the shards under each node worked out."""
    members = [[s] for s in range(num_shards)]  # the shards under each current node
    levels = []
    for groups in fusion_tree(num_shards, tree):
        fusions = [group for group in groups if len(group) > 1]
        shards, fusion_of, child_of = [], [], []
        for f, group in enumerate(fusions):
            for c, node in enumerate(group):
                shards += members[node]
                fusion_of += [f] * len(members[node])
                child_of += [f * len(group) + c] * len(members[node])
        levels.append(Level(groups, fusions, *map(np.asarray, (shards, fusion_of, child_of))))
        members = [sum((members[node] for node in group), []) for group in groups]
    return levels


@dataclasses.dataclass(frozen=True)
class MCFusionConfig(ShardedConfig):
    """Monte Carlo fusion: ``num_samples`` draws per shard and run, joined into as many
    weighted draws; ``fusion_time`` None picks it per fusion (module docstring)."""

    fusion_time: float | None = option(
        None, optional(positive), "time T of the bridges (None: chosen by a pilot's ESS)"
    )
    max_poisson_points: int = option(64, positive_int, "bridge points of each estimate")
    tree: str = option(
        "balanced_binary", one_of("balanced_binary", "fork_join"), "the order of the fusions"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_shards < 2:
            raise ValueError("num_shards: mc_fusion fuses at least 2 shards")


class Fused(NamedTuple):
    """One level's fusions ``(F, ...)``: ``positions`` (F, n, d), ``log_weights`` (F, n)
    (zero weight where an estimate was negative), and per fusion the share of weight lost
    to negative estimates, the truncated counts, the weights' Kish ESS and the time."""

    positions: Array
    log_weights: Array
    negative_weight: Array
    truncated: Array
    ess: Array
    time: Array


def _bridge_weights(
    key: Array,
    z: Array,
    durations: Array,
    phi_points: Callable[[Array], Array],
    max_points: int,
) -> tuple[Array, Array, Array, Array]:
    """Proposals and weights of fusions of whitened children ``z`` (F, C, n, d) over
    times ``durations`` (F,): the proposals ``y`` (F, n, d), log |weights|, the sign
    (negative) and truncation (F, n). ``phi_points`` maps ``(F * C, m, d)`` to
    ``(F * C, m)``, each child's points in its own row."""
    num_fusions, children, n, dim = z.shape
    centre = jnp.mean(z, axis=1)
    log_rho0 = -jnp.sum((z - centre[:, None]) ** 2, axis=(1, 3)) / (2.0 * durations[:, None])
    end_key, bridge_key = jax.random.split(key)
    noise = jax.random.normal(end_key, centre.shape, centre.dtype)
    ends = centre + jnp.sqrt(durations / children)[:, None, None] * noise
    shape = (num_fusions, children, n)

    def per_bridge(points: Array) -> Array:  # (F * C * n, m, d) -> (F * C * n, m)
        m = points.shape[1]
        return phi_points(points.reshape(num_fusions * children, n * m, dim)).reshape(-1, m)

    estimates = poisson_estimates(
        bridge_key,
        per_bridge,
        z.reshape(-1, dim),
        jnp.broadcast_to(ends[:, None], z.shape).reshape(-1, dim),
        jnp.broadcast_to(durations[:, None, None], shape).reshape(-1),
        max_points,
    )
    negative = jnp.sum(estimates.negative.reshape(shape), axis=1) % 2 == 1
    log_abs = log_rho0 + jnp.sum(estimates.log_abs.reshape(shape), axis=1)
    return ends, log_abs, negative, jnp.any(estimates.truncated.reshape(shape), axis=1)


def fuse_level(
    key: Array,
    sharded: ShardedTarget,
    level: Level,
    nodes: Array,
    fusion_time: float | None,
    max_points: int,
) -> Fused:
    """Every fusion of one level, from the current nodes' equally weighted draws ``nodes``
    (N, n, d): whiten each fusion's children, pick its time (or take ``fusion_time``),
    weight its proposals."""
    children = nodes[np.asarray(level.fusions)]  # (F, C, n, d)
    num_fusions, num_children = children.shape[:2]
    product = jax.vmap(gaussian_product)(children)
    scales = jnp.linalg.cholesky(num_children * product.covariance)
    centred = children - product.mean[:, None, None]
    z = jnp.einsum("fde,fcne->fcnd", jnp.linalg.inv(scales), centred)
    phi_points = level_phi(sharded, level, product.mean, scales, num_fusions * num_children)
    pilot_key, fuse_key = jax.random.split(key)
    if fusion_time is None:
        candidates = jnp.asarray(TIME_CANDIDATES, z.dtype)

        def pilot_ess(duration: Array) -> Array:
            durations = jnp.full(num_fusions, duration)
            pilot = z[:, :, :PILOT_PAIRS]
            _, log_abs, negative, _ = _bridge_weights(
                pilot_key, pilot, durations, phi_points, max_points
            )
            return kish_ess(jnp.where(negative, -jnp.inf, log_abs))

        durations = candidates[jnp.argmax(jax.lax.map(pilot_ess, candidates), axis=0)]
    else:
        durations = jnp.full(num_fusions, fusion_time, z.dtype)
    ends, log_abs, negative, truncated = _bridge_weights(
        fuse_key, z, durations, phi_points, max_points
    )
    log_weights = jnp.where(negative, -jnp.inf, log_abs)
    shifted = jnp.exp(log_abs - jnp.max(log_abs, axis=-1, keepdims=True))
    lost = jnp.sum(jnp.where(negative, shifted, 0.0), axis=-1)
    positions = product.mean[:, None] + jnp.einsum("fde,fne->fnd", scales, ends)
    return Fused(
        positions,
        log_weights,
        lost / jnp.sum(shifted, axis=-1),
        jnp.sum(truncated, axis=-1),
        kish_ess(log_weights),
        durations,
    )


def level_phi(
    sharded: ShardedTarget, level: Level, means: Array, scales: Array, num_children: int
) -> Callable[[Array], Array]:
    """``phi`` of every child of a level's fusions at its points ``(G, m, d)`` (G children,
    each in its fusion's whitened coordinates ``x = mean + scale z``): each shard under a
    child evaluates its gradient and Laplacian at that child's points, where its data
    are, and the child's are their sums."""
    shards = level.shards
    data = jax.tree.map(lambda leaf: leaf[shards], sharded.shards.data)
    mask = sharded.shards.mask[shards]
    mesh = sharded.mesh
    if mesh is not None and len(shards) % mesh.devices.size:
        mesh = None  # the shards under this level's fusions do not divide over the devices

    def one_shard(points: Array, mean: Array, scale: Array, shard: Any, rows: Array) -> Any:
        def log_density(point: Array) -> Array:
            return sharded.log_density(mean + scale @ point, shard, rows)

        return jax.vmap(gradient_and_laplacian(log_density))(points)

    def phi_points(points: Array) -> Array:
        per_shard = (points[level.child_of], means[level.fusion_of], scales[level.fusion_of])
        grads, laplacians = map_shards(one_shard, mesh, (*per_shard, data, mask), ())
        grad = jax.ops.segment_sum(grads, level.child_of, num_children)
        laplacian = jax.ops.segment_sum(laplacians, level.child_of, num_children)
        return 0.5 * (jnp.sum(grad**2, axis=-1) + laplacian)

    return phi_points


def phi_evaluations(config: MCFusionConfig, dim: int) -> int:
    """Gradient evaluations (one gradient and ``d`` Hessian-vector products each) of the
    shards' terms of ``phi`` in one run: every fusion, its time pilot included."""
    proposals = config.num_samples
    if config.fusion_time is None:
        proposals += len(TIME_CANDIDATES) * min(PILOT_PAIRS, config.num_samples)
    shards = sum(len(level.shards) for level in tree_levels(config.num_shards, config.tree))
    return shards * proposals * (2 + PILOT_POINTS + config.max_poisson_points) * (1 + dim)


def fuse_tree(key: Array, sharded: ShardedTarget, draws: Array, config: MCFusionConfig) -> Any:
    """The shards' draws (S, n, d) fused up the tree: the root's weighted draws and
    log weights, and per fusion (all levels, in order) the stats of :class:`Fused`."""
    levels = tree_levels(config.num_shards, config.tree)
    nodes, stats = draws, []
    for index, level in enumerate(levels):
        key, level_key, resample_key = jax.random.split(key, 3)
        fused = fuse_level(
            level_key, sharded, level, nodes, config.fusion_time, config.max_poisson_points
        )
        stats.append(fused)
        if index == len(levels) - 1:
            break
        resample_keys = jax.random.split(resample_key, len(level.fusions))

        def resample(k: Array, positions: Array, log_weights: Array) -> Array:
            weights = jax.nn.softmax(log_weights)
            return positions[systematic(k, weights, positions.shape[0])]

        resampled = jax.vmap(resample)(resample_keys, fused.positions, fused.log_weights)
        # the next level's nodes in order: each group's fusion, or its waiting node
        fusion_index = {group: f for f, group in enumerate(level.fusions)}
        nodes = jnp.stack(
            [resampled[fusion_index[g]] if len(g) > 1 else nodes[g[0]] for g in level.groups]
        )
    per_fusion = {
        f"fusion_{name}": jnp.concatenate([getattr(f, name) for f in stats])
        for name in ("negative_weight", "truncated", "ess", "time")
    }
    return fused.positions[0], fused.log_weights[0], per_fusion


@register("mc_fusion", MCFusionConfig, family="importance", needs_minibatch=True)
def run_mc_fusion(
    key: Array, target: Target, config: MCFusionConfig, layout: ChainLayout | None = None
) -> Draws:
    """Monte Carlo fusion (Dai, Pollock and Roberts 2019) in the importance-weighted,
    preconditioned, divide-and-conquer form of Chan, Pollock, Johansen and Roberts (2021):
    each shard's sub-posterior sampled by ``subposterior_sampler`` (NUTS), then fused up a
    tree (``tree``), the ``g``-th draws of a fusion's children joined into one proposal
    ``y ~ N(xbar, T / C)`` weighted by ``rho_0`` and a Poisson estimate of each child's
    bridge expectation (module docstring). Returns ``num_samples`` weighted draws per
    run; ``path_stats`` has, per fusion, its time, the share of weight lost to negative
    estimates and its weights' ESS, the final weights' k-hat and ESS, and each shard's
    divergences and acceptance rate. No log Z (the sub-posteriors' constants are unknown).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("logistic_breast_cancer", "mc_fusion", num_chains=2,
        ...               num_samples=100, num_warmup=100, max_poisson_points=4,
        ...               fusion_time=1.0)
        >>> r.log_weights.shape, r.idata.path_stats["fusion_time"].shape  # 3 fusions
        ((2, 100), (2, 3))
    """
    sharded = sharded_target(target, config, layout)
    intermediate = sum(len(level.fusions) for level in tree_levels(config.num_shards, config.tree))
    intermediate -= 1

    def one_run(run_key: Array) -> tuple[Any, ...]:
        sub_key, fuse_key = jax.random.split(run_key)
        runs = sharded.subposteriors(sub_key, config)
        positions, log_weights, per_fusion = fuse_tree(fuse_key, sharded, runs.positions, config)
        lp = jax.vmap(sharded.full_log_density)(positions)
        path = dict(per_fusion)
        if intermediate:  # the resampled fusions below the root: the verdict's path_ess
            path["lowest_path_ess"] = jnp.min(path["fusion_ess"][:intermediate])[None]
            path["resamplings"] = jnp.full(1, intermediate)
        return positions, lp, log_weights, path, runs

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
