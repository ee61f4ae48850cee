"""mclmc and mams (samplers/langevin/microcanonical.py): moments against exact answers,
gradient counts against a counting log density (their chunked runs are checked in
tests/bayeswb/test_chunked_samplers.py).

Targets are Gaussians with known moments (variances from 0.1 to 1). Bounds are
Bonferroni z bounds at a 1e-3 family-wise false-alarm rate (tests/helpers.py); mclmc's
variance also gets its asymptotic bias allowance, derived below, never tuned.
"""

import functools

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayeswb as bw
from bayeswb.core.draws import exact_count
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers.langevin.microcanonical import (
    MAMS_KERNEL,
    MCLMC_KERNEL,
    MAMSConfig,
    MCLMCConfig,
    mclmc_tuning_steps,
)
from tests.helpers import assert_z_scores, counted_gaussian, moment_z_scores

DIM = 4
TARGET = bw.models.get("gaussian", dim=DIM, condition_number=10.0)
MEAN = np.zeros(DIM)
SD = np.asarray(TARGET.reference.sd["x"])
RUN = {"seed": 3, "num_chains": 4, "num_samples": 1000, "num_warmup": 500}


@functools.cache
def _run(sampler):
    return bw.sample(TARGET, sampler, **RUN)


# --------------------------------------------------------------------------- moments


def test_mams_is_exact():
    r = _run("mams")
    z = moment_z_scores(r, "x", MEAN, SD)
    assert_z_scores(np.concatenate([z["mean"], z["var"]]), "mams moments")
    assert r.diagnostics.ok, r.diagnostics  # acceptance near its target, no divergences
    acceptance = float(r.idata.sample_stats["acceptance_rate"].mean())
    assert abs(acceptance - MAMSConfig().target_acceptance_rate) < 0.1


def test_mclmc_mean_is_unbiased_and_its_variance_bias_is_within_the_energy_bound():
    """The mean of a symmetric target is unbiased (the isokinetic step is symmetric
    under x -> -x). The variance is biased: Robnik and Seljak (2024, "Controlling the
    asymptotic bias of the unadjusted (microcanonical) Hamiltonian and Langevin Monte
    Carlo") show that on a Gaussian the squared relative bias of a second moment is
    bounded by the energy-error variance per dimension, ``b^2 <= Var[E] / d``. So each
    coordinate's variance may be off by ``sqrt(Var[E] / d) * sd^2``, with ``Var[E] / d``
    the run's own (its energy changes); only the excess over that allowance is scored
    in MCSE units."""
    r = _run("mclmc")
    assert int(r.idata.sample_stats["diverging"].sum()) == 0
    energy_change = r.idata.sample_stats["energy_change"].values
    energy_variance_per_dim = float(np.mean(energy_change**2)) / DIM
    # the tuner aims at 5e-4; the allowance is what this run's steps actually gave
    assert energy_variance_per_dim < 10 * MCLMCConfig().desired_energy_variance
    z = moment_z_scores(r, "x", MEAN, SD)
    squared = (r.idata.posterior["x"] - MEAN) ** 2
    error = np.abs(squared.mean(("chain", "draw")).values - SD**2)
    mcse = az.mcse(squared.to_dataset(name="x"), method="mean")["x"].values
    allowance = np.sqrt(energy_variance_per_dim) * SD**2
    excess = np.maximum(error - allowance, 0.0) / mcse
    assert_z_scores(np.concatenate([z["mean"], excess]), "mclmc mean and variance excess")


# --------------------------------------------------------------------------- costs


def _counting_target(dim):
    """A Gaussian of unequal scales whose every log-density value and gradient is counted
    on the host (:func:`helpers.counted_gaussian`)."""
    return counted_gaussian(dim, scales=jnp.linspace(0.5, 1.0, dim))


def _one_chain(kernel, target, config, key):
    """``start`` and ``num_samples`` steps of one chain, compiled without vmap (a batched
    loop would run the callbacks of finished lanes too): the counted gradients, and
    the ones the kernel reports."""

    @jax.jit
    def run(key):
        carry, _, start_grads = kernel.start(key, target, config)

        def step(carry, t):
            return kernel.step(jax.random.fold_in(key, t), carry, target, config)

        _, (_, stats) = jax.lax.scan(step, carry, jnp.arange(config.num_samples))
        return start_grads, stats

    start_grads, stats = run(key)
    jax.effects_barrier()
    return int(start_grads), stats, int(np.sum(kernel.grads(stats)))


def test_mclmc_counts_every_gradient():
    # num_warmup 17: stage 1 takes round(5.1) = 5 steps, stage 2 5, the preconditioner
    # stage round(5 / 3) = 2 (blackjax's returned count says 5 // 3 = 1), stage 3 5
    target, counts = _counting_target(3)
    config = MCLMCConfig(num_chains=1, num_samples=7, num_warmup=17)
    start, _, steps = _one_chain(MCLMC_KERNEL, target, config, jax.random.key(0))
    assert mclmc_tuning_steps(17, True) == 17 and mclmc_tuning_steps(17, False) == 18
    assert (start, steps) == (1 + 2 * 17, 2 * 7)
    assert counts == {"grad": start + steps, "value": 0}


def test_mams_counts_every_gradient():
    target, counts = _counting_target(3)
    config = MAMSConfig(num_chains=1, num_samples=7, num_warmup=30)
    start, stats, steps = _one_chain(MAMS_KERNEL, target, config, jax.random.key(1))
    assert steps == 2 * int(np.sum(stats["n_steps"]))
    assert start > 1 + 2 * 30  # the tuner's 30 proposals take at least one step each
    assert counts == {"grad": start + steps, "value": 0}


def test_cost_of_a_multi_chain_run_is_the_sum_of_its_parts():
    r = _run("mclmc")
    chains, samples = RUN["num_chains"], RUN["num_samples"]
    warmup = mclmc_tuning_steps(RUN["num_warmup"], True)
    assert r.cost["n_grad_evals"] == chains * (1 + 2 * warmup) + 2 * chains * samples


# --------------------------------------------------------------------------- runs


@pytest.mark.parametrize(
    "kernel, config_cls", [(MCLMC_KERNEL, MCLMCConfig), (MAMS_KERNEL, MAMSConfig)]
)
def test_a_chain_that_goes_non_finite_is_flagged_diverging(kernel, config_cls):
    """Also: with num_warmup=0 the configured step and L (per sqrt(dim)) are used."""
    # a density that is NaN beyond |x_i| = 3: a step of 40 sqrt(2) always lands there
    target = bw.Target.from_logdensity(
        lambda x: jnp.where(jnp.all(jnp.abs(x) < 3.0), -0.5 * x @ x, jnp.nan), dim=2
    )
    config = config_cls(num_chains=1, num_samples=10, num_warmup=0, step_size_per_sqrt_dim=40.0)
    draws = run_whole(jax.random.key(0), target, config, kernel)
    assert bool(np.all(draws.stats["diverging"]))
    assert np.all(np.isfinite(draws.positions)) and np.all(np.isfinite(draws.stats["lp"]))
    np.testing.assert_allclose(draws.stats["step_size"], 40.0 * np.sqrt(2), rtol=1e-6)
    if config_cls is MCLMCConfig:
        np.testing.assert_allclose(draws.stats["L"], np.sqrt(2), rtol=1e-6)
        assert exact_count(draws.n_grad_evals) == 1 + 2 * 10
    else:  # L = num_integration_steps * eps
        np.testing.assert_allclose(draws.stats["L"], 2 * 40.0 * np.sqrt(2), rtol=1e-6)
        assert exact_count(draws.n_grad_evals) == 1 + 2 * int(np.sum(draws.stats["n_steps"]))


def test_bad_options_and_one_dimensional_targets_are_refused():
    with pytest.raises(ValueError, match="num_warmup"):
        MCLMCConfig(num_warmup=5)
    with pytest.raises(ValueError, match="num_integration_steps"):
        MAMSConfig(num_integration_steps=1.0)
    with pytest.raises(ValueError, match="dim >= 2"):
        bw.sample(bw.models.get("gaussian", dim=1), "mclmc", num_chains=1, num_samples=5)
