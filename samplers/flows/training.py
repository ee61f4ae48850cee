"""Flow training: optax steps as one ``lax.scan`` (flowjax's own ``fit_*`` loops are
Python loops), so that a whole run, training included, is one compiled program.

A step whose loss or gradient is not finite is skipped (parameters and optimiser state
are kept). The progress bar with the loss is fed from inside the scan by
``jax.debug.callback`` about every 2% of the steps
(:func:`~bayeswb.core.progress.report_progress`) and is silent when stderr is not a
terminal; the loss curve is also returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import paramax

from bayeswb.core.progress import report_progress
from bayeswb.samplers.flows.losses import LossFn

Array = jax.Array


def _trainable(leaf: Any) -> bool:
    return isinstance(leaf, paramax.NonTrainable)


def partition_flow(flow: Any) -> tuple[Any, Any]:
    """``(params, static)``: the flow's trainable inexact arrays and everything else."""
    return eqx.partition(flow, eqx.is_inexact_array, is_leaf=_trainable)


class TrainingCarry(NamedTuple):
    """What one optax step hands to the next."""

    params: Any
    opt_state: Any
    smoothed_loss: Array  # exponential moving average over about 20 steps, for the bar


def _all_finite(loss: Array, grads: Any) -> Array:
    leaves = jax.tree.leaves(grads) + [loss]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


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
    :func:`~.losses.reverse_kl_loss` accepts; see :func:`~.losses.linear_annealing`) and
    adds ``"beta"`` to the trace; ``progress`` names a tqdm bar that shows the loss
    (smoothed over about 20 steps) while the compiled scan runs (:func:`report_progress`).

    Example:
        >>> import optax
        >>> from bayeswb.samplers.flows import make_flow, reverse_kl_loss
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

    def step(carry: TrainingCarry, inputs: tuple[Array, Array]) -> tuple[TrainingCarry, dict]:
        step_key, index = inputs
        extra = {}
        if beta_schedule is not None:
            extra = {"beta": beta_schedule(index)}
        (loss, aux), grads = value_and_grad(carry.params, static, step_key, *extra.values())
        updates, new_opt_state = optimizer.update(grads, carry.opt_state, carry.params)
        new_params = eqx.apply_updates(carry.params, updates)
        finite = _all_finite(loss, grads)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        smoothed = carry.smoothed_loss
        average = jnp.where(index == 0, loss, 0.95 * smoothed + 0.05 * loss)
        smoothed = jnp.where(finite, average, smoothed).astype(smoothed.dtype)
        if progress is not None:
            report_progress(progress, index, num_steps, smoothed)
        carry = TrainingCarry(
            keep(new_params, carry.params), keep(new_opt_state, carry.opt_state), smoothed
        )
        return carry, {**aux, **extra, "loss": loss, "skipped": ~finite}

    inputs = (jax.random.split(key, num_steps), jnp.arange(num_steps))
    carry = TrainingCarry(params, opt_state, jnp.zeros((), dtype=jnp.result_type(float)))
    carry, trace = jax.lax.scan(step, carry, inputs)
    return eqx.combine(carry.params, static), carry.opt_state, trace
