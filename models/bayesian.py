"""Bayesian models written as numpyro programs, on data shipped with the package.

Reference posterior moments (``Target.reference``) come from long NUTS runs made once by
``benchmarks/references.py`` and stored in ``models/data/references.json`` with how they
were made (sampler, chains, draws, seed, max R-hat, min ESS, divergences). A model has a
reference only if that run had every R-hat below 1.01 and no divergent transition; the
others have ``reference = None``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayeswb.models import register
from bayeswb.target import Reference, Target

REFERENCES_FILE = pathlib.Path(__file__).resolve().parent / "data" / "references.json"
"""Reference posterior moments made by ``benchmarks/references.py`` (long NUTS runs)."""


@functools.cache
def stored_references() -> dict:
    """The stored reference entries by model name: mean, sd, mcse_mean, source, params."""
    if not REFERENCES_FILE.is_file():
        return {}
    return json.loads(REFERENCES_FILE.read_text())


def _with_reference(target: Target, name: str, params: dict | None = None) -> Target:
    """``target`` with the stored reference of ``name``, if there is one for ``params``."""
    entry = stored_references().get(name)
    if entry is None or (params is not None and entry["params"] != params):
        return target
    reference = Reference(
        mean={k: np.asarray(v) for k, v in entry["mean"].items()},
        sd={k: np.asarray(v) for k, v in entry["sd"].items()},
        source=entry["source"],
    )
    return dataclasses.replace(target, reference=reference)


# Rubin (1981), "Estimation in parallel randomized experiments", Table 2: estimated
# coaching effects and their standard errors in eight schools.
EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools_noncentered_model(y: jnp.ndarray, sigma: jnp.ndarray) -> None:
    """Eight schools, non-centred: theta = mu + tau * theta_tilde (Gelman et al., BDA3 5.5)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", y.shape[0]):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


@register("eight_schools_noncentered")
def eight_schools_noncentered() -> Target:
    """The eight-schools hierarchical model in its non-centred form (10 dimensions).

    Example:
        >>> t = eight_schools_noncentered()
        >>> t.dim
        10
    """
    target = Target.from_numpyro(
        eight_schools_noncentered_model,
        jnp.asarray(EIGHT_SCHOOLS_Y),
        jnp.asarray(EIGHT_SCHOOLS_SIGMA),
        name="eight_schools_noncentered",
    )
    return _with_reference(target, "eight_schools_noncentered")


def eight_schools_centered_model(y: jnp.ndarray, sigma: jnp.ndarray) -> None:
    """Eight schools, centred: theta_j ~ N(mu, tau) directly (Gelman et al., BDA3 5.5)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", y.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


@register("eight_schools_centered")
def eight_schools_centered() -> Target:
    """The eight-schools hierarchical model in its centred form (10 dimensions): Rubin
    (1981), "Estimation in parallel randomized experiments", J. Educ. Stat. 6(4); model as
    in Gelman et al., "Bayesian Data Analysis" (3rd ed.), section 5.5:

    ``mu ~ N(0, 5)``, ``tau ~ HalfCauchy(5)``, ``theta_j ~ N(mu, tau)``,
    ``y_j ~ N(theta_j, sigma_j)``.

    The same posterior as :func:`eight_schools_noncentered` for (mu, tau, theta), but with
    the funnel between tau and theta that makes it a hard geometry for HMC.

    Example:
        >>> t = eight_schools_centered()
        >>> t.dim, sorted(t.constrain(t.init(jax.random.key(0))))
        (10, ['mu', 'tau', 'theta'])
    """
    target = Target.from_numpyro(
        eight_schools_centered_model,
        jnp.asarray(EIGHT_SCHOOLS_Y),
        jnp.asarray(EIGHT_SCHOOLS_SIGMA),
        name="eight_schools_centered",
    )
    return _with_reference(target, "eight_schools_centered")


def _standardize(values: np.ndarray) -> np.ndarray:
    return (values - values.mean(axis=0)) / values.std(axis=0)


def logistic_regression_model(features: jnp.ndarray, labels: jnp.ndarray) -> None:
    """Bayesian logistic regression, ``N(0, 1)`` priors on the intercept and coefficients."""
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 1.0))
    coefficients = numpyro.sample(
        "coefficients", dist.Normal(0.0, 1.0).expand([features.shape[1]]).to_event(1)
    )
    with numpyro.plate("data", features.shape[0]):
        numpyro.sample(
            "labels", dist.Bernoulli(logits=intercept + features @ coefficients), obs=labels
        )


@register("logistic_breast_cancer")
def logistic_breast_cancer() -> Target:
    """Logistic regression on the Wisconsin diagnostic breast-cancer data (Street, Wolberg
    and Mangasarian 1993), as bundled with scikit-learn (``load_breast_cancer``: 569
    tumours, 30 features, label 1 = benign); 31 dimensions.

    Features standardised to mean 0 and sd 1; ``intercept ~ N(0, 1)``,
    ``coefficients_k ~ N(0, 1)``, ``label_i ~ Bernoulli(sigmoid(intercept + x_i .
    coefficients))``. The unit-scale prior keeps the posterior proper although the data
    are nearly separable.

    Example:
        >>> t = logistic_breast_cancer()
        >>> t.dim, t.constrain(t.init(jax.random.key(0)))["coefficients"].shape
        (31, (30,))
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    features = jnp.asarray(_standardize(data.data), dtype=jnp.float32)
    labels = jnp.asarray(data.target, dtype=jnp.float32)
    target = Target.from_numpyro(
        logistic_regression_model, features, labels, name="logistic_breast_cancer"
    )
    return _with_reference(target, "logistic_breast_cancer")


def horseshoe_regression_model(features: jnp.ndarray, response: jnp.ndarray) -> None:
    """Linear regression with a non-centred horseshoe prior on the coefficients."""
    num_features = features.shape[1]
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 1.0))
    noise_scale = numpyro.sample("noise_scale", dist.HalfNormal(1.0))
    global_scale = numpyro.sample("global_scale", dist.HalfCauchy(1.0))
    with numpyro.plate("feature", num_features):
        local_scale = numpyro.sample("local_scale", dist.HalfCauchy(1.0))
        unscaled = numpyro.sample("coefficients_unscaled", dist.Normal(0.0, 1.0))
        coefficients = numpyro.deterministic("coefficients", global_scale * local_scale * unscaled)
    with numpyro.plate("data", features.shape[0]):
        numpyro.sample(
            "response", dist.Normal(intercept + features @ coefficients, noise_scale), obs=response
        )


@register("horseshoe_diabetes")
def horseshoe_diabetes() -> Target:
    """Sparse linear regression with the horseshoe prior of Carvalho, Polson and Scott
    (2010), "The horseshoe estimator for sparse signals", Biometrika 97(2), on the diabetes
    data of Efron et al. (2004), "Least angle regression", as bundled with scikit-learn
    (``load_diabetes``: 442 patients, 10 features); 23 dimensions.

    Features and response standardised to mean 0 and sd 1. ``intercept ~ N(0, 1)``,
    ``noise_scale ~ HalfNormal(1)``, ``global_scale ~ HalfCauchy(1)``,
    ``local_scale_k ~ HalfCauchy(1)``, ``coefficients_k = global_scale * local_scale_k *
    z_k`` with ``z_k ~ N(0, 1)`` (the non-centred form), ``response_i ~ N(intercept +
    x_i . coefficients, noise_scale)``.

    Example:
        >>> t = horseshoe_diabetes()
        >>> t.dim, t.constrain(t.init(jax.random.key(0)))["coefficients"].shape
        (23, (10,))
    """
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    features = jnp.asarray(_standardize(data.data), dtype=jnp.float32)
    response = jnp.asarray(_standardize(data.target), dtype=jnp.float32)
    target = Target.from_numpyro(
        horseshoe_regression_model, features, response, name="horseshoe_diabetes"
    )
    return _with_reference(target, "horseshoe_diabetes")


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


STOCHASTIC_VOLATILITY_SEED = 0
STOCHASTIC_VOLATILITY_TRUTH = {"mu": -1.0, "phi": 0.95, "sigma": 0.25}


def stochastic_volatility_data(length: int) -> np.ndarray:
    """The fixed-seed simulated returns: ``STOCHASTIC_VOLATILITY_TRUTH`` parameters, numpy
    ``default_rng(STOCHASTIC_VOLATILITY_SEED)``; a shorter series is a prefix of a longer one.
    """
    _check_int("length", length, 2)
    mu, phi, sigma = (STOCHASTIC_VOLATILITY_TRUTH[k] for k in ("mu", "phi", "sigma"))
    noise = np.random.default_rng(STOCHASTIC_VOLATILITY_SEED).standard_normal((length, 2))
    log_volatility = np.empty(length)
    log_volatility[0] = mu + sigma / np.sqrt(1 - phi**2) * noise[0, 0]
    for t in range(1, length):
        log_volatility[t] = mu + phi * (log_volatility[t - 1] - mu) + sigma * noise[t, 0]
    return np.exp(log_volatility / 2) * noise[:, 1]


def stochastic_volatility_model(returns: jnp.ndarray) -> None:
    """Stochastic volatility, non-centred in the log volatilities."""
    mu = numpyro.sample("mu", dist.Cauchy(0.0, 10.0))
    phi = numpyro.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(5.0))
    with numpyro.plate("time", returns.shape[0]):
        innovations = numpyro.sample("log_volatility_std", dist.Normal(0.0, 1.0))

    def step(previous: jnp.ndarray, innovation: jnp.ndarray) -> tuple:
        current = mu + phi * (previous - mu) + sigma * innovation
        return current, current

    first = mu + sigma / jnp.sqrt(1.0 - phi**2) * innovations[0]
    _, rest = jax.lax.scan(step, first, innovations[1:])
    log_volatility = numpyro.deterministic("log_volatility", jnp.concatenate([first[None], rest]))
    with numpyro.plate("time", returns.shape[0]):
        numpyro.sample("returns", dist.Normal(0.0, jnp.exp(log_volatility / 2)), obs=returns)


@register("stochastic_volatility")
def stochastic_volatility(length: int = 100) -> Target:
    """The standard stochastic-volatility model (Kim, Shephard and Chib 1998, "Stochastic
    volatility: likelihood inference and comparison with ARCH models", Rev. Econ. Stud.
    65; priors as in the Stan User's Guide, section 2.5) on a simulated series of
    ``length`` returns; ``length + 3`` dimensions.

    ``h_1 ~ N(mu, sigma / sqrt(1 - phi^2))``, ``h_t ~ N(mu + phi (h_{t-1} - mu), sigma)``,
    ``y_t ~ N(0, exp(h_t / 2))``; ``mu ~ Cauchy(0, 10)``, ``phi ~ U(-1, 1)``,
    ``sigma ~ HalfCauchy(5)``; h non-centred through standard-normal innovations
    ``log_volatility_std``. Data: :func:`stochastic_volatility_data` (mu = -1,
    phi = 0.95, sigma = 0.25, seed 0).

    Example:
        >>> t = stochastic_volatility(length=50)
        >>> t.dim, t.constrain(t.init(jax.random.key(0)))["log_volatility"].shape
        (53, (50,))
    """
    returns = jnp.asarray(stochastic_volatility_data(length), dtype=jnp.float32)
    target = Target.from_numpyro(
        stochastic_volatility_model, returns, name="stochastic_volatility"
    )
    return _with_reference(target, "stochastic_volatility", {"length": length})


BROWNIAN_MOTION_SEED = 0
BROWNIAN_MOTION_TRUTH = {"innovation_scale": 0.1, "observation_scale": 0.15}
BROWNIAN_MOTION_LENGTH = 30
BROWNIAN_MOTION_MISSING = slice(10, 20)


def brownian_motion_data() -> tuple[np.ndarray, np.ndarray]:
    """Fixed-seed observations of a 30-step Brownian motion and the observed-step mask
    (steps 10..19 missing): ``BROWNIAN_MOTION_TRUTH`` scales, ``default_rng(0)``."""
    rng = np.random.default_rng(BROWNIAN_MOTION_SEED)
    innovation, observation = (
        BROWNIAN_MOTION_TRUTH["innovation_scale"],
        BROWNIAN_MOTION_TRUTH["observation_scale"],
    )
    locations = np.cumsum(innovation * rng.standard_normal(BROWNIAN_MOTION_LENGTH))
    observations = locations + observation * rng.standard_normal(BROWNIAN_MOTION_LENGTH)
    observed = np.ones(BROWNIAN_MOTION_LENGTH, dtype=bool)
    observed[BROWNIAN_MOTION_MISSING] = False
    return observations, observed


def brownian_motion_model(
    observations: jnp.ndarray, observed: jnp.ndarray, noncentered: bool = False
) -> None:
    """Brownian motion with unknown innovation and observation scales, partly observed."""
    innovation_scale = numpyro.sample("innovation_scale", dist.LogNormal(0.0, 2.0))
    observation_scale = numpyro.sample("observation_scale", dist.LogNormal(0.0, 2.0))
    steps = observations.shape[0]
    if noncentered:
        unscaled = numpyro.sample(
            "increments_unscaled", dist.Normal(0.0, 1.0).expand([steps]).to_event(1)
        )
        increments = innovation_scale * unscaled
    else:
        increments = numpyro.sample(
            "increments", dist.Normal(0.0, innovation_scale).expand([steps]).to_event(1)
        )
    locations = numpyro.deterministic("locations", jnp.cumsum(increments))
    with numpyro.plate("time", steps), numpyro.handlers.mask(mask=observed):
        numpyro.sample("observations", dist.Normal(locations, observation_scale), obs=observations)


@register("brownian_motion")
def brownian_motion(noncentered: bool = False) -> Target:
    """Brownian motion with missing middle observations, after Inference Gym's
    ``BrownianMotionMissingMiddleObservations`` (Sountsov, Radul and contributors 2020,
    "Inference Gym"); 32 dimensions.

    ``innovation_scale, observation_scale ~ LogNormal(0, 2)``; locations
    ``x_t = x_{t-1} + innovation_scale * e_t`` (x_0 = 0 before the first step), t = 1..30,
    parameterised by the increments ``x_t - x_{t-1} ~ N(0, innovation_scale)`` (a
    unit-Jacobian linear map of the locations); ``y_t ~ N(x_t, observation_scale)`` observed except
    for t = 11..20 (0-based steps 10..19). The data are simulated here
    (:func:`brownian_motion_data`, scales 0.1 and 0.15, seed 0), not Inference Gym's.
    ``noncentered=True`` writes the increments as ``innovation_scale * z_t`` with
    ``z_t ~ N(0, 1)`` (site ``increments_unscaled``): the same posterior over the scales and
    locations without the funnel between them.

    Example:
        >>> t = brownian_motion()
        >>> t.dim, t.constrain(t.init(jax.random.key(0)))["locations"].shape
        (32, (30,))
    """
    if not isinstance(noncentered, bool):
        raise ValueError(f"noncentered must be a bool, got {noncentered!r}")
    observations, observed = brownian_motion_data()
    target = Target.from_numpyro(
        brownian_motion_model,
        jnp.asarray(observations, dtype=jnp.float32),
        jnp.asarray(observed),
        noncentered,
        name="brownian_motion",
    )
    # the stored moments are of the scales and locations, shared by both parameterisations
    return _with_reference(target, "brownian_motion")


GP_REGRESSION_SEED = 0
GP_REGRESSION_SIZE = 20


def gp_regression_data() -> tuple[np.ndarray, np.ndarray]:
    """20 inputs uniform on [0, 5] and responses ``sin(2 x) + 0.1 noise`` (seed 0), sorted."""
    rng = np.random.default_rng(GP_REGRESSION_SEED)
    inputs = np.sort(rng.uniform(0.0, 5.0, GP_REGRESSION_SIZE))
    return inputs, np.sin(2.0 * inputs) + 0.1 * rng.standard_normal(GP_REGRESSION_SIZE)


def gp_regression_model(inputs: jnp.ndarray, responses: jnp.ndarray) -> None:
    """GP regression with a squared-exponential kernel, the latent function integrated out."""
    lengthscale = numpyro.sample("lengthscale", dist.LogNormal(0.0, 1.0))
    amplitude = numpyro.sample("amplitude", dist.LogNormal(0.0, 1.0))
    noise_scale = numpyro.sample("noise_scale", dist.LogNormal(-2.0, 1.0))
    squared_distance = (inputs[:, None] - inputs[None, :]) ** 2
    covariance = amplitude**2 * jnp.exp(-0.5 * squared_distance / lengthscale**2)
    # a small jitter keeps the float32 Cholesky factorisation stable
    covariance = covariance + (noise_scale**2 + 1e-5) * jnp.eye(inputs.shape[0])
    numpyro.sample(
        "responses",
        dist.MultivariateNormal(jnp.zeros(inputs.shape[0]), covariance_matrix=covariance),
        obs=responses,
    )


@register("gp_regression")
def gp_regression() -> Target:
    """Gaussian-process regression with hyperpriors (Rasmussen and Williams 2006, "Gaussian
    Processes for Machine Learning", ch. 2 and 5); 3 dimensions.

    ``y ~ N(0, a^2 k_l(X, X) + s^2 I)`` with ``k_l(x, x') = exp(-(x - x')^2 / (2 l^2))``,
    ``lengthscale l ~ LogNormal(0, 1)``, ``amplitude a ~ LogNormal(0, 1)``,
    ``noise_scale s ~ LogNormal(-2, 1)``; the latent function is integrated out. Data:
    :func:`gp_regression_data` (20 points of sin(2x) with noise 0.1, seed 0).

    Example:
        >>> t = gp_regression()
        >>> t.dim, sorted(t.constrain(t.init(jax.random.key(0))))
        (3, ['amplitude', 'lengthscale', 'noise_scale'])
    """
    inputs, responses = gp_regression_data()
    target = Target.from_numpyro(
        gp_regression_model,
        jnp.asarray(inputs, dtype=jnp.float32),
        jnp.asarray(responses, dtype=jnp.float32),
        name="gp_regression",
    )
    return _with_reference(target, "gp_regression")


BNN_SEED = 0
BNN_SIZE = 100


def bnn_classification_model(features: jnp.ndarray, labels: jnp.ndarray, hidden: int) -> None:
    """One-hidden-layer tanh network with N(0, 1) weights and a Bernoulli likelihood."""
    w1 = numpyro.sample("w1", dist.Normal(0.0, 1.0).expand([2, hidden]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 1.0).expand([hidden]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0.0, 1.0).expand([hidden]).to_event(1))
    b2 = numpyro.sample("b2", dist.Normal(0.0, 1.0))
    logits = jnp.tanh(features @ w1 + b1) @ w2 + b2
    with numpyro.plate("data", features.shape[0]):
        numpyro.sample("labels", dist.Bernoulli(logits=logits), obs=labels)


@register("bnn_classification")
def bnn_classification(hidden: int = 10) -> Target:
    """A Bayesian neural network classifier on two moons (scikit-learn ``make_moons``,
    100 points, noise 0.2, ``random_state=0``): a 2-``hidden``-1 tanh network with all
    weights and biases ``N(0, 1)`` (Neal 1996, "Bayesian Learning for Neural Networks");
    ``4 hidden + 1`` dimensions (41 by default).

    The posterior is multimodal by construction (hidden units can be permuted, and each
    unit's signs flipped since tanh is odd), so there are no trustworthy reference moments
    beyond symmetry: the exact posterior means of w1, b1 and w2 are 0. ``reference`` is
    None.

    Example:
        >>> t = bnn_classification(hidden=5)
        >>> t.dim
        21
    """
    from sklearn.datasets import make_moons

    _check_int("hidden", hidden, 1)
    features, labels = make_moons(n_samples=BNN_SIZE, noise=0.2, random_state=BNN_SEED)
    return Target.from_numpyro(
        bnn_classification_model,
        jnp.asarray(features, dtype=jnp.float32),
        jnp.asarray(labels, dtype=jnp.float32),
        hidden,
        name="bnn_classification",
    )
