"""The paths of the diffusion samplers: a controlled Gaussian Markov chain from a simple
start to the target, its reference chain, and the exact importance weight of a path.

A sampler's path is the Euler-Maruyama (PIS, GFN) or exact-OU (DDS) discretisation, in
``K`` steps, of a controlled SDE: step ``k`` moves

    x_{k+1} = decay_k x_k + gain_k u(x_k, t_k) + noise_k xi_k,    xi_k ~ N(0, I),

from ``x_0 ~ N(0, start_variance I)`` (the point 0 when that is 0). With ``u = 0`` it is
the :class:`Reference` chain, whose marginal at step ``K`` is ``N(0, terminal_variance I)``.
The target's extended law on paths is ``pi(x_K)`` times the reference's law of
``x_0..x_{K-1}`` given ``x_K`` (the reference's backward chain from the target), so a
path's importance weight is

    log w = log pi(x_K) - log N(x_K; 0, terminal_variance I)
            + sum_k [log N(x_{k+1}; decay_k x_k, noise_k^2)
                     - log N(x_{k+1}; decay_k x_k + gain_k u_k, noise_k^2)]

(the start's density is the same in both laws and cancels). ``E[w] = Z`` exactly for any
control, in discrete time (no discretisation error enters Z), so ``log mean w`` estimates
log Z and ``w`` reweights the ends ``x_K`` to ``pi`` (Zhang and Chen 2022 derive these
weights in continuous time by Girsanov's theorem; Vargas, Grathwohl and Doucet 2023 write
them in the discrete time used here). The equations of this module are the ones the
samplers run; the papers' equation numbers are not cited, as they were not checked.

The control (:class:`Control`) is a network of ``(x, t)`` plus, in the Langevin
parametrisation (Zhang and Chen 2022; Sendera et al. 2024),
a learnt function of ``t`` times the target's score ``grad log pi(x)``, clipped (and in
DDS's chain scaled by the schedule, :func:`ornstein_uhlenbeck_reference`). Its last
layers start at zero, so an untrained sampler is its reference chain.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
LogDensity = Callable[[Array], Array]

SCORE_CLIP = 1e2
"""Each coordinate of the target's score is clipped to +-SCORE_CLIP (a non-finite one is
0) before the control uses it, so that one steep point cannot throw a path to infinity.
The samplers run in the coordinates their pilot whitens, where a typical score is of
order 1 (N(0, I)'s is -y); on banana, clipping at 1e4 instead let the first hundred
training steps of one dds run reach a loss of 4e5 and then NaN, where at 1e2 both runs
trained smoothly (loss 3.4 -> 0.36 in 2000 steps)."""

TIME_FREQUENCIES = 8
"""Sine and cosine features of ``t`` at frequencies ``1..TIME_FREQUENCIES`` (times pi)."""


class Reference(NamedTuple):
    """The uncontrolled chain of a diffusion sampler, step by step (each array (K,)):
    ``x_{k+1} = decay_k x_k + gain_k u_k + noise_k xi_k`` with ``u = 0``, control
    evaluated at ``times_k``; ``x_0 ~ N(0, start_variance I)``; the marginal of ``x_K``
    is ``N(0, terminal_variance I)``. ``score_scale_k`` multiplies the target's score
    before the control's Langevin term sees it (1 but in DDS's chain)."""

    times: Array
    decay: Array
    gain: Array
    noise: Array
    start_variance: float
    terminal_variance: float
    score_scale: Array


def brownian_reference(num_steps: int, horizon: float = 1.0, sigma: float = 1.0) -> Reference:
    """PIS's reference (Zhang and Chen 2022, their prior diffusion with no drift and
    constant noise ``sigma``):
    Brownian motion from 0 on ``[0, horizon]``, ``dx = u dt + sigma dW``, Euler-Maruyama
    at ``dt = horizon / num_steps``; its end is ``N(0, sigma^2 horizon I)``.

    Example:
        >>> ref = brownian_reference(4)
        >>> ref.noise.tolist(), ref.terminal_variance
        ([0.5, 0.5, 0.5, 0.5], 1.0)
    """
    dt = horizon / num_steps
    ones = np.ones(num_steps)
    return Reference(
        times=jnp.asarray(np.arange(num_steps) * dt),
        decay=jnp.asarray(ones),
        gain=jnp.asarray(ones * dt),
        noise=jnp.asarray(ones * sigma * math.sqrt(dt)),
        start_variance=0.0,
        terminal_variance=sigma**2 * horizon,
        score_scale=jnp.asarray(ones),
    )


def ornstein_uhlenbeck_reference(num_steps: int, offset: float = 0.008) -> Reference:
    """DDS's reference (Vargas, Grathwohl and Doucet 2023): the stationary
    OU chain ``x_{k+1} = sqrt(1 - alpha_k) x_k + sqrt(alpha_k) xi_k`` of ``N(0, I)``,
    reversible, so that its backward chain from the target is the noising process of a
    diffusion model and the sampler denoises. DDS's control enters as
    ``2 (1 - sqrt(1 - alpha_k)) f`` (their parametrisation of the drift).
    ``alpha_k`` follows the cosine schedule of Nichol and Dhariwal (2021, eq. 17,
    ``offset`` their ``s``) run backwards: the sampler's first step is nearly all
    noise (``alpha`` capped at 0.999), its last ones small.

    The target's score enters the Langevin term scaled by ``abar``, the share of the
    target in the noised law at the step's start (the cosine schedule's ``alpha-bar``,
    0 at the sampler's first step, near 1 at its last). The drift that reverses the
    noising is the score of the noised target; for a target ``N(m, s^2 I)`` that score is
    ``sqrt(abar) s^2 / (abar s^2 + 1 - abar)`` times the target's own score at
    ``y / sqrt(abar)``: 0 at the start, and for narrow modes (small ``s``) a tiny weight
    until ``abar`` nears 1. Unscaled, the first steps (gain near 2) multiplied a learnt
    weight by scores of order ``1 / s^2``: on gmm25, whitened by the pilot's
    whole-mixture scale (s about 0.05), training diverged after about 300 steps
    (loss 10 -> 3e4) in both of two runs; scaled, both trained to a loss near 1.

    Example:
        >>> ref = ornstein_uhlenbeck_reference(100)
        >>> round(float(ref.noise[0] ** 2), 3), float(ref.noise[-1] ** 2) < 1e-3
        (0.999, True)
        >>> [round(float(ref.score_scale[k]), 3) for k in (0, 50, -1)]
        [0.0, 0.494, 0.999]
    """
    t = np.linspace(0.0, 1.0, num_steps + 1)
    signal = np.cos(0.5 * np.pi * (t + offset) / (1.0 + offset)) ** 2
    alpha = np.minimum(1.0 - signal[1:] / signal[:-1], 0.999)[::-1]
    decay = np.sqrt(1.0 - alpha)
    return Reference(
        times=jnp.asarray(t[:-1]),
        decay=jnp.asarray(decay),
        gain=jnp.asarray(2.0 * (1.0 - decay)),
        noise=jnp.asarray(np.sqrt(alpha)),
        start_variance=1.0,
        terminal_variance=1.0,
        score_scale=jnp.asarray((signal / signal[0])[::-1][:-1]),  # at each step's start
    )


class Control(eqx.Module):
    """``u(x, t) = net([x, phi(t)]) + weight(phi(t)) * clip(grad log pi(x))`` (the second
    term only in the Langevin parametrisation), ``phi(t)`` sine and cosine features of
    ``t``. Both networks' last layers start at zero: ``u = 0``."""

    net: eqx.nn.MLP
    score_weight: eqx.nn.MLP | None

    def __init__(self, key: Array, dim: int, width: int, depth: int, langevin: bool):
        net_key, weight_key = jax.random.split(key)
        features = 2 * TIME_FREQUENCIES
        self.net = _zero_last_layer(
            eqx.nn.MLP(dim + features, dim, width, depth, jax.nn.gelu, key=net_key)
        )
        self.score_weight = None
        if langevin:
            self.score_weight = _zero_last_layer(
                eqx.nn.MLP(features, dim, width, depth, jax.nn.gelu, key=weight_key)
            )

    def __call__(self, x: Array, t: Array, score: Array | None) -> Array:
        phi = time_features(t)
        u = self.net(jnp.concatenate([x, phi.astype(x.dtype)]))
        if self.score_weight is not None and score is not None:
            u = u + self.score_weight(phi.astype(x.dtype)) * score
        return u


def _zero_last_layer(mlp: eqx.nn.MLP) -> eqx.nn.MLP:
    last = mlp.layers[-1]
    assert last.bias is not None, "eqx.nn.MLP's layers have biases by default"
    mlp = eqx.tree_at(lambda m: m.layers[-1].weight, mlp, jnp.zeros_like(last.weight))
    return eqx.tree_at(lambda m: m.layers[-1].bias, mlp, jnp.zeros_like(last.bias))


def time_features(t: Array) -> Array:
    """``[sin(pi j t), cos(pi j t)]`` for ``j = 1..TIME_FREQUENCIES``."""
    angles = jnp.pi * jnp.arange(1, TIME_FREQUENCIES + 1) * t
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)])


def clip_score(grad: Array) -> Array:
    """A score with each coordinate clipped to +-SCORE_CLIP, NaN -> 0."""
    return jnp.clip(jnp.nan_to_num(grad, nan=0.0), -SCORE_CLIP, SCORE_CLIP)


def clipped_score(logdensity_fn: LogDensity) -> Callable[[Array], Array]:
    """``x -> clip_score(grad log pi(x))``."""
    return lambda x: clip_score(jax.grad(logdensity_fn)(x))


class Resampling(NamedTuple):
    """What resampling along the paths did (cmcd with ``resample_ess``): ``ess`` (K,)
    the weights' Kish ESS after each step, before any resampling there; ``resampled``
    (K,) whether the paths were resampled after that step; ``family`` (n,) each final
    path's ancestor among the n starts (for Lee and Whiteley's variance of log Z)."""

    ess: Array
    resampled: Array
    family: Array


class Moves(NamedTuple):
    """Every step of resampled paths (cmcd's and scld's kernels), each (K, n, ...): the
    step's start ``x`` (after any resampling before it) and its end ``new``, with the
    target's log density and clipped score at both. Resampling breaks a path's history,
    so a step is kept as its own pair of points."""

    x: Array
    new: Array
    value: Array
    new_value: Array
    score: Array
    new_score: Array


class Paths(NamedTuple):
    """A batch of paths: ``ends`` (n, dim) = x_K, ``log_weights`` (n,), their terms
    ``terminal_lp`` (log pi(x_K)) and ``terminal`` (log pi(x_K) - log N(x_K; 0,
    terminal_variance I)), and with ``keep=True`` the positions (K + 1, n, dim) and the
    clipped scores (K, n, dim) along them, before the reference's ``score_scale`` (None
    otherwise, or without a Langevin term);
    ``resampling`` when the paths were resampled along the way (None otherwise);
    ``moves``, every step's pair of points, where the annealed kernels keep them."""

    ends: Array
    log_weights: Array
    terminal_lp: Array
    terminal: Array
    positions: Array | None
    scores: Array | None
    resampling: Resampling | None = None
    moves: Moves | None = None


def _step_log_ratio(
    x: Array, new: Array, u: Array, decay: Array, gain: Array, noise: Array
) -> Array:
    """``log N(new; decay x, noise^2) - log N(new; decay x + gain u, noise^2)`` summed over
    coordinates, expanded so that no large squares cancel."""
    residual = new - decay * x
    drift = gain * u
    return jnp.sum(drift * (drift - 2.0 * residual), axis=-1) / (2.0 * noise**2)


def terminal_log_weight(
    logdensity_fn: LogDensity, reference: Reference, ends: Array
) -> tuple[Array, Array]:
    """``(log pi(x_K), log pi(x_K) - log N(x_K; 0, terminal_variance I))`` per end."""
    lp = jax.vmap(logdensity_fn)(ends)
    return lp, lp - end_log_prob(reference, ends)


def end_log_prob(reference: Reference, ends: Array) -> Array:
    """``log N(x_K; 0, terminal_variance I)``, the reference chain's end marginal."""
    variance = reference.terminal_variance
    dim = ends.shape[-1]
    return -0.5 * jnp.sum(ends**2, axis=-1) / variance - 0.5 * dim * jnp.log(
        2.0 * jnp.pi * variance
    )


def explored(reference: Reference, extra_sd: Array | float) -> Reference:
    """The behaviour chain of off-policy training (Sendera et al. 2024, section 3,
    exploration by a wider policy): the reference's noise per step widened to
    ``sqrt(noise^2 + extra_sd^2 dt)``, ``dt = 1 / K`` on [0, 1], i.e. ``extra_sd^2`` more
    variance per unit time; the control and the drift are the model's. Its paths are
    for training only: their weights are recomputed under the model's own chain
    (:func:`path_log_weights` with ``reference`` and :func:`end_log_prob`).

    Example:
        >>> explored(brownian_reference(4), 1.0).noise.tolist()  # sqrt(1/4 + 1/4)
        [0.7071067690849304, 0.7071067690849304, 0.7071067690849304, 0.7071067690849304]
    """
    dt = 1.0 / reference.times.shape[0]
    return reference._replace(noise=jnp.sqrt(reference.noise**2 + extra_sd**2 * dt))


def simulate(
    key: Array,
    control: Control,
    logdensity_fn: LogDensity,
    reference: Reference,
    num_paths: int,
    dim: int,
    keep: bool = False,
) -> Paths:
    """``num_paths`` paths of the controlled chain (one ``lax.scan`` over the K steps,
    the paths vectorised) and their log weights. The score is evaluated (one target
    gradient per path and step) only when the control has a Langevin term. Gradients
    flow through the positions (the reparametrised path, for the reverse-KL loss)."""
    start_key, key = jax.random.split(key)
    x = jnp.sqrt(reference.start_variance) * jax.random.normal(start_key, (num_paths, dim))
    use_score = control.score_weight is not None
    score_fn = jax.vmap(clipped_score(logdensity_fn))

    def step(carry: tuple[Array, Array], inputs: tuple) -> tuple[tuple[Array, Array], Any]:
        x, log_ratio = carry
        step_key, t, decay, gain, noise, score_scale = inputs
        score = score_fn(x) if use_score else None
        scaled = score_scale * score if use_score else None
        u = jax.vmap(control, (0, None, 0 if use_score else None))(x, t, scaled)
        new = decay * x + gain * u + noise * jax.random.normal(step_key, x.shape, x.dtype)
        log_ratio = log_ratio + _step_log_ratio(x, new, u, decay, gain, noise)
        kept = (x, score if use_score else jnp.zeros((), x.dtype)) if keep else None
        return (new, log_ratio), kept

    keys = jax.random.split(key, reference.times.shape[0])
    inputs = (keys, *_steps(reference))
    (ends, log_ratio), kept = jax.lax.scan(step, (x, jnp.zeros(num_paths, x.dtype)), inputs)
    lp, terminal = terminal_log_weight(logdensity_fn, reference, ends)
    positions = scores = None
    if keep:
        positions = jnp.concatenate([kept[0], ends[None]])
        scores = kept[1] if use_score else None
    return Paths(ends, terminal + log_ratio, lp, terminal, positions, scores)


def _steps(reference: Reference) -> tuple[Array, ...]:
    """The per-step arrays a step of the chain reads, in its order."""
    r = reference
    return r.times, r.decay, r.gain, r.noise, r.score_scale


def path_log_weights(
    control: Control,
    reference: Reference,
    positions: Array,
    scores: Array | None,
    terminal: Array,
) -> Array:
    """The log weights of given paths (positions (K + 1, n, dim), the scores along them,
    ``terminal`` from :func:`terminal_log_weight`) under ``control``: as a function of the
    control's parameters at fixed paths (the trajectory-balance loss), all steps at once."""
    x, new = positions[:-1], positions[1:]

    def per_step(x_k, new_k, score_k, t, decay, gain, noise, score_scale):
        scaled = None if score_k is None else score_scale * score_k
        u = jax.vmap(control, (0, None, 0 if score_k is not None else None))(x_k, t, scaled)
        return _step_log_ratio(x_k, new_k, u, decay, gain, noise)

    in_axes = (0, 0, 0 if scores is not None else None, 0, 0, 0, 0, 0)
    ratios = jax.vmap(per_step, in_axes)(x, new, scores, *_steps(reference))
    return terminal + jnp.sum(ratios, axis=0)
