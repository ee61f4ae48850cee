"""vae_digits: data, densities, and the importance-sampling log-likelihood against exact
quadrature of log p(x) in a 2-d latent space."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_z_scores, z_bound
from scipy.special import logsumexp

import bayeswb as bw
from bayeswb.models.vae_digits import VAEDigits


@pytest.fixture(scope="module")
def small():
    model = VAEDigits(latent_dim=2, hidden=16)
    return model, model.init_params(jax.random.key(0))


def exact_log_marginal(model, decoder, x, half_width=8.0, num=321):
    """log p(x) = log int p(x | z) N(z; 0, I) dz by the trapezoid-free grid rule on
    [-8, 8]^2 (the prior mass outside is below 1e-14; the integrand is smooth)."""
    grid = np.linspace(-half_width, half_width, num)
    z = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    log_joint = jax.vmap(lambda xi: model.log_joint(decoder, xi, jnp.asarray(z)))(x)
    cell = (grid[1] - grid[0]) ** 2
    return logsumexp(np.asarray(log_joint, dtype=np.float64), axis=1) + np.log(cell)


def test_data_are_binary_fixed_and_split(small):
    model, _ = small
    assert model.x_train.shape == (1497, 64) and model.x_test.shape == (300, 64)
    assert set(np.unique(model.x_train)) == {0.0, 1.0}
    again = VAEDigits(latent_dim=2, hidden=16)
    np.testing.assert_array_equal(again.x_test, model.x_test)
    assert 0.2 < model.x_train.mean() < 0.6


def test_log_weights_are_unbiased_for_exact_marginal(small):
    """E[w] = p(x): mean of p_hat / p over 400 replicates (k = 5) within MCSE, 3 images."""
    model, params = small
    x = jnp.asarray(model.x_test[:3])
    exact = exact_log_marginal(model, params["decoder"], x)
    keys = jax.random.split(jax.random.key(1), 400)
    estimates = jax.jit(
        jax.vmap(lambda key: model.log_marginal(params, key, x, k=5, batch_size=3))
    )(keys)
    ratio = np.exp(np.asarray(estimates, dtype=np.float64) - exact)  # (400, 3)
    z = (ratio.mean(0) - 1.0) / (ratio.std(0, ddof=1) / np.sqrt(len(ratio)))
    assert_z_scores(z, "E[p_hat(x)] / p(x) - 1")


def test_test_log_likelihood_is_the_mean_over_test_images(small):
    model, params = small
    key = jax.random.key(2)
    per_image = np.asarray(model.log_marginal(params, key, model.x_test, k=50, batch_size=7))
    mean, se = model.test_log_likelihood(params, key, k=50)
    np.testing.assert_allclose(mean, per_image.mean(), rtol=1e-5)
    np.testing.assert_allclose(se, per_image.std(ddof=1) / np.sqrt(300), rtol=1e-4)


def test_registry_target(small):
    t = bw.models.get("vae_digits", latent_dim=2, hidden=16, train_steps=0, log_z_samples=20000)
    assert t.dim == 2 and "not exact" in t.describe()
    model, params = t.metadata["model"], t.metadata["params"]
    x = jnp.asarray(model.x_test[0])
    z = jax.vmap(t.init)(jax.random.split(jax.random.key(0), 4))
    np.testing.assert_allclose(
        jax.vmap(t.log_density)(z), model.log_joint(params["decoder"], x, z), rtol=1e-6
    )
    exact = exact_log_marginal(model, params["decoder"], x[None])[0]
    assert abs(t.log_z - exact) / t.metadata["log_z_se"] < z_bound(1)
    with pytest.raises(ValueError, match="image"):
        bw.models.get("vae_digits", image=300)
