"""Importance samplers (is, amis, vis): statistical checks against exact answers.

Bounds come from theory: log Z pooled over independent runs is within 3 standard errors
(the issue's criterion); weighted means use the self-normalised estimator's delta-method
standard error ``sqrt(sum_i wbar_i^2 (x_i - mean)^2)`` (Owen 2013, eq. 9.8) with the
family-wise bound of ``tests.helpers``; the PSIS k-hat reading is Vehtari et al.'s 0.7.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import integrate, stats

import bayeswb as bw
from bayeswb.diagnostics import normalised_weights
from bayeswb.samplers.importance import (
    DistributionProposal,
    importance_sample,
    log_mean_exp,
)
from tests.helpers import assert_z_scores

TARGET = bw.models.get("gaussian", dim=4, condition_number=10)


def weighted_mean_z(result: bw.Result, truth: np.ndarray) -> np.ndarray:
    """(self-normalised mean - truth) / delta-method SE, per coordinate."""
    w = normalised_weights(result.log_weights)
    x = result.positions.reshape(w.size, -1).astype(np.float64)
    mean = w @ x
    se = np.sqrt(w**2 @ (x - mean) ** 2)
    return (mean - truth) / se


def log_z_z_score(result: bw.Result, log_z: float) -> float:
    return (result.log_z - log_z) / result.log_z_se


def test_is_laplace_student_t_unbiased_log_z_small_k_and_moments():
    r = bw.sample(
        TARGET, "is", seed=1, num_chains=20, num_samples=1000, proposal_family="student_t"
    )
    assert abs(log_z_z_score(r, TARGET.log_z)) < 3.0
    k = r.idata.path_stats["pareto_k"].values
    assert k.shape == (20, 1) and np.all(k < 0.5), k.ravel()
    assert_z_scores(weighted_mean_z(r, np.zeros(TARGET.dim)), "is weighted mean")
    # exact cost: one density per draw, the L-BFGS evaluations and dim gradients per run
    assert r.cost["n_logdensity_evals"] == r.cost["n_grad_evals"] + 20 * 1000
    assert r.cost["n_grad_evals"] >= 20 * (1 + TARGET.dim)


def test_is_narrow_proposal_has_large_k_and_psis_keeps_raw_log_z():
    # proposal N(0, 0.2^2 Sigma): weights exp(12 r^2 / 2), tail index ~ 1 / 0.96, so k ~ 1
    r = bw.sample(
        TARGET, "is", seed=2, num_chains=8, num_samples=1000, proposal_scale=0.2, psis=True
    )
    k = r.idata.path_stats["pareto_k"].values.ravel()
    assert np.median(k) > 0.7, k
    raw = r.idata.sample_stats["lp"].values - r.idata.sample_stats["log_q"].values
    per_run = r.idata.sample_stats["log_marginal_likelihood"].values
    np.testing.assert_allclose(per_run, log_mean_exp(jnp.asarray(raw)), rtol=1e-5)
    assert not np.allclose(r.log_weights, raw)  # the smoothed weights were reported
    assert np.all(r.log_weights <= raw.max(axis=1, keepdims=True) + 1e-5)


def _normal_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def test_is_prior_proposal_on_numpyro_model_matches_quadrature():
    y = np.array([0.3, -0.5, 1.1])
    target = bw.Target.from_numpyro(_normal_model, jnp.asarray(y))
    # from_numpyro does not keep the model's arguments: add them for the prior proposal
    target = dataclasses.replace(
        target, metadata={**target.metadata, "model_args": (jnp.asarray(y),), "model_kwargs": {}}
    )

    def joint(sigma, mu):
        prior = stats.norm.pdf(mu) * 2 * stats.norm.pdf(sigma)
        return prior * np.prod(stats.norm.pdf(y, mu, sigma))

    z, _ = integrate.dblquad(joint, -8, 8, 0, 8)
    r = bw.sample(target, "is", seed=3, num_chains=20, num_samples=2000, proposal="prior")
    assert abs(log_z_z_score(r, math.log(z))) < 3.0
    assert r.cost == {**r.cost, "n_grad_evals": 0, "n_logdensity_evals": 20 * 2000}


def test_amis_weighted_moments():
    r = bw.sample(TARGET, "amis", seed=4, num_chains=8, num_samples=1000, num_warmup=5)
    assert r.positions.shape == (8, 1000, TARGET.dim)
    assert_z_scores(weighted_mean_z(r, np.zeros(TARGET.dim)), "amis weighted mean")
    assert r.cost["n_logdensity_evals"] == 8 * 1000 and r.cost["n_grad_evals"] == 0
    assert r.idata.warmup_sample_stats["ess"].shape == (8, 5)


def test_vis_chi2_unbiased_log_z_and_moments():
    r = bw.sample(TARGET, "vis", seed=5, num_chains=20, num_samples=500, num_warmup=200)
    assert abs(log_z_z_score(r, TARGET.log_z)) < 3.0
    assert_z_scores(weighted_mean_z(r, np.zeros(TARGET.dim)), "vis weighted mean")
    assert r.cost["n_grad_evals"] == 20 * 200 * 32


def test_nan_log_density_is_weight_zero_never_nan():
    # half-space where the density is NaN: those draws get weight zero, Z is halved
    def log_density(x):
        return jnp.where(x[0] > 0, jnp.nan, -0.5 * x @ x)

    q = DistributionProposal(dist.MultivariateNormal(jnp.zeros(2), 2.0 * jnp.eye(2)))
    _, log_w, _, _ = jax.jit(lambda k: importance_sample(k, log_density, q, 4000))(
        jax.random.key(6)
    )
    assert not np.any(np.isnan(log_w))
    assert np.all(np.isneginf(np.asarray(log_w)[np.asarray(log_w) < -1e30]))
    z = np.exp(np.asarray(log_w, dtype=np.float64))
    estimate, se = z.mean(), z.std(ddof=1) / math.sqrt(z.size)
    assert abs(estimate - math.pi) < 3 * se  # half of 2 pi


@pytest.mark.parametrize(
    ("sampler", "options", "field"),
    [
        ("is", {"proposal": "flowz"}, "proposal"),
        ("is", {"df": -1.0}, "df"),
        ("is", {"psis": "yes"}, "psis"),
        ("is", {"proposal_family": "cauchy"}, "proposal_family"),
        ("amis", {"num_warmup": 3, "num_samples": 100}, "num_samples"),
        ("amis", {"init_scale": 0.0}, "init_scale"),
        ("vis", {"divergence": "forward_kl"}, "divergence"),
        ("vis", {"num_mc_samples": 0}, "num_mc_samples"),
    ],
)
def test_bad_options_raise_naming_the_field(sampler, options, field):
    with pytest.raises(ValueError, match=field):
        bw.samplers.get(sampler).make_config(**options)
