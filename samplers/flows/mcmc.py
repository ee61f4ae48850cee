"""Flow-enhanced MCMC (``flow_mcmc``), in the style of flowMC.

Gabrie, Rotskoff and Vanden-Eijnden (2022), "Adaptive Monte Carlo augmented with
normalizing flows", PNAS 119, e2109420119 (Algorithm 1); Wong, Gabrie and Foreman-Mackey
(2023), "flowMC: Normalizing flow enhanced sampling package for probabilistic inference in
JAX", JOSS 8, 5021. Every chain alternates ``num_local_steps`` MALA steps (blackjax's
``mala`` kernel) with one independence Metropolis-Hastings step whose proposal is a draw
of a normalizing flow ``q``, accepted with probability

    min(1, p(x') q(x) / (p(x) q(x')))        (Gabrie et al. 2022, eq. 5)

During warmup the flow is trained by maximum likelihood (forward KL) on the chains'
positions, kept in a replay buffer of the most recent ``buffer_size`` local-step
positions, and the MALA step size of each chain is adapted by dual averaging; after warmup
the flow and step sizes are frozen, so the sampling phase is a valid MCMC for the target.

One addition to flowMC: the global proposal is by default a defensive mixture, 90% flow
and 10% a broad Gaussian fitted to the chains' starting points (``broad_weight``;
0 gives flowMC's plain flow proposal). A flow trained on the chains only puts mass where
chains have been, so modes not found early stay unproposed; the broad component keeps
proposing everywhere the chains were started. On gmm40 (2-D, 32 chains started uniformly
in [-40, 40]^2, 300 warmup cycles of 5 MALA steps) the plain flow visited 39 of the 40
modes after warmup, the defensive mixture all 40.

One cycle of every chain is :func:`~.mcmc_cycle.cycle`. All chains share one flow, so
chains are vmapped together inside one ``lax.scan`` over cycles rather than run as
independent programs by :func:`bayeswb.execution.driver.run_chains`.
Warmup shows a tqdm bar with the flow's training loss, fed from inside the compiled scan
(``progress_bar``; silent when stderr is not a terminal).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from blackjax.adaptation.step_size import dual_averaging_adaptation
from flowjax.distributions import Normal

from bayeswb.core.config import boolean, one_of, option, positive, positive_int, unit_interval
from bayeswb.core.draws import Count, Draws
from bayeswb.core.progress import report_progress
from bayeswb.core.target import Target
from bayeswb.samplers import register
from bayeswb.samplers.flows.architectures import (
    INVERTIBLE_FLOW_TYPES,
    FlowArchitecture,
    architecture_option,
)
from bayeswb.samplers.flows.losses import forward_kl_loss
from bayeswb.samplers.flows.mcmc_cycle import (
    ChainCarry,
    Draw,
    cycle,
    defensive_proposal,
)
from bayeswb.samplers.flows.training import partition_flow, train_flow

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class FlowMCMCConfig(FlowArchitecture):
    """flowMC-style sampler. ``num_warmup`` and ``num_samples`` count cycles (each
    ``num_local_steps`` MALA steps plus one global flow proposal); one draw per cycle."""

    num_warmup: int = option(200, positive_int, "warmup cycles, the flow trained after each")
    flow_type: str = architecture_option(
        "flow_type", "spline_coupling", one_of(*INVERTIBLE_FLOW_TYPES)
    )
    num_layers: int = architecture_option("num_layers", 4)
    num_local_steps: int = option(10, positive_int, "MALA steps per cycle")
    step_size: float = option(0.1, positive, "initial MALA step h (dual averaging in warmup)")
    target_acceptance_rate: float = option(0.574, unit_interval, "MALA dual-averaging target")
    num_train_steps: int = option(5, positive_int, "Adam steps on the flow per warmup cycle")
    batch_size: int = option(256, positive_int, "buffer draws per Adam step")
    buffer_size: int = option(4096, positive_int, "replay buffer of local-step positions")
    learning_rate: float = option(1e-3, positive, "Adam learning rate")
    broad_weight: float = option(
        0.1,
        lambda v: None if isinstance(v, float | int) and 0 <= v < 1 else "must be in [0, 1)",
        "weight of a broad Gaussian in the global proposal (defensive mixture)",
    )
    broad_scale: float = option(
        1.0, positive, "broad Gaussian: the chains' initial mean and broad_scale * their sd"
    )
    progress_bar: bool = option(True, boolean, "tqdm bar with the flow's loss during warmup")

    def __post_init__(self) -> None:
        super().__post_init__()
        per_cycle = self.num_chains * self.num_local_steps
        if self.buffer_size < per_cycle:
            raise ValueError(
                f"buffer_size must hold one cycle of positions (num_chains * num_local_steps"
                f" = {per_cycle}), got {self.buffer_size!r}"
            )


def _initial_loc_scale(positions: Array) -> tuple[Array, Array]:
    # standardise the flow on the chains' starting spread, so that before any training
    # its proposals cover the region the chains were started in
    loc = jnp.mean(positions, axis=0)
    scale = jnp.std(positions, axis=0)
    return loc, jnp.where(scale > 1e-3, scale, 1.0)


class ReplayBuffer(NamedTuple):
    """The most recent ``len(positions)`` local-step positions, kept in a ring, and how
    many were ever added."""

    positions: Array
    num_added: Array  # not ``count``, which would shadow tuple.count

    def add(self, new: Array) -> ReplayBuffer:
        index = (self.num_added + jnp.arange(new.shape[0])) % self.positions.shape[0]
        return ReplayBuffer(self.positions.at[index].set(new), self.num_added + new.shape[0])

    def draws(self, key: Array, n: int) -> Array:
        """``n`` positions drawn uniformly, with replacement, from those held."""
        filled = jnp.minimum(self.num_added, self.positions.shape[0])
        return self.positions[jax.random.randint(key, (n,), 0, filled)]


class WarmupCarry(NamedTuple):
    """What one warmup cycle hands to the next."""

    chains: ChainCarry
    params: Any  # the flow's trainable arrays
    opt_state: Any
    buffer: ReplayBuffer


class Warmup(NamedTuple):
    """The end of warmup: the chains (step sizes still as dual-averaging states), the
    trained flow, the draw of each cycle (cycle-first) and the flow's mean training loss
    per cycle."""

    chains: ChainCarry
    flow: Any
    draws: Draw
    flow_nll: Array


def warmup(
    key: Array, chains: ChainCarry, flow: Any, broad: Any, target: Target, config: FlowMCMCConfig
) -> Warmup:
    """``num_warmup`` cycles with step-size adaptation; after each, the cycle's local-step
    positions join the replay buffer and the flow takes ``num_train_steps`` Adam steps of
    forward KL on buffer draws (Gabrie et al. 2022, eq. 7)."""
    optimizer = optax.adam(config.learning_rate)
    params, static = partition_flow(flow)
    local = config.num_local_steps

    def warmup_cycle(carry: WarmupCarry, inputs: tuple[Array, Array]) -> tuple[WarmupCarry, Any]:
        cycle_key, cycle_index = inputs
        move_key, train_key = jax.random.split(cycle_key)
        flow = eqx.combine(carry.params, static)
        proposal = defensive_proposal(flow, broad, config.broad_weight)
        adapt_to = config.target_acceptance_rate
        done = cycle(move_key, carry.chains, target.log_density, local, adapt_to, proposal)
        buffer = carry.buffer.add(done.trail.reshape(-1, target.dim))
        loss_fn = forward_kl_loss(buffer.draws, config.batch_size)
        flow, opt_state, train_trace = train_flow(
            train_key, flow, loss_fn, config.num_train_steps, optimizer, carry.opt_state
        )
        nll = jnp.mean(train_trace["forward_nll"])
        if config.progress_bar:
            report_progress("flow_mcmc warmup", cycle_index, config.num_warmup, nll)
        carry = WarmupCarry(done.chains, partition_flow(flow)[0], opt_state, buffer)
        return carry, (done.draw, nll)

    dtype = chains.state.position.dtype
    buffer = ReplayBuffer(jnp.zeros((config.buffer_size, target.dim), dtype), jnp.asarray(0))
    carry = WarmupCarry(chains, params, optimizer.init(params), buffer)
    cycles = (jax.random.split(key, config.num_warmup), jnp.arange(config.num_warmup))
    carry, (draws, nll) = jax.lax.scan(warmup_cycle, carry, cycles)
    return Warmup(carry.chains, eqx.combine(carry.params, static), draws, nll)


def sample(
    key: Array, chains: ChainCarry, flow: Any, broad: Any, target: Target, config: FlowMCMCConfig
) -> Draw:
    """``num_samples`` cycles with the flow and step sizes frozen; their draws, cycle-first."""
    proposal = defensive_proposal(flow, broad, config.broad_weight)
    local = config.num_local_steps

    def sample_cycle(chains: ChainCarry, cycle_key: Array) -> tuple[ChainCarry, Draw]:
        done = cycle(cycle_key, chains, target.log_density, local, None, proposal)
        return done.chains, done.draw

    _, draws = jax.lax.scan(sample_cycle, chains, jax.random.split(key, config.num_samples))
    return draws


@register("flow_mcmc", FlowMCMCConfig, family="flow", independent_runs=False)
def run_flow_mcmc(
    key: Array, target: Target, config: FlowMCMCConfig, layout: None = None
) -> Draws:
    """Flow-enhanced MCMC (Gabrie, Rotskoff and Vanden-Eijnden 2022, Algorithm 1; flowMC,
    Wong et al. 2023): local MALA steps (Roberts and Tweedie 1996; blackjax's ``mala``)
    alternating with independence Metropolis-Hastings proposals from a flow
    (Gabrie et al. 2022, eq. 5), the flow retrained during warmup by forward KL on the
    chains' positions (their eq. 7), then frozen.

    Stats per draw (one per cycle): ``lp``, ``acceptance_rate`` (mean MALA acceptance
    over the cycle), ``global_acceptance_rate`` (the flow proposal's MH probability) and
    ``step_size``; ``path_stats.flow_nll`` is the mean training loss per warmup cycle
    (one shared flow, so every chain's row is the same).
    Cost: one gradient per chain at the start, one per MALA step and one per flow
    proposal; training on chain positions costs none.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gmm25", "flow_mcmc", num_chains=2, num_samples=20, num_warmup=5,
        ...               num_layers=2, num_local_steps=2)
        >>> r.positions.shape, r.cost["n_grad_evals"] == 2 * (1 + 25 * 3)
        ((2, 20, 2), True)
    """
    init_key, flow_key, warmup_key, sample_key = jax.random.split(key, 4)
    positions = jax.vmap(target.init)(jax.random.split(init_key, config.num_chains))
    states = jax.vmap(lambda x: blackjax.mala.init(x, target.log_density))(positions)
    loc, scale = _initial_loc_scale(positions)
    flow = config.build_flow(flow_key, target.dim, loc=loc, scale=scale, invert=True)
    broad = Normal(loc, config.broad_scale * scale)
    da_init, _, da_final = dual_averaging_adaptation(config.target_acceptance_rate)
    initial_step_size = jnp.full((config.num_chains,), config.step_size, dtype=positions.dtype)
    chains = ChainCarry(states, jax.vmap(da_init)(initial_step_size))

    warm = warmup(warmup_key, chains, flow, broad, target, config)
    frozen = warm.chains._replace(step_size=jax.vmap(da_final)(warm.chains.step_size))
    draws = sample(sample_key, frozen, warm.flow, broad, target, config)

    chain_first = lambda tree: jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), tree)
    warmup_draws = chain_first(warm.draws)
    flow_nll = jnp.broadcast_to(warm.flow_nll, (config.num_chains, config.num_warmup))
    cycles = config.num_warmup + config.num_samples
    n_grad = Count.of(config.num_chains * (1 + cycles * (config.num_local_steps + 1)))
    return Draws(
        positions=chain_first(draws.positions),
        stats=chain_first(draws.stats),
        warmup_positions=warmup_draws.positions,
        warmup_stats=warmup_draws.stats,
        path_stats={"flow_nll": flow_nll},
        n_grad_evals=n_grad,
        n_logdensity_evals=n_grad,
    )
