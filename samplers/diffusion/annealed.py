"""``cmcd``: Controlled Monte Carlo Diffusions (Vargas, Padhy, Blessing and Nuesken 2024),
annealed Langevin transport from N(0, I) to the target whose forward and backward
kernels share a learnt control.

The densities ``pi_k ∝ N(0, I)^(1 - beta_k) pi^beta_k``, ``beta_k = k / K``, are annealed
along the path. Forward (the sampler) and backward kernels are Euler-Maruyama steps of
the Langevin diffusion of ``pi_t`` with the control added and subtracted (their
controlled forward and backward SDEs, discretised):

    F_k(x_{k+1} | x_k) = N(x_k + d [grad log pi_k(x_k) + u(x_k, t_k)], 2 d I)
    B_k(x_k | x_{k+1}) = N(x_{k+1} + d [grad log pi_{k+1}(x_{k+1}) - u(x_{k+1}, t_{k+1})], 2 d I)

with step ``d`` (learnt, from ``step_size``); a path from ``x_0 ~ N(0, I)`` has weight

    log w = log pi(x_K) + sum_k log B_k(x_k | x_{k+1})
            - log N(x_0; 0, I) - sum_k log F_k(x_{k+1} | x_k),

exact for any control and step (``E[w] = Z``); with ``u = 0`` it is unadjusted-Langevin
annealed importance sampling (Thin et al. 2021; Geffner and Domke 2021), which the
control corrects. The target's score is clipped as in :mod:`.paths` (the same function
in both kernels, so the weights stay exact).

With ``resample_ess`` the drawn sample resamples the paths along the way where their
weights degenerate: an SMC sampler whose kernels are the trained ones, as
smc_langevin's are untrained ones; cmcd's training uses whole paths. ``scld``
(:mod:`.sequential`) is the sampler that also trains through resampled segments.

It is off by default. Measured with ``resample_ess=0.5`` (defaults otherwise, 8 runs,
seed 0, the sendera2024_logz targets): mean |delta log Z| 1.52 on gmm25 (1.57 without)
and 0.26 on the funnel (0.30 without), so it removed little of the error, and on gmm25
it hid what had flagged the runs: resampled 2-4 times, the final weights' k-hat passed
(1.2-4.2 without), and only the runs' disagreement still flagged the collapsed
transport. Whole paths' weights keep that evidence in every run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from bayeswb.core.config import closed_unit_interval, option, positive
from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.core.weights import kish_ess, log_mean_exp, safe_log_weights
from bayeswb.execution.driver import ChainLayout
from bayeswb.samplers import register
from bayeswb.samplers.diffusion.paths import Control, Moves, Paths, Resampling, clip_score
from bayeswb.samplers.diffusion.samplers import (
    DiffusionConfig,
    DiffusionMethod,
    reverse_kl_loss,
    run_diffusion,
)
from bayeswb.samplers.smc.resampling import ess_resampling

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class CMCDConfig(DiffusionConfig):
    """CMCD: the shared options, and the initial Langevin step (learnt in training)."""

    step_size: float = option(
        0.05,
        positive,
        "the largest initial step d of the Langevin kernels: halved until a probe's MALA "
        "acceptance reaches 0.8 (then learnt, as log d)",
    )
    resample_ess: float = option(
        0.0,
        closed_unit_interval,
        "when drawing the sample (not in training), resample the paths after any step "
        "where their weights' ESS falls below this fraction of them (an SMC sampler with "
        "the trained kernels; 0.5 is the usual choice); 0: never (plain importance "
        "weights of whole paths, whose k-hat shows a collapsed transport)",
    )


class CMCDModel(eqx.Module):
    """What CMCD trains: the control and the log of the Langevin step."""

    control: Control
    log_step: Array


STEP_PROBE_DRAWS = 64
STEP_PROBE_HALVINGS = 12
STEP_PROBE_ACCEPTANCE = 0.8


def probe_step(
    key: Array, logdensity_fn: Callable[[Array], Array], dim: int, largest: float
) -> Array:
    """The initial Langevin step: the largest of ``largest * 2^-j``, ``j <
    STEP_PROBE_HALVINGS``, at which one MALA step from ``STEP_PROBE_DRAWS`` draws of
    N(0, I) (the pilot's picture of the whitened target) on the target is accepted with
    mean probability at least ``STEP_PROBE_ACCEPTANCE`` (else the smallest). A path's
    weight sums, step by step, the mismatch of its forward and backward kernels, close to
    MALA's log acceptance ratio; an unadjusted step too large for the target's stiffest
    direction makes it explode (on manywell, whitened, the fixed step 0.05 gave
    |delta log Z| of about 1500). Costs ``STEP_PROBE_DRAWS * (STEP_PROBE_HALVINGS + 1)``
    gradients."""
    start_key, noise_key = jax.random.split(key)
    evaluate = _value_and_clipped_score(logdensity_fn)
    x = jax.random.normal(start_key, (STEP_PROBE_DRAWS, dim))
    value, score = evaluate(x)
    steps = largest * 0.5 ** jnp.arange(STEP_PROBE_HALVINGS, dtype=x.dtype)
    noise = jax.random.normal(noise_key, x.shape, x.dtype)

    def acceptance(step: Array) -> Array:
        y = x + step * score + jnp.sqrt(2.0 * step) * noise
        y_value, y_score = evaluate(y)
        forward = jnp.sum((y - x - step * score) ** 2, axis=1)
        backward = jnp.sum((x - y - step * y_score) ** 2, axis=1)
        log_ratio = y_value - value + (forward - backward) / (4.0 * step)
        return jnp.mean(jnp.exp(jnp.minimum(jnp.nan_to_num(log_ratio, nan=-jnp.inf), 0.0)))

    accepted = jax.lax.map(acceptance, steps) >= STEP_PROBE_ACCEPTANCE
    return steps[jnp.where(jnp.any(accepted), jnp.argmax(accepted), STEP_PROBE_HALVINGS - 1)]


def build_cmcd(
    key: Array, logdensity_fn: Callable[[Array], Array], dim: int, config: CMCDConfig
) -> CMCDModel:
    """The untrained control (u = 0: ULA annealing) and ``log d`` from
    :func:`probe_step`; the control has no Langevin term of its own (the annealed score
    is in both kernels)."""
    control_key, probe_key = jax.random.split(key)
    control = Control(control_key, dim, config.hidden_width, config.hidden_depth, False)
    return CMCDModel(control, jnp.log(probe_step(probe_key, logdensity_fn, dim, config.step_size)))


def _value_and_clipped_score(logdensity_fn: Callable[[Array], Array]) -> Callable:
    def evaluate(x: Array) -> tuple[Array, Array]:
        value, grad = jax.value_and_grad(logdensity_fn)(x)
        return value, clip_score(grad)

    return jax.vmap(evaluate)


def annealed_score(x: Array, score: Array, beta: Array) -> Array:
    """``grad log pi_k = (1 - beta_k) (-x) + beta_k grad log pi`` (score clipped); ``beta``
    has the shape of ``x``'s leading axes but the last (or is a scalar)."""
    beta = jnp.asarray(beta)[..., None]
    return (1.0 - beta) * (-x) + beta * score


def annealed_log_density(x: Array, value: Array, beta: Array) -> Array:
    """``log pi_k(x)`` up to a constant in k: ``-(1 - beta_k) |x|^2 / 2 + beta_k log pi``
    (the N(0, I) constant cancels with the start's)."""
    return -(1.0 - beta) * 0.5 * jnp.sum(x**2, axis=-1) + beta * value


def kernel_log_ratio(
    step: Array, moves: Moves, u: Array, new_u: Array, beta: Array, new_beta: Array
) -> Array:
    """``log B_k(x | new) - log F_k(new | x)`` per path, for the steps in ``moves`` (their
    leading axes broadcast with ``beta``'s): equal variances ``2 d``, so the Gaussian
    normalisers cancel."""
    forward_mean = moves.x + step * (annealed_score(moves.x, moves.score, beta) + u)
    backward_mean = moves.new + step * (
        annealed_score(moves.new, moves.new_score, new_beta) - new_u
    )
    backward = jnp.sum((moves.x - backward_mean) ** 2, axis=-1)
    forward = jnp.sum((moves.new - forward_mean) ** 2, axis=-1)
    return (forward - backward) / (4.0 * step)


def cmcd_simulate(
    key: Array,
    model: CMCDModel,
    logdensity_fn: Callable[[Array], Array],
    config: CMCDConfig,
    num_paths: int,
    dim: int,
    keep: bool = False,
    resample_ess: float = 0.0,
    every: int = 1,
) -> Paths:
    """``num_paths`` CMCD paths (one ``lax.scan`` over the K steps, paths vectorised) and
    their log weights; one target gradient at each of the K + 1 points of a path. The
    control at ``x_{k+1}`` serves both ``B_k`` and the next ``F_{k+1}``. With ``keep``
    the result's ``moves`` hold every step's pair of points (:class:`~.paths.Moves`).

    With ``resample_ess`` > 0 the paths are the particles of an SMC sampler with these
    forward and backward kernels (Del Moral, Doucet and Jasra 2006, eq. 31's incremental
    weights): a path's weight after step k is ``pi_k(x_k) / N(x_0; 0, I)`` times its
    kernels' ratio so far, and after any step but the last where that weight's ESS is
    below ``resample_ess`` of the paths (only after every ``every``-th step: scld's
    segment ends), they are resampled (systematic) and each takes the mean weight
    (folded into its kernels' ratio), so that the final ``log mean w`` is the SMC
    estimate of log Z, unbiased in Z. Resampling moves no gradient: a path's value,
    score and control go with it."""
    num_steps = config.num_steps
    step = jnp.exp(model.log_step)
    evaluate = _value_and_clipped_score(logdensity_fn)
    control = jax.vmap(model.control, (0, None, None))
    resample = ess_resampling("systematic", resample_ess) if resample_ess > 0.0 else None
    start_key, key = jax.random.split(key)
    x = jax.random.normal(start_key, (num_paths, dim))
    value, score = evaluate(x)
    u = control(x, jnp.zeros((), x.dtype), None)
    log_start = -0.5 * jnp.sum(x**2, axis=1)  # the N(0, I) constant cancels with pi_0's

    def beta_at(k: Array) -> Array:
        return (k / num_steps).astype(x.dtype)

    def resample_paths(carry: tuple, key: Array, k: Array) -> tuple[tuple, tuple]:
        """After step k - 1 (the paths at x_k): resample if the weights' ESS is low."""
        assert resample is not None
        x, value, score, u, log_ratio, log_start, family = carry
        # log pi_k(x_k) - log N(x_0; 0, I) + kernels' ratio, up to a constant in k
        log_w = annealed_log_density(x, value, beta_at(k)) - log_start
        log_w = safe_log_weights(log_w + log_ratio)
        ess = kish_ess(log_w)
        normalised = log_w - jax.scipy.special.logsumexp(log_w)
        # never after the last step, nor off a segment's end, nor when every weight is
        # zero (nothing to draw from)
        allowed = (k < num_steps) & (k % every == 0) & (ess > 0)
        out = resample(key, x, normalised, jnp.where(allowed, ess, jnp.inf))
        p = out.parents
        mean_weight = log_mean_exp(log_w)
        log_ratio = jnp.where(out.resampled, log_ratio[p] + mean_weight - log_w[p], log_ratio)
        carry = (out.positions, value[p], score[p], u[p], log_ratio, log_start[p], family[p])
        return carry, (ess, out.resampled)

    def one_step(carry: tuple, inputs: tuple) -> tuple[tuple, Any]:
        x, value, score, u, log_ratio, *genealogy = carry
        step_key, resample_key, k = inputs
        forward_mean = x + step * (annealed_score(x, score, beta_at(k)) + u)
        noise = jax.random.normal(step_key, x.shape, x.dtype)
        new = forward_mean + jnp.sqrt(2.0 * step) * noise
        new_value, new_score = evaluate(new)
        new_u = control(new, beta_at(k + 1), None)
        moves = Moves(x, new, value, new_value, score, new_score)
        log_ratio = log_ratio + kernel_log_ratio(step, moves, u, new_u, beta_at(k), beta_at(k + 1))
        carry = (new, new_value, new_score, new_u, log_ratio, *genealogy)
        kept = moves if keep else None
        if resample is None:
            return carry, (None, kept)
        carry, resampling = resample_paths(carry, resample_key, k + 1)
        return carry, (resampling, kept)

    keys = jax.random.split(key, num_steps)
    resample_keys = jax.random.split(jax.random.fold_in(key, 1), num_steps)
    genealogy: tuple[Array, ...] = ()
    if resample is not None:
        genealogy = (log_start, jnp.arange(num_paths))
    carry = (x, value, score, u, jnp.zeros(num_paths, x.dtype), *genealogy)
    inputs = (keys, resample_keys, jnp.arange(num_steps))
    carry, (trace, moves) = jax.lax.scan(one_step, carry, inputs)
    ends, lp, _, _, log_ratio, *genealogy_end = carry
    resampling = None
    if resample is not None:
        log_start, family = genealogy_end
        resampling = Resampling(trace[0], trace[1], family)
    terminal = lp + 0.5 * dim * jnp.log(2.0 * jnp.pi) - log_start
    return Paths(ends, terminal + log_ratio, lp, terminal, None, None, resampling, moves)


def cmcd_sample(
    key: Array,
    model: CMCDModel,
    logdensity_fn: Callable[[Array], Array],
    config: CMCDConfig,
    num_paths: int,
    dim: int,
) -> Paths:
    """The draw's paths: :func:`cmcd_simulate`, resampled at ``config.resample_ess``."""
    return cmcd_simulate(
        key, model, logdensity_fn, config, num_paths, dim, resample_ess=config.resample_ess
    )


def cmcd_cost(config: CMCDConfig) -> tuple[int, int]:
    """One gradient at each of a path's K + 1 points, in training and sampling (its
    back-propagation in training is not counted again)."""
    return config.num_steps + 1, config.num_steps + 1


CMCD = DiffusionMethod(
    "cmcd",
    build_cmcd,
    cmcd_simulate,
    reverse_kl_loss,
    cmcd_cost,
    draw_end_evaluations=0,
    start_grads=lambda config: STEP_PROBE_DRAWS * (STEP_PROBE_HALVINGS + 1),
    sample=cmcd_sample,
)


@register("cmcd", CMCDConfig, family="flow")
def run_cmcd(
    key: Array, target: Target, config: CMCDConfig, layout: ChainLayout | None = None
) -> Draws:
    """Controlled Monte Carlo Diffusions (Vargas, Padhy, Blessing and Nuesken 2024,
    "Transport meets variational inference: Controlled Monte Carlo diffusions", ICLR):
    annealed Langevin kernels from N(0, I) to the target, forward and backward sharing
    a learnt control (see this module), trained with the step by the reverse KL of the
    path laws (reparametrised), then ``num_samples`` paths' ends weighted
    by the exact path weight; with ``resample_ess`` > 0 (off by default, see this
    module) the paths are resampled after any step where their weights' ESS falls below
    that fraction of them (:func:`cmcd_simulate`; the verdict's ``path_ess`` reads the
    lowest ESS). ``hidden_*``: the control network; ``langevin_control``
    is not used (the annealed score is in both kernels).
    Result and cost: as :func:`~.samplers.run_diffusion`'s.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("banana", "cmcd", num_chains=2, num_samples=50, num_warmup=5,
        ...               num_steps=10, hidden_width=8, batch_size=8, pilot_steps=10)
        >>> # 2 runs: (5 x 8 + 50) paths x 11 points, and the step probe's 64 x 13
        >>> r.log_weights.shape, r.cost["n_grad_evals"]
        ((2, 50), 3644)
    """
    return run_diffusion(key, target, config, CMCD, layout)
