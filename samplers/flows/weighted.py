"""The importance-weighted flow samplers ``flow_vi`` and ``flow_is``: per run, one flow
trained (:func:`~.fitting.fit_flow`), then ``num_samples`` of its draws weighted against
the target.

Importance log weights that are NaN or -inf give weight zero, and their positions are
replaced by zeros so that a weighted moment never meets a NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.core.weights import log_mean_exp
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers import register
from bayeswb.samplers.flows.fitting import (
    FlowConfig,
    FlowISConfig,
    FlowVIConfig,
    fit_flow,
    flow_loss,
    pilot_evaluations,
    training_gradients,
)
from bayeswb.samplers.flows.training import training_status
from bayeswb.samplers.importance import weighted_output

Array = jax.Array


def importance_weights(
    flow: Any, logdensity_fn: Callable[[Array], Array], key: Array, num_samples: int
) -> tuple[Array, Array, Array, Array]:
    """Draw ``num_samples`` points from ``flow`` and weight them against the target.

    ``log w = log p(x) - log q(x)``; a NaN or infinite log weight (or a non-finite draw)
    gets weight zero (-inf) and position zero. Returns ``(positions, log_weights, lp,
    log_z)`` with ``log_z = log mean w`` (unbiased for Z on the natural scale).
    """
    positions, log_q = flow.sample_and_log_prob(key, (num_samples,))
    lp = jax.vmap(logdensity_fn)(positions)
    log_weights = lp - log_q
    good = jnp.isfinite(log_weights) & jnp.all(jnp.isfinite(positions), axis=1)
    log_weights = jnp.where(good, log_weights, -jnp.inf)
    positions = jnp.where(good[:, None], positions, 0.0)
    lp = jnp.where(good, lp, -jnp.inf)
    log_z = log_mean_exp(log_weights)
    return positions, log_weights, lp, log_z


def _run_weighted_flow(
    key: Array, target: Target, config: FlowConfig, layout: ChainLayout | None = None
) -> Draws:
    def one_run(run_key: Array) -> tuple[Any, ...]:
        fit_key, draw_key = jax.random.split(run_key)
        flow, trace = fit_flow(fit_key, target, config)
        positions, log_weights, lp, _ = importance_weights(
            flow, target.log_density, draw_key, config.num_samples
        )
        return positions, log_weights, lp, trace

    positions, log_weights, lp, trace = run_chains(key, config.num_chains, one_run, layout)
    out = weighted_output(log_weights, config.psis)
    diagnostics = out.diagnostics
    # the ELBO of the trained flow, E_q[log p - log q], estimated on the final draws
    diagnostics["elbo"] = jnp.mean(log_weights, axis=1, keepdims=True)
    curves = {} if config.num_warmup == 0 else trace
    steps_trained, converged = training_status(trace)
    diagnostics["training_steps"] = steps_trained[:, None]
    diagnostics["training_converged"] = converged[:, None]
    # training gradients (the steps actually taken); density evaluations add the pilot's
    # and one per weighted draw
    n_grad = training_gradients(config, steps_trained)
    return Draws(
        positions=positions,
        stats={"lp": lp, "log_q": jnp.where(jnp.isfinite(lp), lp - log_weights, -jnp.inf)},
        log_weights=out.log_weights,
        log_z=out.log_z,
        log_z_relative_variance=out.relative_variance,
        warmup_stats=curves,
        path_stats=diagnostics,
        n_grad_evals=n_grad,
        n_logdensity_evals=n_grad
        + pilot_evaluations(config)
        + config.num_chains * config.num_samples,
    )


@register("flow_vi", FlowVIConfig, family="flow")
def run_flow_vi(
    key: Array, target: Target, config: FlowVIConfig, layout: ChainLayout | None = None
) -> Draws:
    """Variational inference with a normalizing flow (Rezende and Mohamed 2015, "Variational
    Inference with Normalizing Flows", ICML): minimise the reverse KL, i.e. maximise the
    ELBO ``E_q0[log p(f_K(z)) - log q0(z) + sum_k log|det df_k/dz|]`` (their eq. 15 with
    the flow density of eq. 7) by Adam with ``num_mc_samples`` reparameterised draws per
    step, optionally with the sticking-the-landing gradient (Roeder et al. 2017) and the
    annealed objective ``E_q[log q - beta_t log p]`` (their section 6.1,
    ``num_anneal_steps``). Flows: ``planar`` (eq. 10, default, as in the paper),
    ``radial`` (eq. 14), ``affine_coupling`` (RealNVP), ``spline_coupling``, ``maf``.
    Then ``num_samples`` flow draws per run with log weights ``log p - log q``.
    Result: per run, ``log_z = log mean w`` (importance weighted, so unbiased for Z,
    unlike the ELBO, which bounds log Z from below); ``path_stats`` holds per run
    ``elbo`` (``mean log w`` over the final draws), ``ess`` (Kish ESS of the weights)
    and ``pareto_k`` (PSIS k-hat, Vehtari et al. 2024; < 0.7 reads as reliable), and
    ``training_steps`` (optax steps taken) and ``training_converged`` (True when the
    plateau rule stopped training; False: the ``num_warmup`` cap came first, so the flow
    may be under-trained); ``warmup_sample_stats`` holds the training curve per step
    (``loss``, ``elbo`` and/or ``forward_nll``, ``skipped``, ``beta`` when annealed, and
    with the plateau rule ``trained`` and ``plateau``; losses after the last step taken
    are NaN); ``sample_stats`` holds ``lp`` and ``log_q`` per draw. ``psis=True``
    reports smoothed log weights.
    Training (trust by default): the flow's last affine layer starts at a widened
    Gaussian pilot fit (:func:`~.fitting.flow_pilot`; with ``init_scale`` set: loc 0,
    that scale), then Adam runs until the loss plateaus (:class:`~.training.PlateauRule`,
    Prechelt 1998's UP rule: windows of ``plateau_window`` steps, ``plateau_patience``
    windows in a row without a drop of 2 standard errors) or ``num_warmup`` steps
    (``plateau_window=0``: exactly ``num_warmup`` steps).
    Cost: ``num_mc_samples`` target gradients per training step taken; density
    evaluations: those, the pilot's (:func:`~.fitting.pilot_evaluations`) and
    ``num_samples`` per run for the weights.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("banana", "flow_vi", num_chains=2, num_samples=50, num_warmup=10,
        ...               num_layers=2, num_mc_samples=4)
        >>> r.idata.warmup_sample_stats["elbo"].shape, r.log_weights.shape
        ((2, 10), (2, 50))
        >>> sorted(r.idata.path_stats.data_vars)
        ['elbo', 'ess', 'pareto_k', 'training_converged', 'training_steps']
    """
    return _run_weighted_flow(key, target, config, layout)


@register("flow_is", FlowISConfig, family="flow")
def run_flow_is(
    key: Array, target: Target, config: FlowISConfig, layout: ChainLayout | None = None
) -> Draws:
    """Importance sampling with a trained flow as proposal: the Boltzmann-generator recipe
    (Noe, Olsson, Koehler and Wu 2019, "Boltzmann generators", Science 365, eq. 6-8:
    training by energy = reverse KL, by example = forward KL on exact draws, or a mix),
    then reweighting ``w = p(x) / q(x)`` of ``num_samples`` flow draws per run (their
    eq. 9), with PSIS diagnostics (Vehtari et al. 2024). Result pools the runs' ``log_z``
    with a standard error.
    Result and training (pilot start, plateau rule under the ``num_warmup`` cap): as
    :func:`run_flow_vi`'s.
    Cost: reverse-KL steps taken cost ``num_mc_samples`` target gradients (mixed steps
    too), forward-KL steps none; density evaluations: those, the pilot's
    (:func:`~.fitting.pilot_evaluations`) and ``num_samples`` per run.

    Example:
        >>> import bayeswb as bw
        >>> t = bw.models.get("gaussian", dim=2)
        >>> r = bw.sample(t, "flow_is", num_chains=2, num_samples=100, num_warmup=20,
        ...               objective="forward_kl", num_layers=2)
        >>> r.cost["n_grad_evals"], r.log_z_se is not None, bw.score(r, t)["pareto_k"] < 0.7
        (0, True, True)
    """
    flow_loss(target, config)  # a missing sample_exact is an error before compiling
    return _run_weighted_flow(key, target, config, layout)
