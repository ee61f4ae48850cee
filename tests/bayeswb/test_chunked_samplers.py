"""Every MCMC sampler with a ChainKernel makes, in chunks, the draws of its whole run.

A chunked run (chunk size not dividing ``num_samples``) and a whole run use the same keys
(``fold_in(sample_key, t)``) and the same ``start``/``step``, so their draws, sample
stats and gradient counts must agree to float32 round-off (the two are separately
compiled programs, so bit equality is not promised).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayeswb as bw

RUN = {"seed": 11, "num_chains": 2, "num_samples": 60, "num_warmup": 40}
CHUNK = 25  # 60 = 25 + 25 + 10


def _data_target():
    """A 3-d Gaussian-mean model with the minibatch interface of langevin.stochastic_gradient."""
    y = jnp.linspace(-1.0, 1.0, 30)[:, None] * jnp.ones(3)
    prior = lambda x: -0.5 * jnp.sum(x**2)
    lik = lambda x, yi: -0.5 * jnp.sum((yi - x) ** 2)
    return bw.Target.from_logdensity(
        lambda x: prior(x) + jnp.sum(jax.vmap(lik, (None, 0))(x, y)),
        dim=3,
        name="gaussian_mean",
        minibatch=bw.MinibatchData(y, lik, prior),
    )


GAUSSIAN = bw.models.get("gaussian", dim=3)
CASES = [
    ("nuts", GAUSSIAN, {}),
    ("hmc", GAUSSIAN, {"num_integration_steps": 4}),
    ("ula", GAUSSIAN, {"step_size": 0.1}),
    ("mala", GAUSSIAN, {}),
    ("kinetic_langevin", GAUSSIAN, {"integrator": "obabo", "metropolize": True}),
    ("randomized_midpoint", GAUSSIAN, {}),
    # these two drift apart under the tests' legacy emitters (tests/conftest.py)
    pytest.param("mclmc", GAUSSIAN, {}, marks=pytest.mark.default_emitters, id="mclmc"),
    pytest.param("mams", GAUSSIAN, {}, marks=pytest.mark.default_emitters, id="mams"),
    ("nrpt", GAUSSIAN, {"num_temperatures": 4, "reference_scale": 2.0, "num_tuning_rounds": 2}),
    ("sgld", _data_target(), {"step_size": 1e-3, "batch_size": 10}),
    ("sghmc", _data_target(), {"step_size": 0.01, "batch_size": 10, "num_integration_steps": 3}),
    (
        "csgmcmc",
        _data_target(),
        {"step_size": 0.01, "batch_size": 10, "cycle_length": 10, "exploration_fraction": 0.3},
    ),
    ("entropy_mcmc", _data_target(), {"step_size": 1e-3, "batch_size": 10}),
    # self-tuned: SGLD's warmup, then the cycles
    ("csgmcmc", _data_target(), {"batch_size": 10, "cycle_length": 10, "num_warmup": 100}),
]


@pytest.mark.parametrize(
    "sampler, target, options", CASES, ids=[getattr(c, "id", None) or c[0] for c in CASES]
)
def test_chunked_run_equals_whole_run(sampler, target, options):
    assert bw.samplers.get(sampler).kernel is not None
    settings = {**RUN, **options}
    whole = bw.sample(target, sampler, **settings)
    chunked = bw.sample(target, sampler, chunk_size=CHUNK, **settings)
    assert chunked.positions.shape == whole.positions.shape == (2, 60, 3)
    np.testing.assert_allclose(chunked.positions, whole.positions, rtol=1e-6, atol=1e-6)
    for name in whole.idata.sample_stats.data_vars:
        np.testing.assert_allclose(
            chunked.idata.sample_stats[name], whole.idata.sample_stats[name], rtol=1e-6,
            atol=1e-6, err_msg=name,
        )  # fmt: skip
    for cost in ("n_grad_evals", "n_logdensity_evals"):
        assert chunked.cost[cost] == whole.cost[cost], cost
    if whole.log_z is not None:  # nrpt's stepping stones, from the last carry
        np.testing.assert_allclose(chunked.log_z, whole.log_z, rtol=1e-6)


def test_interrupted_entropy_mcmc_resumes_to_the_whole_runs_draws(tmp_path, monkeypatch):
    """The carry of entropy_mcmc is a nested pytree (the SGLD state of the joint (x, x_a)):
    it must survive a checkpoint, and the resumed run must make the whole run's draws."""
    from bayeswb.execution import long_run

    sampler, target, options = CASES[-2]
    assert sampler == "entropy_mcmc"
    path = str(tmp_path / "run.ckpt")
    save, saves = long_run.save_checkpoint, []

    def save_then_interrupt(run):
        save(run)
        saves.append(run.done)
        if len(saves) == 2:  # the start and one chunk are on disk
            raise KeyboardInterrupt

    monkeypatch.setattr(long_run, "save_checkpoint", save_then_interrupt)
    chunks = {"chunk_size": CHUNK, "checkpoint": path}
    partial = bw.sample(target, "entropy_mcmc", **chunks, **RUN, **options)
    assert partial.partial and partial.positions.shape == (2, CHUNK, 3)
    monkeypatch.setattr(long_run, "save_checkpoint", save)
    resumed = bw.resume(path, target=target)
    whole = bw.sample(target, "entropy_mcmc", **RUN, **options)
    np.testing.assert_allclose(resumed.positions, whole.positions, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        resumed.idata.sample_stats["auxiliary_position"],
        whole.idata.sample_stats["auxiliary_position"],
        rtol=1e-6,
        atol=1e-6,
    )
    assert resumed.cost["n_grad_evals"] == whole.cost["n_grad_evals"]
    assert resumed.cost["n_logdensity_evals"] == whole.cost["n_logdensity_evals"]


def test_streamed_run_keeps_the_kernels_log_z(tmp_path):
    """nrpt's stepping-stone log Z comes from the last carry: a run streamed to a file
    (draws written chunk by chunk, the result read back from the file) reports the same
    pooled log Z and standard error as the chunked run held in memory, and keeps them on
    loading."""
    _, target, options = next(case for case in CASES if case[0] == "nrpt")
    path = str(tmp_path / "run.nc")
    chunked = bw.sample(target, "nrpt", chunk_size=CHUNK, **RUN, **options)
    streamed = bw.sample(target, "nrpt", chunk_size=CHUNK, stream=path, **RUN, **options)
    assert chunked.log_z is not None and chunked.log_z_se is not None
    np.testing.assert_allclose(streamed.log_z, chunked.log_z, rtol=1e-6)
    np.testing.assert_allclose(streamed.log_z_se, chunked.log_z_se, rtol=1e-6)
    assert bw.load(path).log_z == streamed.log_z
