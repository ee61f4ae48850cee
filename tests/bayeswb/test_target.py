"""Target constructors: numpyro models become unconstrained log densities."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import assert_z_scores, moment_z_scores
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


def two_component_model(y):
    """A two-component mixture whose indicators z are discrete latents, summed out."""
    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    with numpyro.plate("data", y.shape[0]):
        z = numpyro.sample("z", dist.Bernoulli(p), infer={"enumerate": "parallel"})
        numpyro.sample("y", dist.Normal(3.0 * z, 1.0), obs=y)


def mixture_data():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=40) + 3.0 * (rng.uniform(size=40) < 0.3))


def exact_log_posterior(p, y):
    """log p(p | y) + const with z summed out by hand, Beta(1, 1) prior."""
    y = np.asarray(y)[:, None]
    dens = (1 - p) * np.exp(-0.5 * y**2) + p * np.exp(-0.5 * (y - 3.0) ** 2)
    return np.sum(np.log(dens), axis=0)


def test_enumerated_discrete_latents_are_summed_out_exactly():
    y = mixture_data()
    target = bw.Target.from_numpyro(two_component_model, y)
    assert target.dim == 1  # only p is continuous
    # on the unconstrained x = logit(p) the density gains log p + log(1 - p)
    x = np.array([-2.0, -0.5, 0.7])
    p = 1.0 / (1.0 + np.exp(-x))
    expected = exact_log_posterior(p, y) + np.log(p) + np.log1p(-p)
    got = np.array([float(target.log_density(jnp.array([v]))) for v in x])
    np.testing.assert_allclose(got - got[0], expected - expected[0], rtol=1e-5, atol=1e-4)
    # and NUTS on it recovers the exact posterior moments of p (quadrature on a grid)
    grid = np.linspace(1e-6, 1 - 1e-6, 200001)
    log_post = exact_log_posterior(grid, y)
    weights = np.exp(log_post - log_post.max())
    weights /= weights.sum()
    mean = np.sum(weights * grid)
    sd = np.sqrt(np.sum(weights * (grid - mean) ** 2))
    result = bw.sample(target, "nuts", seed=0, num_chains=4, num_samples=1000, num_warmup=500)
    z = moment_z_scores(result, "p", np.array(mean), np.array(sd))
    assert_z_scores(np.array([z["mean"], z["var"]]), "enumerated mixture p")


def test_a_model_that_needs_funsor_without_it_names_funsor(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("numpyro.contrib.funsor")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "funsor", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"^numpyro model 'two_component_model' has discrete"):
        bw.Target.from_numpyro(two_component_model, mixture_data())
