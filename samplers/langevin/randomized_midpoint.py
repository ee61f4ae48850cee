"""Kinetic Langevin by the randomized midpoint method: ``randomized_midpoint``.

The kinetic Langevin diffusion, state and reported stats (``energy`` included) are those
of :mod:`bayeswb.samplers.langevin.kinetic`; a diagonal mass is a fixed whitening (see
:mod:`bayeswb.samplers.langevin.preconditioning`). Unadjusted: a non-finite step is
rejected (state kept) and flagged ``diverging``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from bayeswb.core.config import boolean, option, positive, unit_interval
from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.execution.kernel import run_whole
from bayeswb.samplers import register
from bayeswb.samplers.langevin.chain_kernel import LangevinMethod, langevin_chain_kernel
from bayeswb.samplers.langevin.kinetic import (
    KineticInfo,
    KineticState,
    accept_if_finite,
    flip_momentum,
    kinetic_init,
    kinetic_trace,
    unadjusted_warmup_plan,
)
from bayeswb.samplers.langevin.warmup import (
    MassMatrixSettings,
)

Array = jax.Array
LogDensity = Callable[[Array], Array]


def _series_or_direct(x: Array, direct: Array, series: Array, threshold: float = 0.1) -> Array:
    return jnp.where(x < threshold, series, direct)


def _ou_pair_moments(friction: Array, duration: Array) -> tuple[Array, Array, Array]:
    """Moments of ``A = int_0^t (1 - e^{-g(t-s)})/g dW_s`` and ``C = int_0^t e^{-g(t-s)} dW_s``
    (the noise of the exact position and velocity flow over time t): Var A, Cov(A, C),
    Var C, by Ito's isometry. Var A loses digits to cancellation for small ``g t``, where a
    Taylor series (error below 1e-7 relative for ``g t < 0.1``) replaces it."""
    g, t = friction, duration
    x = g * t
    var_c = -jnp.expm1(-2.0 * x) / (2.0 * g)
    cov_ac = jnp.expm1(-x) ** 2 / (2.0 * g**2)
    safe_x = jnp.maximum(x, 0.1)
    direct = (safe_x + 2.0 * jnp.expm1(-safe_x) - 0.5 * jnp.expm1(-2.0 * safe_x)) / g**3
    series = t**3 * (1 / 3 - x / 4 + 7 * x**2 / 60 - x**3 / 24 + 31 * x**4 / 2520)
    return _series_or_direct(x, direct, series), cov_ac, var_c


def randomized_midpoint_noise_matrix(friction: Array, step_size: Array, tau: Array) -> Array:
    """M (3, 4) with ``(W1, W2, W3) = M @ xi``, ``xi ~ N(0, I_4)``, per coordinate, where

        W1 = int_0^tau (1 - e^{-g(tau-s)})/g dW_s,
        W2 = int_0^h   (1 - e^{-g(h-s)})/g   dW_s,
        W3 = int_0^h   e^{-g(h-s)}           dW_s,

    the three correlated Gaussian integrals of the randomized midpoint step; their exact
    joint covariance is ``M @ M.T`` for any friction g, step h and midpoint tau in [0, h].

    Splitting [0, h] at tau into independent pieces: with (A_t, C_t) the pair of
    :func:`_ou_pair_moments` over [0, tau] and (A', C') over [tau, h], d = h - tau,
    ``W1 = A_t``, ``W2 = A_t + (1 - e^{-g d})/g C_t + A'``, ``W3 = e^{-g d} C_t + C'``.
    """
    delta = step_size - tau

    def cholesky_2x2(duration: Array) -> tuple[Array, Array, Array]:
        var_a, cov_ac, var_c = _ou_pair_moments(friction, duration)
        sd_c = jnp.sqrt(var_c)
        a_on_c = jnp.where(sd_c > 0, cov_ac / jnp.where(sd_c > 0, sd_c, 1.0), 0.0)
        a_rest = jnp.sqrt(jnp.maximum(var_a - a_on_c**2, 0.0))
        return sd_c, a_on_c, a_rest

    c1, a1, a2 = cholesky_2x2(tau)
    c3, b3, b4 = cholesky_2x2(delta)
    decay = jnp.exp(-friction * delta)
    gain = -jnp.expm1(-friction * delta) / friction
    zero = jnp.zeros_like(c1)
    return jnp.stack(
        [
            jnp.stack([a1, a2, zero, zero]),
            jnp.stack([a1 + gain * c1, a2, b3, b4]),
            jnp.stack([decay * c1, zero, c3, zero]),
        ]
    )


def randomized_midpoint_build_kernel() -> Callable[..., Any]:
    """The randomized midpoint method for kinetic Langevin (Shen and Lee 2019, "The
    randomized midpoint method for log-concave sampling", Algorithm 1; analysed for
    general friction by Yu, Karagulyan and Dalalyan 2023, "Langevin Monte Carlo for
    strongly log-concave distributions: randomized midpoint revisited").

    With ``g`` the friction, ``h`` the step, ``E(t) = e^{-g t}``, ``F(t) = (1-E(t))/g``,
    ``u ~ U(0, 1)``, ``tau = u h`` and ``grad = grad log p``, the variation-of-constants
    formula of the SDE, with the force integral estimated at one uniform time tau, gives

        x_mid = x + F(tau) v + (tau - F(tau))/g grad(x) + sqrt(2g) W1
        x'    = x + F(h) v   + h F(h - tau) grad(x_mid)  + sqrt(2g) W2
        v'    = E(h) v       + h E(h - tau) grad(x_mid)  + sqrt(2g) W3

    where (W1, W2, W3) are drawn exactly from their joint Gaussian
    (:func:`randomized_midpoint_noise_matrix`). Two gradient evaluations per step
    (at x_mid and x'); ``grad(x)`` is cached from the previous step.

    The step is exactly: the force-free flow of the SDE (``dX = V dt``,
    ``dV = -g V dt + sqrt(2g) dW``, solved exactly) for time tau, a kick
    ``v += h grad(x_mid)``, the force-free flow for ``h - tau``. Its energy error, as for
    the splittings of :func:`~bayeswb.samplers.langevin.kinetic.kinetic_build_kernel`,
    is the shadow work (Sivak, Chodera and Crooks 2013): the change of ``-log p`` plus the
    kinetic energy the kick adds, ``W = log p(x) - log p(x') + |v_tau + h grad(x_mid)|^2/2
    - |v_tau|^2/2`` with ``v_tau = E(tau) v + sqrt(1 - E(2 tau)) xi_1`` the force-free
    velocity at tau (the kinetic-energy changes of the force-free flows are heat). It is
    zero for the exact dynamics, to first order in h.
    """

    def kernel(
        key: Array,
        state: KineticState,
        logdensity_fn: LogDensity,
        step_size: Array,
        friction: Array,
    ) -> tuple[KineticState, KineticInfo]:
        tau_key, noise_key = jax.random.split(key)
        x, v, _, grad = state
        g, h = friction, step_size
        tau = h * jax.random.uniform(tau_key, dtype=x.dtype)
        xi = jax.random.normal(noise_key, (4,) + x.shape, x.dtype)
        w1, w2, w3 = jnp.sqrt(2.0 * g) * jnp.tensordot(
            randomized_midpoint_noise_matrix(g, h, tau), xi, axes=1
        )
        decay = lambda t: jnp.exp(-g * t)
        gain = lambda t: -jnp.expm1(-g * t) / g
        x_mid = x + gain(tau) * v + (tau - gain(tau)) / g * grad + w1
        grad_mid = jax.grad(logdensity_fn)(x_mid)
        new_x = x + gain(h) * v + h * gain(h - tau) * grad_mid + w2
        new_v = decay(h) * v + h * decay(h - tau) * grad_mid + w3
        logdensity, new_grad = jax.value_and_grad(logdensity_fn)(new_x)
        # the force-free velocity at tau: its noise is the first of xi (the noise matrix's
        # C_tau = sqrt(var_c(tau)) xi_1), and sqrt(2g var_c(tau)) = sqrt(1 - e^{-2g tau})
        v_tau = decay(tau) * v + jnp.sqrt(-jnp.expm1(-2.0 * g * tau)) * xi[0]
        kick = h * grad_mid
        work = state.logdensity - logdensity + jnp.sum(v_tau * kick) + 0.5 * jnp.sum(kick**2)
        # a non-finite midpoint gradient makes new_x non-finite, so it is rejected too
        new_state = KineticState(new_x, new_v, logdensity, new_grad)
        return accept_if_finite(state, new_state, work)

    return kernel


@dataclasses.dataclass(frozen=True)
class RandomizedMidpointConfig(MassMatrixSettings):
    """Randomized midpoint kinetic Langevin, tuned in warmup by default like the
    unadjusted ``kinetic_langevin`` (:func:`~bayeswb.samplers.langevin.kinetic.
    unadjusted_warmup_plan`): a diagonal mass matrix (Stan's windows) and the step, to an
    energy-error variance per dimension (Robnik et al. 2023) of the shadow work of
    :func:`randomized_midpoint_build_kernel`.

    The randomized kick makes W noisier than a splitting's shadow work, so the value is
    set for this integrator, measured on a whitened Gaussian (the case after mass-matrix
    adaptation: unit curvature, friction 2, d = 10, fixed steps): ``E[W^2] / d`` is
    5.3e-4 at h = 0.09 and 5.3e-3 at h = 0.2, where the stationary position variance is
    off by 0.002% and 0.02% (exact Lyapunov solution, as in the tests); Robnik et al.'s
    5e-4 would halve the step for no measurable gain. The default 5e-3 (h near 0.2)
    keeps the bias far below the Monte Carlo error.
    """

    step_size: float = option(0.1, positive, "step h (initial if adapted; fixed if num_warmup=0)")
    friction: float = option(2.0, positive, "friction gamma")
    adapt_step_size: bool = option(True, boolean, "adapt the step size in warmup")
    target_acceptance_rate: float = option(
        0.8,
        unit_interval,
        "dual-averaging target of the tested warmup steps before the final window",
    )
    desired_energy_variance: float = option(
        5e-3, positive, "Var[E]/dim the adapted step aims at (E: shadow work)"
    )


def _randomized_midpoint(target: Target, config: RandomizedMidpointConfig) -> LangevinMethod:
    kernel = functools.partial(
        randomized_midpoint_build_kernel(), friction=jnp.asarray(config.friction)
    )
    return LangevinMethod(
        init=kinetic_init,
        kernel=kernel,
        trace=kinetic_trace(adjusted=False),
        warmup=unadjusted_warmup_plan(target, config),
        warmup_test=flip_momentum,
    )


RANDOMIZED_MIDPOINT_KERNEL = langevin_chain_kernel(
    _randomized_midpoint, grads_per_step=2, warmup_in_loop=True
)


@register(
    "randomized_midpoint",
    RandomizedMidpointConfig,
    family="langevin",
    kernel=RANDOMIZED_MIDPOINT_KERNEL,
)
def run_randomized_midpoint(
    key: Array, target: Target, config: RandomizedMidpointConfig, layout: ChainLayout | None = None
) -> Draws:
    """Kinetic Langevin with the randomized midpoint discretisation (see
    :func:`randomized_midpoint_build_kernel`), unadjusted, with a diagonal mass matrix
    and step size adapted in warmup by default (:class:`RandomizedMidpointConfig`), or a
    fixed diagonal mass (``inverse_mass_matrix``); reports ``energy`` like
    ``kinetic_langevin``.

    Runs whole or in chunks (:data:`RANDOMIZED_MIDPOINT_KERNEL`, :mod:`bayeswb.execution.kernel`).
    Cost: one gradient per chain at the start and two per step (warmup included).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "randomized_midpoint", num_chains=2, num_samples=100)
        >>> r.cost["n_grad_evals"] == 2 * (1 + 2 * (500 + 100))
        True
    """
    return run_whole(key, target, config, RANDOMIZED_MIDPOINT_KERNEL, layout)
