"""Baselines against exact answers: MCSE-based bounds, fixed seeds (tests/helpers.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_z_scores, moment_z_scores
from scipy.stats import norm

import bayeswb as bw


@pytest.fixture(scope="module")
def gaussian():
    return bw.models.get("gaussian", dim=5, condition_number=10.0)


@pytest.mark.parametrize("sampler", ["nuts", "hmc"])
def test_mcmc_moments_on_gaussian(gaussian, sampler):
    r = bw.sample(gaussian, sampler, seed=11, num_chains=4, num_samples=1000, num_warmup=500)
    z = moment_z_scores(r, "x", gaussian.reference.mean["x"], gaussian.reference.sd["x"])
    assert_z_scores(np.concatenate([z["mean"], z["var"]]), f"{sampler} mean and variance")
    assert not r.idata.sample_stats["diverging"].values.any()


def test_nuts_cost_counts_every_leapfrog_step(gaussian):
    r = bw.sample(gaussian, "nuts", seed=3, num_chains=2, num_samples=200, num_warmup=100)
    steps = int(
        r.idata.sample_stats["n_steps"].sum() + r.idata.warmup_sample_stats["n_steps"].sum()
    )
    # one gradient per chain at initialisation plus one per leapfrog step
    assert r.cost["n_grad_evals"] == steps + 2
    assert r.cost["n_logdensity_evals"] == r.cost["n_grad_evals"]


def test_hmc_cost_is_chains_times_steps_times_length(gaussian):
    r = bw.sample(
        gaussian,
        "hmc",
        seed=3,
        num_chains=3,
        num_samples=50,
        num_warmup=20,
        num_integration_steps=7,
    )
    assert r.cost["n_grad_evals"] == 3 * (1 + (50 + 20) * 7)


def test_hmc_step_jitter_breaks_a_periodic_trajectory():
    """Neal (2011), section 5.4.2.2: a trajectory of one period of the dynamics (16 leapfrog
    steps of 2 pi / 16 on a standard normal) returns near its start, and the chain barely
    moves; jittering each transition's step by U(1 -/+ 0.2) breaks the period."""
    target = bw.models.get("gaussian", dim=1)
    settings = dict(
        seed=5, num_chains=4, num_samples=1000, num_warmup=0,
        step_size=2 * np.pi / 16, num_integration_steps=16,
    )  # fmt: skip
    stuck = bw.sample(target, "hmc", step_size_jitter=0.0, **settings)
    assert "ess_bulk" in [check.name for check in stuck.diagnostics.failed]
    jittered = bw.sample(target, "hmc", **settings)
    assert jittered.diagnostics.ok, jittered.diagnostics
    z = moment_z_scores(jittered, "x", np.zeros(1), np.ones(1))
    assert_z_scores(np.concatenate([z["mean"], z["var"]]), "jittered hmc mean and variance")
    steps = jittered.idata.sample_stats["step_size"].values
    assert 0.8 * settings["step_size"] <= steps.min() < steps.max() <= 1.2 * settings["step_size"]


def test_nuts_without_warmup_uses_the_given_step_size(gaussian):
    r = bw.sample(
        gaussian, "nuts", seed=0, num_chains=2, num_samples=50, num_warmup=0, step_size=0.3
    )
    np.testing.assert_allclose(r.idata.sample_stats["step_size"].values, 0.3, rtol=1e-6)
    assert "warmup_posterior" not in r.idata.groups()


def test_nuts_on_eight_schools_has_named_constrained_parameters():
    r = bw.sample(
        "eight_schools_noncentered", "nuts", seed=2, num_chains=2, num_samples=300, num_warmup=300
    )
    post = r.idata.posterior
    assert post["theta"].dims == ("chain", "draw", "school")  # the model's plate
    assert post["theta"].shape == (2, 300, 8)
    assert (post["tau"].values > 0).all()
    # the deterministic theta is mu + tau * theta_tilde draw by draw
    np.testing.assert_allclose(
        post["theta"], post["mu"] + post["tau"] * post["theta_tilde"], rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("sampler", ["meanfield_vi", "fullrank_vi"])
def test_gaussian_vi_reaches_the_exact_posterior(gaussian, sampler):
    """Both families contain the target, whose ELBO optimum is log Z (KL = 0).

    The ELBO is a lower bound on log Z; convergence means a KL gap below 0.01 nats per
    dimension, averaged over the last 200 optimisation steps."""
    r = bw.sample(
        gaussian,
        sampler,
        seed=5,
        num_chains=2,
        num_samples=500,
        num_warmup=3000,
        learning_rate=0.02,
    )
    elbo = r.idata.warmup_sample_stats["elbo"].values[:, -200:].mean(axis=1)
    gap = gaussian.log_z - elbo
    assert np.all(gap > -0.01 * gaussian.dim), f"ELBO above log Z: {elbo} vs {gaussian.log_z}"
    assert np.all(gap < 0.01 * gaussian.dim), f"KL gap {gap} too large"
    assert r.cost["n_grad_evals"] == 2 * 3000 * 8


@pytest.mark.parametrize("sampler", ["meanfield_vi", "fullrank_vi"])
def test_gaussian_vi_survives_draws_where_the_gradient_is_not_finite(sampler):
    """N(0, I) in 2-d whose log density and gradient are NaN beyond x0 = 3 (mass
    0.00135): at the defaults (8 draws per step) 13-16 steps of 2000 draw there. They are
    skipped, so the fit stays finite and reaches the ELBO optimum (KL gap as in the test
    above). Before, the first such step turned the fit to NaN: 1561-1830 of 2000 ELBO values NaN
    and NaN draws (measured when written)."""
    target = bw.Target.from_logdensity(
        lambda x: -0.5 * x @ x + 0.0 * jnp.sqrt(3.0 - x[0]), dim=2, log_z=math.log(2 * math.pi)
    )
    r = bw.sample(target, sampler, seed=0, num_chains=2, num_samples=500)
    elbo = r.idata.warmup_sample_stats["elbo"].values
    assert np.all(np.isfinite(r.idata.unconstrained_posterior["position"].values))
    assert np.all(np.sum(~np.isfinite(elbo), axis=1) > 0), "no step met the NaN region"
    gap = target.log_z + math.log(norm.cdf(3.0)) - np.nanmean(elbo[:, -200:], axis=1)
    assert np.all(np.abs(gap) < 0.01 * target.dim), f"KL gap {gap}"


def test_pathfinder_is_exact_on_a_gaussian(gaussian):
    """On a Gaussian target the L-BFGS inverse-Hessian becomes exact, so Pathfinder's
    draws are exact draws: their moments pass the MCSE test (draws are independent)."""
    r = bw.sample(gaussian, "pathfinder", seed=4, num_chains=2, num_samples=2000)
    z = moment_z_scores(r, "x", gaussian.reference.mean["x"], gaussian.reference.sd["x"])
    assert_z_scores(np.concatenate([z["mean"], z["var"]]), "pathfinder mean and variance")


LAPACK_AT_100_CHAINS = """
import warnings
import bayeswb as bw
from bayeswb.core.verdict import UnreliableRunWarning
warnings.simplefilter("ignore", UnreliableRunWarning)
target = bw.models.get("gaussian", dim=3)
for sampler in ("pathfinder", "fullrank_vi", "is", "vis"):
    bw.sample(target, sampler, num_chains=100, num_samples=50, seed=0)
    print(sampler, "done", flush=True)
"""


def test_samplers_calling_lapack_finish_at_100_chains():
    """jaxlib's batched CPU LAPACK kernels deadlocked XLA's thread pool: pathfinder hung
    at 100 chains in 1 of 4 tries (docs/errors.md); each chain's LAPACK calls now run in
    order (bayeswb/execution/lapack_order.py). A hang is a timeout, so run it apart."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", LAPACK_AT_100_CHAINS], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:4] == [
        f"{name} done" for name in ("pathfinder", "fullrank_vi", "is", "vis")
    ]


def test_pathfinders_gaussian_is_the_quasi_newton_step_with_the_inverse_hessian():
    """factor_gaussian's draws ``mu + C u``: ``C C^T`` is ``diag(alpha) + beta gamma
    beta^T``, ``mu`` the step along the log density's gradient (blackjax's bfgs_sample
    steps against it), ``log_q`` the normal log density of each draw."""
    from scipy.stats import multivariate_normal

    from bayeswb.samplers.baselines import factor_gaussian

    rng = np.random.default_rng(0)
    dim, rank = 5, 4
    alpha = rng.uniform(0.5, 2.0, dim)
    beta = rng.normal(size=(dim, rank))
    root = rng.normal(size=(rank, rank))
    gamma = root @ root.T / rank
    position, gradient = rng.normal(size=dim), rng.normal(size=dim)
    covariance = np.diag(alpha) + beta @ gamma @ beta.T
    gaussian = factor_gaussian(*map(jnp.asarray, (position, gradient, alpha, beta, gamma)))
    mean = position + covariance @ gradient
    draws, log_q = gaussian.draw(jnp.eye(dim))  # row i: mu + C e_i
    factor = (np.asarray(draws, np.float64) - mean).T
    np.testing.assert_allclose(factor @ factor.T, covariance, rtol=1e-4, atol=1e-4)
    expected = multivariate_normal(mean, covariance).logpdf(np.asarray(draws, np.float64))
    np.testing.assert_allclose(log_q, expected, rtol=1e-4)


@pytest.mark.parametrize("dim", [2, 10])
def test_pathfinder_counts_its_gradients(dim):
    """One path, not vmapped (a batched loop runs finished lanes' callbacks too): the
    host-counted gradients equal the reported ones, every trial point of the L-BFGS line
    searches included. (blackjax's own pathfinder hid its line searches' extra trials:
    the count was then a lower bound.)"""
    from helpers import counted_gaussian

    from bayeswb.samplers.baselines import pathfinder_path

    target, counts = counted_gaussian(dim, scales=jnp.linspace(0.5, 3.0, dim))
    config = bw.samplers.get("pathfinder").make_config(num_chains=1, num_samples=10)
    *_, evaluations = pathfinder_path(jax.random.key(0), target, config)
    jax.effects_barrier()
    assert int(evaluations) > 1
    assert int(evaluations) == counts["grad"]
