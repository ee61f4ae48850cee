"""What a numpyro model adds to a run's InferenceData (bayeswb/core/model_data.py): plate
names as dimensions, observed and constant data, the pointwise log likelihood that az.loo
reads, posterior and prior predictive draws."""

import warnings

import arviz as az
import jax.numpy as jnp
import matplotlib
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_likelihood as numpyro_log_likelihood

import bayeswb as bw

matplotlib.use("Agg")


def regression(x, y):
    slope = numpyro.sample("slope", dist.Normal(0.0, 1.0))
    noise = numpyro.sample("noise", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(slope * x, noise), obs=y)


def regression_target():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=20), dtype=jnp.float32)
    y = jnp.asarray(0.5 * np.asarray(x) + 0.3 * rng.normal(size=20), dtype=jnp.float32)
    return bw.Target.from_numpyro(regression, x, y, name="regression"), x, y


@pytest.fixture(scope="module")
def regression_run():
    target, x, y = regression_target()
    return target, bw.sample(target, "nuts", seed=0, num_chains=2, num_samples=200), x, y


# az.loo warns of a Pareto k above its threshold (0.62 at 400 draws) on some runs'
# draws; both estimates read the same draws, so the comparison holds either way
@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto:UserWarning")
def test_a_numpyro_run_has_its_data_with_plate_dims_and_loo_agrees_with_numpyro(regression_run):
    target, result, x, y = regression_run
    idata = result.idata
    assert idata.observed_data["y"].dims == ("data",)
    np.testing.assert_array_equal(idata.observed_data["y"].values, np.asarray(y))
    np.testing.assert_array_equal(idata.constant_data["x"].values, np.asarray(x))
    assert "y" not in idata.constant_data  # the observed argument is data, not a constant
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "data")
    # numpyro's own pointwise log likelihood of the same draws, and az.loo on each
    samples = {name: jnp.asarray(idata.posterior[name].values) for name in ("slope", "noise")}
    theirs = numpyro_log_likelihood(regression, samples, x, y, batch_ndims=2)["y"]
    np.testing.assert_allclose(idata.log_likelihood["y"].values, theirs, rtol=1e-5, atol=1e-5)
    ours = az.loo(idata)
    reference = az.loo(az.from_dict(posterior=samples, log_likelihood={"y": np.asarray(theirs)}))
    assert abs(ours.elpd_loo - reference.elpd_loo) < 1e-3 * abs(reference.elpd_loo)


def test_plates_name_the_dimensions_of_latent_sites():
    result = bw.sample(
        "eight_schools_noncentered", "nuts", seed=0, num_chains=2, num_samples=50, num_warmup=50
    )
    for group in ("posterior", "warmup_posterior"):
        assert result.idata[group]["theta"].dims == ("chain", "draw", "school")
    assert result.idata.constant_data["sigma"].shape == (8,)


def test_the_groups_survive_save_and_load(regression_run, tmp_path):
    _, result, _, _ = regression_run
    path = str(tmp_path / "run.nc")
    result.save(path)
    loaded = bw.load(path).idata
    for group in ("observed_data", "constant_data", "log_likelihood"):
        assert loaded[group].equals(result.idata[group]), group


def test_posterior_predictive_replicates_the_data_and_plot_ppc_runs(regression_run):
    target, result, x, _ = regression_run
    bw.predictive(result, target, seed=1)
    replicated = result.idata.posterior_predictive["y"]
    assert replicated.dims == ("chain", "draw", "data")
    # given a draw, y_rep - slope x is N(0, noise^2): standardised residuals are N(0, 1)
    slope = result.idata.posterior["slope"].values[..., None]
    noise = result.idata.posterior["noise"].values[..., None]
    z = (replicated.values - slope * np.asarray(x)) / noise
    n = z.size
    assert abs(z.mean()) < 3.29 / np.sqrt(n)  # two-sided 1e-3
    assert abs(z.var() - 1.0) < 3.29 * np.sqrt(2.0 / n)
    with warnings.catch_warnings():
        # ArviZ 0.23's plot_ppc uses an API matplotlib 3.11 deprecates (not ours)
        warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
        az.plot_ppc(result.idata)


def test_prior_predictive_has_prior_and_replicated_data():
    target, _, _ = regression_target()
    prior = bw.prior_predictive(target, num_samples=4000, seed=0)
    assert {"prior", "prior_predictive", "observed_data", "constant_data"} <= set(prior.groups())
    slope = prior.prior["slope"].values
    assert slope.shape == (1, 4000) and abs(slope.mean()) < 3.29 / np.sqrt(4000)
    assert prior.prior_predictive["y"].dims == ("chain", "draw", "data")


def test_masked_observations_add_nothing_to_the_log_likelihood():
    observed = jnp.array([True, False, True])

    def masked(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", 3), numpyro.handlers.mask(mask=observed):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    target = bw.Target.from_numpyro(masked, jnp.array([0.1, 99.0, -0.2]))
    result = bw.sample(target, "mala", seed=0, num_chains=2, num_samples=50, num_warmup=50)
    log_lik = result.idata.log_likelihood["y"].values
    assert np.all(log_lik[..., 1] == 0.0) and np.all(log_lik[..., [0, 2]] < 0.0)


def test_other_targets_get_no_model_groups_and_are_refused_a_likelihood():
    result = bw.sample("gaussian", "mala", seed=0, num_chains=2, num_samples=20, num_warmup=20)
    assert not {"observed_data", "log_likelihood"} & set(result.idata.groups())
    with pytest.raises(ValueError, match="is not a numpyro model"):
        bw.log_likelihood(result, bw.models.get("gaussian"))
    with pytest.raises(ValueError, match="is not a numpyro model"):
        bw.prior_predictive(bw.models.get("gaussian"))


def test_the_same_seed_gives_the_same_replicates(regression_run):
    target, result, _, _ = regression_run
    first = bw.predictive(result, target, seed=3).idata.posterior_predictive["y"].values
    again = bw.predictive(result, target, seed=3).idata.posterior_predictive["y"].values
    np.testing.assert_array_equal(first, again)
    other = bw.predictive(result, target, seed=4).idata.posterior_predictive["y"].values
    assert not np.array_equal(first, other)
    assert np.all(np.isfinite(first))
