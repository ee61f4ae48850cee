"""The numpyro models: their data, and their stored reference posteriors reproduced by NUTS."""

from __future__ import annotations

import math

import arviz as az
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from helpers import assert_z_scores, run_bound
from scipy.stats import multivariate_normal

import bayeswb as bw
from bayeswb.models import bayesian

# every stored entry is attached by its factory (checked in the NUTS test below)
REFERENCE_MODELS = sorted(bayesian.stored_references())
NUMPYRO_MODELS = {
    "eight_schools_centered",
    "eight_schools_noncentered",
    "logistic_breast_cancer",
    "horseshoe_diabetes",
    "stochastic_volatility",
    "brownian_motion",
    "gp_regression",
    "bnn_classification",
}
# the short run samples the parameterisation the reference was made on where the default
# one is known to diverge (the docstrings say why); the posterior is the same
SHORT_RUN = {
    "horseshoe_diabetes": ({"auxiliary": True}, 0.95),
    "stochastic_volatility": ({"centered_start": True}, 0.9),
    "brownian_motion": ({"noncentered": False}, 0.95),
}
# where a short NUTS run is not a check of the reference: brownian_motion's posterior of the
# observation scale reaches down to 0, a funnel with the observed locations in either
# parameterisation, and a 4 x 500 run diverges tens of times and misses the funnel's neck
# (seeds 11-16: 37-493 divergences each, largest |z| 2.0-6.2 against the bound 4.3, three
# of six above it). Its reference is quadrature (checked by its own error above), so the
# test asks the verdict to flag the run instead.
FLAGGED_SHORT_RUN = {"brownian_motion"}


def test_stored_references_meet_the_acceptance_rule():
    for name, entry in bayesian.stored_references().items():
        assert set(entry["mean"]) == set(entry["sd"]) == set(entry["mcse_mean"]), name
        if entry["method"] == "quadrature":
            assert entry["quadrature_error"] < 1e-6, name
            continue
        assert entry["method"].startswith("nuts"), name
        assert entry["max_rhat"] < 1.01, name
        assert entry["divergences"] == 0, name
        assert entry["chains"] >= 4 and entry["min_ess_bulk"] > 1000, name
        assert "NUTS" in entry["source"] and f"seed {entry['seed']}" in entry["source"], name


def test_every_numpyro_model_has_a_reference():
    assert set(REFERENCE_MODELS) == NUMPYRO_MODELS


def test_data_are_standardised_and_sized():
    t = bw.models.get("logistic_breast_cancer")
    assert t.dim == 31
    assert bayesian.stochastic_volatility_data(100).shape == (100,)
    # a shorter series is a prefix of a longer one: the seed fixes one stream
    np.testing.assert_array_equal(
        bayesian.stochastic_volatility_data(30), bayesian.stochastic_volatility_data(60)[:30]
    )
    observations, observed = bayesian.brownian_motion_data()
    assert observations.shape == (30,) and observed.sum() == 20 and not observed[10:20].any()
    features, response = bayesian.horseshoe_diabetes_data()
    np.testing.assert_allclose(features.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(response.mean(), 0.0, atol=1e-12)


def test_horseshoe_marginal_model_is_the_dense_gaussian():
    """The coefficient-marginalised horseshoe (the reference's model) against the dense
    ``N(intercept, s^2 I + X D X^T)`` and the dense Gaussian conditional of the coefficients,
    at prior draws of the scales (float32 model vs float64 scipy)."""
    features, response = bayesian.horseshoe_diabetes_data()
    for seed in range(3):
        model = numpyro.handlers.seed(bayesian.horseshoe_marginal_model, seed)
        with numpyro.handlers.trace() as trace:
            model(jnp.asarray(features, jnp.float32), jnp.asarray(response, jnp.float32))
        value = {k: np.asarray(site["value"], np.float64) for k, site in trace.items()}
        prior_cov = np.diag((value["global_scale"] * value["local_scale"]) ** 2)
        noise_var = value["noise_scale"] ** 2
        cov = noise_var * np.eye(response.size) + features @ prior_cov @ features.T
        residual = response - value["intercept"]
        dense = multivariate_normal(np.zeros(response.size), cov).logpdf(residual)
        factor = float(trace["response"]["fn"].log_factor)
        assert factor == pytest.approx(dense, rel=1e-4)
        posterior_cov = np.linalg.inv(features.T @ features / noise_var + np.linalg.inv(prior_cov))
        np.testing.assert_allclose(
            value["coefficients_mean"],
            posterior_cov @ features.T @ residual / noise_var,
            atol=1e-4 * np.sqrt(np.diag(posterior_cov)).max(),
        )
        np.testing.assert_allclose(value["coefficients_var"], np.diag(posterior_cov), rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", run_bound(REFERENCE_MODELS, {"horseshoe_diabetes", "brownian_motion"})
)
def test_short_nuts_run_reproduces_the_reference(name):
    params, target_accept = SHORT_RUN.get(name, ({}, 0.8))
    target = bw.models.get(name, **params)
    entry = bayesian.stored_references()[name]
    assert target.reference is not None and target.reference.source == entry["source"]
    result = bw.sample(
        target,
        "nuts",
        seed=11,
        num_chains=4,
        num_samples=500,
        num_warmup=500,
        target_acceptance_rate=target_accept,
    )
    if name in FLAGGED_SHORT_RUN:
        # the run cannot be compared (its draws are biased), but it must not pass silently
        assert not result.diagnostics.ok, f"{name}: {result.diagnostics}"
        return
    z = []
    for param, ref_mean in entry["mean"].items():
        values = result.idata.posterior[param]
        ref_mean, ref_sd = np.asarray(ref_mean), np.asarray(entry["sd"][param])
        ref_mcse = np.asarray(entry["mcse_mean"][param])
        dataset = values.to_dataset()
        mcse_mean = az.mcse(dataset, method="mean")[param].values
        z.append(
            np.ravel(
                (values.mean(("chain", "draw")).values - ref_mean) / np.hypot(mcse_mean, ref_mcse)
            )
        )
        squared = ((values - ref_mean) ** 2).rename(param)
        mcse_var = az.mcse(squared.to_dataset(), method="mean")[param].values
        # the reference variance's own error: Gaussian approximation with its smallest ESS
        # (none for quadrature)
        ess = entry.get("min_ess_bulk")
        ref_var_error = ref_sd**2 * math.sqrt(2.0 / ess) if ess else 0.0
        z.append(
            np.ravel(
                (squared.mean(("chain", "draw")).values - ref_sd**2)
                / np.hypot(mcse_var, ref_var_error)
            )
        )
    assert_z_scores(np.concatenate(z), f"{name}: short NUTS vs reference")
