"""Divide-and-conquer sampling: sub-posteriors on shards of the data, then fused into draws
of the full posterior (``fusion``, and ``consensus`` as the simple baseline).

A model with i.i.d. observations (``target.minibatch``: ``log pi(x) = log p(x) + sum_i log
p(d_i | x)``) splits into ``S`` sub-posteriors, one per shard ``D_s`` of the rows,

    pi_s(x) ∝ p(x)^{1/S} prod_{i in D_s} p(d_i | x),    so that    pi(x) ∝ prod_s pi_s(x)

(Scott et al. 2016, eq. 1). Rows go to shards in turn (row ``i`` to shard ``i mod S``),
so data sorted by class or time spread over every shard; the last shards are padded with
masked copies of early rows when ``S`` does not divide ``N``. Each sub-posterior is sampled
by a registered sampler, ``subposterior_sampler`` (default NUTS: blackjax's ``nuts`` after
its ``window_adaptation``), one chain or run per shard and run, with its own defaults and
``subposterior_options``; a weighted sampler's draws (smc, is, ...) are resampled to equal
weights. The sampler's ``run`` is called for a sub-posterior target inside the program;
the shards run in turn on a device (``lax.map``), and over devices when the run has several
(``bw.sample(..., devices=...)``: the devices the chains would be sharded over run the
data shards instead, ``gcd(num_shards, devices)`` of them, through ``jax.shard_map``;
after ``jax.distributed.initialize``, those of every process). A shard's sub-posterior
chain then stays on its device; only draws (and the fusion's per-shard log densities)
cross between devices. The rows themselves are constants of the compiled program, held
whole by every process and device: sharding spreads the work, not the data's memory.

Fusing. Each shard's draws give a Gaussian fit ``N(mu_s, Sigma_s)`` (sample mean and
covariance); their product is the Gaussian

    Lambda = sum_s W_s,  W_s = Sigma_s^{-1},    mu = Lambda^{-1} sum_s W_s mu_s,

the full posterior exactly when every sub-posterior is Gaussian.

- ``consensus`` (consensus Monte Carlo; Scott, Blocker, Bonassi, Chipman, George and
  McCulloch 2016, "Bayes and big data: the consensus Monte Carlo algorithm", eq. 2 with
  the weights of their section 2.1): the g-th draw is the precision-weighted average of the
  shards' g-th draws, ``x_g = Lambda^{-1} sum_s W_s x_{s,g}``. Exact for Gaussian
  sub-posteriors (up to the weights' estimation error), biased otherwise, with no weights
  to show it: ``log_q`` (the Gaussian product) beside ``lp`` lets the verdict test how far
  the full posterior is from that Gaussian, as for variational fits: PSIS k-hat of
  ``lp - log_q``, and ``importance_shift``, whether those weights would move the means.
- ``fusion``: the product (by default a Student-t of that location and scale, for heavier
  tails than any one fit) is the reference of an adaptive tempered SMC run to the full
  posterior ``pi(x) ∝ prod_s pi_s(x)``, each shard's term computed where its data are.
  This is the merge step of divide-and-conquer SMC (Lindsten, Johansen, Naesseth,
  Kirkpatrick, Schön, Aston and Bouchard-Côté 2017, "Divide-and-conquer with sequential
  Monte Carlo", JCGS 26(3): propose from what the children give, weight by the parent's
  target over the proposal, with their annealed merge when one importance step is too
  far) for a parameter all shards share, where the children's particles cannot be joined
  directly and inform the reference instead. The tempering,
  resampling and MCMC moves are smc's (Del Moral, Doucet and Jasra 2006), so the draws
  are exact as the particles grow, whatever the sub-posteriors' shapes, and each run gives
  ``log Z`` of the full model (unbiased in ``Z``) and smc's verdict (weight collapse,
  spread of log Z across runs). A single importance step from the product (the plain
  merge) was measured first: on logistic_breast_cancer with four shards its k-hat reached
  1.0 and its ESS fell to 6-42 of 1000, so the annealed merge is the default.

The Monte Carlo fusion of Dai, Pollock and Roberts (2019), which joins the shards' draws
through Brownian bridges, is ``mc_fusion`` (:mod:`samplers.mc_fusion`): exact for any
sub-posterior shapes, but only for a few parameters.

Cost, in sub-posterior evaluations (each over about ``N / S`` rows; divide by ``S`` for
full-data equivalents): the sub-posterior sampler's own exact counts, summed over the
shards (for NUTS, one gradient at a chain's start and one per leapfrog step, warmup
included), plus ``S`` per full-data evaluation: ``fusion``'s annealing, and ``lp`` of
consensus's draws. These counts are exact for the shards' data terms
(tests/samplers/test_fusion.py counts the rows each shard evaluates). Where the
annealing differentiates the full log density, the prior term, the same in every
shard, runs once rather than ``S`` times (JAX moves a loop-invariant term out of the
loop over shards), so for a model whose prior is costly the count overstates that part.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.smc.resampling import systematic
from jax.sharding import Mesh, PartitionSpec

from bayeswb.core.config import (
    SamplerConfig,
    non_negative_int,
    one_of,
    option,
    optional,
    positive,
    positive_int,
    unit_interval,
)
from bayeswb.core.draws import Count, Draws
from bayeswb.core.sampler import SAMPLERS, SamplerSpec
from bayeswb.core.target import MinibatchData, Target
from bayeswb.core.weights import kish_ess, safe_log_weights
from bayeswb.execution.driver import ChainLayout, run_chains
from bayeswb.samplers import register
from bayeswb.samplers.importance.proposals import gaussian_or_student_t
from bayeswb.samplers.smc.annealing import run_annealing
from bayeswb.samplers.smc.references import Reference
from bayeswb.samplers.smc.settings import AnnealingSettings

Array = jax.Array


class Shards(NamedTuple):
    """The data split into ``S`` shards of ``m = ceil(N / S)`` rows: ``data`` leaves
    ``(S, m, ...)``, ``mask`` ``(S, m)`` (False on padding rows)."""

    data: Any
    mask: Any


def split_rows(data: Any, num_shards: int) -> Shards:
    """Row ``i`` of every leaf of ``data`` to shard ``i mod num_shards``, padded with
    masked copies of the first rows (on the host: numpy arrays).

    Example:
        >>> shards = split_rows(jnp.arange(5.0), 2)
        >>> shards.data.tolist(), shards.mask.tolist()
        ([[0.0, 2.0, 4.0], [1.0, 3.0, 0.0]], [[True, True, True], [True, True, False]])
    """
    num_data = int(jax.tree.leaves(data)[0].shape[0])
    if not 1 <= num_shards <= num_data:
        raise ValueError(f"num_shards must be between 1 and the {num_data} data rows")
    rows = math.ceil(num_data / num_shards)
    index = np.arange(rows * num_shards)
    order = (index % num_data).reshape(rows, num_shards).T
    mask = (index < num_data).reshape(rows, num_shards).T
    return Shards(jax.tree.map(lambda leaf: np.asarray(leaf)[order], data), mask)


def subposterior_log_density(
    minibatch: MinibatchData, num_shards: int
) -> Callable[[Array, Any, Array], Array]:
    """``log_density(x, shard_data, shard_mask)``: ``log p(x) / S`` plus the shard's
    unmasked rows' log likelihoods."""

    def log_density(x: Array, shard: Any, mask: Array) -> Array:
        per_row = jax.vmap(minibatch.log_likelihood_per_datum, (None, 0))(x, shard)
        return minibatch.log_prior(x) / num_shards + jnp.sum(jnp.where(mask, per_row, 0.0))

    return log_density


class SubposteriorDraws(NamedTuple):
    """One shard's sub-posterior run: ``positions`` ``(n, d)`` equally weighted (a
    weighted sampler's draws resampled), ``stats`` the shard's ``shard_...`` path stats
    (scalars), and the run's exact cost counts."""

    positions: Array
    stats: dict[str, Array]
    grads: Count
    logdensity_evals: Count


def run_subposterior(
    key: Array, spec: SamplerSpec, config: SamplerConfig, target: Target
) -> SubposteriorDraws:
    """One run of the registered sampler ``spec`` (``config``: one chain or run) on a
    shard's sub-posterior ``target``. Weighted draws are resampled (systematic) to as many
    equally weighted ones; ``stats``: the run's divergences and mean acceptance rate where
    its draws record them, and the Kish ESS of its weights where it has weights."""
    run_key, resample_key = jax.random.split(key)
    draws = spec.run(run_key, target, config, None)
    positions = draws.positions[0]
    stats: dict[str, Array] = {}
    if "diverging" in draws.stats:
        stats["shard_divergences"] = jnp.sum(draws.stats["diverging"][0])
    if "acceptance_rate" in draws.stats:
        stats["shard_acceptance_rate"] = jnp.mean(draws.stats["acceptance_rate"][0])
    if draws.log_weights is not None:
        log_w = draws.log_weights[0]
        stats["shard_ess"] = kish_ess(log_w)
        weights = jax.nn.softmax(safe_log_weights(log_w))
        positions = positions[systematic(resample_key, weights, positions.shape[0])]
    return SubposteriorDraws(
        positions, stats, Count.of(draws.n_grad_evals), Count.of(draws.n_logdensity_evals)
    )


def shard_mesh(layout: ChainLayout | None, num_shards: int) -> Mesh | None:
    """A one-axis mesh (``"shard"``) over ``gcd(num_shards, devices)`` of the devices the
    layout would shard the chains over (those of every process after
    ``jax.distributed.initialize``); None (shards in turn, one device) for one device."""
    if layout is None or layout.mesh is None:
        return None
    devices = list(layout.mesh.devices.ravel())
    used = math.gcd(num_shards, len(devices))
    return None if used <= 1 else Mesh(np.array(devices[:used]), ("shard",))


def map_shards(fn: Callable[..., Any], mesh: Mesh | None, per_shard: tuple, shared: tuple) -> Any:
    """``fn(*shard_slices, *shared)`` for every shard (leading axis of each ``per_shard``
    pytree), one shard after another (``lax.map``), on each of ``mesh``'s devices if one is
    given; outputs keep the shard axis.

    In turn rather than vmapped: a shard's MCMC loop does not wait for the slowest of the
    others (consensus on logistic_breast_cancer, 4 shards and 4 runs on one CPU device:
    the same draws, sampled in 2.8 s against 3.5-3.9 s vmapped), and only one shard's
    working set is live on a device at a time."""

    def in_turn(*sliced: Any) -> Any:
        return jax.lax.map(
            lambda args: fn(*args, *sliced[len(per_shard) :]), sliced[: len(per_shard)]
        )

    if mesh is None:
        return in_turn(*per_shard, *shared)
    specs = (PartitionSpec("shard"),) * len(per_shard) + (PartitionSpec(),) * len(shared)
    sharded = jax.shard_map(
        in_turn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec("shard"), check_vma=False
    )
    return sharded(*per_shard, *shared)


class GaussianProduct(NamedTuple):
    """The product of the shards' Gaussian fits: ``N(mean, covariance)``; ``weights`` are
    the shards' precisions ``W_s`` ``(S, d, d)``."""

    mean: Array
    covariance: Array
    weights: Array


def gaussian_product(draws: Array) -> GaussianProduct:
    """The product of Gaussian fits to each shard's draws ``(S, n, d)`` (module docstring).

    Example:
        >>> sd = jnp.array([1.0, 2.0])[:, None, None]
        >>> draws = sd * jax.random.normal(jax.random.key(0), (2, 4000, 1))
        >>> product = gaussian_product(draws)
        >>> round(float(product.covariance[0, 0]), 1)  # 1 / (1/1 + 1/4)
        0.8
    """
    mean = jnp.mean(draws, axis=1)
    centred = draws - mean[:, None]
    covariance = jnp.einsum("snd,sne->sde", centred, centred) / (draws.shape[1] - 1)
    eye = jnp.eye(draws.shape[-1], dtype=draws.dtype)
    weights = jnp.linalg.solve(covariance, jnp.broadcast_to(eye, covariance.shape))
    combined = jnp.linalg.inv(jnp.sum(weights, axis=0))
    combined = 0.5 * (combined + combined.T)
    product_mean = combined @ jnp.einsum("sde,se->d", weights, mean)
    return GaussianProduct(product_mean, combined, weights)


def consensus_average(product: GaussianProduct, draws: Array) -> Array:
    """Scott et al. (2016, eq. 2): draw g is ``Lambda^{-1} sum_s W_s x_{s,g}``; ``draws``
    ``(S, n, d)`` -> ``(n, d)``."""
    return jnp.einsum("sde,sne->nd", product.weights, draws) @ product.covariance.T


# --------------------------------------------------------------------------- the samplers


def _option_pairs(value: Any) -> str | None:
    ok = isinstance(value, tuple) and all(
        isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str) for pair in value
    )
    return None if ok else "must be a dict of option names to values"


def _sampler_name(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be the name of a registered sampler"


# what the sharded sampler sets in the sub-posterior sampler's config itself
_SET_BY_SHARDS = ("num_chains", "num_samples", "num_warmup")


@dataclasses.dataclass(frozen=True)
class ShardedConfig(SamplerConfig):
    """Sub-posteriors on ``num_shards`` shards of the data, each sampled by a registered
    sampler (``subposterior_sampler``, one chain or run per shard; ``num_warmup`` its
    warmup or tuning length, by default the sampler's own; ``subposterior_options`` its
    other options, e.g. ``{"step_size": 0.1}``)."""

    # None here means "the sub-posterior sampler's own default", which only it knows
    num_warmup: int | None = option(  # type: ignore[assignment]
        None, optional(non_negative_int), "sub-posterior warmup (None: its sampler's default)"
    )
    num_shards: int = option(4, positive_int, "shards of the data rows (at most N)")
    subposterior_sampler: str = option("nuts", _sampler_name, "registered sampler of each shard")
    subposterior_options: Any = option(
        (), _option_pairs, "the sub-posterior sampler's options (a dict)"
    )

    def __post_init__(self) -> None:
        options = self.subposterior_options
        if isinstance(options, dict):  # kept as sorted pairs: hashable, saved as given
            object.__setattr__(self, "subposterior_options", tuple(sorted(options.items())))
        super().__post_init__()
        try:
            spec = self.subposterior_spec()
        except KeyError as error:  # the registry's unknown-name error, naming this option
            raise ValueError(f"subposterior_sampler: {error.args[0]}") from None
        try:
            self.subposterior_config()
        except ValueError as error:
            raise ValueError(f"subposterior_options (for {spec.name}): {error}") from None

    @property
    def draws_per_shard(self) -> int:
        """Draws of each shard's sub-posterior run."""
        return self.num_samples

    def subposterior_spec(self) -> SamplerSpec:
        """The registered sub-posterior sampler; one that needs a minibatch interface
        (the shards' targets have none) is a ValueError."""
        spec = SAMPLERS.get(self.subposterior_sampler)
        if spec.needs_minibatch:
            raise ValueError(
                f"subposterior_sampler {spec.name!r} needs a minibatch interface, which a "
                "shard's sub-posterior does not have: pick one that runs on a log density"
            )
        return spec

    def subposterior_config(self) -> SamplerConfig:
        """The sub-posterior sampler's config: one chain or run of ``draws_per_shard``
        draws after ``num_warmup`` warmup steps (if set), with ``subposterior_options``."""
        options = dict(self.subposterior_options)
        for name in _SET_BY_SHARDS:
            if name in options:
                raise ValueError(
                    f"subposterior_options cannot set {name!r}: it is set from the "
                    "sharded run's own options"
                )
        options.update(num_chains=1, num_samples=self.draws_per_shard)
        if self.num_warmup is not None:
            options.update(num_warmup=self.num_warmup)
        return self.subposterior_spec().make_config(**options)


@dataclasses.dataclass(frozen=True)
class ConsensusConfig(ShardedConfig):
    """Consensus Monte Carlo: ``num_samples`` draws per shard and run, averaged."""


@dataclasses.dataclass(frozen=True)
class FusionConfig(ShardedConfig, AnnealingSettings):
    """Fusion: the shards' sub-posterior fits give the reference of an SMC run to the full
    posterior. ``num_warmup`` is the sub-posterior runs' warmup; the annealing options
    (``move``, ``step_size``, ``num_mcmc_steps``, ...) are smc's, whose step tunes itself
    to the move's own acceptance target."""

    subposterior_draws: int = option(1000, positive_int, "draws per shard for its fit")
    reference_family: str = option(
        "student_t", one_of("gaussian", "student_t"), "the product as Gaussian or Student-t"
    )
    df: float = option(5.0, positive, "Student-t degrees of freedom")
    reference_scale: float = option(1.0, positive, "factor on the product's scale")
    ess_threshold: float = option(0.5, unit_interval, "resample when the ESS falls below this")

    @property
    def draws_per_shard(self) -> int:
        return self.subposterior_draws


class ShardedTarget(NamedTuple):
    """A target's data in shards, on ``mesh``'s devices if one is given."""

    target: Target
    shards: Shards
    log_density: Callable[[Array, Any, Array], Array]  # (x, shard, mask) -> pi_s(x)
    mesh: Mesh | None

    def shard_target(self, shard: Any, mask: Array) -> Target:
        """One shard's sub-posterior as a target (no ground truth, no minibatch interface)."""
        return Target(
            name=f"{self.target.name} (a shard)",
            dim=self.target.dim,
            log_density=lambda x: self.log_density(x, shard, mask),
            constrain=self.target.constrain,
            init=self.target.init,
        )

    def subposteriors(self, key: Array, config: ShardedConfig) -> SubposteriorDraws:
        """Every shard's sub-posterior run (leaves with a leading shard axis)."""
        spec, shard_config = config.subposterior_spec(), config.subposterior_config()

        def one_shard(shard_key: Array, shard: Any, mask: Array) -> SubposteriorDraws:
            return run_subposterior(shard_key, spec, shard_config, self.shard_target(shard, mask))

        keys = jax.random.split(key, config.num_shards)
        per_shard = (keys, self.shards.data, self.shards.mask)
        return map_shards(one_shard, self.mesh, per_shard, ())

    def full_log_density(self, x: Array) -> Array:
        """``sum_s log pi_s(x)``, each term where its shard's data are."""
        per_shard = (self.shards.data, self.shards.mask)
        terms = map_shards(
            lambda shard, mask, point: self.log_density(point, shard, mask),
            self.mesh,
            per_shard,
            (x,),
        )
        return jnp.sum(terms)


def sharded_target(
    target: Target, config: ShardedConfig, layout: ChainLayout | None
) -> ShardedTarget:
    """``target``'s rows in ``config.num_shards`` shards; the errors a user can fix."""
    if target.minibatch is None:
        raise ValueError(
            f"target {target.name!r} has no minibatch interface (i.i.d. data rows); "
            "fusion and consensus split the rows into shards"
        )
    num_draws = config.draws_per_shard
    if num_draws <= target.dim:
        raise ValueError(
            f"{num_draws} draws per shard cannot fit a {target.dim}-d covariance: "
            f"take more than {target.dim}"
        )
    return ShardedTarget(
        target,
        split_rows(target.minibatch.data, config.num_shards),
        subposterior_log_density(target.minibatch, config.num_shards),
        shard_mesh(layout, config.num_shards),
    )


def _runs_layout(layout: ChainLayout | None) -> ChainLayout | None:
    """The runs' layout: batches as given, never sharded (the shards hold the devices)."""
    return None if layout is None else layout._replace(mesh=None)


@register("consensus", ConsensusConfig, family="baseline", needs_minibatch=True)
def run_consensus(
    key: Array, target: Target, config: ConsensusConfig, layout: ChainLayout | None = None
) -> Draws:
    """Consensus Monte Carlo (Scott et al. 2016, eq. 2; section 2.1's weights):
    ``subposterior_sampler`` (NUTS) on each of ``num_shards`` sub-posteriors
    ``p(x)^{1/S} p(D_s | x)``, one chain per shard and run, and the precision-weighted
    average of the shards' draws (module docstring). ``stats`` has ``lp`` and ``log_q``
    (the shards' Gaussian product) for the verdict's k-hat; ``path_stats`` each shard's
    divergences and acceptance rate (or, for a weighted sampler, its weights' ESS).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("logistic_breast_cancer", "consensus", num_chains=2,
        ...               num_samples=200, num_warmup=200)
        >>> r.idata.posterior["coefficients"].shape, r.idata.path_stats["shard_divergences"].shape
        ((2, 200, 30), (2, 4))
    """
    sharded = sharded_target(target, config, layout)

    def one_run(run_key: Array) -> tuple[Any, ...]:
        runs = sharded.subposteriors(run_key, config)
        product = gaussian_product(runs.positions)
        positions = consensus_average(product, runs.positions)
        lp = jax.vmap(sharded.full_log_density)(positions)
        scale = jnp.linalg.cholesky(product.covariance)
        log_q = gaussian_or_student_t(product.mean, scale, "gaussian", 1.0).log_prob(positions)
        return positions, lp, log_q, runs

    positions, lp, log_q, runs = run_chains(key, config.num_chains, one_run, _runs_layout(layout))
    evals = Count.of(config.num_chains * config.num_samples, each=config.num_shards)
    return Draws(
        positions=positions,
        stats={"lp": lp, "log_q": log_q},
        path_stats=runs.stats,
        n_grad_evals=runs.grads,
        n_logdensity_evals=runs.logdensity_evals + evals,
    )


@register("fusion", FusionConfig, family="smc", needs_minibatch=True)
def run_fusion(
    key: Array, target: Target, config: FusionConfig, layout: ChainLayout | None = None
) -> Draws:
    """Divide-and-conquer SMC fusion of sub-posteriors (Lindsten et al. 2017, the annealed
    merge; module docstring): ``subposterior_sampler`` (NUTS) on each of ``num_shards``
    sub-posteriors, one chain of ``subposterior_draws`` per shard and run; the product of
    the shards' Gaussian fits (Scott et al. 2016's weights), Student-t by default, as the
    reference of an adaptive tempered SMC run (smc's, Del Moral, Doucet and Jasra 2006)
    to the full posterior, whose log density is summed over the shards where their data
    are. Each run's ``log Z`` is unbiased in ``Z``; ``path_stats`` has smc's path and each shard's
    divergences and acceptance rate (or its weights' ESS).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("logistic_breast_cancer", "fusion", num_chains=2,
        ...               num_samples=200, num_warmup=200, subposterior_draws=200)
        >>> r.log_weights.shape, r.idata.path_stats["shard_divergences"].shape
        ((2, 200), (2, 4))
    """
    sharded = sharded_target(target, config, layout)
    full = dataclasses.replace(target, log_density=sharded.full_log_density)

    def make_reference(run_key: Array) -> tuple[Reference, SubposteriorDraws]:
        runs = sharded.subposteriors(run_key, config)
        product = gaussian_product(runs.positions)
        scale = config.reference_scale * jnp.linalg.cholesky(product.covariance)
        q = gaussian_or_student_t(product.mean, scale, config.reference_family, config.df)
        return Reference(lambda k, n: q.sample(k, (n,)), q.log_prob), runs

    draws, runs = run_annealing(
        key,
        full,
        config,
        "systematic",
        config.ess_threshold,
        make_reference=make_reference,
        layout=_runs_layout(layout),
    )
    # the annealing's full-data evaluations are S sub-posterior evaluations each
    shards = config.num_shards
    return draws._replace(
        path_stats={**draws.path_stats, **runs.stats},
        n_grad_evals=Count.of(draws.n_grad_evals, each=shards) + runs.grads,
        n_logdensity_evals=Count.of(draws.n_logdensity_evals, each=shards) + runs.logdensity_evals,
    )
