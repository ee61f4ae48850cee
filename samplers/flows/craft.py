"""Continual repeated annealed flow transport Monte Carlo (``craft``; Matthews, Arbel,
Rezende and Doucet 2022, "Continual Repeated Annealed Flow Transport Monte Carlo", ICML).

SMC along the geometric path ``pi_k proportional to q^(1 - beta_k) p^beta_k`` from a
reference q to the target p, where each step first pushes the particles through a learnt
transport ``T_k`` and weights them by (the annealed flow transport step of Arbel,
Matthews and Doucet 2021, "Annealed Flow Transport Monte Carlo")

    w_k(x) = pi_k(T_k(x)) |det J_T_k(x)| / pi_(k-1)(x),

then resamples when the ESS falls below ``ess_threshold`` and moves the particles by an
MCMC kernel for ``pi_k``. The transports are trained by CRAFT's objective:
the sum over k of ``KL(T_k # pi_(k-1) || pi_k)``, estimated at each step by
``-sum_i W_i log w_k(x_i)`` over the weighted particles of a full SMC pass (the particles
and weights held fixed, gradients through ``T_k`` only), one Adam step per pass. Log Z is
the product of the increments ``sum_i W_i w_k(x_i)``; for transports held fixed (the
final run's) it is unbiased but for the step size retuned from the particles (an O(1/N)
effect, as in smc), so training decides its variance, not its mean.

Here each ``T_k`` is an elementwise affine map ``x -> exp(s_k) x + m_k``, started at the
identity (untrained, craft is SMC on a fixed schedule); the paper's experiments
use affine inverse autoregressive and spline coupling flows, which this transport does not
have yet. Everything runs in coordinates whitened by the flows' Gaussian pilot
(:func:`~bayeswb.samplers.importance.pilot.pilot_whitening`), where ``q = N(0, I)``; the
move is one of smc's (HMC by default) with the step size retuned after every sweep toward
the move's target acceptance.

Cost (exact, :func:`craft_cost`): per particle and step, the target at the particle (its
weight's denominator) and at its transport (with its gradient while training), plus the
move's gradients; training passes use ``num_mc_samples`` particles, the final run
``num_samples``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
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
from bayeswb.core.draws import Count, Draws
from bayeswb.core.target import Target
from bayeswb.core.weights import safe_log_weights
from bayeswb.core.whitening import Whitening
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers import register
from bayeswb.samplers.flows.fitting import PILOT_MC_SAMPLES
from bayeswb.samplers.flows.training import (
    PlateauTraining,
    plateau_rule,
    train_flow,
    training_cap,
    training_status,
)
from bayeswb.samplers.importance.pilot import pilot_evaluations_of, pilot_whitening
from bayeswb.samplers.smc import ess_resampling, make_move, sweeps
from bayeswb.samplers.smc.moves import MCMC_MOVES
from bayeswb.samplers.smc.settings import move_check
from bayeswb.samplers.smc.tempering import fixed_schedule
from bayeswb.samplers.smc.tuning import acceptance_update

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class CRAFTConfig(PlateauTraining):
    """CRAFT: ``num_warmup`` training passes at most (the plateau rule), each an SMC pass
    of ``num_mc_samples`` particles and one Adam step on the transports; then
    ``num_chains`` runs of ``num_samples`` particles with the trained transports."""

    num_warmup: int = training_cap(1000)
    num_steps: int = option(10, positive_int, "temperatures (one transport each)")
    schedule: str = option("linear", one_of("linear", "geometric"), "temperature schedule")
    move: Any = option(
        "hmc", move_check(MCMC_MOVES), "MCMC kernel after each transport: name or Move"
    )
    num_mcmc_steps: int = option(2, positive_int, "sweeps of the move per temperature")
    num_integration_steps: int = option(5, positive_int, "leapfrog steps of hmc")
    ess_threshold: float = option(0.5, unit_interval, "resample when ESS < ess_threshold * N")
    num_mc_samples: int = option(256, positive_int, "particles per training pass")
    learning_rate: float = option(1e-2, positive, "Adam learning rate of the transports")
    pilot_steps: int = option(
        300, non_negative_int, "Adam steps of the Gaussian pilot that whitens (0: none)"
    )
    progress_bar: bool = option(True, boolean, "tqdm bar with the loss while training")


class Transports(eqx.Module):
    """The elementwise affine transports ``T_k(x) = exp(log_scale[k]) x + shift[k]``."""

    shift: Array  # (num_steps, dim)
    log_scale: Array  # (num_steps, dim)


def identity_transports(num_steps: int, dim: int) -> Transports:
    zeros = jnp.zeros((num_steps, dim), jnp.result_type(float))
    return Transports(zeros, zeros)


class Pass(NamedTuple):
    """One SMC pass: the particles at temperature 1, their normalised log weights, log Z,
    the training loss (the sum over steps of ``-sum_i W_i log w_k``) and the path."""

    positions: Array
    log_weights: Array
    log_z: Array
    lp: Array
    loss: Array
    path: dict[str, Array]


def smc_pass(
    key: Array,
    transports: Transports,
    log_p: Callable[[Array], Array],
    config: CRAFTConfig,
    n: int,
    with_lp: bool = False,
) -> Pass:
    """``n`` particles from N(0, I) through every transport, reweighting, resampling and
    move (module docstring); differentiable in ``transports`` through the loss only.
    ``with_lp``: evaluate log p at the final particles (else ``lp`` is zeros)."""
    move = make_move(config.move, config.num_integration_steps)
    mutate = sweeps(move, config.num_mcmc_steps)
    resample = ess_resampling("systematic", config.ess_threshold)
    update = acceptance_update(move.target_acceptance_rate)
    dim = transports.shift.shape[-1]
    betas = fixed_schedule(config.schedule, config.num_steps)

    def log_gamma(beta: Array, x: Array) -> Array:
        return (1.0 - beta) * (-0.5 * jnp.sum(x**2) - 0.5 * dim * math.log(2 * math.pi)) + (
            beta * log_p(x)
        )

    def step(carry: tuple, inputs: tuple) -> tuple[tuple, dict[str, Array]]:
        x, log_w, log_z, log_h = carry
        shift, log_scale, beta_old, beta, step_key = inputs
        move_key, resample_key = jax.random.split(step_key)
        y = jnp.exp(log_scale) * x + shift
        log_inc = (
            jax.vmap(lambda y: log_gamma(beta, y))(y)
            + jnp.sum(log_scale)
            - jax.vmap(lambda x: log_gamma(beta_old, x))(x)
        )
        weights = jax.lax.stop_gradient(jnp.exp(log_w))
        loss = -jnp.sum(weights * jnp.where(weights > 0, log_inc, 0.0))
        log_w, increment = _reweight(log_w, jax.lax.stop_gradient(log_inc))
        ess = 1.0 / jnp.sum(jnp.exp(2.0 * log_w))
        y = jax.lax.stop_gradient(y)
        resampled = resample(resample_key, y, log_w, ess)
        tempered = lambda z: log_gamma(beta, z)
        chains = mutate(
            move_key, resampled.positions, tempered, jnp.exp(resampled.log_weights), log_h, update
        )
        x = chains.positions[-1]
        record = {
            "temperature": beta,
            "log_z_increment": increment,
            "ess": ess,
            "resampled": resampled.resampled,
            "acceptance_rate": jnp.mean(chains.acceptance),
            "step_size": jnp.exp(chains.log_step_size),
            "loss": loss,
        }
        carry = (x, resampled.log_weights, log_z + increment, chains.log_step_size)
        return carry, record

    init_key, key = jax.random.split(key)
    x = jax.random.normal(init_key, (n, dim))
    log_w = jnp.full(n, -math.log(n))
    log_h = jnp.log(move.default_step_size(dim))
    keys = jax.random.split(key, config.num_steps)
    xs = (transports.shift, transports.log_scale, betas[:-1], betas[1:], keys)
    start = (x, log_w, jnp.zeros(()), jnp.asarray(log_h, x.dtype))
    (x, log_w, log_z, _), path = jax.lax.scan(step, start, xs)
    loss = jnp.sum(path.pop("loss"))
    lp = jax.vmap(log_p)(x) if with_lp else jnp.zeros(n)
    return Pass(x, log_w, log_z, lp, loss, path)


def _reweight(log_w: Array, log_inc: Array) -> tuple[Array, Array]:
    """Normalised ``log W + log w`` (a NaN or -inf increment: weight 0) and the log Z
    increment ``log sum_i W_i w_i``."""
    unnormalised = safe_log_weights(log_w + log_inc)
    increment = jax.nn.logsumexp(unnormalised)
    return unnormalised - increment, increment


def craft_loss(log_p: Callable[[Array], Array], config: CRAFTConfig) -> Callable:
    """``loss(params, static, key) -> (loss, {})`` of one training pass for
    :func:`~.training.train_flow`."""

    def loss(params: Any, static: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        transports = eqx.combine(params, static)
        out = smc_pass(key, transports, log_p, config, config.num_mc_samples)
        return out.loss, {"log_z": out.log_z}

    return loss


def craft_cost(config: CRAFTConfig, passes_trained: Array | int) -> tuple[Count, Count]:
    """Exact target (gradients, log-density evaluations): per particle and step of every
    pass, the weight's two densities (the transported one with its gradient in training)
    and the move's init and sweeps; the final runs; the pilots.

    Example:
        >>> config = CRAFTConfig(num_chains=2, num_samples=10, num_steps=3,
        ...                      num_mc_samples=4, pilot_steps=0, num_mcmc_steps=1)
        >>> grads, evals = craft_cost(config, jnp.array([5, 7]))
        >>> int(grads) == 12 * 4 * 3 * (1 + 1 + 5) + 2 * 10 * 3 * (1 + 5)
        True
    """
    move = make_move(config.move, config.num_integration_steps)
    sweeps = config.num_mcmc_steps
    move_grads = move.grads_per_init + sweeps * move.grads_per_step
    move_evals = move.evals_per_init + sweeps * move.evals_per_step
    k = config.num_steps
    train_grads = Count.of(passes_trained, each=config.num_mc_samples * k * (1 + move_grads))
    train_evals = Count.of(passes_trained, each=config.num_mc_samples * k * (2 + move_evals))
    final = config.num_chains * config.num_samples * k
    pilot = pilot_evaluations_of(config.num_chains, config.pilot_steps, PILOT_MC_SAMPLES)
    grads = train_grads + Count.of(final * move_grads)
    evals = train_evals + Count.of(
        final * (2 + move_evals) + config.num_chains * config.num_samples + pilot
    )
    return grads, evals


@register("craft", CRAFTConfig, family="flow")
def run_craft(
    key: Array, target: Target, config: CRAFTConfig, layout: ChainLayout | None = None
) -> Draws:
    """Continual repeated annealed flow transport Monte Carlo (Matthews, Arbel, Rezende
    and Doucet 2022, "Continual Repeated Annealed Flow Transport Monte Carlo", with
    elementwise affine transports; see the module docstring): per run, the
    transports trained on SMC passes, then one SMC run of ``num_samples`` particles.

    Output: weighted particles (``log_weights`` = log Z of the run + normalised log W, as
    smc's), ``log_z`` per run, ``path_stats`` (temperature, ESS, resampling, acceptance,
    step size, log Z increment per step) and ``warmup_stats`` (``loss`` per training
    pass, ``log_z`` of the pass, ``trained``, ``plateau``).

    Example (a run compiles training and SMC: tens of seconds; see
    tests/samplers/test_craft.py for full ones):
        >>> import bayeswb as bw
        >>> config = bw.samplers.get("craft").make_config()
        >>> config.num_steps, config.move, config.num_mc_samples
        (10, 'hmc', 256)
    """

    def one_run(run_key: Array) -> tuple[Pass, dict[str, Array], Whitening]:
        pilot_key, train_key, final_key = jax.random.split(run_key, 3)
        frame = pilot_whitening(pilot_key, target, config.pilot_steps, PILOT_MC_SAMPLES)
        log_p = frame.log_density(target.log_density)
        transports, _, trace = train_flow(
            train_key,
            identity_transports(config.num_steps, target.dim),
            craft_loss(log_p, config),
            config.num_warmup,
            optax.adam(config.learning_rate),
            progress="craft" if config.progress_bar else None,
            plateau=plateau_rule(config),
        )
        out = smc_pass(final_key, transports, log_p, config, config.num_samples, with_lp=True)
        return out, trace, frame

    out, trace, frame = run_chains(key, config.num_chains, one_run, layout)
    positions = jax.vmap(Whitening.unwhiten)(frame, out.positions)
    lp = out.lp - jax.vmap(lambda f: f.log_jacobian)(frame)[:, None]
    grads, evals = craft_cost(config, training_status(trace)[0])
    names = ("loss", "log_z", "trained", "plateau")
    curves = {name: trace[name] for name in names if name in trace}
    return Draws(
        positions=positions,
        stats={"lp": lp},
        log_weights=out.log_z[:, None] + out.log_weights,
        log_z=out.log_z,
        path_stats=out.path,
        warmup_stats=curves if config.num_warmup else {},
        n_grad_evals=grads,
        n_logdensity_evals=evals,
    )
