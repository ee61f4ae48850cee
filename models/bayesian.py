"""Bayesian models written as numpyro programs, on data shipped with the package.

Reference posterior moments (``Target.reference``) are made once by
``benchmarks/references.py`` and stored in ``models/data/references.json`` with how they
were made (method, sampler, chains, draws, warmup, seed, max R-hat, min ESS, divergences,
or the quadrature grid and its error):

- long NUTS runs, stored only if every R-hat is below 1.01 and no transition diverged,
  on the best-conditioned parameterisation of the same posterior (the factories' options);
- horseshoe_diabetes: NUTS on the model with the coefficients integrated out, the
  coefficients' moments by Rao-Blackwellisation;
- brownian_motion: quadrature over the two scales (linear-Gaussian given them);
- bnn_classification: only the symmetry-invariant predictive probabilities.
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

from bayeswb.core.config import one_line
from bayeswb.core.target import Reference, Target
from bayeswb.models import register

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
        mcse_mean={k: np.asarray(v) for k, v in entry["mcse_mean"].items()},
    )
    note = f"moments of {', '.join(sorted(entry['mean']))} by {entry['source']}"
    if "note" in entry:
        note += f" ({entry['note']})"
    sources = {**target.truth_sources, "reference": note}
    return dataclasses.replace(target, reference=reference, truth_sources=sources)


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
    """The eight-schools hierarchical model in its non-centred form (10 dimensions): Rubin
    (1981), "Estimation in parallel randomized experiments", J. Educ. Stat. 6(4); model as
    in Gelman et al., "Bayesian Data Analysis" (3rd ed.), section 5.5, written as

    ``mu ~ N(0, 5)``, ``tau ~ HalfCauchy(5)``, ``theta_tilde_j ~ N(0, 1)``,
    ``theta_j = mu + tau theta_tilde_j``, ``y_j ~ N(theta_j, sigma_j)``.

    The same posterior over (mu, tau, theta) as :func:`eight_schools_centered` without its
    funnel; the reference of both comes from this form.

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


def _half_cauchy(name: str, auxiliary: bool) -> jnp.ndarray:
    """A HalfCauchy(1) site, or its scale-mixture form ``|z| sqrt(v)`` with
    ``z ~ HalfNormal(1)`` and ``v ~ InverseGamma(1/2, 1/2)`` (sites ``NAME_normal`` and
    ``NAME_inverse_gamma``; then ``NAME`` is a deterministic site)."""
    if not auxiliary:
        return numpyro.sample(name, dist.HalfCauchy(1.0))
    normal = numpyro.sample(f"{name}_normal", dist.HalfNormal(1.0))
    inverse_gamma = numpyro.sample(f"{name}_inverse_gamma", dist.InverseGamma(0.5, 0.5))
    return numpyro.deterministic(name, normal * jnp.sqrt(inverse_gamma))


def horseshoe_regression_model(
    features: jnp.ndarray, response: jnp.ndarray, auxiliary: bool = False
) -> None:
    """Linear regression with a non-centred horseshoe prior on the coefficients."""
    num_features = features.shape[1]
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 1.0))
    noise_scale = numpyro.sample("noise_scale", dist.HalfNormal(1.0))
    global_scale = _half_cauchy("global_scale", auxiliary)
    with numpyro.plate("feature", num_features):
        local_scale = _half_cauchy("local_scale", auxiliary)
        unscaled = numpyro.sample("coefficients_unscaled", dist.Normal(0.0, 1.0))
        coefficients = numpyro.deterministic("coefficients", global_scale * local_scale * unscaled)
    with numpyro.plate("data", features.shape[0]):
        numpyro.sample(
            "response", dist.Normal(intercept + features @ coefficients, noise_scale), obs=response
        )


def horseshoe_marginal_model(features: jnp.ndarray, response: jnp.ndarray) -> None:
    """The horseshoe regression with the coefficients integrated out (for the reference).

    Given the scales, ``response ~ N(intercept, noise^2 I + X D X^T)`` with
    ``D = diag(global^2 local_k^2)``; evaluated in the 10-dimensional form
    ``A = I + S X^T X S / noise^2``, ``S = D^(1/2)``. The coefficients' conditional
    posterior ``N(S A^-1 S X^T r / noise^2, S A^-1 S)`` (r = response - intercept) is
    recorded as the deterministic sites ``coefficients_mean`` and ``coefficients_var``
    (diagonal), so the coefficients' moments follow by Rao-Blackwellisation.
    """
    num_data, num_features = features.shape
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 1.0))
    noise_scale = numpyro.sample("noise_scale", dist.HalfNormal(1.0))
    global_scale = _half_cauchy("global_scale", True)
    with numpyro.plate("feature", num_features):
        local_scale = _half_cauchy("local_scale", True)
    residual = response - intercept
    scales = global_scale * local_scale
    noise_var = noise_scale**2
    projected = scales * (features.T @ residual) / noise_var
    precision = (
        jnp.eye(num_features) + scales[:, None] * (features.T @ features) * scales / noise_var
    )
    chol = jnp.linalg.cholesky(precision)
    solved = jax.scipy.linalg.cho_solve((chol, True), projected)
    log_marginal = (
        -0.5 * num_data * jnp.log(2 * jnp.pi * noise_var)
        - jnp.sum(jnp.log(jnp.diagonal(chol)))
        - 0.5 * (residual @ residual / noise_var - projected @ solved)
    )
    numpyro.factor("response", log_marginal)
    numpyro.deterministic("coefficients_mean", scales * solved)
    inverse = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(num_features))
    numpyro.deterministic("coefficients_var", scales**2 * jnp.diagonal(inverse))


def horseshoe_diabetes_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes data, features and response standardised: (442, 10), (442,)."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    return _standardize(data.data), _standardize(data.target)


@register("horseshoe_diabetes")
def horseshoe_diabetes(auxiliary: bool = False) -> Target:
    """Sparse linear regression with the horseshoe prior of Carvalho, Polson and Scott
    (2010), "The horseshoe estimator for sparse signals", Biometrika 97(2), on the diabetes
    data of Efron et al. (2004), "Least angle regression", as bundled with scikit-learn
    (``load_diabetes``: 442 patients, 10 features); 23 dimensions (34 with ``auxiliary``).

    Features and response standardised to mean 0 and sd 1. ``intercept ~ N(0, 1)``,
    ``noise_scale ~ HalfNormal(1)``, ``global_scale ~ HalfCauchy(1)``,
    ``local_scale_k ~ HalfCauchy(1)``, ``coefficients_k = global_scale * local_scale_k *
    z_k`` with ``z_k ~ N(0, 1)`` (the non-centred form), ``response_i ~ N(intercept +
    x_i . coefficients, noise_scale)``.

    ``auxiliary=True`` writes each half-Cauchy scale as ``|a| sqrt(b)`` with
    ``a ~ HalfNormal(1)``, ``b ~ InverseGamma(1/2, 1/2)`` (the scale-mixture form used for
    the horseshoe by Piironen and Vehtari 2017, "Sparsity information and regularization in
    the horseshoe and other shrinkage priors", Electron. J. Stat. 11(2), appendix C): the
    same posterior over the named parameters, with lighter-tailed unconstrained coordinates.
    NUTS on the default form diverges (about 150 divergent transitions in 20000 at target
    acceptance 0.99), so the reference is computed on the auxiliary form.

    Reference: moments of ``intercept``, ``noise_scale``, ``global_scale`` and
    ``coefficients``; not of ``local_scale``, whose posterior keeps the half-Cauchy tail of
    an irrelevant feature's scale (density ~ lambda^-3, infinite variance), so its sd and
    the MCSE of its mean are not defined.

    Example:
        >>> t = horseshoe_diabetes()
        >>> t.dim, t.constrain(t.init(jax.random.key(0)))["coefficients"].shape
        (23, (10,))
    """
    if not isinstance(auxiliary, bool):
        raise ValueError(f"auxiliary must be a bool, got {one_line(auxiliary)}")
    features, response = (jnp.asarray(a, dtype=jnp.float32) for a in horseshoe_diabetes_data())
    target = Target.from_numpyro(
        horseshoe_regression_model, features, response, auxiliary, name="horseshoe_diabetes"
    )
    # the stored moments are of parameters shared by both forms
    return _with_reference(target, "horseshoe_diabetes")


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {one_line(value)}")


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


def stochastic_volatility_model(returns: jnp.ndarray, centered_start: bool = False) -> None:
    """Stochastic volatility, non-centred in the log volatilities (from the second on, if
    ``centered_start``)."""
    mu = numpyro.sample("mu", dist.Cauchy(0.0, 10.0))
    phi = numpyro.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(5.0))
    length = returns.shape[0]
    stationary_sd = sigma / jnp.sqrt(1.0 - phi**2)
    if centered_start:
        first = numpyro.sample("log_volatility_first", dist.Normal(mu, stationary_sd))
        with numpyro.plate("time_after_first", length - 1):
            innovations = numpyro.sample("log_volatility_std", dist.Normal(0.0, 1.0))
    else:
        with numpyro.plate("time", length):
            standardized = numpyro.sample("log_volatility_std", dist.Normal(0.0, 1.0))
        first, innovations = mu + stationary_sd * standardized[0], standardized[1:]

    def step(previous: jnp.ndarray, innovation: jnp.ndarray) -> tuple:
        current = mu + phi * (previous - mu) + sigma * innovation
        return current, current

    rest: jax.Array
    _, rest = jax.lax.scan(step, first, innovations)
    log_volatility = numpyro.deterministic("log_volatility", jnp.concatenate([first[None], rest]))
    with numpyro.plate("time", length):
        numpyro.sample("returns", dist.Normal(0.0, jnp.exp(log_volatility / 2)), obs=returns)


@register("stochastic_volatility")
def stochastic_volatility(length: int = 100, centered_start: bool = False) -> Target:
    """The standard stochastic-volatility model (Kim, Shephard and Chib 1998, "Stochastic
    volatility: likelihood inference and comparison with ARCH models", Rev. Econ. Stud.
    65; priors as in the Stan User's Guide, section 2.5) on a simulated series of
    ``length`` returns; ``length + 3`` dimensions.

    ``h_1 ~ N(mu, sigma / sqrt(1 - phi^2))``, ``h_t ~ N(mu + phi (h_{t-1} - mu), sigma)``,
    ``y_t ~ N(0, exp(h_t / 2))``; ``mu ~ Cauchy(0, 10)``, ``phi ~ U(-1, 1)``,
    ``sigma ~ HalfCauchy(5)``; h non-centred through standard-normal innovations
    ``log_volatility_std``. Data: :func:`stochastic_volatility_data` (mu = -1,
    phi = 0.95, sigma = 0.25, seed 0).

    ``centered_start=True`` samples ``h_1`` itself (site ``log_volatility_first``) and
    only ``h_2..h_T`` through innovations: the same posterior. In the default form, as
    phi approaches 1 the level mu becomes unidentified while ``h_1 = mu + sigma /
    sqrt(1 - phi^2) z_1`` stays pinned by the data, a narrowing ridge where NUTS diverges
    (40 divergent transitions in 20000 at target acceptance 0.99); the centred start
    removes most of it (2 in 20000 at 0.99, none at 0.995), so the reference is computed on
    that form at target acceptance 0.995. The reference holds phi, sigma and
    ``log_volatility`` but not mu: near phi = 1 the level is unidentified and follows its
    Cauchy(0, 10) prior, so mu's posterior sd is dominated by rare excursions and is not
    reproducible from finite runs (a 2000-draw run's variance of mu came out 8.7 of its
    own standard errors below the 20000-draw reference run's).

    Example:
        >>> t = stochastic_volatility(length=50)
        >>> t.dim, t.constrain(t.init(jax.random.key(0)))["log_volatility"].shape
        (53, (50,))
    """
    if not isinstance(centered_start, bool):
        raise ValueError(f"centered_start must be a bool, got {one_line(centered_start)}")
    returns = jnp.asarray(stochastic_volatility_data(length), dtype=jnp.float32)
    target = Target.from_numpyro(
        stochastic_volatility_model, returns, centered_start, name="stochastic_volatility"
    )
    # the stored moments are of phi, sigma and log_volatility, shared by both forms
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

    Reference (of the scales and locations, shared by both forms): quadrature, not NUTS.
    Given the two scales the model is linear-Gaussian, so their 2-D posterior is known up
    to a constant in closed form and the locations' conditional moments by Gaussian
    conditioning; ``benchmarks/references.py`` integrates over a 601 x 601 grid of the log
    scales. NUTS struggles here: the posterior of the observation scale reaches down to 0
    (the data can be interpolated exactly), a funnel with the locations (807 divergent
    transitions in 20000 for the non-centred form at target acceptance 0.95).

    Example:
        >>> t = brownian_motion()
        >>> t.dim, t.constrain(t.init(jax.random.key(0)))["locations"].shape
        (32, (30,))
    """
    if not isinstance(noncentered, bool):
        raise ValueError(f"noncentered must be a bool, got {one_line(noncentered)}")
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
BNN_PROBES = np.array(
    [
        [-1.0, 0.5],
        [0.0, 1.0],
        [1.0, 0.5],
        [0.5, 0.0],
        [0.0, 0.25],
        [1.0, -0.5],
        [2.0, 0.0],
        [2.0, 1.0],
    ]
)
"""Fixed inputs at which the model records its predictive probability (site
``probability``): on each moon, between the moons, and beyond the data."""


def bnn_classification_model(
    features: jnp.ndarray, labels: jnp.ndarray, hidden: int, probes: jnp.ndarray
) -> None:
    """One-hidden-layer tanh network with N(0, 1) weights and a Bernoulli likelihood; the
    deterministic site ``probability`` is P(label 1) at the ``probes`` inputs."""
    w1 = numpyro.sample("w1", dist.Normal(0.0, 1.0).expand([2, hidden]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 1.0).expand([hidden]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0.0, 1.0).expand([hidden]).to_event(1))
    b2 = numpyro.sample("b2", dist.Normal(0.0, 1.0))

    def logits(inputs: jnp.ndarray) -> jnp.ndarray:
        return jnp.tanh(inputs @ w1 + b1) @ w2 + b2

    numpyro.deterministic("probability", jax.nn.sigmoid(logits(probes)))
    with numpyro.plate("data", features.shape[0]):
        numpyro.sample("labels", dist.Bernoulli(logits=logits(features)), obs=labels)


@register("bnn_classification")
def bnn_classification(hidden: int = 10) -> Target:
    """A Bayesian neural network classifier on two moons (scikit-learn ``make_moons``,
    100 points, noise 0.2, ``random_state=0``): a 2-``hidden``-1 tanh network with all
    weights and biases ``N(0, 1)`` (Neal 1996, "Bayesian Learning for Neural Networks");
    ``4 hidden + 1`` dimensions (41 by default).

    ``logit P(label 1 | x) = tanh(x W1 + b1) . w2 + b2``. The deterministic site
    ``probability`` is that probability at the eight fixed inputs ``BNN_PROBES``.

    The posterior is multimodal by construction: hidden units can be permuted, and each
    unit's signs flipped since tanh is odd, so the ``2^hidden hidden!`` copies of a mode
    have the same predictive distribution, and NUTS chains wander between few of them. No
    trustworthy moments of the raw weights exist beyond symmetry (their exact posterior
    means are 0), so the reference holds only the symmetry-invariant ``probability``:
    moments from 16 NUTS chains started at different points, stored only if the chains
    agree on it (R-hat below 1.01 across chains in whichever weight-space modes they sit).
    ``bw.score`` then compares a run's predictive probabilities, not its weights. Chains
    agreeing does not prove that no functionally different mode exists; it is the check
    that a modest BNN allows (``models/data/references.json`` records the run).

    Example:
        >>> t = bnn_classification(hidden=5)
        >>> t.dim
        21
    """
    from sklearn.datasets import make_moons

    _check_int("hidden", hidden, 1)
    features, labels = make_moons(n_samples=BNN_SIZE, noise=0.2, random_state=BNN_SEED)
    target = Target.from_numpyro(
        bnn_classification_model,
        jnp.asarray(features, dtype=jnp.float32),
        jnp.asarray(labels, dtype=jnp.float32),
        hidden,
        jnp.asarray(BNN_PROBES, dtype=jnp.float32),
        name="bnn_classification",
    )
    return _with_reference(target, "bnn_classification", {"hidden": hidden})
