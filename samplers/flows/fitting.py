"""One flow built and trained from a config, as each run of ``flow_vi``, ``flow_is`` and
``smc_flow`` does: the configs' training options, the loss their ``objective`` names and
:func:`fit_flow`.
"""

from __future__ import annotations

import dataclasses
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
from bayeswb.samplers.flows.training import train_flow

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class FlowConfig(FlowArchitecture):
    """Flow architecture and training settings shared by the flow samplers."""

    init_scale: float = option(1.0, positive, "initial flow scale (loc 0)")
    learning_rate: float = option(1e-3, positive, "Adam learning rate")
    max_grad_norm: float | None = option(
        None,
        lambda v: None if v is None or positive(v) is None else "must be None or positive",
        "clip the gradient to this global norm before Adam (None: no clipping)",
    )
    num_warmup: int = option(500, non_negative_int, "training steps")
    num_mc_samples: int = option(32, positive_int, "reverse-KL draws per step")
    stl_estimator: bool = option(False, boolean, "sticking-the-landing reverse-KL gradient")
    psis: bool = option(False, boolean, "report Pareto-smoothed log weights (log Z stays raw)")
    progress_bar: bool = option(True, boolean, "tqdm bar with the loss while training")
    flow_path: str | None = option(
        None,
        lambda v: None if v is None or isinstance(v, str) else "must be None or a path",
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
    """Reverse-KL flow VI: ``num_warmup`` optimiser steps, then ``num_samples`` weighted
    draws per run; ``num_chains`` independent runs (one flow each)."""

    flow_type: str = architecture_option("flow_type", "planar")
    num_anneal_steps: int = option(
        0,
        non_negative_int,
        "steps of the inverse-temperature ramp 0.01 -> 1 on log p (0: none)",
    )


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


def initial_flow(key: Array, dim: int, config: FlowConfig, invert: bool) -> Any:
    """The config's flow (loc 0, scale ``init_scale``), or the one saved at ``flow_path``."""
    flow = config.build_flow(key, dim, scale=config.init_scale, invert=invert)
    if config.flow_path is None:
        return flow
    # the skeleton is built where the flow is used (not by eval_shape, which would leave
    # its tracers in flowjax's closures); its arrays are then replaced by the file's
    return load_flow(config.flow_path, flow)


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


def training_gradients(config: FlowConfig) -> int:
    """Target gradients of training the flows of all ``num_chains`` runs: reverse-KL and
    mixed steps cost ``num_mc_samples`` each, forward-KL steps none."""
    reverse_steps = 0 if getattr(config, "objective", None) == "forward_kl" else config.num_warmup
    return config.num_chains * reverse_steps * config.num_mc_samples


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
    flow = initial_flow(init_key, target.dim, config, invert=not is_vi)
    anneal = getattr(config, "num_anneal_steps", 0)
    flow, _, trace = train_flow(
        train_key,
        flow,
        flow_loss(target, config),
        config.num_warmup,
        training_optimizer(config),
        beta_schedule=linear_annealing(anneal) if anneal > 0 else None,
        progress=("flow_vi" if is_vi else "flow_is") if config.progress_bar else None,
    )
    return flow, trace
