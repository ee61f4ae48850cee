"""Synthetic targets with exact answers: log Z, exact samples and exact moments."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from bayeswb.core.config import one_line
from bayeswb.core.target import Reference, Target
from bayeswb.models import register

Array = jax.Array


def _check_dim(dim: object, minimum: int = 1) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < minimum:
        raise ValueError(f"dim must be an integer >= {minimum}, got {one_line(dim)}")


def _check_nonnegative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {one_line(value)}")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {one_line(value)}")


def _random_rotation(dim: int, seed: int) -> np.ndarray:
    """A Haar-distributed orthogonal matrix: QR of a Gaussian matrix with the signs of R's
    diagonal moved into Q (Mezzadri 2007, "How to generate random matrices from the
    classical compact groups")."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


@register("gaussian")
def gaussian(dim: int = 10, condition_number: float = 10.0, rotation: int | None = None) -> Target:
    """Zero-mean Gaussian with covariance ``S = Q diag(v) Q^T``, variances ``v`` log-spaced in
    ``[1/condition_number, 1]`` (so S has that condition number).

    ``rotation=None`` gives ``Q = I`` (axis-aligned); an integer is the seed of a
    Haar-random orthogonal ``Q`` (numpy ``default_rng(rotation)``, QR with sign fix), which
    makes the coordinates correlated. The log density is left unnormalised,
    ``-x^T S^{-1} x / 2``, so ``log Z = dim/2 log(2 pi) + log det(S)/2`` exactly; exact
    samples are ``Q (sqrt(v) * z)``; reference sds are ``sqrt(diag S)``.

    Example:
        >>> t = gaussian(dim=2, condition_number=4.0)
        >>> [round(float(s), 3) for s in t.reference.sd["x"]]
        [0.5, 1.0]
        >>> round(gaussian(dim=2, condition_number=4.0, rotation=0).log_z, 4)
        1.1447
    """
    _check_dim(dim)
    _check_positive("condition_number", condition_number)
    if condition_number < 1:
        raise ValueError(f"condition_number must be >= 1, got {one_line(condition_number)}")
    if rotation is not None and (
        not isinstance(rotation, int | np.integer) or isinstance(rotation, bool) or rotation < 0
    ):
        raise ValueError(
            f"rotation must be None or a non-negative integer seed, got {one_line(rotation)}"
        )
    variances = np.logspace(-math.log10(condition_number), 0.0, dim) if dim > 1 else np.ones(1)
    if rotation is None:
        scales = jnp.asarray(np.sqrt(variances))

        def log_density(x: Array) -> Array:
            return -0.5 * jnp.sum((x / scales) ** 2)

        def sample_exact(key: Array, n: int) -> Array:
            return scales * jax.random.normal(key, (n, dim))

        sd = np.sqrt(variances)
    else:
        q = _random_rotation(dim, int(rotation))
        q_jax = jnp.asarray(q, dtype=jnp.float32)
        scales = jnp.asarray(np.sqrt(variances), dtype=jnp.float32)

        def log_density(x: Array) -> Array:
            return -0.5 * jnp.sum((q_jax.T @ x / scales) ** 2)

        def sample_exact(key: Array, n: int) -> Array:
            return (scales * jax.random.normal(key, (n, dim))) @ q_jax.T

        sd = np.sqrt(np.einsum("ij,j,ij->i", q, variances, q))

    log_z = 0.5 * dim * math.log(2 * math.pi) + float(np.sum(np.log(np.sqrt(variances))))
    return Target.from_logdensity(
        log_density,
        dim,
        name="gaussian",
        log_z=log_z,
        sample_exact=sample_exact,
        reference=Reference(mean={"x": np.zeros(dim)}, sd={"x": sd}, source="exact"),
        truth_sources={
            "log_z": "closed form",
            "sample_exact": "exact (linear map of standard normals)",
            "reference": "closed form",
        },
        metadata={
            "params": {"dim": dim, "condition_number": condition_number, "rotation": rotation},
        },
    )


@register("banana")
def banana(dim: int = 2, curvature: float = 0.03) -> Target:
    """Haario's twisted Gaussian ("banana"): Haario, Saksman and Tamminen (1999), "Adaptive
    proposal distribution for random walk Metropolis algorithm", Comput. Stat. 14, sec. 3.

    ``x = phi_b^{-1}(y)`` with ``y ~ N(0, diag(100, 1, ..., 1))`` and
    ``phi_b(x) = (x_1, x_2 + b x_1^2 - 100 b, x_3, ..., x_dim)``, b = ``curvature``; the
    density is ``N(phi_b(x); 0, diag(100, 1, ..., 1))``. phi_b has unit Jacobian, so the
    density is normalised (``log Z = 0``) and exact samples are ``phi_b^{-1}`` of Gaussian
    draws. Exact moments: all means 0, ``sd(x_1) = 10``,
    ``sd(x_2) = sqrt(1 + 2 * 10^4 b^2)`` (since ``Var(x_1^2) = 2 * 100^2``), other sds 1.
    Haario's b = 0.03 is the default ("moderately twisted"); b = 0.1 is strongly twisted.

    Example:
        >>> t = banana()
        >>> t.dim, t.log_z, round(float(t.reference.sd["x"][1]), 4)
        (2, 0.0, 4.3589)
    """
    _check_dim(dim, minimum=2)
    _check_nonnegative("curvature", curvature)
    scales = np.ones(dim)
    scales[0] = 10.0
    scales_jax = jnp.asarray(scales)
    const = -0.5 * dim * math.log(2 * math.pi) - math.log(10.0)

    def log_density(x: Array) -> Array:
        y = x.at[1].add(curvature * x[0] ** 2 - 100.0 * curvature)
        return const - 0.5 * jnp.sum((y / scales_jax) ** 2)

    def sample_exact(key: Array, n: int) -> Array:
        y = scales_jax * jax.random.normal(key, (n, dim))
        return y.at[:, 1].add(-curvature * y[:, 0] ** 2 + 100.0 * curvature)

    sd = np.ones(dim)
    sd[0] = 10.0
    sd[1] = math.sqrt(1.0 + 2.0e4 * curvature**2)
    return Target.from_logdensity(
        log_density,
        dim,
        name="banana",
        log_z=0.0,
        sample_exact=sample_exact,
        reference=Reference(mean={"x": np.zeros(dim)}, sd={"x": sd}, source="exact"),
        truth_sources={
            "log_z": "closed form (unit-Jacobian map of a normalised Gaussian)",
            "sample_exact": "exact (map of Gaussian draws)",
            "reference": "closed form",
        },
        metadata={
            "params": {"dim": dim, "curvature": curvature},
        },
    )


def mixture_target(
    name: str, means: np.ndarray, variance: float, params: dict, description: str
) -> Target:
    """Equal-weight mixture of ``N(mean_k, variance I)``: normalised, exact everything.

    Example:
        >>> t = mixture_target("two", np.array([[0.0, 0.0], [10.0, 0.0]]), 1.0, {}, "two modes")
        >>> t.log_z, [round(float(s), 3) for s in t.reference.sd["x"]]
        (0.0, [5.099, 1.0])
    """
    num_components, dim = means.shape
    means_jax = jnp.asarray(means, dtype=jnp.float32)
    sd = math.sqrt(variance)
    const = -math.log(num_components) - 0.5 * dim * math.log(2 * math.pi * variance)

    def log_density(x: Array) -> Array:
        squared = jnp.sum((x - means_jax) ** 2, axis=1)
        return const + jax.scipy.special.logsumexp(-0.5 * squared / variance)

    def sample_exact(key: Array, n: int) -> Array:
        key_component, key_noise = jax.random.split(key)
        component = jax.random.randint(key_component, (n,), 0, num_components)
        return means_jax[component] + sd * jax.random.normal(key_noise, (n, dim))

    mixture_sd = np.sqrt(variance + means.var(axis=0))
    return Target.from_logdensity(
        log_density,
        dim,
        name=name,
        log_z=0.0,
        sample_exact=sample_exact,
        reference=Reference(mean={"x": means.mean(axis=0)}, sd={"x": mixture_sd}, source="exact"),
        truth_sources={
            "log_z": "closed form (normalised mixture)",
            "sample_exact": "exact (ancestral: component, then Gaussian)",
            "reference": "closed form (mixture mean and variance)",
        },
        metadata={
            "params": params,
            "means": means,
            "component_variance": variance,
            "description": description,
        },
    )


@register("gmm25")
def gmm25() -> Target:
    """25-component Gaussian mixture on a grid: equal weights, components
    ``N(mu, 0.3 I)`` (covariance 0.3 I) with mu on ``{-10, -5, 0, 5, 10}^2``; 2 dimensions.

    The mode-hopping benchmark of diffusion-based samplers (e.g. Zhang and Chen 2022, "Path
    Integral Sampler", ICLR). Normalised (``log Z = 0``); exact samples by ancestral
    sampling; exact moments: mean 0, variance ``0.3 + 50`` per coordinate.

    Example:
        >>> t = gmm25()
        >>> t.dim, t.log_z, round(float(t.reference.sd["x"][0]) ** 2, 6)
        (2, 0.0, 50.3)
    """
    grid = np.array([-10.0, -5.0, 0.0, 5.0, 10.0])
    means = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    return mixture_target("gmm25", means, 0.3, {}, "25 modes on a grid")


GMM40_SEED = 0
"""Seed of the gmm40 means: ``np.random.default_rng(GMM40_SEED).uniform(-40, 40, (40, dim))``."""


@register("gmm40")
def gmm40(dim: int = 2) -> Target:
    """40-component Gaussian mixture of Midgley et al. (2023), "Flow Annealed Importance
    Sampling Bootstrap", ICLR, sec. 4.1: equal weights, unit-covariance components
    ``N(mu_k, I)``, means uniform in ``[-40, 40]^dim``.

    The means are ``np.random.default_rng(GMM40_SEED).uniform(-40, 40, size=(40, dim))``
    with ``GMM40_SEED = 0`` (so they differ from the paper's torch draws; the benchmark's
    difficulty, 40 far-apart modes, is the same). Normalised (``log Z = 0``); exact samples
    by ancestral sampling; exact moments from the mixture formulas.

    Example:
        >>> t = gmm40(dim=2)
        >>> t.dim, t.log_z, t.metadata["means"].shape
        (2, 0.0, (40, 2))
    """
    _check_dim(dim)
    means = np.random.default_rng(GMM40_SEED).uniform(-40.0, 40.0, size=(40, dim))
    return mixture_target(
        "gmm40", means, 1.0, {"dim": dim}, f"40 modes, means from seed {GMM40_SEED}"
    )


# exp(FUNNEL_MAX_SCALE^2 / 4) = exp(676) is below the largest float64, 1.8e308 = exp(709.8)
FUNNEL_MAX_SCALE = 52


@register("funnel")
def funnel(dim: int = 10, scale: float = 3.0) -> Target:
    """Neal's funnel (Neal 2003, "Slice sampling", section 8): ``v ~ N(0, scale^2)`` and
    ``x_i | v ~ N(0, exp(v))`` for ``i = 1..dim-1``; x = (v, x_1, ..., x_{dim-1}).

    Normalised, so ``log Z = 0``; exact samples by ancestral sampling. Exact moments:
    ``sd(v) = scale``, ``sd(x_i) = exp(scale^2 / 4)`` (since ``E exp(v) = exp(scale^2/2)``).
    Scale 3 is Neal's; the scale-1 version found in some papers is a much easier target.

    Example:
        >>> t = funnel(dim=3)
        >>> float(t.reference.sd["x"][0])
        3.0
    """
    _check_dim(dim, minimum=2)
    _check_positive("scale", scale)
    if scale > FUNNEL_MAX_SCALE:
        raise ValueError(
            f"scale must be at most {FUNNEL_MAX_SCALE} (beyond it the sd of x_i, "
            f"exp(scale^2 / 4), overflows a float), got {one_line(scale)}"
        )

    def log_density(x: Array) -> Array:
        v, rest = x[0], x[1:]
        log_p_v = -0.5 * (v / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)
        log_p_rest = -0.5 * jnp.sum(rest**2) * jnp.exp(-v) - 0.5 * (dim - 1) * (
            v + math.log(2 * math.pi)
        )
        return log_p_v + log_p_rest

    def sample_exact(key: Array, n: int) -> Array:
        key_v, key_x = jax.random.split(key)
        v = scale * jax.random.normal(key_v, (n, 1))
        rest = jnp.exp(v / 2) * jax.random.normal(key_x, (n, dim - 1))
        return jnp.concatenate([v, rest], axis=1)

    sd = np.full(dim, math.exp(scale**2 / 4))
    sd[0] = scale
    return Target.from_logdensity(
        log_density,
        dim,
        name="funnel",
        log_z=0.0,
        sample_exact=sample_exact,
        reference=Reference(mean={"x": np.zeros(dim)}, sd={"x": sd}, source="exact"),
        truth_sources={
            "log_z": "closed form (normalised)",
            "sample_exact": "exact (ancestral)",
            "reference": "closed form",
        },
        metadata={
            "params": {"dim": dim, "scale": scale},
        },
    )
