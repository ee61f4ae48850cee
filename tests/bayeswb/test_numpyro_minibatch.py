"""The minibatch interface Target.from_numpyro derives (bayeswb/core/numpyro_minibatch.py):
which models get one, that it decomposes the target's own density exactly, and that SGLD
runs on a registry model with it."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayeswb as bw
from bayeswb.core.numpyro_minibatch import why_not_minibatchable
from bayeswb.core.registry import MODELS

# the registry's numpyro models (and non-default forms) that get an interface ...
WITH_INTERFACE = ["logistic_breast_cancer", "bnn_classification", "horseshoe_diabetes"]
# ... and those that do not, with the reason (a fragment of why_not_minibatchable's)
WITHOUT_INTERFACE = [
    # theta_j is a per-school latent: the data are not i.i.d. given (mu, tau)
    ("eight_schools_centered", "latent site 'theta' lives in the data plate"),
    ("eight_schools_noncentered", "latent site 'theta_tilde' lives in the data plate"),
    # the log volatilities are per-time latents
    ("stochastic_volatility", "latent site 'log_volatility_std' lives in the data plate"),
    # the increments of the random walk are one latent per observation (not in a plate)
    ("brownian_motion", "the latent sites' shapes change with the number of data rows"),
    # one joint multivariate-normal observation
    ("gp_regression", "observed site 'responses' is outside any plate"),
]


@functools.cache
def _registry_target(name):
    return bw.models.get(name)


def _numpyro_model_names():
    return {name for name in MODELS.names() if MODELS.get(name).__module__.endswith("bayesian")}


def test_every_numpyro_model_of_the_registry_is_listed():
    listed = set(WITH_INTERFACE) | {name for name, _ in WITHOUT_INTERFACE}
    assert listed == _numpyro_model_names()


def _decomposition_matches(target, num_points=4):
    """log_prior + sum_i lik_i against log_density, values and gradients, at random
    unconstrained points: the two may differ by a constant only."""
    batch = target.minibatch

    def decomposed(x):
        per_datum = jax.vmap(batch.log_likelihood_per_datum, (None, 0))(x, batch.data)
        return batch.log_prior(x) + jnp.sum(per_datum)

    points = jax.vmap(target.init)(jax.random.split(jax.random.key(3), num_points))
    both = jax.vmap(
        lambda x: (jax.value_and_grad(target.log_density)(x), jax.value_and_grad(decomposed)(x))
    )
    (full, full_grad), (mine, mine_grad) = jax.jit(both)(points)
    full, mine = np.asarray(full, np.float64), np.asarray(mine, np.float64)
    offset = full - mine
    assert np.all(np.isfinite(full)) and np.all(np.isfinite(mine))
    # the same constant at every point, to single-precision round-off of the sums
    scale = np.abs(full) + np.abs(full[0])
    np.testing.assert_array_less(np.abs(offset - offset[0]), 1e-5 * scale + 1e-5)
    for g_full, g_mine in zip(np.asarray(full_grad), np.asarray(mine_grad), strict=True):
        np.testing.assert_allclose(g_mine, g_full, rtol=0, atol=1e-5 * np.abs(g_full).max() + 1e-5)
    return offset


@pytest.mark.parametrize("name", WITH_INTERFACE)
def test_registry_model_gets_an_exact_interface(name):
    target = _registry_target(name)
    assert target.minibatch is not None, why_not_minibatchable(
        target.numpyro.model, target.numpyro.args, target.numpyro.kwargs
    )
    assert target.minibatch.num_data == target.numpyro.args[0].shape[0]
    _decomposition_matches(target)


@pytest.mark.parametrize(("name", "reason"), WITHOUT_INTERFACE)
def test_registry_model_without_iid_data_gets_none(name, reason):
    target = bw.models.get(name)
    assert target.minibatch is None
    numpyro_model = target.numpyro
    assert reason in why_not_minibatchable(
        numpyro_model.model, numpyro_model.args, numpyro_model.kwargs
    )


def regression(x, mask, y=None):
    """A user's model: a positive latent (log-Jacobian), a deterministic site in the data
    plate, a mask and a keyword argument with the data's rows."""
    slope = numpyro.sample("slope", dist.Normal(0.0, 1.0))
    noise = numpyro.sample("noise", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        mean = numpyro.deterministic("mean", slope * x)
        with numpyro.handlers.mask(mask=mask):
            numpyro.sample("y", dist.Normal(mean, noise), obs=y)


X = jnp.linspace(-1.0, 1.0, 15)
Y = 0.5 * X + 0.3 * jnp.sin(7.0 * X)
MASK = jnp.arange(15) % 4 != 0


def test_user_model_with_a_data_plate_gets_an_exact_interface():
    target = bw.Target.from_numpyro(regression, X, MASK, y=Y)
    assert target.minibatch is not None
    assert sorted(target.minibatch.data) == ["mask", "x", "y"]
    offset = _decomposition_matches(target)
    # numpyro's log density keeps every constant: the decomposition is exact, not offset
    np.testing.assert_allclose(offset, 0.0, atol=1e-4)
    # a masked datum adds nothing
    x = jnp.array([0.2, -0.1])
    datum = {"x": X[0], "mask": MASK[0], "y": Y[0]}
    assert not bool(MASK[0])
    assert float(target.minibatch.log_likelihood_per_datum(x, datum)) == 0.0


def custom_likelihood(x, y):
    """A likelihood written as a factor in the data plate (a Student-t, by hand)."""
    slope = numpyro.sample("slope", dist.Normal(0.0, 1.0))
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.factor("likelihood", dist.StudentT(4.0, slope * x, scale).log_prob(y))


def test_factor_in_the_data_plate_is_likelihood():
    target = bw.Target.from_numpyro(custom_likelihood, X, Y)
    assert target.minibatch is not None
    np.testing.assert_allclose(_decomposition_matches(target), 0.0, atol=1e-4)


def test_the_interface_leaves_the_fingerprint_alone():
    target = bw.Target.from_numpyro(regression, X, MASK, y=Y)
    without = dataclasses.replace(target, minibatch=None)
    key = jax.random.key(0)
    np.testing.assert_array_equal(target.check(key), without.check(key))


def fixed_plate(x, y):
    slope = numpyro.sample("slope", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", 15):
        numpyro.sample("y", dist.Normal(slope * x, 1.0), obs=y)


def local_latent(x, y):
    slope = numpyro.sample("slope", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        offset = numpyro.sample("offset", dist.Normal(0.0, 0.1))
        numpyro.sample("y", dist.Normal(slope * x + offset, 1.0), obs=y)


def centred_inside(x, y):
    slope = numpyro.sample("slope", dist.Normal(0.0, 1.0))
    x = x - x.mean()  # couples the rows: one row alone is not one row among all
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(slope * x, 1.0), obs=y)


def subsampled(x, y):
    slope = numpyro.sample("slope", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0], subsample_size=5) as rows:
        numpyro.sample("y", dist.Normal(slope * x[rows], 1.0), obs=y[rows])


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (fixed_plate, "does not shrink with the data arguments"),
        (local_latent, "latent site 'offset' lives in the data plate"),
        (centred_inside, "the rows are coupled inside the model"),
        (subsampled, "subsamples its data"),
    ],
)
def test_user_models_without_iid_rows_get_none(model, reason):
    assert bw.Target.from_numpyro(model, X, Y).minibatch is None
    assert reason in why_not_minibatchable(model, (X, Y), {})


# SGLD on logistic_breast_cancer (N = 569, dim 31). At the reference posterior mean the
# Hessian of -log_density has eigenvalues from 1.0 (directions the prior alone pins) to 59,
# so the Euler step is stable below 2 / 59 = 0.034 and the slowest direction relaxes in
# about 1 / step_size steps: step_size 3e-3 (1/11 of the limit) gives ~60 relaxation times
# in 20000 steps, in ~10 s. With batch_size 256 the minibatch gradient's noise (covariance
# h^2 N^2 / n (1 - n/N) Cov(grad_i)) has its largest eigenvalue at 0.07 of the injected 2h.
# SGLD's stationary mean is exact for a Gaussian posterior at any stable step (linear
# drift, zero-mean noise); this posterior is close to Gaussian but not exactly, so the
# mean has a small step bias. Measured at these settings (4 chains x 100000 draws, seed 1,
# MCSE 0.03-0.045 sd): largest error 0.14 sd (coefficients[19], 4.2 of its MCSE: a real
# bias), every coordinate's |error| + 3 MCSE below 0.25 sd; posterior sds within 0.96-1.07
# of the reference's. So a coordinate passes if its error is below SGLD_MEAN_BIAS
# posterior sds plus the family-wise z bound times its MCSE (and the reference's own MCSE,
# in quadrature).
SGLD_STEP_SIZE = 3e-3
SGLD_BATCH_SIZE = 256
SGLD_MEAN_BIAS = 0.25


@pytest.mark.production_codegen  # runs more than it compiles (tests/conftest.py)
def test_sgld_on_logistic_breast_cancer_finds_the_reference_mean():
    import arviz as az
    from helpers import z_bound

    from bayeswb.models.bayesian import stored_references

    target = _registry_target("logistic_breast_cancer")
    result = bw.sample(
        target,
        "sgld",
        seed=0,
        num_chains=2,
        num_samples=20000,
        num_warmup=2000,
        thin=10,
        step_size=SGLD_STEP_SIZE,
        batch_size=SGLD_BATCH_SIZE,
    )
    reference, stored = target.reference, stored_references()["logistic_breast_cancer"]
    posterior = result.idata.posterior
    errors, allowances = [], []
    for name, truth in reference.mean.items():
        draws = posterior[name]
        mcse = az.mcse(draws.to_dataset(), method="mean")[name].values
        mcse = np.hypot(mcse, np.asarray(stored["mcse_mean"][name]))
        errors.append(np.abs(draws.mean(("chain", "draw")).values - truth))
        allowances.append(SGLD_MEAN_BIAS * reference.sd[name] + z_bound(target.dim) * mcse)
    errors, allowances = (
        np.concatenate([np.ravel(a) for a in arrays]) for arrays in (errors, allowances)
    )
    assert errors.size == target.dim
    worst = int(np.argmax(errors / allowances))
    assert np.all(errors < allowances), (
        f"coordinate {worst}: error {errors[worst]:.3f} above {allowances[worst]:.3f}; "
        f"errors / allowances {np.round(errors / allowances, 2)}"
    )
