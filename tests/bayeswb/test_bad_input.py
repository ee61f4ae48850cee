"""Bad input gives one clear error naming what is wrong (the catalogue: docs/errors.md);
the same seed gives the same draws in another process."""

import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayeswb as bw


def standard_normal(**fields):
    return bw.Target.from_logdensity(lambda x: -0.5 * x @ x, dim=2, name="normal", **fields)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bw.models.get("funel"), "unknown model 'funel'.*funnel"),
        (lambda: bw.sample("gaussian", "nutz"), "unknown sampler 'nutz'.*nuts"),
        (lambda: bw.models.get("funnel", dimension=3), "unknown parameter 'dimension'"),
        (lambda: bw.sample("gaussian", "nuts", step_sise=0.1), "step_sise.*step_size"),
        (lambda: bw.sample("gaussian", "nuts", num_samples=0), "num_samples"),
        (lambda: bw.sample("gaussian", "nuts", target_acceptance_rate=1.5), "target_accept"),
    ],
)
def test_names_and_options(call, message):
    with pytest.raises((KeyError, ValueError), match=message):
        call()


def test_initial_point_of_the_wrong_shape_or_not_finite():
    with pytest.raises(ValueError, match=r"init returned shape \(3,\), expected \(2,\)"):
        bw.sample(standard_normal(init=lambda key: jnp.zeros(3)), "nuts")
    with pytest.raises(ValueError, match="init returned a non-finite position"):
        bw.sample(standard_normal(init=lambda key: jnp.full(2, jnp.nan)), "nuts")


def test_log_density_that_is_nan_raises_or_is_not_scalar_at_the_initial_point():
    nan = bw.Target.from_logdensity(lambda x: jnp.log(-jnp.sum(x**2)), dim=2, name="nan")
    with pytest.raises(ValueError, match="target 'nan': log_density is nan at the initial"):
        bw.sample(nan, "mala")

    def raises(x):
        raise RuntimeError("bad model")

    with pytest.raises(ValueError, match="log_density raised at the initial point.*bad model"):
        bw.sample(bw.Target.from_logdensity(raises, dim=2, name="raises"), "nuts")
    vector = bw.Target.from_logdensity(lambda x: -0.5 * x**2, dim=2, name="vector")
    with pytest.raises(ValueError, match=r"must return a scalar .* got shape \(2,\)"):
        bw.sample(vector, "nuts")


def test_nan_region_is_rejected_and_counted_as_divergences():
    # a standard normal whose density is NaN (no mass) beyond x0 = 1
    def log_density(x):
        return jnp.where(x[0] > 1.0, jnp.nan, -0.5 * x @ x)

    target = bw.Target.from_logdensity(
        log_density, dim=2, name="walled", init=lambda key: jnp.zeros(2)
    )
    r = bw.sample(target, "nuts", seed=0, num_chains=2, num_samples=300, num_warmup=300)
    x = r.idata.posterior["x"].values
    assert np.all(np.isfinite(x)) and np.all(x[..., 0] <= 1.0)
    assert int(r.idata.sample_stats["diverging"].sum()) > 0


def test_numpyro_model_with_data_of_the_wrong_shape():
    def regression(features, y):
        w = numpyro.sample("w", dist.Normal(jnp.zeros(3), 1.0))
        numpyro.sample("y", dist.Normal(features @ w, 1.0), obs=y)

    with pytest.raises(ValueError, match="numpyro model 'regression' cannot be initialised"):
        bw.Target.from_numpyro(regression, jnp.ones((10, 4)), jnp.ones(10))


def test_truncated_or_foreign_result_files(tmp_path):
    r = bw.sample("gaussian", "nuts", num_chains=1, num_samples=20, num_warmup=20)
    path = tmp_path / "run.nc"
    r.save(str(path))
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="not a readable bayeswb result"):
        bw.load(str(truncated))
    text = tmp_path / "notes.nc"
    text.write_text("not netcdf")
    with pytest.raises(ValueError, match="not a readable bayeswb result"):
        bw.load(str(text))


def test_same_seed_same_draws_in_another_process_and_x64(tmp_path):
    script = (
        "import sys, numpy as np, bayeswb as bw\n"
        "r = bw.sample('gaussian', 'nuts', seed=5, num_chains=2, num_samples=30, num_warmup=30)\n"
        "np.save(sys.argv[1], r.positions)\n"
    )
    here = bw.sample("gaussian", "nuts", seed=5, num_chains=2, num_samples=30, num_warmup=30)
    saved = tmp_path / "draws.npy"
    subprocess.run([sys.executable, "-c", script, str(saved)], check=True)
    np.testing.assert_array_equal(np.load(saved), here.positions)
    double = bw.sample("gaussian", "nuts", seed=5, num_chains=2, num_samples=30, x64=True)
    assert double.positions.dtype == np.float64 and here.positions.dtype == np.float32
