"""One flow built and trained from a config, as each run of ``flow_vi``, ``flow_is`` and
``smc_flow`` does: the configs' training options, the loss their ``objective`` names and
:func:`fit_flow`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import optax

from bayeswb.core.config import (
    boolean,
    non_negative_int,
    one_of,
    option,
    positive,
    positive_int,
    unit_interval,
)
from bayeswb.core.draws import Count
from bayeswb.core.target import Target
from bayeswb.samplers.flows.architectures import (
    INVERTIBLE_FLOW_TYPES,
    FlowArchitecture,
    architecture_option,
)
from bayeswb.samplers.flows.io import load_flow
from bayeswb.samplers.flows.losses import (
    LossFn,
    forward_kl_loss,
    linear_annealing,
    objective_loss,
    reverse_kl_loss,
)
from bayeswb.samplers.flows.training import PlateauTraining, plateau_rule, train_flow
from bayeswb.samplers.importance.pilot import (
    GaussianPilot,
    gaussian_pilot,
    moments_pilot,
    pilot_evaluations_of,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class FlowConfig(PlateauTraining, FlowArchitecture):
    """Flow architecture and training settings shared by the flow samplers."""

    init_scale: float | None = option(
        None,
        lambda v: None if v is None or positive(v) is None else "must be None or positive",
        "initial flow scale with loc 0; None: loc and scale from a Gaussian pilot fit",
    )
    pilot_steps: int = option(
        300, positive_int, "Adam steps of the forward-chi^2 Gaussian pilot (init_scale None)"
    )
    learning_rate: float = option(1e-3, positive, "Adam learning rate")
    max_grad_norm: float | None = option(
        None,
        lambda v: None if v is None or positive(v) is None else "must be None or positive",
        "clip the gradient to this global norm before Adam (None: no clipping)",
    )
    num_anneal_steps: int | None = option(
        None,
        lambda v: None if v is None or non_negative_int(v) is None else "must be None or >= 0",
        "steps of the inverse-temperature ramp 0.01 -> 1 on log p (reverse_kl only); "
        "None: num_warmup // 5; 0: none",
    )
    num_mc_samples: int = option(32, positive_int, "reverse-KL draws per step")
    stl_estimator: bool = option(False, boolean, "sticking-the-landing reverse-KL gradient")
    psis: bool = option(False, boolean, "report Pareto-smoothed log weights (log Z stays raw)")
    progress_bar: bool = option(True, boolean, "tqdm bar with the loss while training")
    flow_path: str | None = option(
        None,
        # the file is read while the run is traced: a missing one is refused here
        lambda v: (
            None
            if v is None or (isinstance(v, str) and os.path.isfile(v))
            else "must be None or the path of a file saved with save_flow"
        ),
        "start from a flow saved with save_flow (same architecture options)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stl_estimator and self.flow_type == "planar":
            raise ValueError(
                "stl_estimator needs log_prob at the flow's own samples through the inverse, "
                "which tanh planar layers lack; use another flow_type"
            )


@dataclasses.dataclass(frozen=True)
class FlowVIConfig(FlowConfig):
    """Reverse-KL flow VI: optimiser steps (annealed, until a plateau, at most
    ``num_warmup``), then ``num_samples`` weighted draws per run; ``num_chains``
    independent runs (one flow each)."""

    flow_type: str = architecture_option("flow_type", "planar")


@dataclasses.dataclass(frozen=True)
class FlowISConfig(FlowConfig):
    """Boltzmann-generator importance sampling: train (``objective``), then weight."""

    objective: str = option(
        "reverse_kl",
        one_of("reverse_kl", "forward_kl", "mixed"),
        "training loss; forward_kl and mixed need target.sample_exact",
    )
    forward_weight: float = option(0.5, unit_interval, "weight of forward KL when mixed")
    batch_size: int = option(256, positive_int, "exact target draws per forward-KL step")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective != "reverse_kl" and self.flow_type == "planar":
            raise ValueError(
                f"objective {self.objective!r} needs log_prob at target draws, which tanh "
                "planar layers lack; use flow_type in " + ", ".join(INVERTIBLE_FLOW_TYPES)
            )


def initial_flow(key: Array, target: Target, config: FlowConfig, invert: bool) -> Any:
    """The config's flow, or the one saved at ``flow_path``. Its final affine layer starts
    at loc 0 and scale ``init_scale`` when that is set; with ``init_scale=None`` (the
    default) at the widened Gaussian pilot of :func:`flow_pilot`.

    Example:
        >>> import bayeswb as bw
        >>> config = bw.samplers.get("flow_is").make_config(num_layers=2, pilot_steps=20)
        >>> flow = initial_flow(jax.random.key(0), bw.models.get("banana"), config, True)
        >>> flow.sample(jax.random.key(1), (3,)).shape
        (3, 2)
    """
    pilot_key, build_key = jax.random.split(key)
    if config.init_scale is None and config.flow_path is None:
        pilot = flow_pilot(pilot_key, target, config)
        loc: Array | float = pilot.loc
        scale: Array | float = pilot.scale
    else:
        loc, scale = 0.0, 1.0 if config.init_scale is None else config.init_scale
    flow = config.build_flow(build_key, target.dim, loc=loc, scale=scale, invert=invert)
    if config.flow_path is None:
        return flow
    # the skeleton is built where the flow is used (not by eval_shape, which would leave
    # its tracers in flowjax's closures); its arrays are then replaced by the file's
    try:
        return load_flow(config.flow_path, flow)
    except ValueError as error:
        raise ValueError(f"flow_path: {error}") from None


PILOT_MC_SAMPLES = 64
"""Draws per step of the flows' Gaussian pilot (:func:`flow_pilot`)."""


def flow_pilot(key: Array, target: Target, config: FlowConfig) -> GaussianPilot:
    """Where a flow starts when ``init_scale`` is None: a forward-KL ``flow_is`` takes the
    mean and 1.5 times the sd of ``batch_size`` exact target draws (it trains on such
    draws anyway); every other objective the mass-covering forward-chi^2 Gaussian pilot
    of :func:`~bayeswb.samplers.importance.pilot.gaussian_pilot` (``pilot_steps`` steps
    of ``PILOT_MC_SAMPLES`` draws), widened. Mass covering, because reverse KL only
    shrinks a flow onto the modes its start already covers (Rezende and Mohamed 2015,
    section 6.1, the reason for their annealing): the start must be wider than the
    target, not narrower.
    """
    if getattr(config, "objective", "reverse_kl") == "forward_kl":
        assert target.sample_exact is not None, "flow_loss checks this before compiling"
        return moments_pilot(target.sample_exact(key, getattr(config, "batch_size", 256)))
    return gaussian_pilot(key, target, config.pilot_steps, PILOT_MC_SAMPLES)


def pilot_evaluations(config: FlowConfig) -> int:
    """Target log densities of the pilots of all ``num_chains`` runs (no gradients): the
    chi^2 pilot's draws (its ``target.init`` draws evaluate nothing), when ``init_scale``
    is None, there is no ``flow_path`` and the objective is not forward KL (whose pilot
    uses exact draws).

    Example:
        >>> import bayeswb as bw
        >>> pilot_evaluations(bw.samplers.get("flow_vi").make_config(num_chains=2))
        42626
    """
    forward = getattr(config, "objective", None) == "forward_kl"
    if config.init_scale is not None or config.flow_path is not None or forward:
        return 0
    return pilot_evaluations_of(config.num_chains, config.pilot_steps, PILOT_MC_SAMPLES)


def anneal_steps(config: FlowConfig) -> int:
    """Steps of the inverse-temperature ramp ``beta: 0.01 -> 1`` on ``log p`` of the
    reverse-KL loss (Rezende and Mohamed 2015, section 6.1, :func:`~.losses.linear_annealing`):
    ``num_anneal_steps``, or by default a fifth of ``num_warmup``; none for the forward-KL
    and mixed objectives. Why by default: a reverse-KL flow trained at ``beta = 1`` from
    the start keeps only the modes it first falls into (on ``rezende_u1``, half of the
    runs lost one of the two arcs, log Z low by log 2); at small ``beta`` the tempered
    target is nearly flat, the flow spreads over every mode, and the ramp then sharpens
    it without losing them.

    Example:
        >>> import bayeswb as bw
        >>> anneal_steps(bw.samplers.get("flow_vi").make_config())
        1000
    """
    if getattr(config, "objective", "reverse_kl") != "reverse_kl":
        return 0
    if config.num_anneal_steps is None:
        return config.num_warmup // 5
    return config.num_anneal_steps


def flow_loss(target: Target, config: FlowConfig) -> LossFn:
    """The training loss a flow sampler uses: reverse KL for ``flow_vi``; for ``flow_is``
    the config's ``objective`` (forward KL and mixed need ``target.sample_exact``)."""
    reverse = reverse_kl_loss(target.log_density, config.num_mc_samples, config.stl_estimator)

    def forward(sample_exact: Callable[[Array, int], Array]) -> LossFn:
        # objective_loss builds the forward loss only for an objective other than
        # reverse_kl, which only a FlowISConfig has
        assert isinstance(config, FlowISConfig), "a forward-KL objective needs FlowISConfig"
        return forward_kl_loss(sample_exact, config.batch_size)

    return objective_loss(
        getattr(config, "objective", "reverse_kl"),
        target,
        reverse,
        forward,
        getattr(config, "forward_weight", 0.5),
    )


def training_optimizer(config: FlowConfig) -> optax.GradientTransformation:
    """Adam at ``learning_rate``, after clipping to ``max_grad_norm`` when it is set."""
    adam = optax.adam(config.learning_rate)
    if config.max_grad_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)


def training_gradients(config: FlowConfig, steps_trained: Array | None = None) -> Count:
    """Target gradients of training the flows of all ``num_chains`` runs: reverse-KL and
    mixed steps cost ``num_mc_samples`` each, forward-KL steps none; ``steps_trained``
    (per run, from :func:`~.training.training_status`) counts the steps actually taken
    (default: ``num_warmup`` each). The pilot takes no gradients (:func:`pilot_evaluations`).
    An exact :class:`~bayeswb.core.draws.Count`: the steps stay per run (at most
    ``num_warmup``), the host multiplies.

    Example:
        >>> import bayeswb as bw
        >>> config = bw.samplers.get("flow_is").make_config(num_chains=2)
        >>> int(training_gradients(config, jax.numpy.array([100, 300])))
        12800
    """
    if getattr(config, "objective", None) == "forward_kl":
        return Count()
    if steps_trained is None:
        return Count.of(config.num_chains * config.num_warmup, each=config.num_mc_samples)
    return Count.of(steps_trained, each=config.num_mc_samples)


def fit_flow(key: Array, target: Target, config: FlowConfig) -> tuple[Any, dict[str, Array]]:
    """Build and train one flow exactly as one run of ``flow_vi`` (a :class:`FlowVIConfig`)
    or ``flow_is`` (a :class:`FlowISConfig`) does, from that run's key; returns the flow
    and its training trace. Save it with :func:`~.io.save_flow` and pass ``flow_path``
    (with ``num_warmup=0``) to reuse it: an expensive flow is trained once. (A flowjax
    flow returned from ``jax.jit`` keeps tracers in its closures: save it, then
    :func:`~.io.load_flow` it into a fresh :func:`~.architectures.make_flow`.)

    Example:
        >>> import bayeswb as bw
        >>> config = bw.samplers.get("flow_is").make_config(num_warmup=5, num_layers=2)
        >>> flow, trace = fit_flow(jax.random.key(0), bw.models.get("banana"), config)
        >>> trace["loss"].shape
        (5,)
    """
    init_key, train_key = jax.random.split(key)
    is_vi = isinstance(config, FlowVIConfig)
    flow = initial_flow(init_key, target, config, invert=not is_vi)
    anneal = anneal_steps(config)
    flow, _, trace = train_flow(
        train_key,
        flow,
        flow_loss(target, config),
        config.num_warmup,
        training_optimizer(config),
        beta_schedule=linear_annealing(anneal) if anneal > 0 else None,
        progress=("flow_vi" if is_vi else "flow_is") if config.progress_bar else None,
        plateau=plateau_rule(config, start=anneal_steps(config)),
    )
    return flow, trace
