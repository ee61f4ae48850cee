"""Statistical tests of the Langevin family against exact answers.

Every moment check is a z-score in MCSE units bounded by ``helpers.z_bound`` (Bonferroni,
family-wise false-alarm rate 1e-3), with fixed seeds. Adjusted samplers (MALA, Metropolized
OBABO) are compared with the target's exact moments. Unadjusted samplers are compared with
the exact stationary law *of the discretised chain* at the step size used: on a Gaussian
target each is a linear (affine) recursion, so its stationary variance is known in closed
form (ULA) or from a discrete Lyapunov equation derived here from the update equations
(kinetic integrators, randomized midpoint, SGLD). No step is chosen small to hide a bias.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import arviz as az
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from helpers import assert_z_scores, moment_z_scores
from scipy.integrate import quad

import bayeswb as bw
from bayeswb.core.target import Reference
from bayeswb.samplers.langevin import randomized_midpoint_noise_matrix
from bayeswb.samplers.langevin.kinetic import kinetic_build_kernel, kinetic_init
from bayeswb.samplers.langevin.warmup import diagonal_inverse_mass_matrix, mass_matrix_windows

DIM = 4
CONDITION = 10.0
CHAINS = 4
DRAWS = 10_000  # sampling is milliseconds here; compilation dominates the test time


@pytest.fixture(scope="module")
def gaussian():
    return bw.models.get("gaussian", dim=DIM, condition_number=CONDITION)


def _check_moments(result, target, variances, what):
    """z-scores of the mean (exactly 0) and of the variance against ``variances``."""
    z = moment_z_scores(result, "x", np.zeros(target.dim), np.sqrt(variances))
    assert_z_scores(np.concatenate([z["mean"], z["var"]]), what)


def _stationary_position_variance(steps, curvature):
    """Stationary Var(x) of the 2-D linear chain (x, v) -> S (x, v) + noise N(0, Q).

    ``steps`` maps a curvature k (log p = -k x^2 / 2) to a list of (S, Q) sub-steps
    applied in order; the composed one-step map is solved with scipy's discrete Lyapunov
    solver: Sigma = A Sigma A^T + Q.
    """
    A, Q = np.eye(2), np.zeros((2, 2))
    for S, N in steps(curvature):
        A, Q = S @ A, S @ Q @ S.T + N
    return scipy.linalg.solve_discrete_lyapunov(A, Q)[0, 0]


def _kinetic_steps(integrator, h, g):
    """The integrators' sub-steps on log p = -k x^2/2, from the equations in the
    docstring of ``kinetic_build_kernel``."""

    def kick(t, k):
        return np.array([[1.0, 0.0], [-t * k, 1.0]]), np.zeros((2, 2))

    def drift(t, k):
        return np.array([[1.0, t], [0.0, 1.0]]), np.zeros((2, 2))

    def friction(t, k):
        return np.diag([1.0, math.exp(-g * t)]), np.diag([0.0, -math.expm1(-2 * g * t)])

    def steps(k):
        if integrator == "euler":
            return [(np.array([[1.0, h], [-h * k, 1.0 - g * h]]), np.diag([0.0, 2 * g * h]))]
        if integrator == "baoab":
            b, a, o = kick(h / 2, k), drift(h / 2, k), friction(h, k)
            return [b, a, o, a, b]
        o, b, a = friction(h / 2, k), kick(h / 2, k), drift(h, k)
        return [o, b, a, b, o]

    return steps


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "sampler, options, field",
    [
        ("ula", {"step_size": -0.1}, "step_size"),
        ("ula", {"inverse_mass_matrix": (1.0, -2.0)}, "inverse_mass_matrix"),
        ("mala", {"target_acceptance_rate": 1.5}, "target_acceptance_rate"),
        ("mala", {"adapt_mass_matrix": True, "num_warmup": 10}, "num_warmup"),
        ("mala", {"adapt_mass_matrix": "yes"}, "adapt_mass_matrix"),
        ("ula", {"desired_energy_variance": 0.0}, "desired_energy_variance"),
        (
            "kinetic_langevin",
            {"adapt_mass_matrix": True, "inverse_mass_matrix": (1.0,)},
            "adapt_mass_matrix",
        ),
        ("randomized_midpoint", {"adapt_step_size": 1}, "adapt_step_size"),
        ("kinetic_langevin", {"integrator": "leapfrog"}, "integrator"),
        ("kinetic_langevin", {"integrator": "euler", "metropolize": True}, "integrator"),
        ("randomized_midpoint", {"friction": 0.0}, "friction"),
    ],
)
def test_bad_option_is_a_value_error_naming_the_field(sampler, options, field):
    with pytest.raises(ValueError, match=field):
        bw.samplers.get(sampler).make_config(**options)


# --------------------------------------------------------------------------- ULA, MALA


def test_ula_matches_its_closed_form_bias(gaussian):
    """ULA with diagonal preconditioner m on N(0, s^2) is the AR(1) chain
    x' = (1 - h m / s^2) x + sqrt(2 h m) xi, of stationary variance s^2 / (1 - h m/(2 s^2)).
    Compared against that exact biased variance (bias up to 33% here), not the target's."""
    sd = gaussian.reference.sd["x"]
    m = tuple(float(v) for v in sd)  # a preconditioner that is neither 1 nor s^2
    h = 0.1
    r = bw.sample(
        gaussian, "ula", seed=1, num_chains=CHAINS, num_samples=DRAWS, num_warmup=500,
        step_size=h, inverse_mass_matrix=m, adapt_step_size=False,
    )  # fmt: skip
    variances = sd**2 / (1.0 - h * np.asarray(m) / (2.0 * sd**2))
    _check_moments(r, gaussian, variances, "ula")
    assert r.cost["n_grad_evals"] == CHAINS * (1 + 500 + DRAWS)
    assert not r.idata.sample_stats["diverging"].any()


def test_mala_with_adapted_mass_matrix_is_exact(gaussian):
    """MALA is exact at any step: moments against the target's exact ones."""
    r = bw.sample(
        gaussian, "mala", seed=2, num_chains=CHAINS, num_samples=DRAWS, num_warmup=500,
        adapt_mass_matrix=True,
    )  # fmt: skip
    _check_moments(r, gaussian, gaussian.reference.sd["x"] ** 2, "mala")
    stats = r.idata.sample_stats
    assert {"lp", "acceptance_rate", "diverging", "step_size"} <= set(stats)
    # the mass matrix makes the problem isotropic, so the adapted step is far above the
    # unit-metric stability limit 2 * s_min^2 = 0.2 of the Euler-Maruyama proposal
    assert float(stats["step_size"].min()) > 0.2
    assert r.cost["n_grad_evals"] == CHAINS * (1 + 500 + DRAWS)


# --------------------------------------------------------------------------- kinetic


@pytest.mark.parametrize(
    "integrator, mass",
    [("euler", False), ("baoab", True), pytest.param("obabo", False, marks=pytest.mark.slow)],
)
def test_kinetic_langevin_matches_its_exact_stationary_variance(gaussian, integrator, mass):
    """Unadjusted: each coordinate is a linear chain in (x, v); its exact stationary
    Var(x) (Lyapunov equation of the integrator's update) is the reference. At h = 0.1,
    gamma = 2 the Euler bias on the stiffest coordinate (curvature 10, where Euler is
    stable only for h < gamma / 10) is about 2x; BAOAB's is zero (exact position marginal
    on Gaussians, Leimkuhler and Matthews 2013). With a diagonal inverse mass m the chain
    is the unit-mass one on y = x / sqrt(m), of curvature m / s^2: Var(x) = m Var(y)."""
    h, g = 0.1, 2.0
    sd = gaussian.reference.sd["x"]
    m = sd if mass else np.ones_like(sd)  # a mass that is neither 1 nor the exact s^2
    r = bw.sample(
        gaussian, "kinetic_langevin", seed=3, num_chains=CHAINS, num_samples=DRAWS,
        num_warmup=500, step_size=h, friction=g, integrator=integrator,
        inverse_mass_matrix=tuple(float(v) for v in m) if mass else None,
        adapt_step_size=False, adapt_mass_matrix=False,
    )  # fmt: skip
    steps = _kinetic_steps(integrator, h, g)
    variances = m * np.array(
        [_stationary_position_variance(steps, mi / s**2) for mi, s in zip(m, sd, strict=True)]
    )
    if integrator == "baoab":
        np.testing.assert_allclose(variances, sd**2, rtol=1e-10)
    _check_moments(r, gaussian, variances, f"kinetic_langevin/{integrator}")
    assert "acceptance_rate" not in r.idata.sample_stats
    assert {"lp", "energy", "diverging", "step_size"} <= set(r.idata.sample_stats)


def test_metropolized_obabo_is_exact(gaussian):
    """Exact for p(x) N(v; 0, I) at any step: moments of x against the target's, and the
    kinetic energy ``energy + lp = |v|^2 / 2`` (a chi-square with dim degrees of freedom,
    halved) against its exact mean dim/2 and variance dim/2; ArviZ's BFMI is computable."""
    r = bw.sample(
        gaussian, "kinetic_langevin", seed=4, num_chains=CHAINS, num_samples=DRAWS,
        num_warmup=500, integrator="obabo", metropolize=True,
    )  # fmt: skip
    stats = r.idata.sample_stats
    kinetic = SimpleNamespace(
        idata=SimpleNamespace(posterior=(stats["energy"] + stats["lp"]).to_dataset(name="k"))
    )
    z_kinetic = moment_z_scores(kinetic, "k", DIM / 2, np.sqrt(DIM / 2))
    z = moment_z_scores(r, "x", np.zeros(DIM), gaussian.reference.sd["x"])
    scores = [
        z["mean"],
        z["var"],
        np.atleast_1d(z_kinetic["mean"]),
        np.atleast_1d(z_kinetic["var"]),
    ]
    assert_z_scores(np.concatenate(scores), "metropolized obabo")
    assert "acceptance_rate" in stats
    assert np.isfinite(az.bfmi(r.idata)).all()


# --------------------------------------------------------------------------- randomized midpoint


@pytest.mark.parametrize(
    "friction, step_size, u",
    [(2.0, 0.1, 0.3), (0.5, 0.01, 0.7), (10.0, 0.5, 0.5), (2.0, 1.0, 0.0), (1.0, 0.05, 0.999)],
)
def test_randomized_midpoint_noise_covariance_matches_ito_isometry(friction, step_size, u):
    """M M^T against the defining integrals (Ito isometry) by adaptive quadrature in
    float64. The tolerance is float32 arithmetic: eps 1.2e-7 times the <= 100-fold
    cancellation in Var(A) for 0.1 <= g t (below 0.1 a series is used)."""
    g, h, tau = friction, step_size, u * step_size
    kernels = [
        (lambda s: -math.expm1(-g * (tau - s)) / g, tau),
        (lambda s: -math.expm1(-g * (h - s)) / g, h),
        (lambda s: math.exp(-g * (h - s)), h),
    ]

    def covariance(f, a, k, b):
        return quad(lambda s: f(s) * k(s), 0.0, min(a, b), epsabs=0, epsrel=1e-12)[0]

    exact = np.array([[covariance(f, a, k, b) for k, b in kernels] for f, a in kernels])
    g32, h32, tau32 = jnp.float32(g), jnp.float32(h), jnp.float32(tau)
    m = np.asarray(randomized_midpoint_noise_matrix(g32, h32, tau32), dtype=np.float64)
    scale = np.sqrt(np.outer(np.diag(exact), np.diag(exact)))
    np.testing.assert_array_less(np.abs(m @ m.T - exact), 1e-4 * scale + 1e-30)


def _randomized_midpoint_variance(k, h, g, nodes=64):
    """Stationary Var(x) of the randomized midpoint chain on log p = -k x^2/2.

    Given tau the step is (x, v) -> A(tau) (x, v) + L(tau) sqrt(2g) (W1, W2, W3), read
    off the update equations; with tau ~ U(0, h) independent of the state,
    vec Sigma = E[A (x) A] vec Sigma + vec E[L C L^T], expectations by Gauss-Legendre."""
    E = lambda t: math.exp(-g * t)
    F = lambda t: -math.expm1(-g * t) / g
    points, weights = np.polynomial.legendre.leggauss(nodes)
    kron, noise = np.zeros((4, 4)), np.zeros((2, 2))
    for p, w in zip(points, weights, strict=True):
        tau, w = 0.5 * h * (p + 1.0), 0.5 * w
        mid = np.array([1.0 - k * (tau - F(tau)) / g, F(tau)])
        A = np.array([[1.0, F(h)], [0.0, E(h)]]) - k * h * np.outer([F(h - tau), E(h - tau)], mid)
        L = np.array([[-k * h * F(h - tau), 1.0, 0.0], [-k * h * E(h - tau), 0.0, 1.0]])
        m = np.asarray(randomized_midpoint_noise_matrix(g, h, tau), dtype=np.float64)
        kron += w * np.kron(A, A)
        noise += w * L @ (2 * g * m @ m.T) @ L.T
    sigma = np.linalg.solve(np.eye(4) - kron, noise.ravel()).reshape(2, 2)
    return sigma[0, 0]


def test_randomized_midpoint_matches_its_exact_stationary_variance(gaussian):
    """Unadjusted: reference is the chain's exact stationary variance at h = 0.4, with a
    diagonal inverse mass m (the unit-mass chain on y = x / sqrt(m): Var(x) = m Var(y))."""
    h, g = 0.4, 2.0
    sd = gaussian.reference.sd["x"]
    m = np.sqrt(sd)
    r = bw.sample(
        gaussian, "randomized_midpoint", seed=5, num_chains=CHAINS, num_samples=DRAWS,
        num_warmup=500, step_size=h, friction=g, inverse_mass_matrix=tuple(map(float, m)),
        adapt_step_size=False,
    )  # fmt: skip
    variances = m * np.array(
        [_randomized_midpoint_variance(mi / s**2, h, g) for mi, s in zip(m, sd, strict=True)]
    )
    _check_moments(r, gaussian, variances, "randomized_midpoint")
    assert r.cost["n_grad_evals"] == CHAINS * (1 + 2 * (500 + DRAWS))


# --------------------------------------------------------------------------- default options

ILL_SD = np.logspace(-1.0, 1.0, 5)  # scales 0.1 .. 10: condition number 1e4
WARMUP = 500  # the default num_warmup
RM_DRAWS = 8 * DRAWS  # see test_randomized_midpoint_default_options_match_the_adapted_chain


@pytest.fixture(scope="module")
def ill_conditioned():
    """N(0, diag(ILL_SD^2)) from a plain log density (no registry hints), exact moments."""
    sd = jnp.asarray(ILL_SD, jnp.float32)
    return bw.Target.from_logdensity(
        lambda x: -0.5 * jnp.sum((x / sd) ** 2),
        dim=ILL_SD.size,
        name="ill_conditioned",
        reference=Reference({"x": np.zeros(ILL_SD.size)}, {"x": ILL_SD}, "exact"),
    )


def _adapted(result):
    """Per chain, the step size of the draws and the inverse mass matrix the warmup
    adapted, recomputed from the warmup positions of its last window (the same Welford
    estimate, :func:`mass_matrix_windows`): shapes (chains,), (chains, dim)."""
    start, stop = mass_matrix_windows(WARMUP)[-1]
    warmup = result.idata.warmup_posterior["x"].values
    inverse_mass = [
        np.asarray(diagonal_inverse_mass_matrix(jnp.asarray(w[start:stop]))) for w in warmup
    ]
    return result.idata.sample_stats["step_size"].values[:, 0], np.array(inverse_mass, np.float64)


def _default_run(target, sampler, num_samples=DRAWS):
    return bw.sample(target, sampler, seed=12, num_chains=CHAINS, num_samples=num_samples)


def test_mala_default_options_are_exact_on_an_ill_conditioned_gaussian(ill_conditioned):
    """Defaults adapt the diagonal mass matrix (no option asks for it): exact moments,
    and a step far above the unit-metric stability limit 2 s_min^2 = 0.02."""
    r = _default_run(ill_conditioned, "mala")
    _check_moments(r, ill_conditioned, ILL_SD**2, "mala defaults")
    assert float(r.idata.sample_stats["step_size"].min()) > 2 * ILL_SD.min() ** 2
    assert r.cost["n_grad_evals"] == CHAINS * (1 + WARMUP + DRAWS)


def test_ula_default_options_match_the_stationary_law_of_the_adapted_chain(ill_conditioned):
    """ULA with the adapted step h and preconditioner m (recomputed per chain) is the
    AR(1) chain of stationary variance s^2 / (1 - h m / (2 s^2)); the pooled draws are
    compared with the chains' average of it, the mean with 0. The energy rule keeps that
    bias small: below 10% of the variance (3% at exact whitening, ``ULAConfig``)."""
    r = _default_run(ill_conditioned, "ula")
    step, inverse_mass = _adapted(r)
    inflation = 1.0 / (1.0 - step[:, None] * inverse_mass / (2.0 * ILL_SD**2))
    assert (inflation > 1.0).all() and (inflation < 1.1).all(), inflation
    _check_moments(r, ill_conditioned, ILL_SD**2 * inflation.mean(0), "ula defaults")
    # adapted whitening: the step is above the unit-metric stability limit 2 s_min^2
    assert step.min() > 2 * ILL_SD.min() ** 2
    assert r.cost["n_grad_evals"] == CHAINS * (1 + WARMUP + DRAWS)
    assert not r.idata.sample_stats["diverging"].any()


def test_kinetic_langevin_default_options_are_exact_on_an_ill_conditioned_gaussian(
    ill_conditioned,
):
    """The default integrator, BAOAB, has the exact position marginal on Gaussians at
    any stable step (Leimkuhler and Matthews 2013), so the target's moments are the
    reference; the adapted step exceeds the unit-metric stability limit 2 s_min = 0.2."""
    r = _default_run(ill_conditioned, "kinetic_langevin")
    _check_moments(r, ill_conditioned, ILL_SD**2, "kinetic_langevin defaults")
    assert float(r.idata.sample_stats["step_size"].min()) > 2 * ILL_SD.min()
    assert r.cost["n_grad_evals"] == CHAINS * (1 + WARMUP + DRAWS)
    assert not r.idata.sample_stats["diverging"].any()


def test_randomized_midpoint_default_options_match_the_adapted_chain(ill_conditioned):
    """Against the exact stationary variance of the randomized midpoint chain at each
    chain's adapted step and mass (unit-mass chain on y = x / sqrt(m), curvature m/s^2);
    that bias is below 1% at the steps the energy rule picks.

    8 x DRAWS draws: at DRAWS the variance z-scores of the widest coordinates were not
    calibrated (12 runs, seeds 12-17 with XLA's default and cheapest code generation: 5 of
    120 |z| above 3, where N(0, 1) gives 0.3; at 8 x DRAWS, 8 runs: none above 2)."""
    r = _default_run(ill_conditioned, "randomized_midpoint", num_samples=RM_DRAWS)
    step, inverse_mass = _adapted(r)
    ratio = np.array(
        [
            [
                _randomized_midpoint_variance(m / s**2, h, 2.0) * m / s**2
                for m, s in zip(ms, ILL_SD, strict=True)
            ]
            for h, ms in zip(step, inverse_mass, strict=True)
        ]
    )
    assert (np.abs(ratio - 1.0) < 0.01).all(), ratio
    _check_moments(r, ill_conditioned, ILL_SD**2 * ratio.mean(0), "randomized_midpoint defaults")
    assert r.cost["n_grad_evals"] == CHAINS * (1 + 2 * (WARMUP + RM_DRAWS))


@pytest.mark.parametrize(
    "sampler, options",
    [
        ("ula", {"num_warmup": 0, "step_size": 0.003}),
        ("kinetic_langevin", {"adapt_step_size": False, "step_size": 0.05}),
        ("randomized_midpoint", {"num_warmup": 0, "step_size": 0.05}),
    ],
)
def test_a_fixed_step_is_honoured(ill_conditioned, sampler, options):
    r = bw.sample(ill_conditioned, sampler, seed=13, num_chains=2, num_samples=20, **options)
    used = r.idata.sample_stats["step_size"].values
    np.testing.assert_array_equal(used, np.float32(options["step_size"]))


def test_unadjusted_obabo_energy_error_is_the_metropolis_test_it_skips():
    """The shadow work of an unadjusted OBABO step is minus the log acceptance ratio of
    generalised HMC for the same step (same key): exp(-W) is its acceptance."""
    logdensity_fn = lambda x: -0.5 * jnp.sum(x**2 / jnp.array([0.01, 1.0, 4.0]))
    key, init_key = jax.random.split(jax.random.key(14))
    state = kinetic_init(init_key, jnp.array([0.3, -1.0, 2.0]), logdensity_fn)
    h, g = jnp.float32(0.15), jnp.float32(2.0)
    _, unadjusted = kinetic_build_kernel("obabo")(key, state, logdensity_fn, h, g)
    _, adjusted = kinetic_build_kernel("obabo", True)(key, state, logdensity_fn, h, g)
    assert abs(float(unadjusted.energy_error)) > 0.01  # a real test, not W = 0
    np.testing.assert_allclose(adjusted.energy_error, unadjusted.energy_error, rtol=1e-6)
    np.testing.assert_allclose(
        adjusted.acceptance_rate, np.minimum(1.0, np.exp(-unadjusted.energy_error)), rtol=1e-6
    )


# --------------------------------------------------------------------------- divergences


def _half_nan_target():
    """Standard normal on x[0] < 1.5, NaN beyond: every sampler must refuse those steps."""

    def log_density(x):
        return jnp.where(x[0] < 1.5, -0.5 * jnp.sum(x**2), jnp.nan)

    init = lambda key: 0.1 * jax.random.normal(key, (2,))
    return bw.Target.from_logdensity(log_density, dim=2, name="half_nan", init=init)


def _half_nan_data_target():
    """The same with the minibatch interface: 20 data points whose log-likelihood is NaN
    (its gradient 0, so only the log density reveals it) on x[0] >= 1.5."""
    data = jnp.zeros((20, 2))
    log_prior = lambda x: -0.5 * jnp.sum(x**2) / 2.0
    log_lik = lambda x, y: jnp.where(x[0] < 1.5, -0.5 * jnp.sum((x - y) ** 2) / 40.0, jnp.nan)

    def log_density(x):
        return log_prior(x) + jnp.sum(jax.vmap(log_lik, (None, 0))(x, data))

    init = lambda key: 0.1 * jax.random.normal(key, (2,))
    minibatch = bw.MinibatchData(data, log_lik, log_prior)
    return bw.Target.from_logdensity(
        log_density, dim=2, name="half_nan_data", init=init, minibatch=minibatch
    )


@pytest.mark.parametrize(
    "sampler, options",
    [
        ("ula", {"step_size": 0.1}),
        pytest.param("mala", {}, marks=pytest.mark.slow),
        pytest.param(
            "kinetic_langevin", {"integrator": "baoab", "step_size": 0.3}, marks=pytest.mark.slow
        ),
        pytest.param(
            "kinetic_langevin",
            {"integrator": "obabo", "metropolize": True},
            marks=pytest.mark.slow,
        ),
        pytest.param("randomized_midpoint", {"step_size": 0.3}, marks=pytest.mark.slow),
        ("sgld", {"step_size": 0.05, "batch_size": 5}),
        pytest.param(
            "entropy_mcmc",
            {"step_size": 0.05, "batch_size": 5, "coupling_variance": 0.1},
            marks=pytest.mark.slow,
        ),
        (
            "sghmc",
            {"step_size": 0.1, "num_integration_steps": 5, "friction": 1.0, "batch_size": 5},
        ),
        ("csgmcmc", {"step_size": 0.2, "cycle_length": 10, "batch_size": 5}),
    ],
)
def test_non_finite_steps_are_rejected_and_flagged(sampler, options):
    needs_data = bw.samplers.get(sampler).needs_minibatch
    target = _half_nan_data_target() if needs_data else _half_nan_target()
    r = bw.sample(
        target, sampler, seed=6, num_chains=2, num_samples=500, num_warmup=100, **options
    )
    positions = r.idata.posterior["x"].values
    stats = r.idata.sample_stats
    assert np.isfinite(positions).all() and np.isfinite(stats["lp"].values).all()
    assert (positions[..., 0] < 1.5).all()
    assert stats["diverging"].values.any()


# --------------------------------------------------------------------------- SGLD, Entropy-MCMC

BATCH = helpers.GAUSSIAN_MEAN_BATCH


@pytest.fixture(scope="module")
def gaussian_mean_model():
    """The Gaussian-mean model of tests/helpers.py (exact posterior and minibatch noise)."""
    return helpers.gaussian_mean_model()


def test_minibatch_rows_are_a_uniform_subset():
    """Floyd's subsets: every one of the C(7, 3) = 35 subsets equally likely (chi-square
    test at the 0.1% level over 35000 draws) and never a repeated row."""
    from scipy import stats

    from bayeswb.samplers.langevin.stochastic_gradient import subset_rows

    keys = jax.random.split(jax.random.key(0), 35_000)
    rows = np.sort(np.asarray(jax.vmap(lambda k: subset_rows(k, 7, 3))(keys)), axis=1)
    assert (np.diff(rows, axis=1) > 0).all() and rows.min() >= 0 and rows.max() < 7
    _, counts = np.unique(rows, axis=0, return_counts=True)
    assert counts.size == 35
    assert stats.chisquare(counts).pvalue > 1e-3


def test_sgld_matches_its_exact_stationary_law(gaussian_mean_model):
    """Unadjusted and noisy: theta' - mu = (1 - hP)(theta - mu) + h eps + sqrt(2h) xi,
    an AR(1) of mean exactly mu and variance (2 + h V) / (P (2 - h P)), the reference
    (about 25% above the posterior variance 1/P at this step)."""
    target, mean, precision, noise_var = gaussian_mean_model
    h = 0.002
    r = bw.sample(
        target, "sgld", seed=7, num_chains=CHAINS, num_samples=DRAWS, num_warmup=200,
        step_size=h, batch_size=BATCH,
    )  # fmt: skip
    variances = (2 + h * noise_var) / (precision * (2 - h * precision))
    z = moment_z_scores(r, "x", mean, np.sqrt(variances))
    assert_z_scores(np.concatenate([z["mean"], z["var"]]), "sgld")
    assert r.cost["n_grad_evals"] == CHAINS * (1 + 200 + DRAWS)
    assert {"lp", "diverging", "step_size"} <= set(r.idata.sample_stats)


def test_self_tuned_sgld_caps_its_step_by_the_minibatch_noise(gaussian_mean_model):
    """Default sgld (step and preconditioner tuned in warmup). Whitened by the tuned
    preconditioner (precision P_w, gradient noise V_w per coordinate), the chain is the
    AR(1) of the exact-law test: mean exactly mu, variance (2 + h V_w) / (P_w (2 - h P_w))
    in whitened units. Here the noise binds: the step is 2 * 0.03 / m, m the mean
    gradient_noise of the warmup's final window (an unbiased estimate of V_w), so the
    variance is the posterior's times (2 + 0.06 V_w / m) / (2 - h P_w), 1.03 up to the
    estimate m (relative sd about 0.1 over 2 x 50 steps: +-0.003) and h P_w < 0.01."""
    target, mean, precision, _ = gaussian_mean_model
    warmup, steps, thin = 500, 100_000, 10
    r = bw.sample(
        target, "sgld", seed=3, num_chains=CHAINS, num_samples=steps, thin=thin,
        num_warmup=warmup, batch_size=BATCH,
    )  # fmt: skip
    step, noise = helpers.tuned_steps_and_noise(r, warmup)
    np.testing.assert_allclose(step, 0.06 / noise, rtol=1e-5)
    assert (step < 0.01).all()
    z = moment_z_scores(r, "x", mean, np.sqrt(1.03 / precision))
    assert_z_scores(np.concatenate([z["mean"], z["var"]]), "self-tuned sgld")
    # per chain: the initial estimate, two per tuning step, one per step after warmup
    assert r.cost["n_grad_evals"] == CHAINS * (1 + 2 * warmup + steps)


def test_entropy_mcmc_matches_its_exact_stationary_law(gaussian_mean_model):
    """Joint (theta, theta_a) with coupling variance eta: SGLD on it is the linear chain
    d' = (I + h J) d + noise, J = [[-P - 1/eta, 1/eta], [1/eta, -1/eta]], noise
    covariance diag(2h + h^2 V, 2h), d the deviation from (mu, mu); its exact stationary
    covariance (Lyapunov) is the reference for both variables. (The continuous-time law
    has theta ~ N(mu, 1/P) and theta_a ~ N(mu, 1/P + eta).)"""
    target, mean, precision, noise_var = gaussian_mean_model
    h, eta = 0.002, 0.01
    r = bw.sample(
        target, "entropy_mcmc", seed=8, num_chains=CHAINS, num_samples=DRAWS,
        num_warmup=200, step_size=h, batch_size=BATCH, coupling_variance=eta,
    )  # fmt: skip
    jacobian = np.array([[-precision - 1 / eta, 1 / eta], [1 / eta, -1 / eta]])
    step = np.eye(2) + h * jacobian
    sigma = np.array(
        [
            scipy.linalg.solve_discrete_lyapunov(step, np.diag([2 * h + h**2 * v, 2 * h]))
            for v in noise_var
        ]
    )
    z_theta = moment_z_scores(r, "x", mean, np.sqrt(sigma[:, 0, 0]))
    guide = SimpleNamespace(idata=SimpleNamespace(posterior=r.idata.sample_stats))
    z_guide = moment_z_scores(guide, "auxiliary_position", mean, np.sqrt(sigma[:, 1, 1]))
    z = [z_theta["mean"], z_theta["var"], z_guide["mean"], z_guide["var"]]
    assert_z_scores(np.concatenate(z), "entropy_mcmc")


def test_self_tuned_entropy_mcmc_matches_its_exact_law_at_the_tuned_step():
    """Default entropy_mcmc runs sgld's self-tuning warmup on the joint z = (x, x_a), the
    guide's block of the preconditioner in closed form, Var(x_a) = Var(x) + eta. Given a
    chain's tuned step h and preconditioner S^2 (x's block: Stan's regularised variance of
    the last slow window's warmup draws, recomputed here), its draws are the linear chain
    d' = (I - h S^2 L) d + sqrt(2h) S xi + h S^2 eps (L = [[P + 1/eta, -1/eta], [-1/eta,
    1/eta]] per coordinate, eps the minibatch gradient noise of x alone, variance V):
    mean exactly (mu, mu), covariance by Lyapunov, per chain. At batches of 5 and a
    noise inflation of 1.0 the law is told apart from the continuous-time one (x ~
    N(mu, 1/P), x_a ~ N(mu, 1/P + eta)): that fails with |z| 7.8 (measured when written).
    The step is at most sgld's cap with the noise of x's half of the coordinates,
    h V_w / 2 <= 1.0 for V_w twice the mean warmup ``gradient_noise``."""
    target, mean, precision, noise_var = helpers.gaussian_mean_model(batch=5)
    eta, warmup, draws, inflation = 0.1, 500, 50_000, 1.0
    r = bw.sample(
        target, "entropy_mcmc", seed=4, num_chains=CHAINS, num_samples=draws,
        num_warmup=warmup, batch_size=5, coupling_variance=eta,
        noise_variance_inflation=inflation,
    )  # fmt: skip
    step, noise = helpers.tuned_steps_and_noise(r, warmup)
    assert (step <= inflation / noise * (1 + 1e-5)).all()
    start, stop = mass_matrix_windows(warmup)[-1]
    x_warmup = r.idata.warmup_posterior["x"].values[:, start:stop]
    guide = r.idata.sample_stats["auxiliary_position"].values
    joint_precision = np.array([[precision + 1 / eta, -1 / eta], [-1 / eta, 1 / eta]])
    z = []
    for chain in range(CHAINS):
        x_variance = np.asarray(diagonal_inverse_mass_matrix(jnp.asarray(x_warmup[chain])))
        h = float(step[chain])
        for i, v in enumerate(noise_var):
            s_sq = np.array([x_variance[i], x_variance[i] + eta])
            transition = np.eye(2) - h * s_sq[:, None] * joint_precision
            noise_cov = np.diag([2 * h * s_sq[0] + (h * s_sq[0]) ** 2 * v, 2 * h * s_sq[1]])
            sigma = scipy.linalg.solve_discrete_lyapunov(transition, noise_cov)
            for values, var in (
                (r.positions[chain, :, i], sigma[0, 0]),
                (guide[chain, :, i], sigma[1, 1]),
            ):
                for sample, expected in ((values, mean[i]), ((values - mean[i]) ** 2, var)):
                    mcse = az.mcse(sample[None, :], method="mean")
                    z.append((sample.mean() - expected) / float(mcse))
    assert_z_scores(np.array(z), "self-tuned entropy_mcmc")


def test_sgld_needs_the_data_interface(gaussian):
    with pytest.raises(ValueError, match="log_likelihood_per_datum"):
        bw.sample(gaussian, "sgld", num_chains=1, num_samples=10)


# --------------------------------------------------------------------------- W2 figure


@pytest.mark.slow
def test_langevin_w2_figure_quick(tmp_path):
    """The figure module's quick mode: tables, finite frontier, plot files; and the linear
    stability theory on the stiffest curvature L = 100 at h = 0.06: ULA (stable iff
    h < 2/L) and kinetic Euler (one-step matrix [[1, h], [-hL, 1 - gamma h]] of
    determinant 1 - gamma h + h^2 L = 1.24 > 1) blow up; BAOAB (stable iff h < 2/sqrt(L))
    and the randomized midpoint do not."""
    from bayeswb.figures import langevin_w2

    tables = langevin_w2.compute(quick=True, seed=0)
    results, frontier, reach = tables["results"], tables["frontier"], tables["reach"]
    assert {"method", "step_size", "grads_per_chain", "draws_used", "w2"} <= set(results)
    assert {"method", "grads_per_chain", "step_size", "w2"} <= set(frontier)
    assert {"method", "w2_level", "grads_per_chain"} <= set(reach)
    assert set(frontier["method"]) == set(langevin_w2.METHODS) | {"exact draws"}
    assert np.isfinite(frontier["w2"]).all() and (frontier["w2"] > 0).all()
    at_large_step = results[results["step_size"] == 0.06].groupby("method")["w2"].max()
    assert np.isinf(at_large_step[["ula", "kinetic euler"]]).all()
    assert np.isfinite(at_large_step[["kinetic baoab", "randomized midpoint"]]).all()
    paths = langevin_w2.plot(tables, tmp_path)
    assert {p.name for p in paths} == {"langevin_w2.png", "langevin_w2.pdf"}
    assert all(p.stat().st_size > 0 for p in paths)
