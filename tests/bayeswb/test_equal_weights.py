"""Weighted runs that ArviZ reads right (bayeswb/core/equal_weights.py): the posterior group
holds equal-weight draws resampled run by run, the particles stay in weighted_posterior,
and both survive a save and a load."""

import json

import arviz as az
import numpy as np
import pytest
from helpers import weighted_result
from scipy.stats import norm

import bayeswb as bw
from bayeswb.core.equal_weights import stratified_indices
from bayeswb.core.result import RESULT_ATTRIBUTE


def test_stratified_resampling_keeps_each_particle_about_n_w_times_in_order():
    rng = np.random.default_rng(0)
    log_weights = 2.0 * rng.normal(size=(6, 500))
    log_weights[1, :50] = np.nan  # NaN is weight zero
    log_weights[2] = -np.inf  # a run with no weight at all
    log_weights[3, 7] = np.inf  # and one whose weights are not finite
    index = stratified_indices(log_weights)
    assert (index[2] == -1).all() and (index[3] == -1).all()
    for run in (0, 1, 4, 5):
        w = np.exp(np.nan_to_num(log_weights[run], nan=-np.inf))
        w /= w.sum()
        copies = np.bincount(index[run], minlength=500)
        assert np.all(np.abs(copies - 500 * w) < 2)
        assert np.all(np.diff(index[run]) >= 0)  # duplicates side by side
    assert np.all(np.bincount(index[1], minlength=500)[:50] == 0)
    np.testing.assert_array_equal(stratified_indices(log_weights), index)  # reproducible


def per_run_expectation(result, name):
    """The mean over runs of each run's self-normalised estimate of E[name], and the sd of
    stratified resampling's error about it given the particles (at most the multinomial's
    sqrt(Var_w(x) / n) per run, Douc et al. 2005)."""
    values = result.idata.weighted_posterior[name].values
    values = values.reshape(values.shape[0], values.shape[1], -1)
    log_w = result.log_weights
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    means = np.einsum("cn,cnk->ck", w, values)
    variances = np.einsum("cn,cnk->ck", w, (values - means[:, None]) ** 2)
    runs, n = log_w.shape
    return means.mean(axis=0), np.sqrt(variances.sum(axis=0) / n) / runs


def test_arviz_mean_of_a_weighted_run_is_its_runs_weighted_mean():
    result = weighted_result()  # IS of N(1, 1) with N(0, 2^2): 4 runs of 4000
    expected, noise = per_run_expectation(result, "x")
    arviz = az.summary(result.idata, var_names=["x"], kind="stats").loc["x[0]", "mean"]
    assert abs(arviz - expected[0]) < norm.ppf(1 - 1e-3 / 2) * noise[0]
    # read as equal draws, the particles were the silent error: mean 0 instead of 1
    particles = result.idata.weighted_posterior["x"].values
    weighted = bw.summary(result).loc["x[0]"]
    assert abs(particles.mean() - 1.0) > 10 * weighted["mcse_mean"]


def test_a_sampled_weighted_run_reads_right_in_arviz():
    target = bw.models.get("eight_schools_noncentered")
    result = bw.sample(target, "is", seed=0, num_chains=4, num_samples=2000)
    arviz = az.summary(result.idata, kind="stats")
    names = list(result.idata.posterior.data_vars)
    checks = []
    for name in names:
        expected, noise = per_run_expectation(result, name)
        labels = [lab for lab in arviz.index if lab == name or lab.startswith(f"{name}[")]
        checks += list(zip(arviz.loc[labels, "mean"].to_numpy(), expected, noise, strict=True))
    z = norm.ppf(1 - 1e-3 / (2 * len(checks)))  # every coordinate, 1e-3 family-wise
    for got, expected, noise in checks:
        assert abs(got - expected) < z * noise
    assert set(names) == set(result.idata.weighted_posterior.data_vars)


def test_weighted_and_equal_weight_draws_survive_save_and_load(tmp_path):
    result = weighted_result(n=50)
    path = tmp_path / "weighted.nc"
    result.save(str(path))
    loaded = bw.load(str(path))
    for group, name in [
        ("posterior", "x"),
        ("weighted_posterior", "x"),
        ("unconstrained_posterior", "position"),
    ]:
        np.testing.assert_array_equal(
            loaded.idata[group][name].values, result.idata[group][name].values
        )
    np.testing.assert_array_equal(loaded.log_weights, result.log_weights)
    assert loaded.log_z == result.log_z and loaded.log_z_se == result.log_z_se
    np.testing.assert_array_equal(
        loaded.idata.sample_stats["log_marginal_likelihood"].values,
        result.idata.sample_stats["log_marginal_likelihood"].values,
    )


def test_a_weighted_run_saved_in_the_old_layout_loads_in_the_new(tmp_path):
    result = weighted_result(n=50)
    groups = {name: result.idata[name] for name in result.idata.groups()}
    groups["posterior"] = groups.pop("weighted_posterior")  # particles in posterior
    old = az.InferenceData(**groups)
    meta = {"sampler": "manual_is", "target": "normal", "config": {}, "cost": result.cost}
    old.posterior.attrs[RESULT_ATTRIBUTE] = json.dumps(meta)
    old.to_netcdf(str(tmp_path / "old.nc"))
    loaded = bw.load(str(tmp_path / "old.nc"))
    np.testing.assert_array_equal(
        loaded.idata.weighted_posterior["x"].values, result.idata.weighted_posterior["x"].values
    )
    np.testing.assert_array_equal(
        loaded.idata.posterior["x"].values, result.idata.posterior["x"].values
    )


def test_summary_honours_arviz_options_and_a_weighted_run_refuses_them():
    result = weighted_result(n=50)
    with pytest.raises(TypeError, match="takes no options .*hdi_prob"):
        bw.summary(result, hdi_prob=0.9)
    mcmc = bw.sample("gaussian", "mala", seed=0, num_chains=2, num_samples=100, num_warmup=100)
    assert "hdi_5%" in bw.summary(mcmc, hdi_prob=0.9).columns
