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
from bayeswb.core.verdict import UnreliableRunWarning


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
    import h5py

    for damaged in ("{not json", '{"sampler": "nuts", "unknown_field": 1}'):
        with h5py.File(path, "a") as handle:
            handle["posterior"].attrs["bayeswb"] = damaged
        with pytest.raises(ValueError, match="its bayeswb metadata is damaged"):
            bw.load(str(path))


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


def test_precision_follows_the_callers_jax_setting_and_resume_keeps_it(tmp_path):
    """x64=None (the default) follows ``jax_enable_x64``; an explicit bool overrides it; a
    checkpoint of a double-precision run resumes in double precision without wrapping."""
    import jax

    options = dict(seed=3, num_chains=2, num_samples=20, num_warmup=20)
    with jax.enable_x64(True):
        followed = bw.sample("gaussian", "mala", **options)
        single = bw.sample("gaussian", "mala", x64=False, **options)
    assert followed.positions.dtype == np.float64 and single.positions.dtype == np.float32
    path = str(tmp_path / "run.ckpt")
    whole = bw.sample("gaussian", "mala", x64=True, **options)
    bw.sample("gaussian", "mala", x64=True, chunk_size=10, checkpoint=path, **options)
    resumed = bw.resume(path)
    assert resumed.positions.dtype == np.float64
    np.testing.assert_allclose(resumed.positions, whole.positions, rtol=1e-10)
    with pytest.raises(ValueError, match="x64 must be True, False or None.*'False'"):
        bw.sample("gaussian", "mala", x64="False", **options)


def test_integer_like_values_are_accepted_everywhere_and_seeds_are_not_truncated():
    small = dict(num_chains=2, num_samples=20, num_warmup=10)
    chunked = bw.sample("gaussian", "mala", chunk_size=np.int64(10), thin=np.int64(2), **small)
    assert chunked.positions.shape == (2, 10, 10)
    assert bw.Target.from_logdensity(lambda x: -x @ x, dim=np.int64(2)).dim == 2
    config = bw.samplers.get("mala").make_config(num_chains=np.int64(3), step_size=np.float32(0.1))
    assert type(config.num_chains) is int and type(config.step_size) is float
    low, high = (bw.sample("gaussian", "mala", seed=s, **small) for s in (0, 2**32))
    assert not np.array_equal(low.positions, high.positions)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": 2**70}, r"seed must be an integer in \[0, 2\*\*64\)"),
        ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*64\)"),
        ({"devices": 1}, r"devices must be a list of jax devices.*got 1"),
        ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
        ({"thin": 2.5}, "thin must be an integer >= 1"),
        ({"step_size": float("inf")}, "step_size must be finite"),
        ({"step_size": float("nan")}, "step_size must be finite"),
    ],
)
def test_bad_run_options_are_one_clear_error(options, message):
    with pytest.raises(ValueError, match=message):
        bw.sample("gaussian", "mala", num_chains=2, num_samples=20, **options)


@pytest.mark.parametrize(("sampler", "failed"), [("is", "pareto_k"), ("mala", "too_few_draws")])
def test_a_single_draw_is_a_flagged_run_not_a_crash(sampler, failed):
    with pytest.warns(UnreliableRunWarning):
        result = bw.sample("gaussian", sampler, num_chains=2, num_samples=1, num_warmup=10)
    assert failed in [check.name for check in result.diagnostics.failed]


@pytest.mark.parametrize(
    ("sampler", "chains", "draws"), [("mala", 10**7, 1000), ("smc", 10**6, 10**4)]
)
def test_a_run_too_large_for_memory_is_refused_before_it_runs(sampler, chains, draws):
    """The issue's reproductions: mala aborted inside XLA, smc ended in an OverflowError.
    The output alone needs hundreds of GB, so the estimate refuses before compiling."""
    target = bw.models.get("gaussian", dim=3)
    with pytest.raises(ValueError, match="too large for memory .* run it in pieces"):
        bw.sample(target, sampler, num_chains=chains, num_samples=draws)


def test_a_chunked_run_too_large_for_memory_when_kept_is_refused():
    """Chunks bound the device's memory, not the host's: a chunked run keeps every
    chunk's draws unless it streams them. Here each chunk needs 0.1 GB, the run 120 GB."""
    target = bw.models.get("gaussian", dim=3)
    settings = dict(num_chains=10**6, num_samples=10**4, num_warmup=0, chunk_size=10)
    with pytest.raises(ValueError, match="too large for memory"):
        bw.sample(target, "mala", **settings)
