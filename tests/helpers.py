"""Statistical test helpers: bounds derived from a stated false-alarm rate, never tuned.

A correct sampler's ``(estimate - truth) / MCSE`` is close to standard normal; with K
such z-scores in one test we bound the largest by the two-sided normal quantile for a
family-wise false-alarm rate ``alpha`` (Bonferroni): ``z_bound(K)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm
from scipy.stats import t as t_distribution

FALSE_ALARM_RATE = 1e-3


def z_bound(num_tests: int, alpha: float = FALSE_ALARM_RATE) -> float:
    """Two-sided Bonferroni bound: P(max |Z_k| > bound) <= alpha for K standard normals."""
    return float(norm.ppf(1.0 - alpha / (2.0 * num_tests)))


def assert_z_scores(z: np.ndarray, what: str, alpha: float = FALSE_ALARM_RATE) -> None:
    """Fail if any |z| exceeds the family-wise bound for ``z.size`` tests."""
    z = np.ravel(np.asarray(z, dtype=np.float64))
    assert np.all(np.isfinite(z)), f"{what}: non-finite z-scores {z}"
    bound = z_bound(z.size, alpha)
    worst = int(np.argmax(np.abs(z)))
    assert abs(z[worst]) < bound, (
        f"{what}: |z| = {abs(z[worst]):.2f} at index {worst} exceeds {bound:.2f} "
        f"(family-wise false-alarm rate {alpha}, {z.size} tests); all z = {np.round(z, 2)}"
    )


def t_bound(num_tests: int, runs: int) -> float:
    """Two-sided Bonferroni bound for ``num_tests`` t-statistics of ``runs - 1`` df."""
    return float(t_distribution.ppf(1.0 - FALSE_ALARM_RATE / (2.0 * num_tests), runs - 1))


def assert_runs_match(per_run: np.ndarray, truth: np.ndarray, what: str, truth_se=0.0):
    """The mean over runs (axis 0) of ``per_run`` (one estimate per independent run)
    against ``truth``: t-statistics of ``runs - 1`` degrees of freedom, bounded by
    :func:`t_bound`; ``truth_se`` (the truth's own Monte Carlo error, if it has one)
    widens the standard error."""
    per_run = np.asarray(per_run, np.float64)
    runs = per_run.shape[0]
    se = np.hypot(per_run.std(axis=0, ddof=1) / math.sqrt(runs), truth_se)
    t = np.ravel((per_run.mean(axis=0) - truth) / se)
    bound = t_bound(t.size, runs)
    assert np.all(np.abs(t) < bound), (
        f"{what}: |t| up to {np.abs(t).max():.2f} >= {bound:.2f}; t = {np.round(t, 2)}"
    )


def weighted_moments(result) -> tuple[np.ndarray, np.ndarray]:
    """Each run's self-normalised mean and variance of every coordinate, ``(runs, d)``."""
    log_w = np.asarray(result.log_weights, np.float64)
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    x = np.asarray(result.positions, np.float64)
    mean = np.einsum("rn,rnd->rd", w, x)
    return mean, np.einsum("rn,rnd->rd", w, (x - mean[:, None]) ** 2)


def moment_z_scores(result, name: str, mean: np.ndarray, sd: np.ndarray) -> dict:
    """z-scores of the posterior mean and of the second central moment of ``name``.

    Uses ArviZ's MCSE of the mean for ``x`` and for ``(x - mean)^2`` (the latter tests
    the variance: its expectation is ``sd^2``).
    """
    import arviz as az

    values = result.idata.posterior[name]
    squared = ((values - mean) ** 2).rename(name)
    estimate_mean = values.mean(("chain", "draw")).values
    estimate_var = squared.mean(("chain", "draw")).values
    mcse_mean = az.mcse(values.to_dataset(), method="mean")[name].values
    mcse_var = az.mcse(squared.to_dataset(), method="mean")[name].values
    return {
        "mean": (estimate_mean - mean) / mcse_mean,
        "var": (estimate_var - np.asarray(sd) ** 2) / mcse_var,
    }


def perturbed(tree, key, size):
    """``tree`` with every inexact array moved by ``size`` standard normals.

    flowjax initialises coupling and autoregressive layers to the identity; a log-determinant
    or path-weight check needs a non-trivial map.
    """
    import equinox as eqx
    import jax

    params, static = eqx.partition(tree, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [
        leaf + size * jax.random.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)


def vae_log_marginal(model, decoder, x, half_width=8.0, num=321, nodes=60):
    """Exact log p(x) of one image ``x`` under a ``VAEDigits`` with a 2-d latent space, by
    quadrature written from the model's definition: z (one stochastic layer) or h1 (two
    layers) on a ``num``^2 grid over [-8, 8]^2 (the prior mass outside is below 1e-14);
    with two layers h2 (1-d) by Gauss-Hermite with ``nodes`` points and p(h1 | h2) by
    scipy's normal density. Finer grids and more nodes move the value by < 1e-3 nats; the
    grid holds p(h1)'s mass to 1e-3 (asserted)."""
    import jax.numpy as jnp
    from scipy.special import logsumexp

    from bayeswb.models.vae_digits import gaussian_layer

    grid = np.linspace(-half_width, half_width, num)
    z = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    log_cell = 2 * np.log(grid[1] - grid[0])
    if model.layers == 1:
        log_joint = np.asarray(model.log_joint(decoder, x, jnp.asarray(z)), dtype=np.float64)
        return logsumexp(log_joint) + log_cell
    log_lik = np.asarray(model.log_likelihood(decoder, x, jnp.asarray(z)), dtype=np.float64)
    h2, gh_weights = np.polynomial.hermite_e.hermegauss(nodes)
    mean, log_sd = (
        np.asarray(a, dtype=np.float64) for a in gaussian_layer(decoder["h1"], h2[:, None])
    )
    log_cond = norm.logpdf(z[None], mean[:, None], np.exp(log_sd)[:, None]).sum(-1)
    log_w = np.log(gh_weights / np.sqrt(2 * np.pi))[:, None]
    mass = np.exp(logsumexp(log_w + log_cond, axis=1) + log_cell)
    assert abs(mass.sum() - 1.0) < 1e-3, mass.sum()
    return logsumexp(log_w + log_cond + log_lik) + log_cell


def across_run_z_scores(result, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """z-scores of the pooled weighted mean and second central moment of each coordinate
    of a particle method's runs (``result.log_weights`` (runs, n), ``result.positions``).

    The pooled estimate weights run r by its evidence, ``sum_r Z_r m_r / sum_r Z_r`` (what
    ``log_weight`` encodes); its standard error is the delta-method one of this ratio
    across the independent runs.
    """
    import math

    log_w = np.asarray(result.log_weights, dtype=np.float64)
    x = np.asarray(result.positions, dtype=np.float64)
    top = np.max(log_w, axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.sum(np.exp(log_w - top), axis=1))
    within = np.exp(log_w - log_z[:, None])  # normalised within each run
    run_weight = np.exp(log_z - np.max(log_z))
    run_weight = run_weight / np.mean(run_weight)
    z = []
    for f, truth in ((x, mean), ((x - mean) ** 2, var)):
        per_run = np.einsum("rn,rnd->rd", within, f)
        pooled = np.mean(run_weight[:, None] * per_run, axis=0)
        residual = run_weight[:, None] * (per_run - pooled)
        se = np.std(residual, axis=0, ddof=1) / math.sqrt(len(run_weight))
        z.append((pooled - truth) / se)
    return np.concatenate(z)


def importance_z_scores(result, mean: np.ndarray, var: np.ndarray, log_z: float) -> np.ndarray:
    """z-scores of an importance sampler's runs pooled (equal run weights) against the
    truth, from each run's own weights: the self-normalised mean and second central
    moment of each coordinate, with the delta-method SE ``sqrt(sum_i wbar_i^2 (f_i -
    fbar)^2)`` per run, and Z (the mean of the runs' ``mean w``) with the SE of a mean.

    Why not :func:`across_run_z_scores`: a standard error estimated from R runs has R - 1
    degrees of freedom, so with 8 runs the z-scores are t_7: one of 7 exceeds the normal
    bound 3.8 (family-wise rate 1e-3) with probability 0.046 for a correct sampler, 46
    times the rate the bound is meant for; the per-draw SEs of 1000 weights per run have
    thousands. Valid where the weights have a finite
    variance (the runs' PSIS k-hat below 0.5).
    """
    log_w = np.asarray(result.log_weights, dtype=np.float64)
    x = np.asarray(result.positions, dtype=np.float64)
    runs, n = log_w.shape
    raw = np.exp(log_w - log_z)  # w / Z, one scale for every run
    normalised = raw / raw.sum(axis=1, keepdims=True)
    z = []
    for f, truth in ((x, mean), ((x - mean) ** 2, var)):
        per_run = np.einsum("rn,rnd->rd", normalised, f)
        se = np.sqrt(np.einsum("rn,rnd->rd", normalised**2, (f - per_run[:, None]) ** 2))
        pooled_se = np.sqrt(np.sum(se**2, axis=0)) / runs
        z.append((per_run.mean(axis=0) - truth) / pooled_se)
    ratio = raw.mean(axis=1)  # Z_r / Z
    ratio_se = np.sqrt(np.sum(raw.var(axis=1, ddof=1) / n)) / runs
    return np.concatenate(z + [np.atleast_1d((ratio.mean() - 1.0) / ratio_se)])


def weighted_result(seed=0, n=4000, chains=4):
    """Importance sampling N(1, 1) with a N(0, 2^2) proposal: exact weights, log Z = 0."""
    import bayeswb as bw
    from bayeswb.core.log_evidence import combine_log_z
    from bayeswb.core.result import build_idata

    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, size=(chains, n, 1))
    log_w = (norm.logpdf(x, 1.0, 1.0) - norm.logpdf(x, 0.0, 2.0))[..., 0]
    log_z = np.log(np.mean(np.exp(log_w), axis=1))
    idata = build_idata(
        posterior={"x": x},
        positions=x,
        stats={"lp": log_w},
        log_weights=log_w,
        log_z_per_run=log_z,
    )
    pooled, se = combine_log_z(log_z)
    cost = {"n_grad_evals": 0, "n_logdensity_evals": chains * n, "compile_s": 0, "sample_s": 0}
    return bw.Result(idata, "manual_is", "normal", {}, cost, pooled, se)


# the minibatch batch size of :func:`gaussian_mean_model`'s noise variance
GAUSSIAN_MEAN_BATCH = 20


def gaussian_mean_model(num_data=200, batch=GAUSSIAN_MEAN_BATCH, noise_sd=1.0, prior_sd=3.0):
    """y_i ~ N(theta, noise_sd^2 I_2), theta ~ N(0, prior_sd^2 I_2), fixed-seed data, as a
    Target with the minibatch interface: ``(target, mean, precision, noise_var)``.

    Exact posterior N(mu, 1/P) per coordinate, P = N/noise_sd^2 + 1/prior_sd^2. The
    minibatch gradient is -P (theta - mu) + eps with eps = (N/noise_sd^2)(ybar_B - ybar),
    independent of theta, of variance V = (N/noise_sd^2)^2 S^2/n (1 - n/N) (sampling
    ``batch`` = n rows without replacement; S^2 the data variance with N - 1)."""
    import jax
    import jax.numpy as jnp

    import bayeswb as bw

    y = np.random.default_rng(0).normal([1.0, -0.5], noise_sd, size=(num_data, 2))
    data = jnp.asarray(y, dtype=jnp.float32)
    log_prior = lambda x: -0.5 * jnp.sum(x**2) / prior_sd**2  # noqa: E731
    log_lik = lambda x, yi: -0.5 * jnp.sum((yi - x) ** 2) / noise_sd**2  # noqa: E731

    def log_density(x):
        return log_prior(x) + jnp.sum(jax.vmap(log_lik, (None, 0))(x, data))

    precision = num_data / noise_sd**2 + 1 / prior_sd**2
    mean = (num_data / noise_sd**2) * y.mean(0) / precision
    noise_var = (num_data / noise_sd**2) ** 2 * y.var(0, ddof=1) / batch * (1 - batch / num_data)
    target = bw.Target.from_logdensity(
        log_density,
        dim=2,
        name="gaussian_mean",
        init=lambda key: jnp.asarray(mean, jnp.float32) + 0.1 * jax.random.normal(key, (2,)),
        minibatch=bw.MinibatchData(data, log_lik, log_prior),
    )
    return target, mean, precision, noise_var


def assert_sharded_draws_match(positions, grads, single, name, num_shards, draws_per_shard,
                               x64=False):  # fmt: skip
    """The draws ``positions`` and gradient count ``grads`` of a fusion or consensus run
    with its shards over several devices (or processes) against the same run on one device
    (``single``, a Result), at a fixed sub-posterior step (tests/bayeswb/test_devices.py's
    bound): a draw is within 8 G eps scale of the single-device one after G
    gradient evaluations on its path, while the transitions do not expand differences (NUTS
    at a fixed step inside its stability limit on gaussian_mean_model's sub-posteriors) and
    no accept or tree decision flips. A consensus draw's path: its shard chains' G and the
    fits' draws; a fused particle's: the shards' chains, the fits, and every gradient of the
    run per particle (an upper bound on its own path) plus the particles."""
    assert grads == single.cost["n_grad_evals"]
    num_runs, num_draws = np.shape(single.positions)[:2]
    gradients = single.cost["n_grad_evals"] / num_runs / num_shards + draws_per_shard
    if name == "fusion":
        gradients += num_draws
    eps = np.finfo(np.float64 if x64 else np.float32).eps
    bound = 8 * gradients * eps * np.abs(single.positions).max()
    diff = np.abs(np.asarray(positions) - np.asarray(single.positions)).max()
    assert diff <= bound, (name, num_shards, x64, diff, bound)
    return diff, bound


def tuned_steps_and_noise(result, num_warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """A self-tuned stochastic-gradient run's step of the draws per chain, and the mean
    ``gradient_noise`` of its warmup's final window per chain (what caps the step)."""
    from bayeswb.samplers.langevin.warmup import mass_matrix_windows

    final_window = mass_matrix_windows(num_warmup)[-1][1]
    noise = result.idata.warmup_sample_stats["gradient_noise"].values[:, final_window:]
    return result.idata.sample_stats["step_size"].values[:, 0], noise.mean(axis=1)


def host_tick(counts, kind, one):
    """Add ``np.size(one)`` to ``counts[kind]`` on the host when the program runs: one
    per point under any number of vmaps, in one callback per call site
    (:func:`bayeswb.core.progress.batched_callback`)."""
    from bayeswb.core.progress import batched_callback

    def bump(seen):
        counts[kind] += int(np.size(seen))

    batched_callback(bump, one)


def counted_gaussian(dim, scales=None):
    """N(0, diag(scales^2)) (N(0, I) without ``scales``) whose log density counts its own
    evaluations and gradients on the host (:func:`host_tick`: one count per point under
    vmap; a batched loop also runs finished lanes' callbacks, so count single runs; under
    reverse-mode differentiation through a ``lax.scan`` the callbacks do not run, so count
    programs that do not differentiate through the target). Returns the Target and the
    counts dict it fills."""
    import jax
    import jax.numpy as jnp

    import bayeswb as bw

    counts = {"value": 0, "grad": 0}

    def base(x):
        return -0.5 * jnp.sum((x if scales is None else x / scales) ** 2)

    def one(x):
        # depends on x, so that under vmap the callback sees one entry per point
        return (x[0] * 0.0 + 1.0).astype(jnp.int32)

    @jax.custom_vjp
    def log_density(x):
        host_tick(counts, "value", one(x))
        return base(x)

    def forward(x):
        host_tick(counts, "grad", one(x))
        return jax.value_and_grad(base)(x)

    log_density.defvjp(forward, lambda grad, g: (g * grad,))
    return bw.Target.from_logdensity(log_density, dim=dim, name="counted"), counts


def assert_annealed_runs_match(result, mean, var, log_z, label):
    """Runs of an annealing sampler (weights summing to each run's Z, as smc's) against
    the truth: every run's weights keep an ESS above half its particles (so that the
    per-run SEs of :func:`importance_z_scores` hold), then Z, the weighted means and the
    variances within their MCSE bounds."""
    import math
    import types

    log_w = np.asarray(result.log_weights, np.float64)
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    assert (w.sum(1) ** 2 / (w**2).sum(1) > 0.5 * w.shape[1]).all()
    # as raw importance weights (mean: the run's Z), times n
    raw = types.SimpleNamespace(
        log_weights=log_w + math.log(w.shape[1]), positions=result.positions
    )
    assert_z_scores(importance_z_scores(raw, mean, var, log_z), label)


def run_bound(cases, chosen) -> list:
    """``cases`` for ``pytest.mark.parametrize``, those in ``chosen`` marked
    ``production_codegen``: they run more than they compile, so they run in a child
    process with the code a user gets (tests/conftest.py)."""
    import pytest

    mark = pytest.mark.production_codegen
    return [
        pytest.param(*(case if isinstance(case, tuple) else (case,)), marks=mark)
        if case in chosen
        else case
        for case in cases
    ]
