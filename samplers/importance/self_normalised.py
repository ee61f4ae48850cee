"""Self-normalised importance sampling with a chosen proposal (``is``).

Self-normalised importance sampling (Owen, "Monte Carlo theory, methods and examples",
2013, ch. 9, eq. 9.3 and 9.17): with ``x_i ~ q`` and ``log w_i = log pi(x_i) - log q(x_i)``,

- ``Z_hat = (1/n) sum_i w_i`` is unbiased for ``Z`` on the natural scale, so each run
  reports ``log Z_hat`` and ``bw.sample`` pools runs with a standard error;
- ``E_pi[f] ~ sum_i w_i f(x_i) / sum_i w_i``;
- the Kish effective sample size ``(sum w)^2 / sum w^2`` (eq. 9.13).

The proposal is built per run by a registered builder
(:mod:`bayeswb.samplers.importance.proposals`); the PSIS diagnostics are
:mod:`bayeswb.samplers.importance.output`'s.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from bayeswb.core.config import (
    SamplerConfig,
    boolean,
    non_negative_int,
    one_of,
    option,
    positive,
    positive_int,
)
from bayeswb.core.draws import Count, Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers import register
from bayeswb.samplers.importance.output import weighted_output
from bayeswb.samplers.importance.proposals import (
    ProposalBuilder,
    importance_sample,
    known_proposal,
    proposal_builder,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ISConfig(SamplerConfig):
    """Importance sampling: ``num_chains`` independent runs of ``num_samples`` weighted
    draws, each with its own proposal fit (``num_warmup`` L-BFGS iterations or Adam steps;
    unused by ``prior``). Options of another proposal are ignored."""

    num_warmup: int = option(100, non_negative_int, "proposal fitting steps")
    proposal: str = option("laplace", known_proposal, "how the proposal is built")
    proposal_family: str = option(
        "gaussian", one_of("gaussian", "student_t"), "laplace: Gaussian or Student-t"
    )
    df: float = option(5.0, positive, "laplace: Student-t degrees of freedom")
    proposal_scale: float = option(1.0, positive, "laplace: factor on the proposal's scale")
    vi_family: str = option("fullrank", one_of("meanfield", "fullrank"), "gaussian_vi family")
    learning_rate: float = option(0.01, positive, "gaussian_vi: Adam learning rate")
    num_mc_samples: int = option(8, positive_int, "gaussian_vi: draws per ELBO gradient")
    psis: bool = option(False, boolean, "report Pareto-smoothed log weights")
    control_variates: bool = option(
        False, boolean, "store the proposal score for control variates (control_variates.py)"
    )


@register("is", ISConfig, family="importance")
def run_is(
    key: Array, target: Target, config: ISConfig, layout: ChainLayout | None = None
) -> Draws:
    """Self-normalised importance sampling (Owen 2013, ch. 9, eq. 9.3, 9.17) with a
    prior, Laplace, Gaussian-VI or registered proposal, and PSIS diagnostics (Vehtari et
    al. 2024).

    Each run fits its own proposal and draws ``num_samples`` from it; its
    ``log Z = log mean w`` is unbiased for ``Z`` on the natural scale, so runs pool into
    ``Result.log_z`` with a standard error. ``path_stats`` holds per run ``pareto_k``
    (``< 0.7`` reliable) and ``ess`` (Kish ESS of the weights); ``stats`` holds ``lp``
    (target log density) and ``log_q``; ``warmup_stats`` the VI ELBO curve.
    ``psis=True`` reports the smoothed log weights (log Z stays the raw estimate).
    ``control_variates=True`` also stores ``stats["proposal_score"]`` (chains, draws, dim),
    ``grad_x log q`` at each draw, for the multiple-expectations estimator with control
    variates
    (:func:`bayeswb.samplers.importance.control_variates.control_variate_estimates`).

    Cost: one log density per draw, plus the fit: for ``laplace`` one value-and-gradient
    per L-BFGS line-search step plus one at the start, and ``dim`` gradients for the
    Hessian; for ``gaussian_vi`` ``num_mc_samples`` per Adam step; none for ``prior``.

    Example:
        >>> import bayeswb as bw
        >>> t = bw.models.get("gaussian", dim=2)
        >>> r = bw.sample(t, "is", num_chains=4, num_samples=500, num_warmup=20,
        ...               proposal_family="student_t")
        >>> abs(r.log_z - t.log_z) < 5 * r.log_z_se
        True
        >>> bool((r.idata.path_stats["pareto_k"] < 0.7).all())
        True
    """
    return run_with_proposal(key, target, config, proposal_builder(config.proposal), layout)


def run_with_proposal(
    key: Array,
    target: Target,
    config: Any,
    builder: ProposalBuilder,
    layout: ChainLayout | None = None,
) -> Draws:
    """Importance sampling with a proposal from ``builder``, one fit per independent run.

    ``config`` needs ``num_chains``, ``num_samples`` and ``psis`` (and may have
    ``control_variates``: then the proposal needs ``log_prob(x)``, as numpyro-wrapped,
    function and flowjax proposals have); ``builder`` is as in
    :func:`~bayeswb.samplers.importance.proposals.register_proposal`.
    This is ``is``'s body, shared by ``vis``.
    """
    with_score = getattr(config, "control_variates", False)

    def one_run(run_key: Array) -> tuple:
        fit_key, draw_key = jax.random.split(run_key)
        proposal, n_grad, n_evals, curves = builder(fit_key, target, config)
        positions, log_weights, log_p, log_q = importance_sample(
            draw_key, target.log_density, proposal, config.num_samples
        )
        stats = {"lp": log_p, "log_q": log_q}
        if with_score:
            stats["proposal_score"] = jax.vmap(jax.grad(proposal.log_prob))(positions)
        return positions, log_weights, stats, n_grad, n_evals, curves

    positions, log_weights, stats, n_grad, n_evals, curves = run_chains(
        key, config.num_chains, one_run, layout
    )
    out = weighted_output(log_weights, config.psis)
    return Draws(
        positions=positions,
        stats=stats,
        log_weights=out.log_weights,
        log_z=out.log_z,
        log_z_relative_variance=out.relative_variance,
        warmup_stats=curves,
        path_stats=out.diagnostics,
        # each run's fit cost (a Count, or an int array per run), totalled on the host
        n_grad_evals=Count.of(n_grad),
        n_logdensity_evals=Count.of(n_evals) + config.num_chains * config.num_samples,
    )
