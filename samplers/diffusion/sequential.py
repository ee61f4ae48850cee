"""``scld``: Sequential Controlled Langevin Diffusions (Chen, Richter, Berner, Blessing,
Neumann and Anandkumar 2025, ICLR), cmcd's annealed kernels trained and run as an SMC
sampler whose path is cut into segments with resampling between them.

The kernels, the annealed densities ``pi_k ∝ N(0, I)^(1 - beta_k) pi^beta_k`` and the
exact path weights are cmcd's (:mod:`.annealed`): forward ``F_k`` and backward ``B_k``
Euler-Maruyama steps of the annealed Langevin diffusion with a learnt control added and
subtracted, a learnt step ``d``. The ``K`` steps form ``S`` segments of ``K / S`` steps.
What SCLD changes is how the control is trained:

- Training paths are simulated with the current control held fixed (no gradient flows
  through them) and, at each segment's end, resampled when the weights since the last
  resampling have ESS below ``resample_ess`` of the paths: the control learns where the
  SMC sampler's particles are, not where an unresampled path would wander off to.
- The loss is the log-variance divergence of each segment (Nuesken and Richter 2021,
  "Solving high-dimensional Hamilton-Jacobi-Bellman PDEs using neural networks:
  perspectives from the theory of controlled diffusions and measures on path space";
  SCLD's loss on subtrajectories): for the paths in segment ``s``, steps ``a..b``, the
  log of its incremental weight

      log G_s = log pi_b(x_b) - log pi_a(x_a) + sum_{a <= k < b} [log B_k - log F_k],

  and ``loss = sum_s Var(log G_s)`` over the paths, at fixed points, a function of
  the control and ``d`` only. Each segment's variance is zero exactly when its forward
  and backward path laws agree (the incremental weight is the constant ``Z_b / Z_a``),
  whatever the particles' start, so no learnt log Z is needed and the detached,
  resampled paths are valid training points (the log-variance loss is defined for any
  reference law of the paths).

Sampling is the SMC sampler over the trained kernels with the same rule (resampling at
segment ends when the ESS falls below ``resample_ess``), so ``log mean w`` is unbiased
for Z and the verdict reads the lowest ESS along the paths (``path_ess``) besides the
final weights.

What is not here from the paper: its replay buffer, its learnt annealing schedule and
prior, and its choice of segments and thresholds per task (the defaults here, 4
segments and ESS 0.3, are this workbench's).

Cost: one target gradient at each of a training path's K + 1 points, none in its
back-propagation (the points are fixed), and one at each of a sampled path's K + 1
points; cmcd's step probe per run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from bayeswb.core.config import closed_unit_interval, option, positive_int
from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.samplers import register
from bayeswb.samplers.diffusion.annealed import (
    CMCD,
    CMCDConfig,
    CMCDModel,
    annealed_log_density,
    cmcd_simulate,
    kernel_log_ratio,
)
from bayeswb.samplers.diffusion.paths import Paths
from bayeswb.samplers.diffusion.samplers import DiffusionMethod, LossFn, run_diffusion

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SCLDConfig(CMCDConfig):
    """SCLD: cmcd's options, the segments, and resampling in training and sampling."""

    num_segments: int = option(
        4,
        positive_int,
        "S: segments of the K steps (S divides num_steps); paths may be resampled at "
        "each segment's end, and the loss sums each segment's log-variance",
    )
    resample_ess: float = option(
        0.3,
        closed_unit_interval,
        "in training and sampling, resample the paths at a segment's end when their "
        "weights' ESS is below this fraction of them (0: never; 1: at every segment end)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_steps % self.num_segments:
            raise ValueError(
                f"num_segments must divide num_steps={self.num_steps}, got {self.num_segments!r}"
            )


def segment_simulate(
    key: Array,
    model: CMCDModel,
    logdensity_fn: Callable[[Array], Array],
    config: SCLDConfig,
    num_paths: int,
    dim: int,
    keep: bool = False,
) -> Paths:
    """cmcd's paths, resampled at segment ends where the ESS is below ``resample_ess``."""
    return cmcd_simulate(
        key, model, logdensity_fn, config, num_paths, dim, keep, config.resample_ess,
        every=config.num_steps // config.num_segments,
    )  # fmt: skip


def segment_log_weights(model: CMCDModel, paths: Paths, config: SCLDConfig) -> Array:
    """``log G_s`` (S, n) of each path's segments, at the fixed points of
    ``paths.moves``, as a function of ``model`` (its control and step)."""
    moves = paths.moves
    assert moves is not None, "simulate with keep=True"
    num_steps = config.num_steps
    k = jnp.arange(num_steps)
    beta = (k / num_steps).astype(moves.x.dtype)  # (K,), pi_k of each step's start
    new_beta = ((k + 1) / num_steps).astype(moves.x.dtype)
    control = jax.vmap(jax.vmap(model.control, (0, None, None)), (0, 0, None))
    u = control(moves.x, beta, None)
    new_u = control(moves.new, new_beta, None)
    step = jnp.exp(model.log_step)
    beta, new_beta = beta[:, None], new_beta[:, None]  # against the (K, n) terms
    increments = kernel_log_ratio(step, moves, u, new_u, beta, new_beta)
    increments += annealed_log_density(moves.new, moves.new_value, new_beta)
    increments -= annealed_log_density(moves.x, moves.value, beta)
    per_segment = num_steps // config.num_segments
    return jnp.sum(increments.reshape(config.num_segments, per_segment, -1), axis=1)


def log_variance_loss(
    method: DiffusionMethod, logdensity_fn: Callable, config: SCLDConfig, dim: int
) -> LossFn:
    """The sum over segments of the variance, over ``batch_size`` detached and resampled
    paths, of each segment's log incremental weight (:func:`segment_log_weights`); the
    trace's ``elbo`` is the paths' mean log weight (log Z's lower bound where no path was
    resampled)."""

    def loss(params: Any, static: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        model = eqx.combine(params, static)
        held = eqx.combine(jax.lax.stop_gradient(params), static)
        paths = segment_simulate(key, held, logdensity_fn, config, config.batch_size, dim, True)
        log_g = segment_log_weights(model, paths, config)
        elbo = jnp.mean(paths.log_weights)
        return jnp.sum(jnp.var(log_g, axis=1)), {"elbo": elbo}

    return loss


# cmcd's model, costs and step probe; its own paths (resampled at segment ends), loss and
# draw (the same resampled paths)
SCLD = CMCD._replace(name="scld", simulate=segment_simulate, loss=log_variance_loss, sample=None)


@register("scld", SCLDConfig, family="flow")
def run_scld(
    key: Array, target: Target, config: SCLDConfig, layout: ChainLayout | None = None
) -> Draws:
    """Sequential Controlled Langevin Diffusions (Chen, Richter, Berner, Blessing, Neumann
    and Anandkumar 2025, "Sequential controlled Langevin diffusions", ICLR): cmcd's
    annealed Langevin kernels with a learnt control, trained by the log-variance loss of
    each of ``num_segments`` segments on paths resampled between segments, and drawn as
    an SMC sampler over the trained kernels (see this module). Result and cost: as
    :func:`~.samplers.run_diffusion`'s, with ``lowest_path_ess`` and ``resamplings``.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("banana", "scld", num_chains=2, num_samples=50, num_warmup=5,
        ...               num_steps=12, hidden_width=8, batch_size=8, pilot_steps=10)
        >>> # 2 runs: (5 x 8 + 50) paths x 13 points, and the step probe's 64 x 13
        >>> r.log_weights.shape, r.cost["n_grad_evals"]
        ((2, 50), 4004)
    """
    return run_diffusion(key, target, config, SCLD, layout)
