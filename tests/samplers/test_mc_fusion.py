"""mc_fusion (samplers/mc_fusion.py): the Brownian bridge and the Poisson estimator against
Levy's exact formula, fused draws against exact posteriors (Gaussian sub-posteriors, and
skewed ones where the consensus average is biased), the cost counts, and the verdict on a
model too large for the method.

Statistical checks compare independent runs (``helpers.assert_runs_match``) or, for the
estimator, independent estimates (z-scores with their sample standard error).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_runs_match, assert_z_scores, gaussian_mean_model, weighted_moments
from scipy.special import digamma, polygamma

import bayeswb as bw
from bayeswb.samplers.mc_fusion import (
    PILOT_PAIRS,
    PILOT_POINTS,
    TIME_CANDIDATES,
    brownian_bridge,
    poisson_estimates,
)

RUNS = 16


def levy(start: np.ndarray, end: np.ndarray, duration: float) -> float:
    """``E exp(-int_0^T |omega_t|^2 dt)`` for the Brownian bridge from ``start`` to ``end``:
    per coordinate the ratio of Mehler's kernel (``lambda = sqrt(2)``) to the heat kernel,
    ``sqrt(l T / sinh(l T)) exp((a - b)^2 / (2T) - l ((a^2 + b^2) cosh(l T) - 2ab) / (2
    sinh(l T)))``."""
    rate = math.sqrt(2.0) * duration
    a, b = np.asarray(start, np.float64), np.asarray(end, np.float64)
    log_terms = (
        0.5 * np.log(rate / np.sinh(rate))
        + (a - b) ** 2 / (2 * duration)
        - math.sqrt(2.0) * ((a**2 + b**2) * np.cosh(rate) - 2 * a * b) / (2 * np.sinh(rate))
    )
    return float(np.exp(np.sum(log_terms)))


def test_brownian_bridge_has_the_bridge_moments():
    """At times 0.3 and 0.7 of a bridge from (1, -2) to (3, 0) over T = 2: mean ``a + t/T
    (b - a)``, variance ``t (T - t) / T``, covariance ``s (T - t) / T`` (s < t); the times
    given out of order come back in the order given."""
    start, end, duration = jnp.array([1.0, -2.0]), jnp.array([3.0, 0.0]), 2.0
    times = jnp.array([0.7, 0.3])
    keys = jax.random.split(jax.random.key(0), 40000)
    paths = np.asarray(
        jax.vmap(lambda k: brownian_bridge(k, start, end, duration, times))(keys), np.float64
    )
    t = np.array([0.7, 0.3])[:, None]
    mean = np.asarray(start) + t / duration * (np.asarray(end) - np.asarray(start))
    variance = t * (duration - t) / duration
    n = paths.shape[0]
    z_mean = (paths.mean(0) - mean) / np.sqrt(variance / n)
    centred = paths - mean
    # Var of a squared normal is 2 var^2; of a product of two correlated normals
    # var_s var_t + cov^2
    z_var = (np.mean(centred**2, 0) - variance) / np.sqrt(2 * variance**2 / n)
    cov = 0.3 * (duration - 0.7) / duration
    products = centred[:, 0] * centred[:, 1]
    z_cov = (products.mean(0) - cov) / np.sqrt((variance[0] * variance[1] + cov**2) / n)
    assert_z_scores(np.concatenate([z_mean.ravel(), z_var.ravel(), z_cov]), "bridge moments")


@pytest.mark.parametrize("duration", [0.5, 2.0])
def test_poisson_estimate_is_unbiased_for_levys_formula(duration):
    """``phi = |x|^2`` is unbounded, so the pilot's bound may be exceeded and an estimate
    come out negative: the signed estimates are unbiased all the same."""
    start, end = jnp.array([0.5, 0.0]), jnp.array([-1.0, 0.3])

    num = 40000
    out = poisson_estimates(
        jax.random.key(1),
        lambda x: jnp.sum(x**2, axis=-1),
        jnp.broadcast_to(start, (num, 2)),
        jnp.broadcast_to(end, (num, 2)),
        jnp.full(num, duration),
        32,
    )
    values = np.where(out.negative, -1.0, 1.0) * np.exp(np.asarray(out.log_abs, np.float64))
    assert not np.any(out.truncated)
    truth = levy(start, end, duration)
    z = (values.mean() - truth) / (values.std(ddof=1) / math.sqrt(values.size))
    assert_z_scores(np.array([z]), f"Poisson estimate against {truth:.4f}")


def test_mc_fusion_is_exact_on_the_gaussian_mean_model():
    target, mean, precision, _ = gaussian_mean_model()
    r = bw.sample(target, "mc_fusion", num_chains=RUNS, num_samples=1000, seed=0)
    means, variances = weighted_moments(r)
    assert_runs_match(means, mean, "mc_fusion means")
    assert_runs_match(variances, np.full(2, 1.0 / precision), "mc_fusion variances")
    assert r.diagnostics.ok, str(r.diagnostics)


@functools.cache
def poisson_rates(num_data: int = 20):
    """Counts ``k_ij ~ Poisson(lambda_j)`` (rates 0.5 and 3, fixed seed), ``lambda_j ~
    Gamma(1, 1)``, sampled in ``x = log lambda``: the posterior of ``lambda_j`` is
    ``Gamma(1 + sum_i k_ij, 1 + N)``, so ``E x_j = digamma(a) - log b`` and ``Var x_j =
    trigamma(a)``. Four shards of five rows give skewed sub-posteriors (a shard with few
    counts has a long left tail): ``(target, mean, variance)``."""
    counts = np.random.default_rng(0).poisson([0.5, 3.0], size=(num_data, 2))
    data = jnp.asarray(counts, jnp.float32)
    log_prior = lambda x: jnp.sum(x - jnp.exp(x))  # noqa: E731
    log_lik = lambda x, k: jnp.sum(k * x - jnp.exp(x))  # noqa: E731
    target = bw.Target.from_logdensity(
        lambda x: log_prior(x) + jnp.sum(jax.vmap(log_lik, (None, 0))(x, data)),
        dim=2,
        name="poisson_rates",
        minibatch=bw.MinibatchData(data, log_lik, log_prior),
    )
    shape, rate = 1.0 + counts.sum(0), 1.0 + num_data
    return target, digamma(shape) - math.log(rate), polygamma(1, shape)


def test_mc_fusion_is_exact_where_the_sub_posteriors_are_skewed():
    """Measured (16 runs of 1000, seed 0): consensus's means 15 and 9 standard errors off
    here, mc_fusion's within 1."""
    target, mean, variance = poisson_rates()
    r = bw.sample(target, "mc_fusion", num_chains=RUNS, num_samples=1000, seed=0)
    means, variances = weighted_moments(r)
    assert_runs_match(means, mean, "mc_fusion means")
    assert_runs_match(variances, variance, "mc_fusion variances")
    assert r.diagnostics.ok, str(r.diagnostics)


def test_bridge_estimates_fail_when_too_few_points_let_estimates_go_negative():
    """Four points per bridge: the rate is capped at one point per unit time, the bound
    falls to the pilot's largest ``phi``, and 5.9% of the weight was lost to negative
    estimates (seed 0), against a bound of 1.4%."""
    target, *_ = poisson_rates()
    r = bw.sample(
        target,
        "mc_fusion",
        num_chains=4,
        num_samples=1000,
        seed=0,
        fusion_time=1.0,
        max_poisson_points=4,
    )
    failed = {check.name for check in r.diagnostics.failed}
    assert "bridge_estimates" in failed, str(r.diagnostics)


def test_cost_counts_add_the_bridges_to_the_sub_posterior_runs():
    """The sub-posterior runs' counts are consensus's with the same options (MALA: a
    fixed number of gradients, whatever the key); each bridge estimate evaluates every
    shard under its child ``2 + PILOT_POINTS + max_poisson_points`` times at ``1 + d``
    gradients each, for every proposal of every fusion, and the time pilot for
    ``len(TIME_CANDIDATES)`` times ``PILOT_PAIRS`` more. Three shards: fork_join evaluates
    each once per proposal; balanced_binary fuses shards 0 and 1, then that with shard 2,
    five shard evaluations per proposal."""
    target, *_ = gaussian_mean_model()
    settings = dict(
        num_chains=1, num_samples=300, num_warmup=50, num_shards=3, subposterior_sampler="mala"
    )
    sub = bw.samplers.get("consensus")
    base = sub.run(jax.random.key(0), target, sub.make_config(**settings))
    spec = bw.samplers.get("mc_fusion")
    per_estimate = (2 + PILOT_POINTS + 8) * (1 + target.dim)
    pilot = len(TIME_CANDIDATES) * PILOT_PAIRS
    cases = [("fork_join", 3, 0.5, 300), ("fork_join", 3, None, 300 + pilot)]
    cases += [("balanced_binary", 5, 0.5, 300)]
    for tree, shards, fusion_time, proposals in cases:
        config = spec.make_config(
            **settings, max_poisson_points=8, fusion_time=fusion_time, tree=tree
        )
        draws = spec.run(jax.random.key(0), target, config)
        bridges = shards * proposals * per_estimate
        assert int(draws.n_grad_evals) == int(base.n_grad_evals) + bridges
        # consensus evaluates its averaged draws' lp, as mc_fusion its fused draws'
        assert int(draws.n_logdensity_evals) == int(base.n_logdensity_evals) + bridges


def test_refuses_a_single_shard():
    target, *_ = gaussian_mean_model()
    with pytest.raises(ValueError, match="fuses at least 2 shards"):
        bw.sample(target, "mc_fusion", num_chains=1, num_shards=1)


def test_the_verdict_flags_a_model_too_large_for_the_method():
    """31 parameters, four shards: the weights collapse (module docstring: the spread
    grows with the dimension), and the verdict says so. A fixed time and few bridge
    points keep the run short; with the defaults (4 runs of 1000, seed 0) the weights'
    ESS was 1 in every run too."""
    r = bw.sample(
        "logistic_breast_cancer",
        "mc_fusion",
        num_chains=2,
        num_samples=200,
        seed=0,
        fusion_time=1.0,
        max_poisson_points=8,
    )
    failed = {check.name for check in r.diagnostics.failed}
    assert {"weights_ess", "pareto_k"} <= failed, str(r.diagnostics)


DEVICES_SCRIPT = """
import os, sys
os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
import jax
import bayeswb as bw
sys.path.insert(0, sys.argv[1])
from helpers import assert_sharded_draws_match, gaussian_mean_model

assert jax.device_count() == 8
settings = dict(seed=1, num_chains=2, num_samples=200, num_warmup=0, num_shards=8,
                subposterior_options={"step_size": 0.05}, fusion_time=1.0,
                max_poisson_points=8, progress=False)
target = gaussian_mean_model()[0]
sharded = bw.sample(target, "mc_fusion", **settings)
single = bw.sample(target, "mc_fusion", devices=jax.devices()[:1], **settings)
print(assert_sharded_draws_match(sharded.positions, sharded.cost["n_grad_evals"], single,
                                 "mc_fusion", 8, 200))
print("ok")
"""


@pytest.mark.slow
def test_sharded_run_on_8_devices_gives_the_single_device_draws():
    """One shard per device (``jax.shard_map``, fusion's ``map_shards``) against the same
    run on one device, at a fixed time and a fixed sub-posterior step: a fused draw is
    its shards' draws' centre plus Gaussian noise, continuous in them, so within the
    rounding bound of tests/helpers.py (measured 1.2e-7 in float32). The weights are
    not compared: a Poisson count may flip with a rounding of its rate."""
    import os
    import subprocess
    import sys

    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", DEVICES_SCRIPT, tests], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
