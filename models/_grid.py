"""Ground truth on a grid for low-dimensional targets: quadrature and grid-based samplers.

Quadrature is the trapezoid rule in float64 on a box outside which the density is
negligible; for smooth densities that decay at the box edges the trapezoid rule converges
faster than any power of the spacing, so halving the spacing checks the digits.

Exact sampling draws from the piecewise-linear (1-D) or bilinear (2-D) interpolant of the
density on the grid: a cell is chosen by its interpolant mass (inverse CDF), then the point
inside the cell by the inverse CDF of the linear interpolant, which is solvable in closed
form. The only approximation is interpolation, whose total-variation distance to the true
density is O(h^2) in the spacing h; :func:`interpolation_tv_1d` and
:func:`interpolation_tv_2d` measure it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

Array = jax.Array


def trapezoid_log_z_1d(log_f: Callable[[np.ndarray], np.ndarray], grid: np.ndarray) -> float:
    """log of the trapezoid-rule integral of ``exp(log_f)`` over an evenly spaced ``grid``.

    Example:
        >>> grid = np.linspace(-10, 10, 2001)
        >>> round(trapezoid_log_z_1d(lambda x: -0.5 * x**2, grid), 6)
        0.918939
    """
    values = log_f(grid)
    weights = np.full(grid.size, grid[1] - grid[0])
    weights[[0, -1]] *= 0.5
    return float(logsumexp(values, b=weights))


def trapezoid_log_z_2d(
    log_f: Callable[[np.ndarray, np.ndarray], np.ndarray], grid1: np.ndarray, grid2: np.ndarray
) -> float:
    """log of the 2-D trapezoid-rule integral of ``exp(log_f(x1, x2))`` on a tensor grid.

    Example:
        >>> g = np.linspace(-10, 10, 801)
        >>> round(trapezoid_log_z_2d(lambda a, b: -0.5 * (a**2 + b**2), g, g), 6)
        1.837877
    """
    x1, x2 = np.meshgrid(grid1, grid2, indexing="ij")
    w1 = np.full(grid1.size, grid1[1] - grid1[0])
    w1[[0, -1]] *= 0.5
    w2 = np.full(grid2.size, grid2[1] - grid2[0])
    w2[[0, -1]] *= 0.5
    return float(logsumexp(log_f(x1, x2), b=np.outer(w1, w2)))


def _linear_inverse_cdf(left: Array, right: Array, r: Array) -> Array:
    """Point u in [0, 1] with CDF r under the density proportional to left (1-u) + right u."""
    # the root of (right-left)/2 u^2 + left u = r (left+right)/2, in a form stable at left=right
    denominator = left + jnp.sqrt((1.0 - r) * left**2 + r * right**2)
    u = r * (left + right) / jnp.where(denominator > 0, denominator, 1.0)
    return jnp.clip(jnp.where(denominator > 0, u, r), 0.0, 1.0)


def _cdf(masses: np.ndarray) -> np.ndarray:
    # rows whose density underflowed to zero are never chosen; give them a uniform CDF
    masses = np.where(masses.sum(axis=-1, keepdims=True) > 0, masses, 1.0)
    cdf = np.cumsum(masses, axis=-1)
    return cdf / cdf[..., -1:]


def grid_sampler_1d(
    log_f: Callable[[np.ndarray], np.ndarray], grid: np.ndarray
) -> Callable[[Array, int], Array]:
    """Sampler ``(key, n) -> (n,)`` for the piecewise-linear interpolant of ``exp(log_f)``.

    Example:
        >>> sample = grid_sampler_1d(lambda x: -0.5 * x**2, np.linspace(-8, 8, 4097))
        >>> sample(jax.random.key(0), 3).shape
        (3,)
    """
    log_values = log_f(grid)
    values = np.exp(log_values - np.max(log_values))
    masses = 0.5 * (values[:-1] + values[1:])
    cdf = jnp.asarray(_cdf(masses), dtype=jnp.float32)
    values = jnp.asarray(values, dtype=jnp.float32)
    start, spacing, num_cells = float(grid[0]), float(grid[1] - grid[0]), masses.size

    def sample(key: Array, n: int) -> Array:
        key_cell, key_within = jax.random.split(key)
        cell = jnp.searchsorted(cdf, jax.random.uniform(key_cell, (n,)), side="right")
        cell = jnp.minimum(cell, num_cells - 1)
        u = _linear_inverse_cdf(
            values[cell], values[cell + 1], jax.random.uniform(key_within, (n,))
        )
        return start + spacing * (cell + u)

    return sample


def _batched_searchsorted(cdf: Array, rows: Array, r: Array) -> Array:
    """For each draw, the first column j with ``cdf[rows, j] > r`` (binary search, O(n) memory)."""
    num_columns = cdf.shape[1]
    low = jnp.zeros_like(rows)
    high = jnp.full_like(rows, num_columns - 1)

    def step(_: int, bounds: tuple[Array, Array]) -> tuple[Array, Array]:
        low, high = bounds
        mid = (low + high) // 2
        above = cdf[rows, mid] > r
        open_ = low < high
        return (
            jnp.where(open_ & ~above, mid + 1, low),
            jnp.where(open_ & above, mid, high),
        )

    low, _ = jax.lax.fori_loop(0, math.ceil(math.log2(num_columns)) + 1, step, (low, high))
    return low


def grid_sampler_2d(
    log_f: Callable[[np.ndarray, np.ndarray], np.ndarray], grid1: np.ndarray, grid2: np.ndarray
) -> Callable[[Array, int], Array]:
    """Sampler ``(key, n) -> (n, 2)`` for the bilinear interpolant of ``exp(log_f(x1, x2))``.

    A cell is chosen by its mass (the row by the marginal inverse CDF, then the column by
    the row's conditional inverse CDF); inside the cell the bilinear density's u-marginal is
    linear, and so is v given u, so both are drawn by closed-form inverse CDFs.

    Example:
        >>> g = np.linspace(-8, 8, 257)
        >>> sample = grid_sampler_2d(lambda a, b: -0.5 * (a**2 + b**2), g, g)
        >>> sample(jax.random.key(0), 5).shape
        (5, 2)
    """
    x1, x2 = np.meshgrid(grid1, grid2, indexing="ij")
    log_values = log_f(x1, x2)
    values = np.exp(log_values - np.max(log_values))
    cell_masses = 0.25 * (values[:-1, :-1] + values[1:, :-1] + values[:-1, 1:] + values[1:, 1:])
    row_cdf = jnp.asarray(_cdf(cell_masses.sum(axis=1)), dtype=jnp.float32)
    column_cdf = jnp.asarray(_cdf(cell_masses), dtype=jnp.float32)
    values = jnp.asarray(values, dtype=jnp.float32)
    start = jnp.asarray([grid1[0], grid2[0]], dtype=jnp.float32)
    spacing = jnp.asarray([grid1[1] - grid1[0], grid2[1] - grid2[0]], dtype=jnp.float32)
    num_rows = cell_masses.shape[0]

    def sample(key: Array, n: int) -> Array:
        key_row, key_column, key_u, key_v = jax.random.split(key, 4)
        row = jnp.searchsorted(row_cdf, jax.random.uniform(key_row, (n,)), side="right")
        row = jnp.minimum(row, num_rows - 1)
        column = _batched_searchsorted(column_cdf, row, jax.random.uniform(key_column, (n,)))
        f00, f10 = values[row, column], values[row + 1, column]
        f01, f11 = values[row, column + 1], values[row + 1, column + 1]
        u = _linear_inverse_cdf(
            0.5 * (f00 + f01), 0.5 * (f10 + f11), jax.random.uniform(key_u, (n,))
        )
        v = _linear_inverse_cdf(
            f00 * (1 - u) + f10 * u, f01 * (1 - u) + f11 * u, jax.random.uniform(key_v, (n,))
        )
        cell = jnp.stack([row + u, column + v], axis=1)
        return start + spacing * cell

    return sample


def interpolation_tv_1d(
    log_f: Callable[[np.ndarray], np.ndarray], grid: np.ndarray, refine: int = 8
) -> float:
    """Total-variation distance between the normalised density and its grid interpolant.

    Evaluated by the trapezoid rule on a grid ``refine`` times finer.
    """
    fine = np.linspace(grid[0], grid[-1], (grid.size - 1) * refine + 1)
    log_z = trapezoid_log_z_1d(log_f, fine)
    exact = np.exp(log_f(fine) - log_z)
    coarse = np.exp(log_f(grid) - log_z)
    interpolant = np.interp(fine, grid, coarse)
    interpolant /= np.trapezoid(interpolant, fine)
    return float(0.5 * np.trapezoid(np.abs(exact - interpolant), fine))


def interpolation_tv_2d(
    log_f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    grid1: np.ndarray,
    grid2: np.ndarray,
    refine: int = 4,
) -> float:
    """Total-variation distance between the normalised 2-D density and its bilinear
    interpolant on the grid, by the trapezoid rule on a grid ``refine`` times finer."""
    from scipy.interpolate import RegularGridInterpolator

    fine1 = np.linspace(grid1[0], grid1[-1], (grid1.size - 1) * refine + 1)
    fine2 = np.linspace(grid2[0], grid2[-1], (grid2.size - 1) * refine + 1)
    x1, x2 = np.meshgrid(fine1, fine2, indexing="ij")
    exact = np.exp(log_f(x1, x2))
    coarse = np.exp(log_f(*np.meshgrid(grid1, grid2, indexing="ij")))
    interpolant = RegularGridInterpolator((grid1, grid2), coarse)((x1, x2))
    exact /= np.trapezoid(np.trapezoid(exact, fine2, axis=1), fine1)
    interpolant /= np.trapezoid(np.trapezoid(interpolant, fine2, axis=1), fine1)
    difference = np.abs(exact - interpolant)
    return float(0.5 * np.trapezoid(np.trapezoid(difference, fine2, axis=1), fine1))


def grid_moments_2d(
    log_f: Callable[[np.ndarray, np.ndarray], np.ndarray], grid1: np.ndarray, grid2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of (x1, x2) under ``exp(log_f)`` by the trapezoid rule."""
    x1, x2 = np.meshgrid(grid1, grid2, indexing="ij")
    log_values = log_f(x1, x2)
    w1 = np.full(grid1.size, 1.0)
    w1[[0, -1]] = 0.5
    w2 = np.full(grid2.size, 1.0)
    w2[[0, -1]] = 0.5
    weights = np.outer(w1, w2) * np.exp(log_values - np.max(log_values))
    weights /= weights.sum()
    mean = np.array([np.sum(weights * x1), np.sum(weights * x2)])
    var = np.array([np.sum(weights * (x1 - mean[0]) ** 2), np.sum(weights * (x2 - mean[1]) ** 2)])
    return mean, np.sqrt(var)
