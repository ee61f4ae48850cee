"""bw.sample end to end: one compilation, ArviZ groups, cost, save/load, score, summary."""

import math

import jax
import numpy as np
import pytest
from helpers import weighted_result
from scipy.stats import norm

import bayeswb as bw
from bayeswb.core.log_evidence import combine_log_z


def counting_target(dim=3):
    """A standard normal whose log density counts how often JAX traces it."""
    traces = []

    def log_density(x):
        traces.append(1)
        return -0.5 * x @ x

    return bw.Target.from_logdensity(log_density, dim=dim, name="counted"), traces


def test_a_run_compiles_once_and_a_repeat_reuses_it():
    target, traces = counting_target()
    first = bw.sample(target, "nuts", seed=0, num_chains=2, num_samples=30, num_warmup=30)
    traced_once = len(traces)
    assert 0 < traced_once < 30, "the log density must be traced a few times, not per step"
    second = bw.sample(target, "nuts", seed=1, num_chains=2, num_samples=30, num_warmup=30)
    assert len(traces) == traced_once, "a repeated run must not retrace"
    assert second.cost["compile_s"] == 0.0 and first.cost["compile_s"] > 0.0
    assert not np.allclose(first.positions, second.positions)


def test_trace_count_does_not_grow_with_steps_or_chains():
    counts = []
    for chains, steps in [(1, 10), (4, 80)]:
        target, traces = counting_target()
        bw.sample(target, "nuts", num_chains=chains, num_samples=steps, num_warmup=steps)
        counts.append(len(traces))
    assert counts[0] == counts[1]


def test_same_seed_same_draws_and_key_seed_accepted():
    t = bw.models.get("gaussian", dim=2)
    a = bw.sample(t, "hmc", seed=7, num_chains=2, num_samples=20, num_warmup=10)
    b = bw.sample(t, "hmc", seed=jax.random.key(7), num_chains=2, num_samples=20, num_warmup=10)
    np.testing.assert_array_equal(a.positions, b.positions)


@pytest.fixture(scope="module")
def nuts_run():
    return bw.sample("gaussian", "nuts", seed=0, num_chains=2, num_samples=100, num_warmup=100)


def test_idata_groups_and_names(nuts_run):
    idata = nuts_run.idata
    assert {"posterior", "sample_stats", "warmup_posterior", "warmup_sample_stats"} <= set(
        idata.groups()
    )
    assert idata.posterior["x"].dims == ("chain", "draw", "x_dim_0")
    for name in ["lp", "acceptance_rate", "diverging", "step_size", "n_steps", "energy"]:
        assert idata.sample_stats[name].shape == (2, 100), name
    assert idata.warmup_posterior["x"].shape == (2, 100, 10)
    assert nuts_run.log_z is None and nuts_run.log_z_se is None


def test_save_and_load_lose_nothing(nuts_run, tmp_path):
    path = tmp_path / "run.nc"
    nuts_run.save(str(path))
    loaded = bw.load(str(path))
    assert loaded.sampler == "nuts" and loaded.target == "gaussian"
    assert loaded.config == nuts_run.config and loaded.cost == nuts_run.cost
    assert set(loaded.idata.groups()) == set(nuts_run.idata.groups())
    for group in nuts_run.idata.groups():
        for name, value in nuts_run.idata[group].data_vars.items():
            np.testing.assert_array_equal(loaded.idata[group][name].values, value.values)
            assert loaded.idata[group][name].dtype == value.dtype
    np.testing.assert_array_equal(loaded.positions, nuts_run.positions)


def test_load_rejects_foreign_files(tmp_path):
    import arviz as az

    path = tmp_path / "other.nc"
    az.from_dict(posterior={"a": np.zeros((1, 5))}).to_netcdf(str(path))
    with pytest.raises(ValueError, match="not written by bayeswb"):
        bw.load(str(path))


def test_summary_has_arviz_columns_and_cost(nuts_run):
    frame = bw.summary(nuts_run)
    assert {"mean", "sd", "ess_bulk", "r_hat"} <= set(frame.columns)
    assert frame.attrs["n_grad_evals"] == nuts_run.cost["n_grad_evals"]


def test_combine_log_z_is_log_mean_exp_with_delta_method_se():
    per_run = np.log(np.array([1.0, 2.0, 3.0, 2.0]))
    log_z, se = combine_log_z(per_run)
    np.testing.assert_allclose(log_z, np.log(2.0))
    np.testing.assert_allclose(se, np.std([1, 2, 3, 2], ddof=1) / 2 / 2.0)
    assert combine_log_z(np.array([0.5])) == (0.5, None)
    assert combine_log_z(np.array([-np.inf, -np.inf]))[0] == -np.inf


def test_weighted_output_is_scored_with_its_weights():
    target = bw.Target.from_logdensity(
        lambda x: -0.5 * ((x[0] - 1.0) ** 2) - 0.5 * np.log(2 * np.pi),
        dim=1,
        name="normal",
        log_z=0.0,
        reference=bw.Reference({"x": np.ones(1)}, {"x": np.ones(1)}, "exact"),
        sample_exact=lambda key, n: 1.0 + jax.random.normal(key, (n, 1)),
    )
    result = weighted_result()
    scores = bw.score(result, target)
    # 4 independent z-scores (mean, sd, log Z) at a 1e-3 family-wise false-alarm rate
    bound = norm.ppf(1 - 1e-3 / 6)
    assert scores["mean_z_max"] < bound and scores["sd_z_max"] < bound
    assert abs(scores["log_z_error_in_se"]) < bound
    assert scores["sliced_wasserstein"] < 5 * scores["sliced_wasserstein_exact"]
    frame = bw.summary(result)
    assert "ess_weights" in frame.columns
    assert frame.loc["x[0]", "ess_weights"] < 4 * 4000


def test_an_exact_sampler_that_does_not_trace_is_still_scored():
    # score compiles the exact sampler where it traces; one written with numpy is called
    # as it is, and both give the same kind of distance
    def numpy_sampler(key, n):
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        return 1.0 + np.random.default_rng(seed).standard_normal((n, 1))

    def normal_with(sample_exact):
        return bw.Target.from_logdensity(
            lambda x: -0.5 * ((x[0] - 1.0) ** 2), dim=1, name="normal", sample_exact=sample_exact
        )

    result = weighted_result()
    traced = bw.score(result, normal_with(lambda key, n: 1.0 + jax.random.normal(key, (n, 1))))
    untraced = bw.score(result, normal_with(numpy_sampler))
    for scores in (traced, untraced):
        assert 0.0 < scores["sliced_wasserstein"] < 5 * scores["sliced_wasserstein_exact"]


def test_a_reference_made_by_monte_carlo_counts_its_own_error_in_the_score():
    # a reference mean 0.1 off the truth, with a stated Monte Carlo error of 0.05: the
    # score's z divides by the run's and the reference's errors in quadrature
    def normal_with(reference):
        return bw.Target.from_logdensity(
            lambda x: -0.5 * ((x[0] - 1.0) ** 2), dim=1, name="normal", reference=reference
        )

    exact = bw.Reference({"x": np.full(1, 1.1)}, {"x": np.ones(1)}, "exact")
    by_mc = bw.Reference(exact.mean, exact.sd, "a run", mcse_mean={"x": np.full(1, 0.05)})
    result = weighted_result()
    row = bw.summary(result).loc["x[0]"]
    error = abs(row["mean"] - 1.1)
    np.testing.assert_allclose(
        bw.score(result, normal_with(exact))["mean_z_max"], error / row["mcse_mean"], rtol=1e-3
    )
    np.testing.assert_allclose(
        bw.score(result, normal_with(by_mc))["mean_z_max"],
        error / np.hypot(row["mcse_mean"], 0.05),
        rtol=1e-3,
    )
    assert bw.models.get("gp_regression").reference.mcse_mean is not None


def test_a_log_z_made_by_monte_carlo_counts_its_own_error_in_the_score():
    # a true log Z given as 0.1 (the run's normaliser is 0) with a stated standard error
    # of 0.05: the score's z divides by the run's and the truth's errors in quadrature
    def normal_with(**metadata):
        return bw.Target.from_logdensity(
            lambda x: -0.5 * ((x[0] - 1.0) ** 2) - 0.5 * math.log(2 * math.pi),
            dim=1,
            name="normal",
            log_z=0.1,
            metadata=metadata,
        )

    result = weighted_result()
    error = result.log_z - 0.1
    exact = bw.score(result, normal_with())["log_z_error_in_se"]
    np.testing.assert_allclose(exact, error / result.log_z_se, rtol=1e-6)
    estimated = bw.score(result, normal_with(log_z_se=0.05))["log_z_error_in_se"]
    np.testing.assert_allclose(estimated, error / math.hypot(result.log_z_se, 0.05), rtol=1e-6)
    assert bw.models.get("vae_digits").metadata["log_z_se"] > 0


def test_importance_k_hat_reaches_score_and_summary():
    # a proposal narrower than the target (N(0, 0.5^2) for N(0, 1)): heavy-tailed weights
    target = bw.models.get("gaussian", dim=1)
    narrow = bw.sample(target, "is", seed=0, num_chains=2, num_samples=2000, proposal_scale=0.5)
    assert bw.score(narrow, target)["pareto_k"] > 0.7
    assert bw.summary(narrow).attrs["pareto_k"] == bw.score(narrow, target)["pareto_k"]
    assert "pareto_k" not in bw.score(bw.sample(target, "nuts", num_samples=50), target)
