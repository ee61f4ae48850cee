"""Flow-initialised annealed-Langevin SMC (``smc_flow``): a Sequential Boltzmann Generator.

Tan, Bose, Lin, Klein, Bronstein and Tong (2025), "Scalable Equilibrium Sampling with
Sequential Boltzmann Generators" (ICML): a normalizing flow q is trained on the target,
its samples are the particles at time 0, and they are transported to the target by
annealed Langevin dynamics along the path ``pi_beta proportional to q^(1 - beta)
gamma^beta`` with importance weights (their section 3.3, continuous-time SMC with
Jarzynski weights, and ESS-triggered resampling). Here the transport is exactly the one of
``smc_langevin`` (:func:`~bayeswb.samplers.smc.run_annealing`, with the flow as the
:class:`~bayeswb.samplers.smc.Reference` instead of ``N(0, s^2 I)``): unadjusted
Langevin steps weighted by their Metropolis-Hastings ratio, so the log Z estimate is
unbiased (on the natural scale, for a fixed schedule and tuning) at every step size and
every flow, and the flow only decides how many steps and how much variance it takes.

Per run: train a flow exactly as ``flow_is`` does (:func:`~.fitting.fit_flow`:
flowjax flow, optax, reverse KL by default, ``objective`` for forward KL or a mix), then
(after a pilot run that fixes the tuning, as in ``smc_langevin``) anneal ``num_samples``
flow draws to the target. The flow's log density is normalised, so ``Z_0 = 1`` and
``log Z`` is the product of the increments.
Cost counters include the training: ``num_mc_samples`` target gradients per reverse-KL
step, plus the transport's gradients.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from bayeswb.core.draws import Count, Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.samplers import register
from bayeswb.samplers.flows.architectures import INVERTIBLE_FLOW_TYPES
from bayeswb.samplers.flows.fitting import (
    FlowISConfig,
    fit_flow,
    pilot_evaluations,
    training_gradients,
)
from bayeswb.samplers.flows.training import training_status
from bayeswb.samplers.smc import LangevinTransportSettings, Reference, run_annealing

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SMCFlowConfig(FlowISConfig, LangevinTransportSettings):
    """Flow training (``num_warmup`` steps, ``objective``, architecture) then annealed
    Langevin transport from the flow (``move``, ``num_mcmc_steps``, schedule, resampling,
    pilot); ``num_chains`` runs, each with its own flow, of ``num_samples`` particles."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.flow_type not in INVERTIBLE_FLOW_TYPES:
            raise ValueError(
                f"flow_type must be one of {INVERTIBLE_FLOW_TYPES} (the transport needs the "
                f"flow's log density at every particle), got {self.flow_type!r}"
            )
        if self.psis:
            raise ValueError(
                "psis must be False for smc_flow: its weights come from the transport, "
                "not from flow importance sampling"
            )


def flow_reference(flow: Any) -> Reference:
    """A flowjax distribution as the annealing's reference (``sample``, ``log_prob``).

    Example:
        >>> import jax.numpy as jnp
        >>> from bayeswb.samplers.flows import make_flow
        >>> q = flow_reference(make_flow(jax.random.key(0), 2, num_layers=1))
        >>> q.sample(jax.random.key(1), 3).shape, q.log_prob(jnp.zeros(2)).shape
        ((3, 2), ())
    """
    return Reference(sample=lambda key, n: flow.sample(key, (n,)), log_prob=flow.log_prob)


@register("smc_flow", SMCFlowConfig, family="flow")
def run_smc_flow(
    key: Array, target: Target, config: SMCFlowConfig, layout: ChainLayout | None = None
) -> Draws:
    """Sequential Boltzmann Generator (Tan et al. 2025, "Scalable Equilibrium Sampling with
    Sequential Boltzmann Generators", Algorithm 1 with the flow trained by energy, i.e.
    reverse KL, by default): flow draws transported to the target by annealed Langevin
    SMC with exact incremental weights (see the module docstring and ``smc_langevin``).

    Output as ``smc_langevin`` (weighted particles, ``log_z`` per run, ``path_stats``
    with temperatures, ESS, resampling, acceptance and step size per step), plus
    ``warmup_stats["loss"]``, the flow's training loss per step, trained as ``flow_is``
    trains (pilot start, then until the loss plateaus or ``num_warmup`` steps), with
    ``warmup_stats["trained"]`` (steps taken) and ``warmup_stats["plateau"]`` (True at
    the step where the plateau rule stopped training; never True: the run hit its
    ``num_warmup`` cap, its flow may be under-trained); losses after the stop are NaN.

    Example (a run compiles flow training and transport: tens of seconds; see
    tests/samplers/test_smc_flow.py for a full one):
        >>> import bayeswb as bw
        >>> config = bw.samplers.get("smc_flow").make_config(num_warmup=200)
        >>> config.move, config.flow_type, config.objective
        ('ula', 'affine_coupling', 'reverse_kl')
    """

    def make_reference(run_key: Array) -> tuple[Reference, dict[str, Array]]:
        # built and trained exactly as one run of flow_is (objective, optimiser, clipping)
        flow, trace = fit_flow(run_key, target, config)
        curves: dict[str, Array] = {
            name: trace[name] for name in ("loss", "trained", "plateau") if name in trace
        }
        return flow_reference(flow), curves

    draws, curves = run_annealing(
        key,
        target,
        config,
        config.resampling,
        config.ess_threshold,
        make_reference=make_reference,
        layout=layout,
    )
    training = training_gradients(config, training_status(curves)[0])
    transport_grads = Count.of(draws.n_grad_evals)
    transport_evals = Count.of(draws.n_logdensity_evals)
    return draws._replace(
        warmup_stats=curves if config.num_warmup else {},
        n_grad_evals=transport_grads + training,
        n_logdensity_evals=transport_evals + training + pilot_evaluations(config),
    )
