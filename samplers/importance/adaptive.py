"""Adaptive multiple importance sampling (``amis``) with a mixture proposal adapted by EM.

Weighted particles, one independent run per chain, with per-run log Z, the Kish ESS and
the PSIS k-hat of the weights in ``path_stats`` (see :mod:`bayeswb.samplers.importance`
for the conventions it shares with ``is``). The mixture proposals and their EM step are
in :mod:`bayeswb.samplers.importance.mixtures`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bayeswb.core.config import SamplerConfig, boolean, one_of, option, positive, positive_int
from bayeswb.core.draws import Count, Draws
from bayeswb.core.target import Target
from bayeswb.core.weights import log_mean_exp, safe_log_weights
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers import register
from bayeswb.samplers.importance.mixtures import (
    MixtureParams,
    em_update,
    mixture_distribution,
    mixture_log_prob,
)
from bayeswb.samplers.importance.output import weighted_output
from bayeswb.samplers.importance.pilot import gaussian_pilot, pilot_evaluations_of

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class AMISConfig(SamplerConfig):
    """Adaptive multiple importance sampling. ``num_warmup`` is the number of iterations
    T, each drawing ``num_samples / T`` particles (so a run returns ``num_samples``
    weighted particles and costs ``num_samples`` log densities); ``num_samples`` must be a
    multiple of ``2 num_warmup`` (each iteration's draws are split in two halves: one
    adapts the proposal, the other estimates log Z)."""

    num_warmup: int = option(10, positive_int, "adaptation iterations T")
    proposal_family: str = option(
        "gaussian", one_of("gaussian", "student_t"), "Gaussian or Student-t components"
    )
    df: float = option(5.0, positive, "Student-t degrees of freedom")
    num_components: int = option(1, positive_int, "mixture components of the proposal")
    init_scale: float | None = option(
        None,
        lambda v: None if v is None or positive(v) is None else "must be None or positive",
        "initial proposal N(0, init_scale^2 I); None: from a forward-chi^2 Gaussian pilot",
    )
    pilot_steps: int = option(
        200, positive_int, "Adam steps of the pilot fit (init_scale None), 32 draws each"
    )
    psis: bool = option(False, boolean, "report Pareto-smoothed log weights")
    control_variates: bool = option(
        False, boolean, "store the proposal score for control variates (control_variates.py)"
    )

    def valid_num_samples(self, num_samples: int) -> int:
        """Rounded down to a multiple of ``2 num_warmup`` (at least one).

        Example:
            >>> AMISConfig(num_samples=20, num_warmup=10).valid_num_samples(43)
            40
        """
        return max(num_samples // (2 * self.num_warmup), 1) * 2 * self.num_warmup

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_samples % (2 * self.num_warmup):
            raise ValueError(
                f"num_samples must be a multiple of 2 * num_warmup ({2 * self.num_warmup}), "
                f"got {self.num_samples!r}"
            )


class AMISSizes(NamedTuple):
    """One run's sizes: T ``iterations`` of N draws each (``per_iteration``), of which the
    first ``half`` adapt the proposal; positions have ``dim`` coordinates."""

    iterations: int
    per_iteration: int
    half: int
    dim: int


class AMISCarry(NamedTuple):
    """What iteration t of a run carries to the next (T iterations of N draws in d
    dimensions; unfilled entries are zero positions and ``-inf`` log densities).

    positions: (T, N, d) the draws so far, by iteration
    log_p:     (T, N) their target log densities
    log_q:     (T, N, T) ``log q_l(x)`` of each draw under each proposal ``q_l`` so far
    history:   the proposals ``q_0, ..., q_t`` (MixtureParams stacked on a leading T axis)
    params:    the current proposal ``q_t``
    """

    positions: Array
    log_p: Array
    log_q: Array
    history: MixtureParams
    params: MixtureParams


class AMISRun(NamedTuple):
    """One run's output (T N particles in d dimensions).

    positions: (T N, d) every particle
    log_w:     (T N,) their final recycled log weights
    log_p:     (T N,) their target log densities
    log_z:     the run's unbiased log Z (second halves, final deterministic mixture)
    trace:     per iteration ``log_z`` (running) and ``ess`` (of the adaptation weights)
    score:     (T N, d) ``grad log`` of the final deterministic mixture, or None
    """

    positions: Array
    log_w: Array
    log_p: Array
    log_z: Array
    trace: dict[str, Array]
    score: Array | None


@register("amis", AMISConfig, family="importance")
def run_amis(
    key: Array, target: Target, config: AMISConfig, layout: ChainLayout | None = None
) -> Draws:
    """Adaptive multiple importance sampling (Cornuet, Marin, Mira and Robert 2012,
    "Adaptive multiple importance sampling", Scand. J. Stat. 39(4), section 2.2) with a
    Gaussian or Student-t mixture proposal adapted by importance-weighted EM (the M-PMC
    updates of Cappe et al. 2008, see :func:`em_update`; one component reduces to
    Cornuet et al.'s weighted mean and covariance).

    Iteration ``t = 0..T-1`` draws ``N = num_samples / T`` particles from the mixture
    ``q_t``; every particle drawn so far is re-weighted with the deterministic-mixture
    weight ``w(x) = pi(x) / ((1 / (t + 1)) sum_{l <= t} q_l(x))`` (Owen and Zhou 2000,
    "Safe and effective importance sampling", JASA 95, section 3; Cornuet et al.'s
    recycling, all ``N_l`` equal), and ``q_{t+1}`` is one EM step from ``q_t`` on those
    weighted particles. The first proposal (trust by default) is a widened forward-chi^2
    mean-field Gaussian pilot (:func:`~.pilot.gaussian_pilot`: Li, Wang, Li and Wu 2024,
    section 3; mass covering, so a safe importance proposal, unlike a reverse-KL fit,
    which under-covers; its sds times 1.5 and never narrower than ``target.init``'s
    spread), from the target's log density alone: a start placed where the target is, as
    wide as Cornuet et al. (section 3) ask. ``init_scale`` set: ``N(0, init_scale^2 I)``
    as before. With K > 1 components their means are drawn from that Gaussian and their
    scales are its scales.

    Why log Z uses half of the draws: recycled weights are biased, because a later
    proposal is fitted to the very particles it then re-weights: ``q_l`` is large exactly
    where the heavy early particles sit, which shrinks their weights and biases ``Z``
    low (the consistency issue studied by Marin, Pudlo and Sedki 2019, Bernoulli 25(3));
    with a poor start it is visible (``log Z`` about 0.1 low on a 4-d Gaussian with T = 10,
    N = 100). Each iteration's draws are therefore split in two halves: the proposals are
    adapted on the first halves only, so conditionally on the whole proposal sequence the
    second halves are independent draws from ``q_0, ..., q_{T-1}`` and the deterministic
    mixture estimate ``log mean_{second halves} pi / ((1/T) sum_l q_l)`` is unbiased for
    ``Z`` on the natural scale (Owen and Zhou's estimator with fixed proposals; the same
    reason Demange-Chryst, Bachoc and Morio 2023 draw a fresh sample from the final
    proposal). That is the run's ``log_z``. The reported particles are all ``T N``
    particles with their final recycled weights (Cornuet et al.'s output, for moments,
    ESS and k-hat); ``warmup_stats`` holds each iteration's running ``log_z`` (second
    halves, current mixture) and the Kish ``ess`` of the adaptation weights.

    ``control_variates=True`` stores ``stats["proposal_score"]``, the gradient of the
    log final mixture ``(1/T) sum_l q_l`` at each particle (zero mean under it), for
    :func:`bayeswb.samplers.importance.control_variates.control_variate_estimates`.
    Cost: ``num_samples`` log densities per run plus the pilot's
    (:func:`pilot_evaluations`), no gradients.

    Example:
        >>> import bayeswb as bw
        >>> t = bw.models.get("gaussian", dim=2)
        >>> r = bw.sample(t, "amis", num_chains=4, num_samples=400, num_warmup=4)
        >>> abs(r.log_z - t.log_z) < 5 * r.log_z_se
        True
        >>> r.idata.warmup_sample_stats["ess"].shape
        (4, 4)
    """
    per_iteration = config.num_samples // config.num_warmup
    sizes = AMISSizes(config.num_warmup, per_iteration, per_iteration // 2, target.dim)
    one_run = functools.partial(_one_run, target=target, config=config, sizes=sizes)
    out = run_chains(key, config.num_chains, one_run, layout)
    # AMIS's log Z is its own (all iterations' draws, deterministic-mixture weights),
    # and those draws are not independent: no per-run variance is claimed for it
    weighted = weighted_output(out.log_w, config.psis)
    reported, diagnostics = weighted.log_weights, weighted.diagnostics
    stats = {"lp": out.log_p}
    if config.control_variates:
        stats["proposal_score"] = out.score
    return Draws(
        positions=out.positions,
        stats=stats,
        log_weights=reported,
        log_z=out.log_z,
        warmup_stats=out.trace,
        path_stats=diagnostics,
        n_grad_evals=Count(),
        n_logdensity_evals=Count.of(
            config.num_chains * config.num_samples + pilot_evaluations(config)
        ),
    )


def _one_run(key: Array, target: Target, config: AMISConfig, sizes: AMISSizes) -> AMISRun:
    """One amis run: T iterations in a ``lax.scan``, then the run's log Z and output."""
    init_key, loop_key = jax.random.split(key)
    carry = _initial_carry(_initial_proposal(init_key, target, config), sizes)
    step = functools.partial(_iteration, target=target, config=config, sizes=sizes)
    keys = jax.random.split(loop_key, sizes.iterations)
    final, (log_w, trace) = jax.lax.scan(step, carry, (jnp.arange(sizes.iterations), keys))
    final_w = log_w[-1]
    positions = final.positions.reshape(-1, sizes.dim)
    score = None
    if config.control_variates:
        score = _final_mixture_score(final.history, config, positions)
    return AMISRun(
        positions=positions,
        log_w=final_w.ravel(),
        log_p=final.log_p.ravel(),
        log_z=log_mean_exp(final_w[:, sizes.half :].ravel()),
        trace=trace,
        score=score,
    )


PILOT_MC_SAMPLES = 32
"""Draws per step of the amis pilot fit."""


def pilot_evaluations(config: AMISConfig) -> int:
    """Target log densities of the pilots of all runs (0 when ``init_scale`` is set).

    Example:
        >>> default, fixed = AMISConfig(num_chains=2), AMISConfig(init_scale=3.0)
        >>> pilot_evaluations(default), pilot_evaluations(fixed)
        (17026, 0)
    """
    if config.init_scale is not None:
        return 0
    return pilot_evaluations_of(config.num_chains, config.pilot_steps, PILOT_MC_SAMPLES)


def _initial_proposal(key: Array, target: Target, config: AMISConfig) -> MixtureParams:
    """``q_0``: equal weights; centre ``m`` and per-coordinate scales ``s`` from the
    widened forward-chi^2 pilot (:func:`~.pilot.gaussian_pilot`), or ``m = 0`` and
    ``s = init_scale`` when that is set; one component at ``m``, or K means drawn from
    ``N(m, diag(s^2))``, each with scales ``s``."""
    pilot_key, means_key = jax.random.split(key)
    dim, num_components = target.dim, config.num_components
    if config.init_scale is None:
        pilot = gaussian_pilot(pilot_key, target, config.pilot_steps, PILOT_MC_SAMPLES)
        centre, scale = pilot.loc, pilot.scale
    else:
        centre, scale = jnp.zeros(dim), jnp.full(dim, config.init_scale)
    if num_components == 1:
        locs = centre[None]
    else:
        locs = centre + scale * jax.random.normal(means_key, (num_components, dim))
    return MixtureParams(
        jnp.full(num_components, 1.0 / num_components),
        locs,
        jnp.broadcast_to(jnp.diag(scale), (num_components, dim, dim)),
    )


def _initial_carry(params: MixtureParams, sizes: AMISSizes) -> AMISCarry:
    """Nothing drawn yet; every slot of the proposal history holds ``q_0``."""
    t, n = sizes.iterations, sizes.per_iteration
    return AMISCarry(
        positions=jnp.zeros((t, n, sizes.dim)),
        log_p=jnp.full((t, n), -jnp.inf),
        log_q=jnp.full((t, n, t), -jnp.inf),
        history=jax.tree.map(lambda a: jnp.broadcast_to(a, (t,) + a.shape), params),
        params=params,
    )


def _iteration(
    carry: AMISCarry,
    inputs: tuple[Array, Array],
    target: Target,
    config: AMISConfig,
    sizes: AMISSizes,
) -> tuple[AMISCarry, tuple[Array, dict[str, Array]]]:
    """Iteration t: draw from ``q_t``, re-weight every particle, one EM step on the first
    halves. Returns the new carry and ``(log weights (T, N), trace)``."""
    t, step_key = inputs
    family, df, half = config.proposal_family, config.df, sizes.half
    carry = _draw(carry, t, step_key, target, family, df)
    log_w = _recycled_log_weights(carry, t)
    # adapt on the first halves only; the second halves stay out of the fit
    adapt_w = log_w[:, :half].ravel()
    adapt_x = carry.positions[:, :half].reshape(-1, sizes.dim)
    params, ess = em_update(carry.params, adapt_x, adapt_w, family, df)
    drawn = (t + 1.0) * half
    evidence_w = log_w[:, half:]
    trace = {"log_z": jax.scipy.special.logsumexp(evidence_w) - jnp.log(drawn), "ess": ess}
    return carry._replace(params=params), (log_w, trace)


def _draw(
    carry: AMISCarry, t: Array, key: Array, target: Target, family: str, df: float
) -> AMISCarry:
    """Draw block t from ``q_t`` and fill in the densities it brings: ``pi`` at the new
    draws, every proposal so far at the new draws, ``q_t`` at every draw."""
    iterations, per_iteration, dim = carry.positions.shape
    params = carry.params
    x = mixture_distribution(params, family, df).sample(key, (per_iteration,))
    positions = carry.positions.at[t].set(x)
    log_p = carry.log_p.at[t].set(safe_log_weights(jax.vmap(target.log_density)(x)))
    history = jax.tree.map(lambda h, p: h.at[t].set(p), carry.history, params)
    # q_l(x) for the new block under every proposal so far, q_t at every particle
    row = jax.vmap(lambda p: mixture_log_prob(p, family, df, x), out_axes=1)(history)
    log_q = carry.log_q.at[t].set(row)
    column = mixture_log_prob(params, family, df, positions.reshape(-1, dim))
    log_q = log_q.at[:, :, t].set(column.reshape(iterations, per_iteration))
    return AMISCarry(positions, log_p, log_q, history, params)


def _recycled_log_weights(carry: AMISCarry, t: Array) -> Array:
    """Deterministic-mixture log weights ``log pi(x) - log((1 / (t + 1)) sum_{l <= t}
    q_l(x))`` of every particle drawn so far; ``-inf`` for the blocks not drawn yet."""
    used = jnp.arange(carry.log_q.shape[-1]) <= t
    log_mixture = jax.scipy.special.logsumexp(
        jnp.where(used, carry.log_q, -jnp.inf), axis=-1
    ) - jnp.log(t + 1.0)
    return jnp.where(used[:, None], safe_log_weights(carry.log_p - log_mixture), -jnp.inf)


def _final_mixture_score(history: MixtureParams, config: AMISConfig, positions: Array) -> Array:
    """``grad_x log((1/T) sum_l q_l(x))`` at each of ``positions`` (n, d) -> (n, d)."""
    all_used = jnp.ones(config.num_warmup, bool)
    family, df = config.proposal_family, config.df

    def log_mixture(y: Array) -> Array:
        return _proposals_log_prob(history, all_used, family, df, y[None])[0]

    return jax.vmap(jax.grad(log_mixture))(positions)


def _proposals_log_prob(
    history: MixtureParams, used: Array, family: str, df: float, x: Array
) -> Array:
    """``log((1 / #used) sum_{l used} q_l(x))`` for a stack of T mixtures; x (n, d) -> (n,)."""
    per_proposal = jax.vmap(lambda p: mixture_log_prob(p, family, df, x), out_axes=1)(
        history
    )  # (n, T)
    per_proposal = jnp.where(used, per_proposal, -jnp.inf)
    return jax.scipy.special.logsumexp(per_proposal, axis=-1) - jnp.log(jnp.sum(used))
