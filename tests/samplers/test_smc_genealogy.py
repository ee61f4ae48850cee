"""The genealogy estimate of an SMC run's log-Z variance (bayeswb.samplers.smc.genealogy),
its pooling into the reported standard error, and the verdict that compares it with the
spread over runs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from helpers import z_bound

import bayeswb as bw
from bayeswb.core.result import build_idata
from bayeswb.core.verdict import diagnose
from bayeswb.samplers.smc.genealogy import relative_variance

# a linear-Gaussian state-space model: x_0 ~ N(0, 1), x_t = A x_{t-1} + N(0, Q),
# y_t ~ N(x_t, R); its evidence is exact by the Kalman filter
A, Q, R, STEPS = 0.9, 0.5, 2.0, 10
OBSERVATIONS = np.random.default_rng(0).normal(0.0, 1.5, size=STEPS)


def kalman_log_z(y: np.ndarray) -> float:
    mean, var, log_z = 0.0, 1.0, 0.0
    for t, obs in enumerate(y):
        if t:
            mean, var = A * mean, A * A * var + Q
        predictive = var + R
        log_z += -0.5 * (math.log(2 * math.pi * predictive) + (obs - mean) ** 2 / predictive)
        gain = var / predictive
        mean, var = mean + gain * (obs - mean), (1 - gain) * var
    return log_z


def bootstrap_filter(key: jax.Array, particles: int) -> tuple[jax.Array, jax.Array]:
    """One run of the bootstrap particle filter with multinomial resampling at every
    step: (log Z_hat, Lee and Whiteley's relative variance from its Eves)."""

    def log_g(x, obs):
        return -0.5 * (jnp.log(2 * jnp.pi * R) + (obs - x) ** 2 / R)

    first, key = jax.random.split(key)
    x = jax.random.normal(first, (particles,))
    log_w = log_g(x, OBSERVATIONS[0])
    carry = (x, log_w, jnp.arange(particles), jax.nn.logsumexp(log_w) - jnp.log(particles))

    def step(carry, inputs):
        x, log_w, eve, log_z = carry
        key, obs = inputs
        pick, move = jax.random.split(key)
        parents = jax.random.categorical(pick, log_w, shape=(particles,))
        x = A * x[parents] + math.sqrt(Q) * jax.random.normal(move, (particles,))
        log_w = log_g(x, obs)
        log_z = log_z + jax.nn.logsumexp(log_w) - jnp.log(particles)
        return (x, log_w, eve[parents], log_z), None

    keys = jax.random.split(key, STEPS - 1)
    (_, log_w, eve, log_z), _ = jax.lax.scan(step, carry, (keys, OBSERVATIONS[1:]))
    return log_z, relative_variance(log_w, eve, jnp.array(STEPS - 1))


def test_the_genealogy_estimate_is_unbiased_for_the_relative_variance_of_z():
    """Under multinomial resampling, ``Z_hat**2 v`` is unbiased for ``Var(Z_hat)``
    (Lee and Whiteley 2018, Theorem 1), so ``d = (Z_hat/Z)**2 v - (Z_hat/Z - 1)**2`` has
    mean zero (Z_hat is unbiased): tested over 20000 independent runs of a 16-particle
    filter, against its MCSE. The relative variance of Z_hat is about 0.25 here; an
    exponent one short (n instead of n + 1) or one long moves the mean of d by 12 MCSE
    (measured when written)."""
    runs, particles = 20000, 16
    keys = jax.random.split(jax.random.key(7), runs)
    log_z, v = jax.jit(jax.vmap(lambda k: bootstrap_filter(k, particles)))(keys)
    ratio = np.exp(np.asarray(log_z, np.float64) - kalman_log_z(OBSERVATIONS))
    d = ratio**2 * np.asarray(v, np.float64) - (ratio - 1.0) ** 2
    z = d.mean() / (d.std(ddof=1) / math.sqrt(runs))
    assert abs(z) < z_bound(1), f"mean of d {d.mean():.4f}, z = {z:.2f}"
    z_mean = (ratio.mean() - 1.0) / (ratio.std(ddof=1) / math.sqrt(runs))
    assert abs(z_mean) < z_bound(1), f"Z_hat / Z averages {ratio.mean():.4f}, z = {z_mean:.2f}"


def _weighted_runs(log_z_per_run, own_variance):
    x = np.random.default_rng(3).normal(size=(4, 1000, 1))
    return build_idata(
        {"x": x},
        x,
        {},
        log_weights=np.zeros((4, 1000)),
        log_z_per_run=np.asarray(log_z_per_run),
        log_z_relative_variance=np.asarray(own_variance),
    )


def test_log_z_spread_fires_when_runs_disagree_beyond_their_own_variance():
    """Four runs whose log Z are 0.3 apart while each reports an sd of 0.01 (some run
    misses mass the others found) fail; the same runs reporting an sd of 0.3 pass."""
    spread = [0.0, 0.3, -0.3, 0.1]
    failed = diagnose(_weighted_runs(spread, np.full(4, 1e-4)), {}).failed
    assert "log_z_spread" in {check.name for check in failed}
    quiet = diagnose(_weighted_runs(spread, np.full(4, 0.09)), {})
    assert "log_z_spread" not in {check.name for check in quiet.failed}


def test_a_single_smc_run_reports_a_standard_error_that_survives_a_save(tmp_path):
    """One run has no spread over runs; its SE comes from its own genealogy, and the
    per-run estimate is kept in sample_stats through a save and a load."""
    target = bw.models.get("gaussian")
    result = bw.sample(target, "smc", seed=0, num_chains=1, num_samples=500)
    own = result.idata.sample_stats["log_z_relative_variance"].values
    assert own.shape == (1,) and 0.0 < own[0] < 1.0
    assert result.log_z_se == np.sqrt(own[0])
    loaded = bw.Result.load(result.save(str(tmp_path / "run.nc")))
    assert loaded.log_z_se == result.log_z_se
    np.testing.assert_array_equal(loaded.idata.sample_stats["log_z_relative_variance"].values, own)
