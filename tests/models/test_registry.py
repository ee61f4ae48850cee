"""Every registered model builds, evaluates, differentiates and names its parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayeswb as bw

ALL_MODELS = bw.models.names()

EXPECTED_DIMS = {
    "banana": 2,
    "bnn_classification": 41,
    "brownian_motion": 32,
    "double_well": 2,
    "eight_schools_centered": 10,
    "eight_schools_noncentered": 10,
    "gmm25": 2,
    "gmm40": 2,
    "gp_regression": 3,
    "horseshoe_diabetes": 23,
    "logistic_breast_cancer": 31,
    "manywell": 32,
    "rezende_u1": 2,
    "rezende_u2": 2,
    "rezende_u3": 2,
    "rezende_u4": 2,
    "stochastic_volatility": 103,
    "vae_digits": 4,
}


def test_the_registry_holds_the_designed_names():
    assert set(EXPECTED_DIMS) <= set(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_builds_evaluates_and_differentiates(name):
    target = bw.models.get(name)
    if name in EXPECTED_DIMS:
        assert target.dim == EXPECTED_DIMS[name]

    @jax.jit
    def evaluate(key):
        # one compiled program per model: eager numpyro code compiles op by op
        points = jax.vmap(target.init)(jax.random.split(key, 3))
        values, grads = jax.vmap(jax.value_and_grad(target.log_density))(points)
        return points, values, grads, target.constrain(points[0])

    points, values, grads, constrained = evaluate(jax.random.key(0))
    assert points.shape == (3, target.dim)
    assert np.all(np.isfinite(values)), (name, values)
    assert np.all(np.isfinite(grads)), (name, grads)
    assert isinstance(constrained, dict) and constrained
    for param, value in constrained.items():
        assert isinstance(param, str)
        assert np.all(np.isfinite(np.asarray(value))), (name, param)
    if target.reference is not None:
        assert target.reference.source
        for param, mean in target.reference.mean.items():
            assert param in constrained, (name, param)
            assert np.shape(mean) == jnp.shape(constrained[param]), (name, param)
            assert np.shape(target.reference.sd[param]) == np.shape(mean)
    if target.sample_exact is not None:
        draws = jax.jit(target.sample_exact, static_argnums=1)(jax.random.key(1), 5)
        assert draws.shape == (5, target.dim)
        assert np.all(np.isfinite(jax.jit(jax.vmap(target.log_density))(draws)))


@pytest.mark.parametrize(
    "name, params, field",
    [
        ("gaussian", {"rotation": -1}, "rotation"),
        ("gaussian", {"rotation": True}, "rotation"),
        ("gaussian", {"condition_number": 0.5}, "condition_number"),
        ("banana", {"dim": 1}, "dim"),
        ("banana", {"curvature": -0.1}, "curvature"),
        ("gmm40", {"dim": 0}, "dim"),
        ("manywell", {"dim": 5}, "dim"),
        ("manywell", {"dim": 0}, "dim"),
        ("stochastic_volatility", {"length": 1}, "length"),
        ("stochastic_volatility", {"length": 2.5}, "length"),
        ("bnn_classification", {"hidden": 0}, "hidden"),
    ],
)
def test_bad_parameters_are_value_errors_naming_the_parameter(name, params, field):
    with pytest.raises(ValueError, match=field):
        bw.models.get(name, **params)


def test_rotated_gaussian_is_the_rotation_of_the_axis_aligned_one():
    plain = bw.models.get("gaussian", dim=4, condition_number=9.0)
    rotated = bw.models.get("gaussian", dim=4, condition_number=9.0, rotation=3)
    assert rotated.log_z == plain.log_z
    x = jax.random.normal(jax.random.key(0), (4,))
    from bayeswb.models.synthetic import _random_rotation

    q = jnp.asarray(_random_rotation(4, 3), dtype=jnp.float32)
    np.testing.assert_allclose(rotated.log_density(q @ x), plain.log_density(x), rtol=1e-5)
    # the rotation really correlates the coordinates
    assert not np.allclose(rotated.reference.sd["x"], plain.reference.sd["x"])
