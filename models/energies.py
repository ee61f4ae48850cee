"""Low-dimensional energies with ground truth from quadrature: the double well and the many-well
product of double wells, and the four 2-D energies of Rezende and Mohamed (2015).

Where no closed form exists, ``log Z`` and the reference moments come from the trapezoid
rule in float64 on a box outside which the density is negligible (the digits are checked by
halving the spacing, see ``benchmarks/references.py``), and exact samples from the grid
interpolant of the density (``models/_grid.py``), whose total-variation distance to the
true density is stated in each docstring.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bayeswb.core.config import one_line
from bayeswb.core.target import Reference, Target
from bayeswb.models import register
from bayeswb.models._grid import (
    grid_moments_2d,
    grid_sampler_1d,
    grid_sampler_2d,
    trapezoid_log_z_1d,
    trapezoid_log_z_2d,
)

Array = jax.Array

# ---------------------------------------------------------------------------------------
# double well and many-well

# quadrature box and spacing for the double-well factor exp(-x^4 + 6 x^2 + 0.5 x): outside
# [-6, 6] it is below exp(-1000) of its peak
_WELL_QUADRATURE_GRID = np.linspace(-6.0, 6.0, 24001)
# the sampling grid: outside [-4, 4] the factor is below exp(-84) of its peak; 2^14 cells
_WELL_SAMPLING_GRID = np.linspace(-4.0, 4.0, 2**14 + 1)
_LOG_2PI = math.log(2 * math.pi)


def double_well_log_factor(x1: Any) -> Any:
    """``-x1^4 + 6 x1^2 + 0.5 x1``: the unnormalised log density of one double-well coordinate.

    Works on numpy and JAX arrays.
    """
    return -(x1**4) + 6.0 * x1**2 + 0.5 * x1


@functools.cache
def _double_well_factor_truth() -> dict[str, float]:
    grid = _WELL_QUADRATURE_GRID
    log_z = trapezoid_log_z_1d(double_well_log_factor, grid)
    weights = np.exp(double_well_log_factor(grid) - log_z) * (grid[1] - grid[0])
    mean = float(np.sum(weights * grid))
    sd = float(np.sqrt(np.sum(weights * (grid - mean) ** 2)))
    return {"log_z": log_z, "mean": mean, "sd": sd}


@functools.cache
def _double_well_factor_sampler() -> Callable[[Array, int], Array]:
    return grid_sampler_1d(double_well_log_factor, _WELL_SAMPLING_GRID)


def double_well_free_energy(x1: Any) -> Any:
    """Exact free-energy profile of the double well along x1 (units of kT).

    ``F(x1) = -log p(x1) = x1^4 - 6 x1^2 - 0.5 x1 + log Z1``, where ``p(x1)`` is the
    normalised marginal density of x1 (x2 is an independent standard normal) and
    ``Z1 = int exp(-x^4 + 6 x^2 + 0.5 x) dx ~ 11784.509`` by quadrature. Works on numpy
    and JAX arrays.

    Example:
        >>> round(float(double_well_free_energy(0.0)), 4)
        9.3745
    """
    return -double_well_log_factor(x1) + _double_well_factor_truth()["log_z"]


def _well_ground_truth_note() -> dict[str, str]:
    return {
        "log_z": "trapezoid rule in float64 on [-6, 6] with 24001 points for the x1 factor "
        "(agrees with scipy.integrate.quad to 1e-12 relative); x2 factor sqrt(2 pi)",
        "sample_exact": "x1 by inverse CDF of the piecewise-linear interpolant on 2^14 cells "
        "of [-4, 4] (total-variation error 2.3e-7); x2 standard normal",
        "reference": "x1 moments by the same quadrature; x2 exact",
    }


@register("double_well")
def double_well() -> Target:
    """2-D double well of Wu, Koehler and Noe (2020), "Stochastic Normalizing Flows",
    NeurIPS, sec. 5 (the same density as one pair of ``manywell``):

    ``log p(x) = -x1^4 + 6 x1^2 + 0.5 x1 - 0.5 x2^2`` (unnormalised).

    ``log Z = log Z1 + log(2 pi) / 2`` with ``Z1 ~ 11784.509`` from quadrature;
    exact samples: x1 by grid inverse CDF (total-variation error 2.3e-7), x2 ~ N(0, 1).
    The exact free-energy profile along x1 is :func:`double_well_free_energy`, also in
    ``metadata["free_energy"]``.

    Example:
        >>> t = double_well()
        >>> t.dim, round(t.log_z, 4)
        (2, 10.2935)
    """
    truth = _double_well_factor_truth()
    sample_x1 = _double_well_factor_sampler()

    def log_density(x: Array) -> Array:
        return double_well_log_factor(x[0]) - 0.5 * x[1] ** 2

    def sample_exact(key: Array, n: int) -> Array:
        key1, key2 = jax.random.split(key)
        return jnp.stack([sample_x1(key1, n), jax.random.normal(key2, (n,))], axis=1)

    return Target.from_logdensity(
        log_density,
        2,
        name="double_well",
        log_z=truth["log_z"] + 0.5 * _LOG_2PI,
        sample_exact=sample_exact,
        reference=Reference(
            mean={"x": np.array([truth["mean"], 0.0])},
            sd={"x": np.array([truth["sd"], 1.0])},
            source="quadrature (x1), exact (x2)",
        ),
        truth_sources=_well_ground_truth_note(),
        metadata={
            "params": {},
            "free_energy": double_well_free_energy,
        },
    )


@register("manywell")
def manywell(dim: int = 32) -> Target:
    """Many-well target of Midgley et al. (2023), "Flow Annealed Importance Sampling
    Bootstrap", ICLR, sec. 4.3: a product of ``dim/2`` independent double wells
    (:func:`double_well`), ``2^(dim/2)`` modes.

    ``log p(x) = sum_k [-a_k^4 + 6 a_k^2 + 0.5 a_k - 0.5 b_k^2]`` with
    ``a = x[0::2]`` (double-well coordinates) and ``b = x[1::2]`` (Gaussian coordinates).
    ``log Z = dim/2 (log Z1 + log(2 pi)/2)`` with ``Z1 ~ 11784.509`` by quadrature, so
    ``log Z = 164.6957`` at dim 32. Exact samples: each ``a_k`` by grid inverse CDF
    (total-variation error per coordinate 2.3e-7), each ``b_k`` standard normal.

    Example:
        >>> round(manywell().log_z, 4)
        164.6957
    """
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even integer >= 2, got {one_line(dim)}")
    truth = _double_well_factor_truth()
    sample_x1 = _double_well_factor_sampler()
    num_wells = dim // 2

    def log_density(x: Array) -> Array:
        return jnp.sum(double_well_log_factor(x[0::2])) - 0.5 * jnp.sum(x[1::2] ** 2)

    def sample_exact(key: Array, n: int) -> Array:
        key1, key2 = jax.random.split(key)
        wells = sample_x1(key1, n * num_wells).reshape(n, num_wells)
        gaussians = jax.random.normal(key2, (n, num_wells))
        return jnp.stack([wells, gaussians], axis=2).reshape(n, dim)

    mean = np.zeros(dim)
    mean[0::2] = truth["mean"]
    sd = np.ones(dim)
    sd[0::2] = truth["sd"]
    return Target.from_logdensity(
        log_density,
        dim,
        name="manywell",
        log_z=num_wells * (truth["log_z"] + 0.5 * _LOG_2PI),
        sample_exact=sample_exact,
        reference=Reference(
            mean={"x": mean}, sd={"x": sd}, source="quadrature (x[0::2]), exact (x[1::2])"
        ),
        truth_sources=_well_ground_truth_note(),
        metadata={
            "params": {"dim": dim},
            "free_energy": double_well_free_energy,
        },
    )


# ---------------------------------------------------------------------------------------
# Rezende and Mohamed (2015), Table 1


def _w1(z1: Any, xp: Any) -> Any:
    return xp.sin(2 * math.pi * z1 / 4)


def _w2(z1: Any, xp: Any) -> Any:
    return 3.0 * xp.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)


def _w3(z1: Any, xp: Any) -> Any:
    # 3 sigmoid((z1 - 1) / 0.3), written with tanh: the exp form overflows in float32 for
    # z1 < -26 and its gradient becomes NaN there
    return 1.5 * (1.0 + xp.tanh((z1 - 1.0) / 0.6))


REZENDE_WALL = 4.0
"""U2-U4 depend on z1 only through bounded or periodic functions, so exp(-U) has no
confinement along z1 and is not integrable (the paper only plots them on [-4, 4]^2).
Outside ``|z1| <= 4`` (that plotting window) we add the smooth wall
``0.5 ((|z1| - 4)_+ / 0.1)^2``: a half-Gaussian of sd 0.1 beyond the window, so the
density is unchanged inside it, proper, continuously differentiable (gradient samplers
need no box constraint), and beyond |z1| = 4.6 it is exp(-18) below the density at
|z1| = 4. log Z, the moments and the exact samples are those of this walled density.
Since U2-U4 are Gaussian in z2 with a z1-free normaliser, the walled log Z also has a
closed form, ``log((8 + 0.1 sqrt(2 pi)) c sqrt(2 pi))`` with c = 0.4, 0.7, 0.75 for
U2, U3, U4, which the quadrature matches to 1e-13 (tests/models/test_exact_targets.py)."""
REZENDE_WALL_WIDTH = 0.1


def _wall(z1: Any, xp: Any) -> Any:
    return 0.5 * (xp.maximum(xp.abs(z1) - REZENDE_WALL, 0.0) / REZENDE_WALL_WIDTH) ** 2


def _u1(z1: Any, z2: Any, xp: Any) -> Any:
    radius = xp.sqrt(z1**2 + z2**2)
    return 0.5 * ((radius - 2.0) / 0.4) ** 2 - xp.logaddexp(
        -0.5 * ((z1 - 2.0) / 0.6) ** 2, -0.5 * ((z1 + 2.0) / 0.6) ** 2
    )


def _u2(z1: Any, z2: Any, xp: Any) -> Any:
    return 0.5 * ((z2 - _w1(z1, xp)) / 0.4) ** 2 + _wall(z1, xp)


def _u3(z1: Any, z2: Any, xp: Any) -> Any:
    w1 = _w1(z1, xp)
    return -xp.logaddexp(
        -0.5 * ((z2 - w1) / 0.35) ** 2, -0.5 * ((z2 - w1 + _w2(z1, xp)) / 0.35) ** 2
    ) + _wall(z1, xp)


def _u4(z1: Any, z2: Any, xp: Any) -> Any:
    w1 = _w1(z1, xp)
    return -xp.logaddexp(
        -0.5 * ((z2 - w1) / 0.4) ** 2, -0.5 * ((z2 - w1 + _w3(z1, xp)) / 0.35) ** 2
    ) + _wall(z1, xp)


_REZENDE_ENERGIES = {1: _u1, 2: _u2, 3: _u3, 4: _u4}
# boxes outside which exp(-U) is below exp(-30) of its peak (U1: the ring of radius 2 and
# width 0.4 ends inside radius 5; U2-U4: the wall; U3, U4: the lower branch reaches -4)
_REZENDE_BOX = ((-6.0, 6.0), (-8.0, 8.0))
_REZENDE_QUADRATURE_POINTS = (1201, 1601)  # spacing 0.01
_REZENDE_SAMPLING_POINTS = (1025, 1025)  # 1024 x 1024 cells


def rezende_log_density_numpy(k: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``-U_k(z1, z2)`` on numpy arrays (float64), for quadrature."""
    energy = _REZENDE_ENERGIES[k]
    return lambda z1, z2: -energy(z1, z2, np)


def _rezende_grids(points: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    (lo1, hi1), (lo2, hi2) = _REZENDE_BOX
    return np.linspace(lo1, hi1, points[0]), np.linspace(lo2, hi2, points[1])


@functools.cache
def _rezende_truth(k: int) -> dict[str, Any]:
    log_f = rezende_log_density_numpy(k)
    grid1, grid2 = _rezende_grids(_REZENDE_QUADRATURE_POINTS)
    mean, sd = grid_moments_2d(log_f, grid1, grid2)
    return {"log_z": trapezoid_log_z_2d(log_f, grid1, grid2), "mean": mean, "sd": sd}


@functools.cache
def _rezende_sampler(k: int) -> Callable[[Array, int], Array]:
    return grid_sampler_2d(rezende_log_density_numpy(k), *_rezende_grids(_REZENDE_SAMPLING_POINTS))


# total-variation distance of the bilinear sampling interpolant to the true density,
# measured by benchmarks/references.py (interpolation_tv_2d, refine=4)
_REZENDE_SAMPLING_TV = {1: 5.3e-5, 2: 1.2e-4, 3: 1.4e-4, 4: 1.4e-4}


def _rezende(k: int) -> Target:
    energy = _REZENDE_ENERGIES[k]
    truth = _rezende_truth(k)
    sampler = _rezende_sampler(k)
    name = f"rezende_u{k}"

    def log_density(x: Array) -> Array:
        return -energy(x[0], x[1], jnp)

    return Target.from_logdensity(
        log_density,
        2,
        name=name,
        log_z=truth["log_z"],
        sample_exact=sampler,
        reference=Reference(
            mean={"x": truth["mean"]}, sd={"x": truth["sd"]}, source="quadrature (trapezoid)"
        ),
        truth_sources={
            "log_z": "trapezoid rule in float64 on [-6, 6] x [-8, 8], spacing 0.01 "
            "(halving the spacing changes it by less than 1e-13)"
            + (
                ""
                if k == 1
                else "; of the density with the wall 0.5 ((|z1| - 4)_+ / 0.1)^2 that "
                "confines z1 (the paper's U is not integrable along z1)"
            ),
            "sample_exact": "bilinear interpolant on 1024 x 1024 cells, cell by inverse "
            "CDF then closed-form inverse CDFs within the cell; total-variation "
            f"distance to the density {_REZENDE_SAMPLING_TV[k]:.1e}",
            "reference": "mean and sd by the same quadrature",
        },
        metadata={
            "params": {},
        },
    )


@register("rezende_u1")
def rezende_u1() -> Target:
    """Energy U1 of Rezende and Mohamed (2015), "Variational Inference with Normalizing
    Flows", ICML, Table 1: a ring of radius 2 split into two lobes,

    ``U1(z) = 0.5 ((|z| - 2) / 0.4)^2 - log(exp(-0.5 ((z1 - 2)/0.6)^2)
    + exp(-0.5 ((z1 + 2)/0.6)^2))``, density ``exp(-U1)`` on R^2.

    log Z and moments by the trapezoid rule on [-6, 6] x [-8, 8] (spacing 0.01); exact
    samples from the bilinear grid interpolant (total-variation error 5.3e-5; 1.2e-4 to
    1.4e-4 for U2-U4).

    Example:
        >>> t = rezende_u1()
        >>> t.dim, round(t.log_z, 3)
        (2, 1.878)
    """
    return _rezende(1)


@register("rezende_u2")
def rezende_u2() -> Target:
    """Energy U2 of Rezende and Mohamed (2015), Table 1: a sine-shaped ridge,
    ``U2(z) = 0.5 ((z2 - w1(z)) / 0.4)^2`` with ``w1(z) = sin(2 pi z1 / 4)``.

    exp(-U2) is periodic in z1 and not integrable, so z1 is confined to [-4, 4] (the
    paper's plotting window) by the smooth wall ``0.5 ((|z1| - 4)_+ / 0.1)^2``. Ground
    truth as for :func:`rezende_u1`.

    Example:
        >>> t = rezende_u2()
        >>> t.dim, round(t.log_z, 3)
        (2, 2.113)
    """
    return _rezende(2)


@register("rezende_u3")
def rezende_u3() -> Target:
    """Energy U3 of Rezende and Mohamed (2015), Table 1: two ridges that split,
    ``U3(z) = -log(exp(-0.5 ((z2 - w1)/0.35)^2) + exp(-0.5 ((z2 - w1 + w2)/0.35)^2))``,
    ``w1 = sin(2 pi z1 / 4)``, ``w2 = 3 exp(-0.5 ((z1 - 1)/0.6)^2)``; z1 confined to
    [-4, 4] by the wall of :func:`rezende_u2`. Ground truth as for :func:`rezende_u1`.

    Example:
        >>> t = rezende_u3()
        >>> t.dim
        2
    """
    return _rezende(3)


@register("rezende_u4")
def rezende_u4() -> Target:
    """Energy U4 of Rezende and Mohamed (2015), Table 1: a ridge and a shifted ridge,
    ``U4(z) = -log(exp(-0.5 ((z2 - w1)/0.4)^2) + exp(-0.5 ((z2 - w1 + w3)/0.35)^2))``,
    ``w3 = 3 sigmoid((z1 - 1)/0.3)``; z1 confined to [-4, 4] by the wall of
    :func:`rezende_u2`. Ground truth as for :func:`rezende_u1`.

    Example:
        >>> t = rezende_u4()
        >>> t.dim
        2
    """
    return _rezende(4)
