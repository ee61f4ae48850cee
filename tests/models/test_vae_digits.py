"""vae_digits: data, densities, and the importance-sampling log-likelihood against exact
quadrature of log p(x): a 2-d latent space (one stochastic layer), and 2-d h1 under 1-d h2
(two stochastic layers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_z_scores, vae_log_marginal, z_bound

import bayeswb as bw
from bayeswb.models.iwae import Objective, train
from bayeswb.models.vae_digits import VAEDigits


@pytest.fixture(scope="module")
def small():
    model = VAEDigits(latent_dim=2, hidden=16)
    return model, model.init_params(jax.random.key(0))


@pytest.fixture(scope="module")
def two_layer():
    """Two stochastic layers (h1: 2, h2: 1), trained briefly (300 IWAE(5) steps) so that
    the encoder is a fair proposal (relative weight variance near 1, not 10^3 as at init)."""
    model = VAEDigits(latent_dim=2, hidden=16, layers=2, top_dim=1)
    params, _ = train(
        jax.random.key(3), model, Objective("iwae", 5), 300, batch_size=50,
        params=model.init_params(jax.random.key(0)),
    )  # fmt: skip
    return model, params


def test_data_are_binary_fixed_and_split(small):
    model, _ = small
    assert model.x_train.shape == (1497, 64) and model.x_test.shape == (300, 64)
    assert set(np.unique(model.x_train)) == {0.0, 1.0}
    again = VAEDigits(latent_dim=2, hidden=16)
    np.testing.assert_array_equal(again.x_test, model.x_test)
    assert 0.2 < model.x_train.mean() < 0.6


def test_log_weights_are_unbiased_for_exact_marginal(small):
    """E[w] = p(x): mean of p_hat / p over 400 replicates (k = 5) within MCSE, 3 images."""
    assert_weights_unbiased(*small, "E[p_hat(x)] / p(x) - 1")


def assert_weights_unbiased(model, params, label):
    """Mean of p_hat(x) / p(x) over 400 replicates (k = 5) is 1 within MCSE, 3 images."""
    x = jnp.asarray(model.x_test[:3])
    exact = np.array([vae_log_marginal(model, params["decoder"], xi) for xi in x])
    keys = jax.random.split(jax.random.key(1), 400)
    estimates = jax.jit(
        jax.vmap(lambda key: model.log_marginal(params, key, x, k=5, batch_size=3))
    )(keys)
    ratio = np.exp(np.asarray(estimates, dtype=np.float64) - exact)  # (400, 3)
    z = (ratio.mean(0) - 1.0) / (ratio.std(0, ddof=1) / np.sqrt(len(ratio)))
    assert_z_scores(z, label)


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
    exact = vae_log_marginal(model, params["decoder"], x)
    assert abs(t.log_z - exact) / t.metadata["log_z_se"] < z_bound(1)
    with pytest.raises(ValueError, match="image"):
        bw.models.get("vae_digits", image=300)


def test_two_layer_weights_are_unbiased_for_quadrature_marginal(two_layer):
    """Two stochastic layers: E[w] = p(x), w = p(x, h1, h2) / q(h1, h2 | x), checked as the
    mean of p_hat / p over 400 replicates (k = 5) within MCSE for 3 images, p(x) by
    quadrature; and the two networks between h1 and h2 are really used."""
    model, params = two_layer
    assert model.noise_dim == 3 and set(params["encoder"]) == {"h1", "h2"}
    assert_weights_unbiased(model, params, "two layers: E[p_hat(x)] / p(x) - 1")


@pytest.mark.production_codegen  # runs more than it compiles (tests/conftest.py)
def test_two_layer_test_log_likelihood_matches_larger_k(two_layer):
    """test_log_likelihood (k = 5000) against k = 50000 on the same 300 images: the mean
    paired difference equals its first-order bias -(v / 2)(1 / k - 1 / K) (delta method,
    v = Var(w) / E[w]^2 per image, from the large run) within its standard error."""
    model, params = two_layer
    k, big_k = 5000, 50_000
    mean, se = model.test_log_likelihood(params, jax.random.key(5), k=k)
    per_image = np.asarray(model.log_marginal(params, jax.random.key(5), model.x_test, k=k))
    np.testing.assert_allclose(mean, per_image.mean(), rtol=1e-6)
    np.testing.assert_allclose(se, per_image.std(ddof=1) / np.sqrt(300), rtol=1e-4)

    def reference(args):
        image, key = args
        log_w = model.log_weights(params, key, image, big_k)
        log_mean = jax.nn.logsumexp(log_w) - np.log(big_k)
        return log_mean, jnp.exp(jax.nn.logsumexp(2 * log_w) - np.log(big_k) - 2 * log_mean) - 1

    keys = jax.random.split(jax.random.key(6), 300)
    log_big, v = jax.jit(lambda xs, ks: jax.lax.map(reference, (xs, ks), batch_size=2))(
        jnp.asarray(model.x_test), keys
    )
    diff = per_image - np.asarray(log_big, dtype=np.float64)
    expected = -0.5 * np.mean(np.asarray(v, dtype=np.float64)) * (1 / k - 1 / big_k)
    z = (diff.mean() - expected) / (diff.std(ddof=1) / np.sqrt(len(diff)))
    assert_z_scores(np.array([z]), "test_log_likelihood(k=5000) - log p_hat(k=50000)")
    assert abs(mean - np.mean(np.asarray(log_big))) < 4 * se  # same scale as the images' spread
