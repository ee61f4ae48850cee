"""The density-peak search behind the verdict's ``density_peak`` check: does the target
have a region of far higher density than any draw came near?

A sampler that never enters a narrow region (a funnel's neck, a spike, a narrow mode)
cannot see what it misses: its weights, chains and runs agree with each other, and
every other check passes. The density itself can tell. From the draws of highest log
density, L-BFGS (:func:`bayeswb.core.climb.lbfgs_climb`) climbs the target's log density;
the check (:func:`bayeswb.core.verdict.diagnose`) compares the highest log density it
reaches with the best draw's. For a log-concave target the gap is almost never large:
with ``gap(x) = max log p - log p(x)``, ``E gap(X) <= d`` and ``Var gap(X) <= d`` for
``X ~ p`` in ``d`` dimensions (Fradelizi, Madiman and Wang 2016, "Optimal concentration
of information content for log-concave densities", Theorems 1.1 and 2.3), so by
Cantelli's inequality ``P(gap(X) > d + sqrt(d)) <= 1/2`` for one draw, and at most
``2^-n`` for the best of n independent draws. A larger gap says the target is not
log-concave and holds density where the run never went: its mass may be missing.

The same climbs from ``FAR_STARTS`` wide starts (``N(0, s^2 I)``, ``s`` the density's
reach along rays from the origin, :func:`bayeswb.core.probe.probe_scale`) and from
``WIDER_STARTS`` at 4 and 16 times that scale look for the peaks of modes the run never
visited. The wider starts find a mode the rays missed: the modes of an equal mixture of
``N(0, I)`` and ``N((35, 0), I)`` in 2-d, where the rays' radii 32 and 45 pass 3 sds
either side of the far mode; smc with its automatic reference missed that mode (log Z off
by log 2) and, before them, the verdict said "fine". The highest peak where the run
never went (:func:`unvisited_peaks`) feeds the ``unvisited_mode`` check. A peak where a
climb from the draws ended too is the narrow region ``density_peak`` reports, not another
mode: on the dim-10 funnel every wide start climbed to where the climbs from the draws
ended (0.002 draw sds or less, 9.8 from the draws), and on eight_schools_centered and
brownian_motion, whose densities rise without bound as the group scale shrinks, the wide
climbs ended 0.2-4.5 draw sds from the draws' climbs and 12-21 from the draws. On the
default smc and nuts runs of the 20 registry models (seed 0) the check as it now stands
fails on manywell (both) and gmm25 (nuts), runs that miss modes, and no longer on the
funnel, eight_schools_centered and brownian_motion, where ``density_peak`` fails.

The search costs one log-density evaluation per draw and per probe point (no gradient)
and at most ``(STARTS + FAR_STARTS + len(WIDER_STARTS)) x ITERATIONS`` L-BFGS iterations;
it is a diagnostic, so it is not in the sampler's cost counters. Its result is stored in the
run's InferenceData (attributes of ``unconstrained_posterior``), so a saved and loaded
run keeps its check.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from bayeswb.core.brief_programs import brief_jit
from bayeswb.core.climb import lbfgs_climb
from bayeswb.core.probe import probe_points, scale_from_probe
from bayeswb.core.result import Result
from bayeswb.core.target import Target
from bayeswb.core.verdict import (
    BEST_DRAW_ATTRIBUTE,
    PEAK_ATTRIBUTE,
    UNVISITED_PEAK_ATTRIBUTE,
    UNVISITED_PEAK_RADIUS_ATTRIBUTE,
)

Array = jax.Array

STARTS = 4
ITERATIONS = 300
# climbs from N(0, s^2 I), s the probe's reach of the density (core/probe.py), and 8
# more from each of N(0, (4 s)^2 I) and N(0, (16 s)^2 I): a mode farther out than the
# probe's rays saw (they pass between its radii or its directions) is climbed to from
# there, where its basin is wide
FAR_STARTS = 16
WIDER_STARTS = (4.0,) * 8 + (16.0,) * 8
# a peak lies where the run never went when it is this far from every draw (in the
# draws' sd per coordinate, root mean square) or this far beyond every draw along its
# line from their mean (in the draws' sd along it); a climb's end is a peak when its
# gradient times the draws' sd is below FLAT in every coordinate (unvisited_peaks)
UNVISITED_DISTANCE = 5.0
BEYOND = 3.0
FLAT = 1.0
COMPARED_DRAWS = 2000
EVALUATION_BATCH = 4096


def map_without_remainder(fn: Callable[[Array], Array], points: Array, batch: int) -> Array:
    """``fn`` over the rows of ``points`` in batches of at most ``batch``, as
    ``jax.lax.map(fn, points, batch_size=...)`` but with the rows padded (copies of the
    last) to whole batches, so that no remainder batch runs beside the scan.

    Why: ``lax.map`` with a remainder evaluates it as an independent vmap, which XLA's
    CPU runtime may run at the same time as the scan. Where ``fn`` holds a batched LAPACK
    call (gp_regression's Cholesky), each of the two then waits for helper tasks on the
    intra-op thread pool; with two pool threads (2 cores) both threads wait and none is
    left to help. Measured with mams on gp_regression (4 x 1000 draws, seed 0, a new
    process each run): 3 of 11 runs hung in this program, every thread idle and the two
    pool threads inside jaxlib's ``ParallelBatchMap`` under ``lapack_spotrf_ffi``;
    0 of 20 with the padding.

    Example:
        >>> out = map_without_remainder(lambda x: x.sum(), jnp.arange(10.0).reshape(5, 2), 2)
        >>> out.tolist()
        [1.0, 5.0, 9.0, 13.0, 17.0]
    """
    count = points.shape[0]
    batch = max(1, min(batch, count))
    padding = -count % batch
    padded = jnp.concatenate([points, jnp.repeat(points[-1:], padding, axis=0)])
    return jax.lax.map(fn, padded, batch_size=batch)[:count]


def record_density_peak(result: Result, target: Target) -> Result:
    """Search for the target's density peak from ``result``'s best draws and record the
    peak and the best draw's log density on its InferenceData; returns ``result``.

    Skipped (nothing recorded, no check) for a run without draws, a streamed run, or a
    density that JAX cannot differentiate (with a warning saying so).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("funnel", "smc", seed=0, num_chains=2, num_samples=512)
        >>> attrs = r.idata.unconstrained_posterior.attrs
        >>> bool(attrs["peak_log_density"] > attrs["best_draw_log_density"] + 10)
        True
    """
    group = result.idata.unconstrained_posterior
    if group["position"].size == 0 or group["position"].encoding.get("source"):
        return result
    positions = np.asarray(group["position"].values).reshape(-1, target.dim)
    log_weights = result.log_weights
    if log_weights is not None:
        positions = positions[np.isfinite(np.ravel(log_weights))]
    if positions.shape[0] == 0:
        return result
    evaluate, search = _programs(target)
    values = jnp.asarray(positions, dtype=jnp.result_type(float))
    try:
        lp, far = (np.asarray(a) for a in evaluate(values, jax.random.key(0)))
        lp = np.where(np.isnan(lp), -np.inf, lp)
        best = np.argsort(-lp)[:STARTS]
        starts = np.concatenate([positions[best], far]).astype(far.dtype)
        peaks, where, slopes = (np.asarray(a) for a in search(starts))
    except Exception as error:  # a density JAX cannot differentiate must not lose the run
        warnings.warn(f"density_peak check skipped: {type(error).__name__}: {error}", stacklevel=3)
        return result
    group.attrs[PEAK_ATTRIBUTE] = float(np.max(peaks))
    group.attrs[BEST_DRAW_ATTRIBUTE] = float(lp[best[0]])
    far_ends = where[best.size :]
    unvisited = unvisited_peaks(far_ends, slopes[best.size :], where[: best.size], positions)
    unvisited &= ~np.isnan(peaks[best.size :])
    far_peaks = peaks[best.size :][unvisited]
    group.attrs[UNVISITED_PEAK_ATTRIBUTE] = float(np.max(far_peaks, initial=-np.inf))
    if far_peaks.size:
        highest = far_ends[unvisited][np.argmax(far_peaks)]
        group.attrs[UNVISITED_PEAK_RADIUS_ATTRIBUTE] = float(np.linalg.norm(highest))
    return result


def unvisited_peaks(
    ends: np.ndarray, slopes: np.ndarray, draws_ends: np.ndarray, positions: np.ndarray
) -> np.ndarray:
    """Which climbs from the wide starts ended at the peak of a mode the run never
    visited, given where they ended and the log density's gradient there, where the
    climbs from the best draws ended, and the draws. Such a climb ended

    - far from the draws: more than ``UNVISITED_DISTANCE`` draw sds from the nearest in
      root mean square over coordinates, or more than ``BEYOND`` sds beyond every draw
      along the line from their mean (:func:`beyond_draws`, which does not thin out
      with the dimension);
    - not where a climb from the draws ended (nearer to such an end than half its
      distance from the draws): that is ``density_peak``'s region;
    - on a peak: the gradient, times the draws' sd per coordinate, below ``FLAT`` in
      every coordinate. A climb stopped by its iteration cap is not at a peak; on smc's
      runs of horseshoe_diabetes and stochastic_volatility such ends (3.8 and 1.7 nats
      below the best draw, 4.2 and 14.9 sds beyond the draws) had scaled gradients of
      10-340 and a direction of rising density (the Hessian not negative definite); the
      converged peaks of manywell's unvisited modes had 3e-4 to 3e-3.

    Example:
        >>> draws = np.random.default_rng(0).normal(size=(4000, 10))
        >>> far = np.zeros((3, 10)); far[:, 0] = 10.0
        >>> slopes = np.zeros((3, 10)); slopes[1, 0] = 5.0  # the 2nd is no peak
        >>> unvisited_peaks(far, slopes, np.zeros((4, 10)), draws).tolist()
        [True, False, True]
        >>> unvisited_peaks(far, slopes, far[:1], draws).tolist()  # the draws' climbs got there
        [False, False, False]
    """
    distance = distance_to_draws(ends, positions)
    from_draws_ends = distance_to_draws(ends, positions, others=draws_ends)
    far_out = (distance > UNVISITED_DISTANCE) | (beyond_draws(ends, positions) > BEYOND)
    flat = np.max(np.abs(slopes) * _compared(positions)[2], axis=-1) < FLAT
    return far_out & (from_draws_ends >= distance / 2) & flat & np.isfinite(ends).all(axis=1)


def distance_to_draws(
    points: np.ndarray, positions: np.ndarray, others: np.ndarray | None = None
) -> np.ndarray:
    """Each point's distance to its nearest draw (to its nearest of ``others``, if given),
    in the draws' own sd per coordinate (root mean square over coordinates), against at
    most ``COMPARED_DRAWS`` draws.

    Example:
        >>> draws = np.array([[0.0, 0.0], [2.0, 0.0]])  # sd 1 and 0 (taken as 1)
        >>> distance_to_draws(np.array([[2.0, 2.0]]), draws).round(3).tolist()
        [1.414]
        >>> distance_to_draws(np.array([[2.0, 2.0]]), draws, others=np.zeros((1, 2))).tolist()
        [2.0]
    """
    positions, _, sd = _compared(positions)
    if positions.shape[0] == 0:
        return np.full(points.shape[0], np.inf)
    nearest = positions if others is None else np.asarray(others, np.float64)
    z = (points[:, None, :] - nearest[None]) / sd
    return np.sqrt(np.mean(z**2, axis=-1)).min(axis=1)


def _compared(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The finite draws (at most ``COMPARED_DRAWS``, evenly thinned), their mean and their
    sd per coordinate (1 where it is 0)."""
    positions = np.asarray(positions, np.float64)  # a diverged run's draws overflow float32
    positions = positions[np.isfinite(positions).all(axis=1)]
    positions = positions[:: max(1, positions.shape[0] // COMPARED_DRAWS)]
    if positions.shape[0] == 0:
        return positions, np.zeros(positions.shape[1]), np.ones(positions.shape[1])
    sd = positions.std(axis=0)
    return positions, positions.mean(axis=0), np.where(sd > 0, sd, 1.0)


def beyond_draws(points: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """How far each point lies beyond every draw along the line from the draws' mean to it,
    in the draws' sd along that line (coordinates scaled by the draws' sd each); 0 for a
    point within the draws' range on its line. Against at most ``COMPARED_DRAWS`` draws.

    Unlike :func:`distance_to_draws` (root mean square over coordinates), this does not
    thin out with the dimension: a mode 10 sds from the draws in one coordinate of 10 is
    10 - 3.5 (the farthest of 4000 draws) = 6.5 beyond them, but about 2.1 from the
    nearest draw in root mean square.

    Example:
        >>> draws = np.random.default_rng(0).normal(size=(4000, 10))
        >>> far = np.zeros((1, 10)); far[0, 0] = 10.0
        >>> float(beyond_draws(far, draws)[0]) > 5, float(distance_to_draws(far, draws)[0]) < 3
        (True, True)
        >>> beyond_draws(np.zeros((1, 10)), draws).tolist()
        [0.0]
    """
    positions, mean, sd = _compared(positions)
    if positions.shape[0] == 0:
        return np.full(points.shape[0], np.inf)
    z_points = (np.asarray(points, np.float64) - mean) / sd
    reach = np.linalg.norm(z_points, axis=-1)
    along = z_points / np.where(reach > 0, reach, 1.0)[:, None]
    projected = ((positions - mean) / sd) @ along.T  # (draws, points)
    spread = np.maximum(projected.std(axis=0), 1e-12)
    return np.maximum(reach - projected.max(axis=0), 0.0) / spread


# each target's two jitted programs, so that a repeated run does not trace them again
_PROGRAMS: weakref.WeakKeyDictionary[Target, tuple[Callable, Callable]] = (
    weakref.WeakKeyDictionary()
)


def _programs(target: Target) -> tuple[Callable, Callable]:
    if target not in _PROGRAMS:
        dim = target.dim

        @brief_jit
        def evaluate(values: Array, key: Array) -> tuple[Array, Array]:
            """The draws' log densities and the wide starts at multiples of the probe's
            scale (the probe's rays and the origin evaluated in the same program)."""
            probe_key, starts_key = jax.random.split(key)
            rays = probe_points(probe_key, dim).astype(values.dtype)
            origin = jnp.zeros((1, dim), values.dtype)
            points = jnp.concatenate([values, rays.reshape(-1, dim), origin])
            lp = map_without_remainder(target.log_density, points, EVALUATION_BATCH)
            n = values.shape[0]
            scale = scale_from_probe(lp[n:-1].reshape(rays.shape[:2]), lp[-1], dim)
            far = jax.random.normal(starts_key, (FAR_STARTS, dim), values.dtype)
            wider_key = jax.random.fold_in(starts_key, 1)
            wider = jax.random.normal(wider_key, (len(WIDER_STARTS), dim), values.dtype)
            wider = jnp.asarray(WIDER_STARTS, values.dtype)[:, None] * wider
            return lp[:n], scale * jnp.concatenate([far, wider])

        # the starts climb one after another: vmapped, L-BFGS's line-search while loops
        # would run every branch for every start, and took 2-4x longer to trace and up to
        # 1.5x longer to compile (a large share of a small run's cost) for no faster a run
        def climb(start: Array) -> tuple[Array, Array, Array]:
            reached = lbfgs_climb(target.log_density, start, ITERATIONS)
            return reached.top, reached.where, reached.gradient

        search = brief_jit(lambda starts: jax.lax.map(climb, starts))
        _PROGRAMS[target] = (evaluate, search)
    return _PROGRAMS[target]
