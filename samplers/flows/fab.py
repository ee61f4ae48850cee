"""Flow annealed importance sampling bootstrap (``fab``; Midgley, Stimper, Simm, Schoelkopf
and Hernandez-Lobato 2023, "Flow Annealed Importance Sampling Bootstrap", ICLR).

A flow q is trained to minimise the alpha = 2 divergence to the target p, i.e.
``log int p^2 / q`` (its minimum, ``2 log Z``, is reached at ``q = p / Z``), and the
expectation under ``p^2 / q`` that its gradient needs is estimated by AIS started at q and
targeting ``p^2 / q`` (their eq. 7-9):

    grad log int p^2 / q_theta  =  -E_{p^2 / q}[grad log q_theta(x)]
                                ~  -sum_i wbar_i grad log q_theta(x_i),

with ``(x_i, wbar_i)`` the AIS particles and self-normalised weights, both held fixed
(``stop_gradient``). The AIS is this workbench's (:func:`~bayeswb.samplers.smc.anneal`
without resampling): ``num_steps`` temperatures of the path
``q^(1 - beta) (p^2 / q)^beta`` (linear by default), ``num_mcmc_steps`` sweeps of ``move``
(HMC by default, as the paper) at each, whitened and step-size retuned from the
population. Targeting ``p^2 / q`` puts the AIS where q is too small relative to p, the
regions a mode-seeking loss never visits: the bootstrap of the paper's title.

The loss a step reports is the AIS estimate of ``log int p^2 / q`` itself (its gradient
is the estimator above; the value is what the plateau rule watches). Training is the
flows' :func:`~.training.train_flow` (one compiled loop, until the loss plateaus, at most
``num_warmup`` steps), from the flows' widened Gaussian pilot.

After training, each run anneals ``num_samples`` flow draws to p by the same AIS
(:func:`~bayeswb.samplers.smc.run_annealing` with the flow as reference, no
resampling), whose weights give the draws and log Z (unbiased on the natural scale for a
fixed tuning; adapted from the population, with an O(1/N) bias, unless
``pilot_particles`` replays a pilot's).

Not implemented: the paper's prioritised replay buffer (section 4.1), which reuses AIS
particles for several gradient steps; every step here runs a fresh AIS ("FAB w/o
buffer" in the paper's tables).

Cost: every training step's AIS (``num_mc_samples`` particles, ``num_steps`` temperatures,
one gradient of log p per gradient of ``2 log p - log q``), the pilot's evaluations and
the final AIS, counted exactly (:func:`fab_cost`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from bayeswb.core.config import one_of, option, positive_int
from bayeswb.core.draws import Count, Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.samplers import register
from bayeswb.samplers.flows.architectures import INVERTIBLE_FLOW_TYPES
from bayeswb.samplers.flows.fitting import (
    FlowConfig,
    initial_flow,
    pilot_evaluations,
    training_optimizer,
)
from bayeswb.samplers.flows.losses import LossFn
from bayeswb.samplers.flows.smc_flow import flow_reference
from bayeswb.samplers.flows.training import plateau_rule, train_flow, training_status
from bayeswb.samplers.smc import (
    AnnealingSettings,
    Parts,
    anneal,
    annealing_parts,
    make_move,
    run_annealing,
)
from bayeswb.samplers.smc.annealing import annealing_plan, cost_per_step
from bayeswb.samplers.smc.moves import MCMC_MOVES, Move
from bayeswb.samplers.smc.tempering import SCHEDULES

Array = jax.Array


def _mcmc_move(value: Any) -> str | None:
    if isinstance(value, Move) or (isinstance(value, str) and value in MCMC_MOVES):
        return None
    return f"must be one of {', '.join(map(repr, MCMC_MOVES))} or a smc.Move"


@dataclasses.dataclass(frozen=True)
class FABConfig(FlowConfig, AnnealingSettings):
    """FAB: flow training by AIS-estimated alpha = 2 divergence (``num_warmup`` steps at
    most, the plateau rule, ``num_mc_samples`` AIS particles per step), then AIS from the
    trained flow to the target; ``num_chains`` runs, each with its own flow, of
    ``num_samples`` particles. The AIS options (``move``, ``num_steps``, ``schedule``,
    ``num_mcmc_steps``, step size) are shared by training and the final run."""

    num_mc_samples: int = option(64, positive_int, "AIS particles per training step")
    move: Any = option("hmc", _mcmc_move, "MCMC kernel of the AIS: name or smc.Move")
    num_steps: int = option(8, positive_int, "AIS temperatures, in training and the final run")
    schedule: str = option(
        "linear", one_of(*(s for s in SCHEDULES if s != "adaptive")), "AIS temperature schedule"
    )
    num_mcmc_steps: int = option(1, positive_int, "sweeps of the move per temperature")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.flow_type not in INVERTIBLE_FLOW_TYPES:
            raise ValueError(
                f"flow_type must be one of {INVERTIBLE_FLOW_TYPES} (the AIS needs the flow's "
                f"log density at its particles), got {self.flow_type!r}"
            )
        for name in ("psis", "stl_estimator"):
            if getattr(self, name):
                raise ValueError(f"{name} must be False for fab: its weights come from AIS")
        if self.num_anneal_steps not in (None, 0):
            raise ValueError("num_anneal_steps must be None or 0 for fab (no reverse-KL ramp)")


def training_ais(target: Target, config: FABConfig) -> tuple[Parts, float]:
    """The training AIS's parts (no resampling, the config's schedule, fixed sweeps) and
    initial step size."""
    plan = annealing_plan(target, config, None, 0.0)
    return annealing_parts(plan), plan.step_size


def fab_loss(target: Target, config: FABConfig) -> LossFn:
    """``loss(params, static, key) -> (loss, aux)``: the AIS estimate of
    ``log int p^2 / q`` (value) with gradient ``-sum_i wbar_i grad log q(x_i)`` over the
    AIS particles toward ``p^2 / q`` (module docstring); aux ``ess``, the AIS weights'
    effective sample size as a fraction of the particles."""
    parts, step_size = training_ais(target, config)
    n, log_p = config.num_mc_samples, target.log_density

    def loss(params: Any, static: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        flow = eqx.combine(params, static)
        fixed = eqx.combine(jax.lax.stop_gradient(params), static)

        def doubled(x: Array) -> Array:
            return 2.0 * log_p(x) - fixed.log_prob(x)

        out = anneal(
            key,
            doubled,
            flow_reference(fixed),
            n,
            parts,
            num_steps=config.num_steps,
            step_size=step_size,
        )
        weights = jax.lax.stop_gradient(jnp.exp(out.log_weights))
        positions = jax.lax.stop_gradient(out.positions)
        alive = weights > 0
        safe = jnp.where(alive[:, None], positions, 0.0)
        log_q = jnp.where(alive, jax.vmap(flow.log_prob)(safe), 0.0)
        surrogate = -jnp.sum(weights * log_q)
        value = jax.lax.stop_gradient(out.log_z)
        ess = 1.0 / jnp.sum(weights**2) / n
        return value + surrogate - jax.lax.stop_gradient(surrogate), {"ess": ess}

    return loss


def fab_cost(config: FABConfig, steps_trained: Array | int) -> tuple[Count, Count]:
    """Exact target (gradients, log-density evaluations) of training ``steps_trained``
    steps (summed whole: per run) and the pilots: each step's AIS of ``num_mc_samples``
    particles, their initial log densities and ``num_steps`` temperatures of
    ``num_mcmc_steps`` sweeps (one target gradient per gradient of ``2 log p - log q``).
    The final AIS is counted by :func:`~bayeswb.samplers.smc.run_annealing`.

    Example:
        >>> import bayeswb as bw
        >>> config = bw.samplers.get("fab").make_config(num_chains=2, init_scale=1.0,
        ...                                             num_mc_samples=4, num_steps=2)
        >>> grads, evals = fab_cost(config, jnp.array([3, 5]))
        >>> int(grads) == 8 * 4 * 2 * (1 + 5), int(evals) == int(grads) + 8 * 4 * 3
        (True, True)
    """
    move = make_move(config.move, config.num_integration_steps)
    n = config.num_mc_samples
    grads, evals = cost_per_step(move, n, config.num_mcmc_steps, n)
    per_step_grads = config.num_steps * grads
    per_step_evals = config.num_steps * evals + n
    pilot = pilot_evaluations(config)
    return (
        Count.of(steps_trained, each=per_step_grads),
        Count.of(steps_trained, each=per_step_evals) + Count.of(pilot),
    )


@register("fab", FABConfig, family="flow")
def run_fab(
    key: Array, target: Target, config: FABConfig, layout: ChainLayout | None = None
) -> Draws:
    """Flow annealed importance sampling bootstrap (Midgley, Stimper, Simm, Schoelkopf and
    Hernandez-Lobato 2023, "Flow Annealed Importance Sampling Bootstrap", Algorithm 1
    without the replay buffer; see the module docstring): per run, a flow trained by the
    AIS-estimated alpha = 2 divergence, then ``num_samples`` AIS particles from it to the
    target, weighted, with the run's log Z.

    Output as ``ais`` (weighted particles, ``log_z`` per run, ``path_stats``), plus
    ``warmup_stats``: ``loss`` (the AIS estimate of ``log int p^2 / q`` per step: it
    falls toward ``2 log Z``), ``ess`` (the training AIS weights' ESS fraction),
    ``trained`` and ``plateau`` (as the other flow samplers').

    Example (a run compiles training and AIS: tens of seconds; see
    tests/samplers/test_fab.py for full ones):
        >>> import bayeswb as bw
        >>> config = bw.samplers.get("fab").make_config()
        >>> config.move, config.num_steps, config.schedule, config.num_mc_samples
        ('hmc', 8, 'linear', 64)
    """
    loss = fab_loss(target, config)

    def make_reference(run_key: Array) -> tuple[Any, dict[str, Array]]:
        init_key, train_key = jax.random.split(run_key)
        flow = initial_flow(init_key, target, config, invert=True)
        flow, _, trace = train_flow(
            train_key,
            flow,
            loss,
            config.num_warmup,
            training_optimizer(config),
            progress="fab" if config.progress_bar else None,
            plateau=plateau_rule(config),
        )
        curves = {
            name: trace[name] for name in ("loss", "ess", "trained", "plateau") if name in trace
        }
        return flow_reference(flow), curves

    draws, curves = run_annealing(
        key, target, config, None, 0.0, make_reference=make_reference, layout=layout
    )
    grads, evals = fab_cost(config, training_status(curves)[0])
    return draws._replace(
        warmup_stats=curves if config.num_warmup else {},
        n_grad_evals=Count.of(draws.n_grad_evals) + grads,
        n_logdensity_evals=Count.of(draws.n_logdensity_evals) + evals,
    )
