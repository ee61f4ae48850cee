"""Target constructors: numpyro models become unconstrained log densities."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

import bayeswb as bw


def scale_model(y):
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.deterministic("precision", 1.0 / sigma**2)
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


Y = jnp.array([0.3, -1.2, 2.0, 0.7])


def test_from_numpyro_matches_numpyro_log_joint_plus_jacobian():
    t = bw.Target.from_numpyro(scale_model, Y)
    assert t.dim == 2
    x = jnp.array([0.4, -0.3])
    params = t.constrain(x)
    # the unconstrained density is the constrained log joint plus log|d sigma / d x| = x
    joint, _ = log_density(scale_model, (Y,), {}, {"mu": params["mu"], "sigma": params["sigma"]})
    unravel = t.numpyro.unravel
    log_sigma = unravel(x)["sigma"]
    np.testing.assert_allclose(t.log_density(x), joint + log_sigma, rtol=1e-5)


def test_from_numpyro_constrain_names_and_deterministics():
    t = bw.Target.from_numpyro(scale_model, Y)
    params = t.constrain(jnp.zeros(2))
    assert set(params) == {"mu", "sigma", "precision"}
    assert float(params["sigma"]) > 0
    np.testing.assert_allclose(params["precision"], 1.0 / params["sigma"] ** 2, rtol=1e-6)


def test_from_numpyro_gradient_is_finite():
    t = bw.Target.from_numpyro(scale_model, Y)
    value, grad = t.log_density_and_grad(t.init(jax.random.key(1)))
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_from_logdensity_defaults():
    t = bw.Target.from_logdensity(lambda x: -0.5 * x @ x, dim=3, name="std")
    assert t.constrain(jnp.ones(3))["x"].shape == (3,)
    assert t.init(jax.random.key(0)).shape == (3,)
    assert t.log_z is None and t.sample_exact is None and t.reference is None


def test_bad_dim_is_rejected():
    with pytest.raises(ValueError, match="dim"):
        bw.Target.from_logdensity(lambda x: x.sum(), dim=0)


def test_gaussian_log_z_matches_the_normaliser():
    # log Z of exp(-x^T S^-1 x / 2) is log of the Gaussian normalising constant
    t = bw.models.get("gaussian", dim=4, condition_number=9.0)
    sd = t.reference.sd["x"]
    expected = 0.5 * 4 * np.log(2 * np.pi) + np.sum(np.log(sd))
    np.testing.assert_allclose(t.log_z, expected, rtol=1e-12)
    np.testing.assert_allclose(sd.max() ** 2 / sd.min() ** 2, 9.0, rtol=1e-12)


def test_funnel_is_normalised():
    # log density integrates to one: compare with the exact density of its sampler
    t = bw.models.get("funnel", dim=2)
    x = t.sample_exact(jax.random.key(0), 3)
    v, x1 = x[:, 0], x[:, 1]
    expected = dist.Normal(0, 3).log_prob(v) + dist.Normal(0, jnp.exp(v / 2)).log_prob(x1)
    np.testing.assert_allclose(jax.vmap(t.log_density)(x), expected, rtol=1e-5)
