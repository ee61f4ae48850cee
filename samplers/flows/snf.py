"""The ``snf`` sampler: stochastic normalizing flows (Wu, Koehler and Noe 2020) trained
on the path KL, then weighted paths (the SNF and its path weights: :mod:`.snf_paths`).

Training (their KL and ML losses): the reverse path KL ``E_forward[-log w]`` (``objective=
"reverse_kl"``, reparameterised through the flows and the Gaussian proposals; the
accept/reject decision is not differentiated), the forward path KL ``E_backward[log w]``
on exact target draws run backwards through the chain (``"forward_kl"``, maximum
likelihood), or their mix. Optax Adam inside one ``lax.scan``
(:func:`~.training.train_flow`); the blocks are stacked (``equinox``
``filter_vmap``) and traversed with ``lax.scan``, the Markov steps too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from bayeswb.core.config import (
    boolean,
    one_of,
    option,
    positive,
    positive_int,
    unit_interval,
)
from bayeswb.core.draws import Count, Draws
from bayeswb.core.target import Target
from bayeswb.core.weights import log_mean_exp
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers import register
from bayeswb.samplers.flows.architectures import architecture_option
from bayeswb.samplers.flows.losses import objective_loss
from bayeswb.samplers.flows.snf_paths import (
    SNF_FLOW_TYPES,
    STOCHASTIC_BLOCKS,
    LogDensity,
    StochasticNormalizingFlow,
    backward_path,
    make_snf,
    sample_paths,
)
from bayeswb.samplers.flows.training import (
    PlateauTraining,
    plateau_rule,
    train_flow,
    training_cap,
    training_status,
)

Array = jax.Array


def reverse_path_kl_loss(logdensity_fn: LogDensity, num_paths: int) -> Callable:
    """``E_forward[-log w]`` over ``num_paths`` forward paths: the reverse path KL minus
    log Z (Wu et al. 2020, KL loss). Aux: ``elbo = E[log w] <= log Z``.

    Returns ``loss(params, static, key) -> (loss, aux)`` for :func:`train_flow`.
    """

    def loss(params: Any, static: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        snf = eqx.combine(params, static)
        _, log_w, _, acceptance = sample_paths(snf, logdensity_fn, key, num_paths)
        value = -jnp.mean(log_w)
        return value, {"elbo": -value, "acceptance_rate": jnp.mean(acceptance)}

    return loss


def forward_path_kl_loss(
    logdensity_fn: LogDensity, sample_fn: Callable[[Array, int], Array], batch_size: int
) -> Callable:
    """``E_backward[log w]`` over ``batch_size`` exact target draws run backwards: the
    forward path KL plus log Z (Wu et al. 2020, ML loss).

    Returns ``loss(params, static, key) -> (loss, {"forward_loss": loss})``.
    """

    def loss(params: Any, static: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        snf = eqx.combine(params, static)
        data_key, path_key = jax.random.split(key)
        x = sample_fn(data_key, batch_size)
        _, log_w = jax.vmap(backward_path, in_axes=(None, None, 0, 0))(
            snf, logdensity_fn, jax.random.split(path_key, batch_size), x
        )
        value = jnp.mean(log_w)
        return value, {"forward_loss": value}

    return loss


@dataclasses.dataclass(frozen=True)
class SNFConfig(PlateauTraining):
    """Stochastic normalizing flow: training until the loss plateaus (at most
    ``num_warmup`` steps; :class:`~.training.PlateauRule`), then ``num_samples`` weighted
    paths per run; ``num_chains`` independent runs (one SNF each)."""

    flow_type: str = architecture_option("flow_type", "affine_coupling", one_of(*SNF_FLOW_TYPES))
    num_blocks: int = option(3, positive_int, "flow blocks, each followed by a stochastic block")
    layers_per_block: int = option(2, positive_int, "coupling layers per flow block")
    hidden_width: int = architecture_option("hidden_width", 64)
    hidden_depth: int = option(2, positive_int, "conditioner hidden layers")
    num_knots: int = architecture_option("num_knots")
    spline_interval: float = architecture_option("spline_interval")
    init_scale: float = option(1.0, positive, "scale of the Gaussian base q0")
    stochastic: str = option("mala", one_of(*STOCHASTIC_BLOCKS), "stochastic block kernel")
    num_mcmc_steps: int = option(10, positive_int, "Markov steps per stochastic block")
    step_size: float = option(
        0.05, positive, "MALA/ULA step size eps (drift eps grad, noise sqrt(2 eps)); RWM sd"
    )
    train_step_size: bool = option(False, boolean, "learn one log step size per block")
    objective: str = option(
        "reverse_kl",
        one_of("reverse_kl", "forward_kl", "mixed"),
        "training loss; forward_kl and mixed need target.sample_exact",
    )
    forward_weight: float = option(0.5, unit_interval, "weight of forward KL when mixed")
    batch_size: int = option(256, positive_int, "exact target draws per forward-KL step")
    num_mc_samples: int = option(64, positive_int, "forward paths per reverse-KL step")
    learning_rate: float = option(1e-3, positive, "Adam learning rate")
    max_grad_norm: float = option(10.0, positive, "gradient clipping (global norm)")
    num_warmup: int = training_cap(2000)


def _evaluations_per_path(config: SNFConfig) -> tuple[int, int]:
    """(target log-density evaluations, forward-pass target gradients) of one path."""
    if config.stochastic == "none":
        return 1, 0
    per_block = config.num_mcmc_steps + 1  # the block's entry point, then each proposal
    evaluations = config.num_blocks * per_block + 1
    gradients = config.num_blocks * per_block if config.stochastic in ("mala", "ula") else 0
    return evaluations, gradients


def snf_cost(config: SNFConfig, steps_trained: Any = None) -> tuple[Any, Any]:
    """``(n_grad_evals, n_logdensity_evals)`` of a whole ``snf`` run, all runs.

    Every target evaluation on a training path is back-propagated (one gradient each);
    MALA and ULA also take a target gradient at each evaluation in the forward pass.
    Sampling takes no back-propagation. ``steps_trained`` (per run, from
    :func:`~.training.training_status`) counts the training steps actually taken:
    then two exact :class:`~bayeswb.core.draws.Count` (the steps stay per run, at most
    ``num_warmup``; the host multiplies); without it, Python ints for ``num_warmup``
    steps per run.

    Example:
        >>> config = SNFConfig(num_chains=2, num_warmup=3, num_samples=10, num_blocks=1,
        ...                    num_mcmc_steps=1, num_mc_samples=4, stochastic="rwm")
        >>> snf_cost(config) == tuple(map(int, snf_cost(config, [3, 3])))
        True
    """
    evaluations, forward_gradients = _evaluations_per_path(config)
    paths_per_step = 0
    if config.objective in ("reverse_kl", "mixed"):
        paths_per_step += config.num_mc_samples
    if config.objective in ("forward_kl", "mixed"):
        paths_per_step += config.batch_size
    steps = config.num_chains * config.num_warmup if steps_trained is None else steps_trained
    train_paths = Count.of(steps, each=paths_per_step)
    sample_paths = config.num_chains * config.num_samples
    evals = (train_paths + sample_paths) * evaluations
    grads = train_paths * (evaluations + forward_gradients) + sample_paths * forward_gradients
    if steps_trained is None:
        return int(grads), int(evals)
    return grads, evals


def snf_loss(target: Target, config: SNFConfig) -> Callable:
    """The training loss ``config.objective`` names, for :func:`train_flow`."""
    reverse = reverse_path_kl_loss(target.log_density, config.num_mc_samples)
    return objective_loss(
        config.objective,
        target,
        reverse,
        lambda sample_exact: forward_path_kl_loss(
            target.log_density, sample_exact, config.batch_size
        ),
        config.forward_weight,
    )


def initial_snf(key: Array, dim: int, config: SNFConfig) -> StochasticNormalizingFlow:
    """The untrained SNF the config describes."""
    return make_snf(
        key,
        dim,
        config.flow_type,
        num_blocks=config.num_blocks,
        layers_per_block=config.layers_per_block,
        hidden_width=config.hidden_width,
        hidden_depth=config.hidden_depth,
        num_knots=config.num_knots,
        spline_interval=config.spline_interval,
        init_scale=config.init_scale,
        kernel=config.stochastic,
        num_mcmc_steps=config.num_mcmc_steps,
        step_size=config.step_size,
        train_step_size=config.train_step_size,
    )


def train_snf(
    key: Array, target: Target, config: SNFConfig
) -> tuple[StochasticNormalizingFlow, dict[str, Array]]:
    """Build and train one SNF: clipped Adam until the loss plateaus or ``num_warmup``
    steps (exactly ``num_warmup`` with ``plateau_window=0``), in one compiled loop.
    Returns the SNF and the per-step trace (``loss``, ``elbo``, ..., and with the
    plateau rule ``trained`` and ``plateau``; see :func:`~.training.training_status`).

    Example:
        >>> import bayeswb as bw
        >>> config = SNFConfig(num_warmup=3, num_blocks=1, hidden_width=8, num_mc_samples=4,
        ...                    stochastic="rwm", num_mcmc_steps=2)
        >>> snf, trace = train_snf(jax.random.key(0), bw.models.get("banana"), config)
        >>> trace["loss"].shape
        (3,)
    """
    if target.dim < 2:
        raise ValueError(f"snf needs dim >= 2 (coupling layers), got dim={target.dim}")
    init_key, train_key = jax.random.split(key)
    snf = initial_snf(init_key, target.dim, config)
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate)
    )
    loss_fn = snf_loss(target, config)
    snf, _, trace = train_flow(
        train_key, snf, loss_fn, config.num_warmup, optimizer, plateau=plateau_rule(config)
    )
    return snf, trace


@register("snf", SNFConfig, family="flow")
def run_snf(
    key: Array, target: Target, config: SNFConfig, layout: ChainLayout | None = None
) -> Draws:
    """Stochastic normalizing flow (Wu, Koehler and Noe 2020, "Stochastic Normalizing
    Flows", NeurIPS): flowjax coupling blocks interleaved with MALA / random-walk
    Metropolis / unadjusted Langevin blocks targeting ``q0^(1-lambda_k) p^lambda_k``
    (their interpolated energies), trained end to end on the path KL (their KL loss; the
    forward/ML loss when the
    target has exact samples, or a mix), then ``num_samples`` paths per run weighted by
    the exact path weight ``w = p(x) P_b(x -> z) / (q0(z) P_f(z -> x))`` (their importance
    weights, with the Delta S of flow, Langevin and Metropolis blocks).

    Result: positions (runs, num_samples, dim) with ``log_weights``; ``log_z`` per run is
    ``log mean w`` (unbiased for Z), pooled with a standard error by Result; the weights'
    ESS is in ``bw.summary``; ``stats.acceptance_rate`` is each path's mean Metropolis
    acceptance; ``path_stats`` holds the loss curve (``loss``, ``elbo``,
    ``forward_loss``; NaN after the last step taken) and, with the plateau rule, the
    per-step flags ``trained`` (the steps taken) and ``plateau`` (True at the step where
    the rule stopped training; never True: the ``num_warmup`` cap came first, so the SNF
    may be under-trained). Training stops at a loss plateau (Prechelt 1998's UP rule,
    :class:`~.training.PlateauRule`). Cost (exact, :func:`snf_cost` of the steps taken):
    target evaluations and gradients of training (back-propagated) and sampling.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("banana", "snf", num_chains=2, num_samples=50, num_warmup=5,
        ...               num_blocks=1, hidden_width=8, num_mc_samples=4, num_mcmc_steps=2,
        ...               stochastic="rwm")
        >>> r.log_weights.shape, r.log_z_se is not None
        ((2, 50), True)
    """

    def one_run(run_key: Array) -> tuple[Any, ...]:
        train_key, draw_key = jax.random.split(run_key)
        snf, trace = train_snf(train_key, target, config)
        x, log_w, lp, acceptance = sample_paths(
            snf, target.log_density, draw_key, config.num_samples
        )
        return x, log_w, lp, acceptance, log_mean_exp(log_w), trace

    x, log_w, lp, acceptance, log_z, trace = run_chains(key, config.num_chains, one_run, layout)
    n_grad, n_eval = snf_cost(config, training_status(trace)[0])
    path_names = ("loss", "elbo", "forward_loss", "skipped", "trained", "plateau")
    return Draws(
        positions=x,
        stats={"lp": lp, "acceptance_rate": acceptance},
        log_weights=log_w,
        log_z=log_z,
        path_stats={name: trace[name] for name in path_names if name in trace},
        n_grad_evals=n_grad,
        n_logdensity_evals=n_eval,
    )
