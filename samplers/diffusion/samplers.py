"""The diffusion samplers ``pis`` and ``dds``, and the run that ``gfn_tb``
(:mod:`.balance`) and ``cmcd`` (:mod:`.annealed`) share with them: per run, a control
trained on paths (of :mod:`.paths` or of the annealed kernels), then ``num_samples``
paths whose ends are importance weighted.

Trust by default: each run first fits the flows' Gaussian pilot (a widened, mass-covering
forward-chi^2 fit, :func:`~bayeswb.samplers.importance.pilot.gaussian_pilot`) and runs its
chain in the coordinates ``y = (x - loc) / scale`` that the pilot whitens, where the
reference's end ``N(0, I)`` covers the target; the density there is
``pi(loc + scale y) prod(scale)``, so Z is unchanged. Training stops at a loss plateau
(the flows' :class:`~bayeswb.samplers.flows.training.PlateauRule`) under the ``num_warmup``
cap, and the verdict reads whether it did (``training_converged``), besides the weights'
ESS and PSIS k-hat.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from bayeswb.core.config import (
    boolean,
    non_negative_int,
    option,
    positive,
    positive_int,
)
from bayeswb.core.draws import Count, Draws
from bayeswb.core.target import Target
from bayeswb.core.whitening import Whitening
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers import register
from bayeswb.samplers.diffusion.paths import (
    Control,
    Paths,
    Reference,
    brownian_reference,
    ornstein_uhlenbeck_reference,
    simulate,
)
from bayeswb.samplers.flows.fitting import PILOT_MC_SAMPLES
from bayeswb.samplers.flows.training import (
    PlateauTraining,
    plateau_rule,
    train_flow,
    training_status,
)
from bayeswb.samplers.importance import weighted_output
from bayeswb.samplers.importance.pilot import pilot_evaluations_of, pilot_whitening
from bayeswb.samplers.smc.genealogy import relative_variance as relative_variance_of_smc

Array = jax.Array
LossFn = Callable[..., tuple[Array, dict[str, Array]]]


@dataclasses.dataclass(frozen=True)
class DiffusionConfig(PlateauTraining):
    """The options every diffusion sampler shares: the path, the control network, its
    training, and the pilot."""

    num_steps: int = option(100, positive_int, "K: steps of the discretised SDE on [0, 1]")
    hidden_width: int = option(64, positive_int, "width of the control's hidden layers")
    hidden_depth: int = option(2, positive_int, "hidden layers of the control's networks")
    langevin_control: bool = option(
        True,
        boolean,
        "add a learnt function of t times the target's score to the control (one target "
        "gradient per step of every path)",
    )
    batch_size: int = option(64, positive_int, "paths per training step")
    learning_rate: float = option(1e-3, positive, "Adam learning rate of the control")
    max_grad_norm: float = option(10.0, positive, "gradient clipping (global norm)")
    pilot_steps: int = option(
        300,
        non_negative_int,
        "Adam steps of the Gaussian pilot whose loc and scale whiten the chain's "
        "coordinates (0: loc 0, scale 1)",
    )
    psis: bool = option(False, boolean, "report Pareto-smoothed log weights (log Z stays raw)")
    progress_bar: bool = option(True, boolean, "tqdm bar with the loss while training")


def whitening(key: Array, target: Target, config: DiffusionConfig) -> Whitening:
    """The pilot's loc and (widened) scale, or loc 0 and scale 1 with ``pilot_steps=0``."""
    return pilot_whitening(key, target, config.pilot_steps, PILOT_MC_SAMPLES)


class DiffusionMethod(NamedTuple):
    """One registered diffusion sampler.

    build:     ``build(key, logdensity_fn, dim, config) -> model``, the untrained
               trainable module (for the run's whitened density)
    simulate:  ``simulate(key, model, logdensity_fn, config, n, dim, keep) -> Paths``
    loss:      ``loss(method, logdensity_fn, config, dim) -> loss_fn`` for ``train_flow``
               (None: the method has its own ``train``)
    path_cost: ``path_cost(config) -> (training, sampling)``: target gradients of one
               training path and of one sampled path
    end_evaluations: target densities of a training path not counted as gradients
               (trajectory balance evaluates the end without back-propagating it)
    draw_end_evaluations: target densities of a drawn path not counted as gradients:
               1, its end's, unless its gradients include the end (cmcd, scld: 0)
    start_grads: ``start_grads(config) -> int``, target gradients ``build`` spends per run
    train:     ``train(key, logdensity_fn, dim, config, method) -> (model, trace)``, the
               method's own training loop (None: :func:`train_model`'s optax loop)
    step_grads: ``step_grads(config) -> int``, target gradients of a training step
               besides its ``batch_size`` paths (gfn_tb's local search and replayed paths)
    sample:    ``sample(key, model, logdensity_fn, config, n, dim) -> Paths``, the
               drawn sample's paths when they are not ``simulate``'s (cmcd resamples)
    """

    name: str
    build: Callable[[Array, Callable, int, Any], Any]
    simulate: Callable[..., Paths]
    loss: Callable[[Any, Callable, Any, int], LossFn] | None
    path_cost: Callable[[Any], tuple[int, int]]
    end_evaluations: int = 0
    draw_end_evaluations: int = 1
    start_grads: Callable[[Any], int] = lambda config: 0
    train: Callable[..., tuple[Any, dict[str, Array]]] | None = None
    step_grads: Callable[[Any], int] = lambda config: 0
    sample: Callable[..., Paths] | None = None


def reverse_kl_loss(
    method: DiffusionMethod, logdensity_fn: Callable, config: DiffusionConfig, dim: int
) -> LossFn:
    """``E_q[log q(path) - log p(path)] = -E_q[log w]``, the KL of the sampler's path law
    from the target's up to log Z (the objective of Zhang and Chen 2022, Vargas et al.
    2023 and Vargas et al. 2024), on ``batch_size`` reparametrised paths: the
    gradient flows through the positions into the target."""

    def loss(params: Any, static: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        model = eqx.combine(params, static)
        paths = method.simulate(key, model, logdensity_fn, config, config.batch_size, dim)
        elbo = jnp.mean(paths.log_weights)
        return -elbo, {"elbo": elbo}

    return loss


def build_control(
    key: Array, logdensity_fn: Callable, dim: int, config: DiffusionConfig
) -> Control:
    """The untrained control (u = 0: the reference chain)."""
    return Control(key, dim, config.hidden_width, config.hidden_depth, config.langevin_control)


def on_reference(reference: Callable[[int], Reference]) -> Callable[..., Paths]:
    """``simulate`` of a control (or a model holding one) on ``reference(num_steps)``."""

    def run(
        key: Array, model: Any, logdensity_fn: Callable, config: Any, n: int, dim: int,
        keep: bool = False,
    ) -> Paths:  # fmt: skip
        control = getattr(model, "control", model)  # a control, or a model holding one
        return simulate(key, control, logdensity_fn, reference(config.num_steps), n, dim, keep)

    return run


def score_cost(config: DiffusionConfig) -> tuple[int, int]:
    """A reference-chain path: one gradient per step with the Langevin control, and in
    reverse-KL training one more, the end's log density back-propagated."""
    per_path = config.num_steps if config.langevin_control else 0
    return per_path + 1, per_path


PIS = DiffusionMethod(
    "pis", build_control, on_reference(brownian_reference), reverse_kl_loss, score_cost
)
DDS = DiffusionMethod(
    "dds", build_control, on_reference(ornstein_uhlenbeck_reference), reverse_kl_loss, score_cost
)


def optimizer(
    config: DiffusionConfig, log_z_learning_rate: float | None = None
) -> optax.GradientTransformation:
    """Clipped Adam; a model with a learnt ``log_z`` (trajectory balance) gives it its own
    learning rate (gfn_tb's ``log_z_learning_rate``, 0.1: Adam moves a parameter by about
    its learning rate per step, and log Z starts at 0, often tens of units from its
    value)."""
    adam = optax.adam(config.learning_rate)
    if log_z_learning_rate is not None:

        def labels(params: Any) -> Any:
            names = jax.tree.map(lambda _: "control", params)
            return eqx.tree_at(lambda m: m.log_z, names, "log_z")

        adam = optax.multi_transform(
            {"control": adam, "log_z": optax.adam(log_z_learning_rate)}, labels
        )
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)


def train_model(
    key: Array, logdensity_fn: Callable, dim: int, config: DiffusionConfig, method: DiffusionMethod
) -> tuple[Any, dict[str, Array]]:
    """Build and train one method's model on the (whitened) density by ``method.loss``;
    returns it and the training trace (``loss``, ``elbo``, ``skipped``, and with the
    plateau rule ``trained`` and ``plateau``)."""
    assert method.loss is not None, f"{method.name} trains by its own loop"
    init_key, train_key = jax.random.split(key)
    model, _, trace = train_flow(
        train_key,
        method.build(init_key, logdensity_fn, dim, config),
        method.loss(method, logdensity_fn, config, dim),
        config.num_warmup,
        optimizer(config),
        progress=method.name if config.progress_bar else None,
        plateau=plateau_rule(config),
    )
    return model, trace


def diffusion_cost(
    config: DiffusionConfig, method: DiffusionMethod, steps_trained: Array
) -> tuple[Count, Count]:
    """``(n_grad_evals, n_logdensity_evals)`` of a whole run, all runs, exact.

    A path costs the gradients of ``method.path_cost`` (training, sampling), a
    training path ``method.end_evaluations`` densities more and a drawn one
    ``method.draw_end_evaluations``; a training step ``method.step_grads`` gradients
    besides its paths; a run's start ``method.start_grads``. Every gradient also
    evaluates the density; the pilot's evaluations are added (none for its
    ``target.init`` draws).

    Example:
        >>> config = DiffusionConfig(num_chains=2, num_samples=10, num_steps=5, batch_size=4)
        >>> grads, evals = diffusion_cost(config, PIS, jnp.array([3, 3]))
        >>> int(grads), int(evals) - int(grads)
        (244, 42646)
    """
    training, sampling = method.path_cost(config)
    draws = config.num_chains * config.num_samples
    per_step = config.batch_size * training + method.step_grads(config)
    grads = Count.of(steps_trained, each=per_step)
    grads = grads + Count.of(draws * sampling)
    grads = grads + Count.of(config.num_chains * method.start_grads(config))
    evals = grads + Count.of(draws * method.draw_end_evaluations)
    if method.end_evaluations:
        evals = evals + Count.of(steps_trained, each=config.batch_size * method.end_evaluations)
    pilot = pilot_evaluations_of(config.num_chains, config.pilot_steps, PILOT_MC_SAMPLES)
    evals = evals + Count.of(pilot)
    return grads, evals


def run_diffusion(
    key: Array,
    target: Target,
    config: DiffusionConfig,
    method: DiffusionMethod,
    layout: ChainLayout | None = None,
) -> Draws:
    """Per run: whiten by the pilot, train the control, weight ``num_samples`` paths'
    ends; the runs are independent (sharded over ``layout``'s mesh).

    Result: positions (runs, num_samples, dim) with ``log_weights``; per run ``log_z =
    log mean w`` (unbiased for Z), pooled with a standard error by Result; ``path_stats``
    holds per run ``elbo`` (mean log w), ``ess``, ``pareto_k`` (PSIS k-hat, < 0.7 reads
    as reliable), ``training_steps`` and ``training_converged`` (False: the
    ``num_warmup`` cap came before the plateau rule), and where the paths were
    resampled (cmcd) ``lowest_path_ess`` (the weights' lowest ESS after any step) and
    ``resamplings``, with log Z's variance from the paths' genealogy (Lee and
    Whiteley); ``warmup_sample_stats`` the
    training curve per step; ``sample_stats.lp`` the target's log density per draw.
    Cost (:func:`diffusion_cost`): exact target gradients and evaluations.
    """

    def one_run(run_key: Array) -> tuple[Any, ...]:
        pilot_key, train_key, draw_key = jax.random.split(run_key, 3)
        frame = whitening(pilot_key, target, config)
        logdensity_fn = frame.log_density(target.log_density)
        train = method.train or train_model
        model, trace = train(train_key, logdensity_fn, target.dim, config, method)
        sample = method.sample or method.simulate
        paths = sample(draw_key, model, logdensity_fn, config, config.num_samples, target.dim)
        positions = frame.unwhiten(paths.ends)
        good = jnp.isfinite(paths.log_weights) & jnp.all(jnp.isfinite(positions), axis=1)
        log_weights = jnp.where(good, paths.log_weights, -jnp.inf)
        lp = jnp.where(good, paths.terminal_lp - frame.log_jacobian, -jnp.inf)
        positions = jnp.where(good[:, None], positions, 0.0)
        return positions, log_weights, lp, trace, paths.resampling

    positions, log_weights, lp, trace, resampling = run_chains(
        key, config.num_chains, one_run, layout
    )
    out = weighted_output(log_weights, config.psis)
    diagnostics = out.diagnostics
    relative_variance = out.relative_variance
    if resampling is not None:  # the weights of resampled paths are not independent
        resamplings = jnp.sum(resampling.resampled, axis=1)
        diagnostics["lowest_path_ess"] = jnp.min(resampling.ess, axis=1, keepdims=True)
        diagnostics["resamplings"] = resamplings[:, None]
        relative_variance = jax.vmap(relative_variance_of_smc)(
            log_weights, resampling.family, resamplings
        )
    diagnostics["elbo"] = jnp.mean(log_weights, axis=1, keepdims=True)
    steps_trained, converged = training_status(trace)
    diagnostics["training_steps"] = steps_trained[:, None]
    diagnostics["training_converged"] = converged[:, None]
    n_grad, n_eval = diffusion_cost(config, method, steps_trained)
    return Draws(
        positions=positions,
        stats={"lp": lp},
        log_weights=out.log_weights,
        log_z=out.log_z,
        log_z_relative_variance=relative_variance,
        warmup_stats={} if config.num_warmup == 0 else trace,
        path_stats=diagnostics,
        n_grad_evals=n_grad,
        n_logdensity_evals=n_eval,
    )


@register("pis", DiffusionConfig, family="flow")
def run_pis(
    key: Array, target: Target, config: DiffusionConfig, layout: ChainLayout | None = None
) -> Draws:
    """Path Integral Sampler (Zhang and Chen 2022, "Path Integral Sampler: a stochastic
    control approach for sampling", ICLR): Brownian motion from 0 on [0, 1] controlled
    by a learnt drift (Euler-Maruyama in ``num_steps`` steps,
    :func:`~.paths.brownian_reference`), trained by the path KL (control energy plus
    terminal cost) on
    reparametrised paths, then ``num_samples`` paths' ends weighted by the exact path
    weight of the discretised chain (:mod:`.paths`, the paper's importance weights in
    discrete time). The control is their Langevin parametrisation by default.
    Result and cost: as :func:`run_diffusion`'s.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("banana", "pis", num_chains=2, num_samples=50, num_warmup=5,
        ...               num_steps=10, hidden_width=8, batch_size=8, pilot_steps=10)
        >>> r.log_weights.shape, r.log_z_se is not None
        ((2, 50), True)
    """
    return run_diffusion(key, target, config, PIS, layout)


@register("dds", DiffusionConfig, family="flow")
def run_dds(
    key: Array, target: Target, config: DiffusionConfig, layout: ChainLayout | None = None
) -> Draws:
    """Denoising Diffusion Sampler (Vargas, Grathwohl and Doucet 2023, "Denoising
    diffusion samplers", ICLR): the stationary OU chain of N(0, I) run from noise
    (:func:`~.paths.ornstein_uhlenbeck_reference`) with a learnt drift
    ``2 (1 - sqrt(1 - alpha_k)) f(x, t)`` that undoes the noising of the target
    (their discrete-time sampler), trained by the KL of the path laws
    (reparametrised), then ``num_samples`` paths' ends weighted by the
    exact discrete-time path weight (:mod:`.paths`). ``f`` is the Langevin
    parametrisation by default.
    Result and cost: as :func:`run_diffusion`'s.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("banana", "dds", num_chains=2, num_samples=50, num_warmup=5,
        ...               num_steps=10, hidden_width=8, batch_size=8, pilot_steps=10)
        >>> r.log_weights.shape
        (2, 50)
    """
    return run_diffusion(key, target, config, DDS, layout)
