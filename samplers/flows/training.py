"""Flow training: optax steps as one ``lax.scan``, or one ``lax.while_loop`` that stops at a
loss plateau (:class:`PlateauRule`); flowjax's own ``fit_*`` loops are Python loops. Either
way a whole run, training included, is one compiled program with static shapes.

A step whose loss or gradient is not finite is skipped (parameters and optimiser state
are kept). The progress bar with the loss is fed from inside the scan by
``jax.debug.callback`` about every 2% of the steps
(:func:`~bayeswb.core.progress.report_progress`) and is silent when stderr is not a
terminal; the loss curve is also returned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import paramax

from bayeswb.core.config import SamplerConfig, non_negative_int, option, positive_int
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


def all_finite(loss: Array, grads: Any) -> Array:
    """Whether the loss and every gradient leaf are finite (a step to keep)."""
    leaves = jax.tree.leaves(grads) + [loss]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def guarded_update(
    carry: Any,
    loss: Array,
    grads: Any,
    optimizer: optax.GradientTransformation,
    index: Array,
    num_steps: int,
    progress: str | None,
) -> tuple[Any, Array]:
    """One optax step of ``carry`` (a :class:`TrainingCarry`, or any NamedTuple with its
    fields) by ``grads``, kept only when ``loss`` and ``grads`` are finite; the smoothed
    loss and the ``progress`` bar follow. Returns the new carry and whether it was kept."""
    updates, new_opt_state = optimizer.update(grads, carry.opt_state, carry.params)
    new_params = eqx.apply_updates(carry.params, updates)
    finite = all_finite(loss, grads)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    smoothed = carry.smoothed_loss
    average = jnp.where(index == 0, loss, 0.95 * smoothed + 0.05 * loss)
    smoothed = jnp.where(finite, average, smoothed).astype(smoothed.dtype)
    if progress is not None:
        report_progress(progress, index, num_steps, smoothed)
    carry = carry._replace(
        params=keep(new_params, carry.params),
        opt_state=keep(new_opt_state, carry.opt_state),
        smoothed_loss=smoothed,
    )
    return carry, finite


class PlateauRule(NamedTuple):
    """When flow training stops before its step budget: the loss has plateaued.

    Every ``window`` steps, the mean loss over that window and its standard error (the
    window's standard deviation over sqrt(number of finite losses)) are compared with the
    best window mean so far: the window improves on it if it is lower by more than
    ``threshold`` standard errors. Training stops after ``patience`` windows in a row
    without improvement; windows that begin before step ``start`` (an annealing ramp,
    whose loss changes with the temperature) are not judged. This is Prechelt's "UP"
    early-stopping rule (Prechelt 1998, "Early stopping - but when?", Neural Networks:
    Tricks of the Trade, LNCS 1524, criterion UP_s: stop after s successive strips
    without improvement), and the
    ``patience`` of Keras/optax plateau schedules, with the strip's validation error
    replaced by the mean of the fresh Monte Carlo losses of the window (each step's loss
    is an independent estimate, so the window mean is an unbiased, held-out-like
    estimate of the current objective).

    Training also stops, unconverged, at the end of a window (any window, judged or not)
    in which no step had a finite loss and gradient: every step of it was skipped, the
    parameters did not move, and more steps of the same would not move them (a density
    that is NaN or +inf where the training draws land). The run's ``plateau`` flags stay
    False, so its verdict says that training did not converge.

    Why these defaults: a window of 200 steps averages 200 independent loss estimates;
    a real improvement grows with the window while its standard error shrinks as
    1/sqrt(window), and at 100 steps the slow late gains of Adam at rate 1e-3 (about
    0.025 per 100 steps on ``rezende_u1``) were within the noise and training stopped
    too soon. 2 standard errors makes a chance "improvement" of a flat curve rare
    (one-sided 2.3% per window); 3 windows of patience (600 steps) let Adam cross short
    flat stretches and loss spikes. The rule can fire only after ``(patience + 1) *
    window`` = 800 steps, so short runs (``num_warmup`` of a few hundred, as in quick
    tests) always train their whole budget.
    """

    window: int = 200
    patience: int = 3
    threshold: float = 2.0
    start: int = 0  # steps before any window is judged (an annealing ramp's)


def training_cap(default: int) -> Any:
    """The ``num_warmup`` option of a sampler trained under :class:`PlateauRule`."""
    return option(
        default,
        non_negative_int,
        "training steps: the cap when plateau_window > 0 (it stops at a loss plateau), "
        "else the exact number",
    )


@dataclasses.dataclass(frozen=True)
class PlateauTraining(SamplerConfig):
    """The options of training stopped by the plateau rule, declared once for every
    trained sampler (the flows, snf, the diffusion samplers): the ``num_warmup`` cap
    (:func:`training_cap` gives a sampler its own default) and the rule's window and
    patience (:func:`plateau_rule`)."""

    num_warmup: int = training_cap(5000)
    plateau_window: int = option(
        200, non_negative_int, "steps per window of the plateau rule (0: no early stop)"
    )
    plateau_patience: int = option(
        3, positive_int, "windows in a row without improvement that stop training"
    )


def plateau_rule(config: PlateauTraining, start: int = 0) -> PlateauRule | None:
    """The config's :class:`PlateauRule`, judged from step ``start`` on (after an
    annealing ramp, whose loss is not comparable from step to step), or None
    (``plateau_window=0``: train exactly ``num_warmup`` steps)."""
    if config.plateau_window == 0:
        return None
    return PlateauRule(config.plateau_window, config.plateau_patience, start=start)


class _WhileState(NamedTuple):
    carry: TrainingCarry
    num_taken: Array  # steps taken
    trace: dict[str, Array]  # (num_steps, ...) buffers, filled up to ``num_taken``
    best: Array  # best window mean loss so far
    stale: Array  # windows in a row without improvement
    done: Array  # the plateau rule has fired
    broken: Array  # a whole window had no finite loss and applied no update


def _window_update(state: _WhileState, rule: PlateauRule) -> tuple[Array, Array, Array]:
    """(best, stale, broken) after the step just taken: updated only at the end of a
    window; ``broken`` when that window had no finite loss and skipped every update."""
    at_end = state.num_taken % rule.window == 0
    judged = at_end & (state.num_taken - rule.window >= rule.start)
    start = jnp.maximum(state.num_taken - rule.window, 0)
    # a budget shorter than a window is never judged; the slice must still fit
    size = min(rule.window, state.trace["loss"].shape[0])
    losses = jax.lax.dynamic_slice_in_dim(state.trace["loss"], start, size)
    skipped = jax.lax.dynamic_slice_in_dim(state.trace["skipped"], start, size)
    finite = jnp.isfinite(losses)
    count = jnp.maximum(jnp.sum(finite), 1)
    mean = jnp.sum(jnp.where(finite, losses, 0.0)) / count
    variance = jnp.sum(jnp.where(finite, (losses - mean) ** 2, 0.0)) / jnp.maximum(count - 1, 1)
    standard_error = jnp.sqrt(variance / count)
    improved = jnp.any(finite) & (mean < state.best - rule.threshold * standard_error)
    best = jnp.where(judged & improved, mean, state.best)
    stale = jnp.where(judged, jnp.where(improved, 0, state.stale + 1), state.stale)
    return best, stale, at_end & ~jnp.any(finite) & jnp.all(skipped)


def train_until_plateau(
    step: Callable[[Any, tuple[Array, Array]], tuple[Any, dict]],
    carry: Any,
    keys: Array,
    num_steps: int,
    rule: PlateauRule,
) -> tuple[Any, dict[str, Array]]:
    """``step(carry, (key, index)) -> (carry, record)`` in a ``lax.while_loop`` until
    ``num_steps`` or the plateau ``rule`` fires on ``record["loss"]``; the trace buffers
    keep NaN (False for flags) after the last step taken; ``record`` has ``loss`` and
    ``skipped`` (True for an update not applied). ``carry`` is a
    :class:`TrainingCarry`, or any NamedTuple with its ``smoothed_loss`` (fab's carries
    a replay buffer too)."""
    _, record = jax.eval_shape(step, carry, (keys[0], jnp.asarray(0)))

    def empty(leaf: jax.ShapeDtypeStruct) -> Array:
        fill = jnp.nan if jnp.issubdtype(leaf.dtype, jnp.inexact) else 0
        return jnp.full((num_steps,) + leaf.shape, fill, leaf.dtype)

    trace = jax.tree.map(empty, record)
    trace["trained"] = jnp.zeros(num_steps, bool)
    trace["plateau"] = jnp.zeros(num_steps, bool)
    dtype = carry.smoothed_loss.dtype
    state = _WhileState(
        carry,
        jnp.asarray(0),
        trace,
        jnp.asarray(jnp.inf, dtype),
        jnp.asarray(0),
        jnp.asarray(False),
        jnp.asarray(False),
    )

    def body(state: _WhileState) -> _WhileState:
        carry, record = step(state.carry, (keys[state.num_taken], state.num_taken))
        record = {**record, "trained": jnp.asarray(True), "plateau": jnp.asarray(False)}
        trace = jax.tree.map(lambda b, r: b.at[state.num_taken].set(r), state.trace, record)
        state = state._replace(carry=carry, num_taken=state.num_taken + 1, trace=trace)
        best, stale, broken = _window_update(state, rule)
        done = stale >= rule.patience
        trace["plateau"] = trace["plateau"].at[state.num_taken - 1].set(done)
        return state._replace(
            trace=trace, best=best.astype(dtype), stale=stale, done=done, broken=broken
        )

    def keep_going(state: _WhileState) -> Array:
        return (state.num_taken < num_steps) & ~state.done & ~state.broken

    state = jax.lax.while_loop(keep_going, body, state)
    return state.carry, state.trace


def training_status(trace: dict[str, Array]) -> tuple[Array, Array]:
    """``(steps_trained, converged)`` of a :func:`train_flow` trace (last axis: steps):
    the number of optax steps taken, and whether the plateau rule stopped training (False
    when it ran its whole budget, or when it was trained without a rule).

    Example:
        >>> import jax.numpy as jnp
        >>> trace = {"loss": jnp.zeros(4), "trained": jnp.array([True, True, False, False]),
        ...          "plateau": jnp.array([False, True, False, False])}
        >>> [int(v) for v in training_status(trace)]
        [2, 1]
    """
    if "trained" not in trace:
        steps = trace["loss"].shape[-1]
        shape = trace["loss"].shape[:-1]
        return jnp.full(shape, steps), jnp.zeros(shape, bool)
    return jnp.sum(trace["trained"], axis=-1), jnp.any(trace["plateau"], axis=-1)


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
    plateau: PlateauRule | None = None,
) -> tuple[Any, Any, dict[str, Array]]:
    """``num_steps`` optax steps on ``loss_fn(params, static, key) -> (loss, aux)``, as one
    ``lax.scan`` (no Python loop over steps).

    A step with a non-finite loss or gradient leaves parameters and optimiser state
    unchanged. Returns the trained flow, the optimiser state (pass it back in to continue
    training) and the aux values stacked over steps, plus ``"loss"`` and ``"skipped"``.

    Keyword options: ``beta_schedule(step) -> beta`` passes ``beta`` to the loss (as
    :func:`~.losses.reverse_kl_loss` accepts; see :func:`~.losses.linear_annealing`) and
    adds ``"beta"`` to the trace; ``plateau`` (a :class:`PlateauRule`) makes
    ``num_steps`` a cap: training stops once the loss has stopped improving, the trace
    keeps its ``num_steps`` length with NaN losses after the last step, and gains
    ``"trained"`` (the steps taken) and ``"plateau"`` (the step where the rule fired);
    :func:`training_status` reads both. ``progress`` names a tqdm bar that shows the loss
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
        carry, finite = guarded_update(carry, loss, grads, optimizer, index, num_steps, progress)
        return carry, {**aux, **extra, "loss": loss, "skipped": ~finite}

    carry = TrainingCarry(params, opt_state, jnp.zeros((), dtype=jnp.result_type(float)))
    carry, trace = run_steps(step, carry, key, num_steps, plateau, progress)
    return eqx.combine(carry.params, static), carry.opt_state, trace


def run_steps(
    step: Callable[[Any, tuple[Array, Array]], tuple[Any, dict]],
    carry: Any,
    key: Array,
    num_steps: int,
    plateau: PlateauRule | None,
    progress: str | None,
) -> tuple[Any, dict[str, Array]]:
    """``step(carry, (key, index))`` ``num_steps`` times as one ``lax.scan``, or under the
    ``plateau`` rule (:func:`train_until_plateau`), closing the ``progress`` bar of a run
    that stopped early; returns the last carry and the stacked records."""
    keys = jax.random.split(key, num_steps)
    if plateau is None or num_steps == 0:
        return jax.lax.scan(step, carry, (keys, jnp.arange(num_steps)))
    carry, trace = train_until_plateau(step, carry, keys, num_steps, plateau)
    if progress is not None:
        # a no-op after a full run
        report_progress(progress, jnp.asarray(num_steps - 1), num_steps, carry.smoothed_loss)
    return carry, trace
