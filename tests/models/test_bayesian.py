"""The numpyro models: their data, and their stored reference posteriors reproduced by NUTS."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest
from helpers import assert_z_scores

import bayeswb as bw
from bayeswb.models import bayesian

# every stored entry is attached by its factory (checked in the NUTS test below)
REFERENCE_MODELS = sorted(bayesian.stored_references())


def test_stored_references_meet_the_acceptance_rule():
    for name, entry in bayesian.stored_references().items():
        assert entry["max_rhat"] < 1.01, name
        assert entry["divergences"] == 0, name
        assert "NUTS" in entry["source"] and "seed" in entry["source"], name


def test_reference_models_include_the_eight_schools_and_logistic_regression():
    assert {"eight_schools_centered", "logistic_breast_cancer"} <= set(REFERENCE_MODELS)


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


@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_short_nuts_run_reproduces_the_reference(name):
    target = bw.models.get(name)
    entry = bayesian.stored_references()[name]
    assert target.reference is not None and target.reference.source == entry["source"]
    result = bw.sample(target, "nuts", seed=11, num_chains=4, num_samples=500, num_warmup=500)
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
        # the reference variance's own error, Gaussian approximation with its smallest ESS
        ref_var_error = ref_sd**2 * math.sqrt(2.0 / entry["min_ess_bulk"])
        z.append(
            np.ravel(
                (squared.mean(("chain", "draw")).values - ref_sd**2)
                / np.hypot(mcse_var, ref_var_error)
            )
        )
    assert_z_scores(np.concatenate(z), f"{name}: short NUTS vs reference")
