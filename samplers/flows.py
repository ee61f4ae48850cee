"""Flow-based samplers: normalizing flows (flowjax) trained with optax inside ``lax.scan``.

This module holds the flow toolkit (building, training, saving and loading a flow) and the
two importance-weighted flow samplers, ``flow_vi`` and ``flow_is``;
:mod:`bayeswb.samplers.flows_mcmc` holds ``flow_mcmc``.

A flow is a flowjax ``Transformed`` distribution: a standard normal base on R^dim pushed
through flowjax's own bijections (planar layers, affine or rational-quadratic-spline
coupling layers, masked autoregressive layers), or through the radial layers of Rezende
and Mohamed (2015), which flowjax lacks and :class:`Radial` adds, followed by a trainable
elementwise affine map ``x = loc + scale * y`` that sets the flow's overall location and
scale. The losses are flowjax's ``ElboLoss`` (reverse KL, with the sticking-the-landing
option) and ``MaximumLikelihoodLoss`` (forward KL). Training is a ``lax.scan`` over optax
steps (flowjax's own ``fit_*`` loops are Python loops), so a whole run, training
included, is one compiled program; the progress bar with the loss is fed from inside the
scan by ``jax.debug.callback`` about every 2% of the steps (:func:`report_progress`) and
is silent when stderr is not a terminal. The loss curve is also returned.

A step whose loss or gradient is not finite is skipped (parameters and optimiser state
are kept); importance log weights that are NaN or -inf give weight zero, and their
positions are replaced by zeros so that a weighted moment never meets a NaN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import paramax
from flowjax.bijections import AbstractBijection, Affine, Chain, RationalQuadraticSpline, Scan
from flowjax.distributions import StandardNormal, Transformed
from flowjax.flows import coupling_flow, masked_autoregressive_flow, planar_flow
from flowjax.train.losses import ElboLoss, MaximumLikelihoodLoss

from bayeswb.core.config import (
    SamplerConfig,
    boolean,
    non_negative_int,
    one_of,
    option,
    positive,
    positive_int,
    unit_interval,
)
from bayeswb.core.draws import Draws
from bayeswb.core.progress import report_progress
from bayeswb.core.target import Target
from bayeswb.core.weights import log_mean_exp
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers import register
from bayeswb.samplers.importance import weighted_output

Array = jax.Array
LossFn = Callable[..., tuple[Array, dict[str, Array]]]

FLOW_TYPES = ("planar", "radial", "affine_coupling", "spline_coupling", "maf")
"""Flow architectures: Rezende-Mohamed planar and radial stacks, RealNVP-style affine
coupling (Dinh et al. 2017), rational-quadratic-spline coupling (Durkan et al. 2019),
masked autoregressive flow (Papamakarios et al. 2017)."""

INVERTIBLE_FLOW_TYPES = ("radial", "affine_coupling", "spline_coupling", "maf")
"""Flows with an analytic inverse, so that ``log_prob`` works at any point (the tanh
planar layer has no closed-form inverse)."""


# --------------------------------------------------------------------------- building


class Radial(AbstractBijection):
    """Radial flow layer (Rezende and Mohamed 2015, eq. 14), which flowjax lacks:

    ``f(z) = z + beta h(alpha, r) (z - z0)``, ``r = |z - z0|``, ``h = 1 / (alpha + r)``,

    with ``alpha = softplus(a) > 0`` and ``beta = -alpha + softplus(b) > -alpha`` so that
    ``f`` is invertible (their appendix A.2). Log-determinant (their eq. 14):
    ``(d - 1) log(1 + beta h) + log(1 + beta h + beta h'(r) r)``, ``h' = -h^2``. The
    inverse is closed-form: ``|f(z) - z0| = r (1 + beta h(r))`` is a quadratic in ``r``.

    Example:
        >>> layer = Radial(jax.random.key(0), dim=2)
        >>> y, log_det = layer.transform_and_log_det(jnp.ones(2))
        >>> bool(jnp.allclose(layer.inverse(y), jnp.ones(2), atol=1e-5))
        True
    """

    shape: tuple[int, ...]
    cond_shape: ClassVar[None] = None
    center: Array
    raw_alpha: Array
    raw_beta: Array

    def __init__(self, key: Array, *, dim: int) -> None:
        self.shape = (dim,)
        self.center = 0.5 * jax.random.normal(key, (dim,))
        self.raw_alpha = jnp.asarray(0.5413)  # softplus -> 1
        self.raw_beta = jnp.asarray(0.5413)  # beta = -1 + 1 = 0: the identity

    def _alpha_beta(self) -> tuple[Array, Array]:
        alpha = jax.nn.softplus(self.raw_alpha)
        return alpha, -alpha + jax.nn.softplus(self.raw_beta)

    def _log_det(self, r: Array) -> Array:
        alpha, beta = self._alpha_beta()
        h = 1.0 / (alpha + r)
        return (self.shape[0] - 1) * jnp.log1p(beta * h) + jnp.log1p(beta * h - beta * h**2 * r)

    def transform_and_log_det(self, x: Array, condition: Any = None) -> tuple[Array, Array]:
        alpha, beta = self._alpha_beta()
        diff = x - self.center
        r = jnp.sqrt(jnp.sum(diff**2))
        return x + beta / (alpha + r) * diff, self._log_det(r)

    def inverse_and_log_det(self, y: Array, condition: Any = None) -> tuple[Array, Array]:
        alpha, beta = self._alpha_beta()
        diff = y - self.center
        r_y = jnp.sqrt(jnp.sum(diff**2))
        # r^2 + (alpha + beta - r_y) r - alpha r_y = 0, positive root
        b = alpha + beta - r_y
        r = 0.5 * (-b + jnp.sqrt(b**2 + 4.0 * alpha * r_y))
        return self.center + diff / (1.0 + beta / (alpha + r)), -self._log_det(r)


def radial_flow(key: Array, base_dist: Any, flow_layers: int) -> Transformed:
    """A stack of ``flow_layers`` :class:`Radial` layers (flowjax ``Scan``, one compiled
    layer body), applied in the sampling direction as in the paper."""
    layers = eqx.filter_vmap(lambda k: Radial(k, dim=base_dist.shape[-1]))(
        jax.random.split(key, flow_layers)
    )
    return Transformed(base_dist, Scan(layers))


def make_flow(
    key: Array,
    dim: int,
    flow_type: str = "affine_coupling",
    num_layers: int = 8,
    hidden_width: int = 32,
    num_knots: int = 8,
    spline_interval: float = 4.0,
    loc: Array | float = 0.0,
    scale: Array | float = 1.0,
    invert: bool = True,
) -> Transformed:
    """A flow on R^dim: flowjax layers of ``flow_type`` then an affine ``loc + scale * y``.

    ``invert`` is flowjax's switch between a fast ``log_prob`` (True) and a fast
    ``sample`` (False); it only matters for ``maf``, where one direction is sequential
    over coordinates. Planar layers (Rezende and Mohamed 2015, eq. 10,
    ``f(z) = z + u tanh(w^T z + b)``, interleaved by flowjax with coordinate
    permutations, which have unit Jacobian) and radial layers (eq. 14) are applied in the
    sampling direction, as in the paper; a planar flow can sample and score its own
    samples (``sample_and_log_prob``) but not evaluate ``log_prob`` at an arbitrary point.

    Example:
        >>> flow = make_flow(jax.random.key(0), 2, "spline_coupling", num_layers=2)
        >>> x = flow.sample(jax.random.key(1), (3,))
        >>> x.shape, flow.log_prob(x).shape
        ((3, 2), (3,))
    """
    if flow_type not in FLOW_TYPES:
        raise ValueError(f"flow_type must be one of {FLOW_TYPES}, got {flow_type!r}")
    if flow_type in ("affine_coupling", "spline_coupling") and dim < 2:
        raise ValueError(f"flow_type {flow_type!r} needs dim >= 2, got dim={dim}")
    base = StandardNormal((dim,))
    common = {"base_dist": base, "flow_layers": num_layers}
    if flow_type == "planar":
        flow = planar_flow(key, invert=False, **common)
    elif flow_type == "radial":
        flow = radial_flow(key, **common)
    elif flow_type == "affine_coupling":
        flow = coupling_flow(key, nn_width=hidden_width, invert=invert, **common)
    elif flow_type == "spline_coupling":
        spline = RationalQuadraticSpline(knots=num_knots, interval=spline_interval)
        flow = coupling_flow(
            key, transformer=spline, nn_width=hidden_width, invert=invert, **common
        )
    else:
        flow = masked_autoregressive_flow(key, nn_width=hidden_width, invert=invert, **common)
    loc = jnp.broadcast_to(jnp.asarray(loc, dtype=float), (dim,))
    scale = jnp.broadcast_to(jnp.asarray(scale, dtype=float), (dim,))
    return Transformed(base, Chain([flow.bijection, Affine(loc, scale)]))


# --------------------------------------------------------------------------- losses


def reverse_kl_loss(
    logdensity_fn: Callable[[Array], Array], num_mc_samples: int, stl_estimator: bool
) -> LossFn:
    """Reverse KL up to log Z: ``E_q[log q(x) - log p(x)] = -ELBO`` (Rezende and Mohamed
    2015, eq. 15), flowjax's ``ElboLoss`` with ``num_mc_samples`` reparameterised draws;
    ``stl_estimator`` is the sticking-the-landing gradient (Roeder, Wu and Duvenaud 2017,
    eq. 8). Each evaluation costs ``num_mc_samples`` target gradients.

    Returns ``loss(params, static, key, beta=1.0) -> (loss, {"elbo": -loss})``; ``beta``
    is an inverse temperature on the target, ``E_q[log q - beta log p]`` (the annealed
    free energy of Rezende and Mohamed 2015, section 6.1, used with a schedule by
    :func:`train_flow`).
    """
    elbo_loss = ElboLoss(logdensity_fn, num_mc_samples, stick_the_landing=stl_estimator)

    def loss(
        params: Any, static: Any, key: Array, beta: Array | float = 1.0
    ) -> tuple[Array, dict[str, Array]]:
        if isinstance(beta, float) and beta == 1.0:
            value = elbo_loss(params, static, key)
        else:
            tempered = lambda x: beta * logdensity_fn(x)
            value = ElboLoss(tempered, num_mc_samples, stick_the_landing=stl_estimator)(
                params, static, key
            )
        return value, {"elbo": -value}

    return loss


def forward_kl_loss(sample_fn: Callable[[Array, int], Array], batch_size: int) -> LossFn:
    """Forward KL up to the target's entropy: ``-E_p[log q(x)]`` on ``batch_size`` draws
    ``sample_fn(key, n) -> (n, dim)`` of the target (maximum likelihood; the Boltzmann
    generator's "training by example", Noe et al. 2019, eq. 6); flowjax's
    ``MaximumLikelihoodLoss``. Costs no target evaluation.

    Returns ``loss(params, static, key) -> (loss, {"forward_nll": loss})``.
    """
    nll = MaximumLikelihoodLoss()

    def loss(params: Any, static: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        value = nll(params, static, sample_fn(key, batch_size))
        return value, {"forward_nll": value}

    return loss


def mixed_loss(reverse: LossFn, forward: LossFn, forward_weight: float) -> LossFn:
    """``forward_weight * forward + (1 - forward_weight) * reverse`` (Noe et al. 2019,
    eq. 8, with their weights normalised to sum to one); the aux dicts are merged."""

    def loss(params: Any, static: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        reverse_key, forward_key = jax.random.split(key)
        reverse_value, reverse_aux = reverse(params, static, reverse_key)
        forward_value, forward_aux = forward(params, static, forward_key)
        value = forward_weight * forward_value + (1.0 - forward_weight) * reverse_value
        return value, {**reverse_aux, **forward_aux}

    return loss


def linear_annealing(num_anneal_steps: int, beta_0: float = 0.01) -> Callable[[Array], Array]:
    """``beta_t = min(1, beta_0 + t / num_anneal_steps)``: the inverse-temperature ramp of
    Rezende and Mohamed (2015, section 6.1: ``beta_0 = 0.01`` over 10000 steps).

    Example:
        >>> [round(float(linear_annealing(100)(t)), 4) for t in (0, 50, 200)]
        [0.01, 0.51, 1.0]
    """
    return lambda step: jnp.minimum(1.0, beta_0 + step / num_anneal_steps)


# --------------------------------------------------------------------------- progress

# --------------------------------------------------------------------------- training


def _trainable(leaf: Any) -> bool:
    return isinstance(leaf, paramax.NonTrainable)


def partition_flow(flow: Any) -> tuple[Any, Any]:
    """``(params, static)``: the flow's trainable inexact arrays and everything else."""
    return eqx.partition(flow, eqx.is_inexact_array, is_leaf=_trainable)


def train_flow(
    key: Array,
    flow: Any,
    loss_fn: LossFn,
    num_steps: int,
    optimizer: optax.GradientTransformation,
    opt_state: Any = None,
    *,
    beta_schedule: Callable[[Array], Array] | None = None,
    progress: str | None = None,
) -> tuple[Any, Any, dict[str, Array]]:
    """``num_steps`` optax steps on ``loss_fn(params, static, key) -> (loss, aux)``, as one
    ``lax.scan`` (no Python loop over steps).

    A step with a non-finite loss or gradient leaves parameters and optimiser state
    unchanged. Returns the trained flow, the optimiser state (pass it back in to continue
    training) and the aux values stacked over steps, plus ``"loss"`` and ``"skipped"``.

    Keyword options: ``beta_schedule(step) -> beta`` passes ``beta`` to the loss (as
    :func:`reverse_kl_loss` accepts; see :func:`linear_annealing`) and adds ``"beta"``
    to the trace; ``progress`` names a tqdm bar that shows the loss (smoothed over about
    20 steps) while the compiled scan runs (:func:`report_progress`).

    Example:
        >>> import optax
        >>> flow = make_flow(jax.random.key(0), 2, "affine_coupling", num_layers=2)
        >>> loss = reverse_kl_loss(lambda x: -0.5 * x @ x, 4, stl_estimator=True)
        >>> flow, _, trace = train_flow(jax.random.key(1), flow, loss, 5, optax.adam(1e-3))
        >>> trace["elbo"].shape
        (5,)
    """
    params, static = partition_flow(flow)
    if opt_state is None:
        opt_state = optimizer.init(params)
    value_and_grad = eqx.filter_value_and_grad(loss_fn, has_aux=True)

    def step(carry: tuple[Any, Any, Array], inputs: tuple[Array, Array]) -> tuple[tuple, dict]:
        params, opt_state, smoothed = carry
        step_key, index = inputs
        extra = {}
        if beta_schedule is not None:
            extra = {"beta": beta_schedule(index)}
        (loss, aux), grads = value_and_grad(params, static, step_key, *extra.values())
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        leaves = jax.tree.leaves(grads) + [loss]
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        average = jnp.where(index == 0, loss, 0.95 * smoothed + 0.05 * loss)
        smoothed = jnp.where(finite, average, smoothed).astype(smoothed.dtype)
        if progress is not None:
            report_progress(progress, index, num_steps, smoothed)
        carry = (keep(new_params, params), keep(new_opt_state, opt_state), smoothed)
        return carry, {**aux, **extra, "loss": loss, "skipped": ~finite}

    inputs = (jax.random.split(key, num_steps), jnp.arange(num_steps))
    carry = (params, opt_state, jnp.zeros((), dtype=jnp.result_type(float)))
    (params, opt_state, _), trace = jax.lax.scan(step, carry, inputs)
    return eqx.combine(params, static), opt_state, trace


# --------------------------------------------------------------------------- saving


def save_flow(path: str, flow: Any) -> None:
    """Write a flow's arrays with ``equinox.tree_serialise_leaves``.

    The architecture is not stored: load with :func:`load_flow` and a flow built by
    :func:`make_flow` with the same arguments (any key).

    Example:
        >>> import os, tempfile
        >>> flow = make_flow(jax.random.key(0), 2, "maf", num_layers=2)
        >>> path = os.path.join(tempfile.mkdtemp(), "flow.eqx")
        >>> save_flow(path, flow)
        >>> like = make_flow(jax.random.key(5), 2, "maf", num_layers=2)
        >>> x = jnp.ones((1, 2))
        >>> bool(load_flow(path, like).log_prob(x) == flow.log_prob(x))
        True
    """
    eqx.tree_serialise_leaves(path, flow)


def _is_stored(leaf: Any) -> bool:
    # the leaves tree_serialise_leaves writes (arrays and numbers), or their shapes
    return eqx.is_array_like(leaf) or isinstance(leaf, jax.ShapeDtypeStruct)


def load_flow(path: str, like: Any) -> Any:
    """Read a flow written by :func:`save_flow` into the structure of ``like``, a flow
    of the same architecture (built by :func:`make_flow` with any key, concrete or inside
    a traced function; not an ``eval_shape`` skeleton, whose flowjax closures hold
    tracers). The loaded arrays are numpy arrays, so a flow loaded while a program is
    traced becomes a constant of that program."""
    stored, rest = eqx.partition(like, _is_stored, is_leaf=_is_stored)
    skeleton = jax.tree.map(
        lambda leaf: np.zeros(leaf.shape, leaf.dtype) if hasattr(leaf, "shape") else leaf,
        stored,
        is_leaf=_is_stored,
    )
    return eqx.combine(eqx.tree_deserialise_leaves(path, skeleton), rest)


# --------------------------------------------------------------------------- weights


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


# --------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class FlowConfig(SamplerConfig):
    """Flow architecture and training settings shared by the flow samplers."""

    flow_type: str = option("affine_coupling", one_of(*FLOW_TYPES), "flow architecture")
    num_layers: int = option(8, positive_int, "flow layers")
    hidden_width: int = option(32, positive_int, "conditioner width (coupling, maf)")
    num_knots: int = option(8, positive_int, "spline knots (spline_coupling)")
    spline_interval: float = option(
        4.0, positive, "spline acts on [-B, B] of the standardised space, identity outside"
    )
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

    flow_type: str = option("planar", one_of(*FLOW_TYPES), "flow architecture")
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

    def build(k: Array) -> Any:
        return make_flow(
            k,
            dim,
            config.flow_type,
            num_layers=config.num_layers,
            hidden_width=config.hidden_width,
            num_knots=config.num_knots,
            spline_interval=config.spline_interval,
            scale=config.init_scale,
            invert=invert,
        )

    if config.flow_path is None:
        return build(key)
    # the skeleton is built where the flow is used (not by eval_shape, which would leave
    # its tracers in flowjax's closures); its arrays are then replaced by the file's
    return load_flow(config.flow_path, build(key))


def flow_loss(target: Target, config: FlowConfig) -> LossFn:
    """The training loss a flow sampler uses: reverse KL for ``flow_vi``; for ``flow_is``
    the config's ``objective`` (forward KL and mixed need ``target.sample_exact``)."""
    reverse = reverse_kl_loss(target.log_density, config.num_mc_samples, config.stl_estimator)
    objective = getattr(config, "objective", "reverse_kl")
    if objective == "reverse_kl":
        return reverse
    if target.sample_exact is None:
        raise ValueError(
            f"objective {objective!r} needs exact target samples, and target "
            f"{target.name!r} has no sample_exact; use objective='reverse_kl'"
        )
    forward = forward_kl_loss(target.sample_exact, config.batch_size)
    if objective == "forward_kl":
        return forward
    return mixed_loss(reverse, forward, config.forward_weight)


def _optimizer(config: FlowConfig) -> optax.GradientTransformation:
    adam = optax.adam(config.learning_rate)
    if config.max_grad_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)


def fit_flow(key: Array, target: Target, config: FlowConfig) -> tuple[Any, dict[str, Array]]:
    """Build and train one flow exactly as one run of ``flow_vi`` (a :class:`FlowVIConfig`)
    or ``flow_is`` (a :class:`FlowISConfig`) does, from that run's key; returns the flow
    and its training trace. Save it with :func:`save_flow` and pass ``flow_path`` (with
    ``num_warmup=0``) to reuse it: an expensive flow is trained once. (A flowjax flow
    returned from ``jax.jit`` keeps tracers in its closures: save it, then
    :func:`load_flow` it into a fresh :func:`make_flow`.)

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
        _optimizer(config),
        beta_schedule=linear_annealing(anneal) if anneal > 0 else None,
        progress=("flow_vi" if is_vi else "flow_is") if config.progress_bar else None,
    )
    return flow, trace


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
    log_z, reported, diagnostics = weighted_output(log_weights, config.psis)
    # the ELBO of the trained flow, E_q[log p - log q], estimated on the final draws
    diagnostics["elbo"] = jnp.mean(log_weights, axis=1, keepdims=True)
    curves = {} if config.num_warmup == 0 else trace
    return Draws(
        positions=positions,
        stats={"lp": lp, "log_q": jnp.where(jnp.isfinite(lp), lp - log_weights, -jnp.inf)},
        log_weights=reported,
        log_z=log_z,
        warmup_stats=curves,
        path_stats=diagnostics,
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
    and ``pareto_k`` (PSIS k-hat, Vehtari et al. 2024; < 0.7 reads as reliable);
    ``warmup_sample_stats`` holds the training curve per step (``loss``, ``elbo`` and/or
    ``forward_nll``, ``skipped``, and ``beta`` when annealed); ``sample_stats`` holds
    ``lp`` and ``log_q`` per draw. ``psis=True`` reports smoothed log weights.
    Cost: ``num_mc_samples`` target gradients per training step, and ``num_samples``
    density evaluations per run for the weights.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("banana", "flow_vi", num_chains=2, num_samples=50, num_warmup=10,
        ...               num_layers=2, num_mc_samples=4)
        >>> r.idata.warmup_sample_stats["elbo"].shape, r.log_weights.shape
        ((2, 10), (2, 50))
        >>> sorted(r.idata.path_stats.data_vars)
        ['elbo', 'ess', 'pareto_k']
    """
    draws = _run_weighted_flow(key, target, config, layout)
    n_grad = config.num_chains * config.num_warmup * config.num_mc_samples
    return draws._replace(
        n_grad_evals=n_grad,
        n_logdensity_evals=n_grad + config.num_chains * config.num_samples,
    )


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
    Result: per run, ``log_z = log mean w`` (importance weighted, so unbiased for Z,
    unlike the ELBO, which bounds log Z from below); ``path_stats`` holds per run
    ``elbo`` (``mean log w`` over the final draws), ``ess`` (Kish ESS of the weights)
    and ``pareto_k`` (PSIS k-hat, Vehtari et al. 2024; < 0.7 reads as reliable);
    ``warmup_sample_stats`` holds the training curve per step (``loss``, ``elbo`` and/or
    ``forward_nll``, ``skipped``, and ``beta`` when annealed); ``sample_stats`` holds
    ``lp`` and ``log_q`` per draw. ``psis=True`` reports smoothed log weights.
    Cost: reverse-KL steps cost ``num_mc_samples`` target gradients (mixed steps too),
    forward-KL steps none; plus ``num_samples`` density evaluations per run.

    Example:
        >>> import bayeswb as bw
        >>> t = bw.models.get("gaussian", dim=2)
        >>> r = bw.sample(t, "flow_is", num_chains=2, num_samples=100, num_warmup=20,
        ...               objective="forward_kl", num_layers=2)
        >>> r.cost["n_grad_evals"], r.log_z_se is not None, bw.score(r, t)["pareto_k"] < 0.7
        (0, True, True)
    """
    flow_loss(target, config)  # a missing sample_exact is an error before compiling
    draws = _run_weighted_flow(key, target, config, layout)
    reverse_steps = 0 if config.objective == "forward_kl" else config.num_warmup
    n_grad = config.num_chains * reverse_steps * config.num_mc_samples
    return draws._replace(
        n_grad_evals=n_grad,
        n_logdensity_evals=n_grad + config.num_chains * config.num_samples,
    )
