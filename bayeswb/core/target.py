"""Target: an unconstrained log density on R^dim, optional ground truth and typed interfaces."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from bayeswb.core.brief_programs import brief_jit
from bayeswb.core.config import one_line

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Reference:
    """Reference moments of the constrained parameters, and where they come from.

    ``mean`` and ``sd`` map a parameter name to an array of that parameter's shape;
    ``mcse_mean``, for moments made by Monte Carlo, maps it to the Monte Carlo standard
    error of ``mean`` (``None``: the moments are exact, or their error is negligible).
    A score against the reference adds this error to the scored run's own.
    """

    mean: dict[str, np.ndarray]
    sd: dict[str, np.ndarray]
    source: str
    mcse_mean: dict[str, np.ndarray] | None = None


class NumpyroModel(NamedTuple):
    """The numpyro model a target was built from, as :meth:`Target.from_numpyro` called it.

    ``unravel`` maps a flat unconstrained ``(dim,)`` vector to the model's named
    unconstrained values.
    """

    model: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    unravel: Callable[[Array], dict[str, Array]]


class MinibatchData(NamedTuple):
    """What stochastic-gradient samplers need: the log density as a prior plus a sum over
    i.i.d. data, ``log_density(x) = log_prior(x) + sum_i log_likelihood_per_datum(x, datum_i)``.

    ``data`` is a pytree whose leaves share a leading datum axis of length ``num_data``.

    Example:
        >>> import jax.numpy as jnp
        >>> batch = MinibatchData(jnp.ones(5), lambda x, y: -0.5 * (y - x[0]) ** 2,
        ...                       lambda x: -0.5 * x @ x)
        >>> batch.num_data
        5
    """

    data: Any
    log_likelihood_per_datum: Callable[[Array, Any], Array]
    log_prior: Callable[[Array], Array]

    @property
    def num_data(self) -> int:
        return int(jax.tree.leaves(self.data)[0].shape[0])


@contextlib.contextmanager
def _small_programs_cached() -> Iterator[None]:
    """Write even the quickest compiles to JAX's persistent compilation cache (where one is
    set: :mod:`bayeswb.execution.compile_cache`) for the duration. Building a numpyro
    target runs the model operation by operation, 80 to 150 small programs, each below
    the cache's usual threshold: cached, a second process builds logistic_breast_cancer in
    4.0 s against 8.8 s for the first (``python benchmarks/compile_cache.py --jobs
    numpyro_target``; 11-13 s both times before)."""
    name = "jax_persistent_cache_min_compile_time_secs"
    before = getattr(jax.config, name)
    jax.config.update(name, 0.0)
    try:
        yield
    finally:
        jax.config.update(name, before)


def _uniform_init(dim: int) -> Callable[[Array], Array]:
    # numpyro's init_to_uniform: uniform on (-2, 2) in unconstrained space
    return lambda key: jax.random.uniform(key, (dim,), minval=-2.0, maxval=2.0)


def _default_init(key: Array) -> Array:
    # a marker, never called: __post_init__ replaces it by numpyro's uniform init in the
    # target's dim (a default that depends on another field), keeping ``init`` typed as
    # always callable
    raise RuntimeError("Target.init was not set by __post_init__")


def _identity_constrain(x: Array) -> dict[str, Array]:
    return {"x": x}


# how many fixed points a target's fingerprint evaluates its log density at
FINGERPRINT_POINTS = 3


def same_density(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two fingerprints (``Target.check``'s values of the log density at fixed
    points) are of the same density, up to single-precision round-off.

    Example:
        >>> same_density([-1.5, float("nan")], [-1.5000001, float("nan")])
        True
    """
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return first.shape == second.shape and bool(
        np.allclose(first, second, rtol=1e-4, atol=1e-4, equal_nan=True)
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Target:
    """A distribution to sample: ``log_density(x)`` for a single x of shape ``(dim,)``.

    Samplers vmap ``log_density``; they never pass a batch. ``constrain`` maps an
    unconstrained x to named constrained parameters (what ArviZ shows). Ground truth is
    optional: ``log_z`` (exact log normaliser of ``exp(log_density)``), ``sample_exact(key,
    n) -> (n, dim)`` exact draws of x, and ``reference`` (moments of the constrained
    parameters), with ``truth_sources`` saying how each was obtained. Optional typed
    interfaces that samplers may use: ``numpyro`` (the model it was built from, see
    :class:`NumpyroModel`) and ``minibatch`` (per-datum log likelihood and data, see
    :class:`MinibatchData`). ``metadata`` holds model-specific extras for the model's own
    users (mixture means, a trained network); no sampler reads it. Where ``log_z`` is an
    estimate rather than exact, ``metadata["log_z_se"]`` is its standard error, which
    :func:`bayeswb.score` counts. ``parameters`` are the
    registry parameters a registered model was built with (empty for a user's target).
    Targets compare and hash by identity, so a compiled run can be reused.

    Example:
        >>> import jax.numpy as jnp
        >>> t = Target.from_logdensity(lambda x: -0.5 * x @ x, dim=2, name="std")
        >>> float(t.log_density(jnp.zeros(2)))
        0.0
    """

    name: str
    dim: int
    log_density: Callable[[Array], Array]
    constrain: Callable[[Array], dict[str, Array]] = _identity_constrain
    init: Callable[[Array], Array] = _default_init
    log_z: float | None = None
    sample_exact: Callable[[Array, int], Array] | None = None
    reference: Reference | None = None
    truth_sources: dict[str, str] = dataclasses.field(default_factory=dict)
    numpyro: NumpyroModel | None = None
    minibatch: MinibatchData | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.dim, int | np.integer)
            or isinstance(self.dim, bool)
            or self.dim < 1
        ):
            raise ValueError(f"dim must be a positive integer, got {one_line(self.dim)}")
        object.__setattr__(self, "dim", int(self.dim))
        if self.init is None or self.init is _default_init:
            object.__setattr__(self, "init", _uniform_init(self.dim))

    def __repr__(self) -> str:
        truth = [n for n in ("log_z", "sample_exact", "reference") if getattr(self, n) is not None]
        return f"Target(name={self.name!r}, dim={self.dim}, ground_truth={truth})"

    @classmethod
    def from_logdensity(
        cls,
        fn: Callable[[Array], Array],
        dim: int,
        name: str = "custom",
        **kwargs: Any,
    ) -> Target:
        """A target from a log density of one ``(dim,)`` vector (unnormalised is fine).

        Keyword arguments are the other fields (``init``, ``log_z``, ``sample_exact``,
        ``reference``, ``truth_sources``, ``constrain``, ``minibatch``, ``metadata``).

        Example:
            >>> t = Target.from_logdensity(lambda x: -0.5 * (x @ x), dim=3, log_z=2.7568)
            >>> t.dim
            3
        """
        return cls(name=name, dim=dim, log_density=fn, **kwargs)

    @classmethod
    def from_numpyro(
        cls, model: Callable, *args: Any, name: str | None = None, **kwargs: Any
    ) -> Target:
        """A target from a numpyro model called with ``*args, **kwargs``.

        Uses numpyro's ``initialize_model``: the potential energy on unconstrained space
        (with log-Jacobians) becomes ``log_density``; its postprocessing (constraining
        transforms and deterministic sites) becomes ``constrain``. ``numpyro`` keeps the
        model, its arguments and ``unravel`` (flat x -> named unconstrained values).
        ``minibatch`` is filled when the model's observations are i.i.d. rows of its array
        arguments in one plate, without per-datum latent sites
        (:mod:`bayeswb.core.numpyro_minibatch` derives it in Python, without compiling);
        otherwise it is None.
        Discrete latent sites are summed out of the density by numpyro's enumeration,
        which needs the ``funsor`` package (bayeswb's ``enum`` extra).

        Example:
            >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> def model(y):
            ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
            ...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
            >>> Target.from_numpyro(model, jnp.array([0.5, 1.0])).dim
            1
        """
        from numpyro.infer.util import initialize_model

        model_name = name or str(getattr(model, "__name__", "numpyro_model"))
        try:
            with _small_programs_cached():
                # a batch of one key: numpyro then checks its initial point in one compiled
                # loop, not operation by operation (each its own small compile). Its point
                # only gives the layout of the parameters (runs start from ``init``, and
                # ``check`` tests the density and gradient there), so that loop evaluates
                # the density without its gradient: on gp_regression it compiled in 1.1-1.3
                # s instead of 2.3 s, the whole build's 96 programs in 4.0-4.6 s, not 5.2-6.6
                info = initialize_model(
                    jax.random.split(jax.random.key(0), 1),
                    model,
                    model_args=args,
                    model_kwargs=kwargs,
                    dynamic_args=False,
                    validate_grad=False,
                )
        except ImportError as error:
            if "funsor" not in str(error):
                raise
            raise ImportError(
                f"numpyro model {model_name!r} has discrete latent sites, which numpyro sums "
                "out by enumeration with the funsor package: pip install funsor (or install "
                "bayeswb with its 'enum' extra)"
            ) from None
        except Exception as error:
            # typically data of the wrong shape or type for the model
            raise ValueError(
                f"numpyro model {model_name!r} cannot be initialised with the data given: "
                f"{type(error).__name__}: {error}"
            ) from error
        flat, unravel = ravel_pytree(jax.tree.map(lambda z: z[0], info.param_info.z))
        potential_fn = info.potential_fn
        postprocess_fn = info.postprocess_fn

        # jitted, so that JAX traces the numpyro model once per shape and dtype and every
        # other use in a sampler's program (its warmup, its kernel, the constraining of
        # its draws) reuses that trace. NUTS on gp_regression: 3 traces of the model in
        # 3.1 s before, 1 in 1.8 s; its differentiated program also changed (compiled in
        # 8.3 s instead of 14.1, sampled in 0.28 s instead of 0.84, other draws by float
        # rounding); eight_schools_noncentered and logistic_breast_cancer give the same
        # draws bit for bit
        @jax.jit
        def log_density(x: Array) -> Array:
            return -potential_fn(unravel(x))

        @jax.jit
        def constrain(x: Array) -> dict[str, Array]:
            return postprocess_fn(unravel(x))

        dim = int(flat.shape[0])
        with _small_programs_cached():
            minibatch = _numpyro_minibatch(model, args, kwargs, info.model_trace, unravel)
        return cls(
            name=model_name,
            dim=dim,
            log_density=log_density,
            constrain=constrain,
            numpyro=NumpyroModel(model, args, kwargs, unravel),
            minibatch=minibatch,
        )

    def ground_truth(self) -> dict[str, str]:
        """What exact answers this target carries, each with where it came from."""
        notes = self.truth_sources
        truth = {}
        if self.log_z is not None:
            truth["log_z"] = f"{self.log_z:.6g} ({notes.get('log_z', 'given')})"
        if self.sample_exact is not None:
            truth["sample_exact"] = notes.get("sample_exact", "given")
        if self.reference is not None:
            truth["reference"] = notes.get("reference", self.reference.source)
        return truth

    def describe(self) -> str:
        """Name, dimension and the ground truth available, with its sources.

        Example:
            >>> import bayeswb as bw
            >>> print(bw.models.get("funnel", dim=3).describe().splitlines()[0])
            funnel: dim 3
        """
        lines = [f"{self.name}: dim {self.dim}"]
        truth = self.ground_truth()
        lines += [f"  {name}: {source}" for name, source in truth.items()]
        if not truth:
            lines.append("  no ground truth")
        return "\n".join(lines)

    def check(self, key: Array) -> np.ndarray:
        """Fail early, with a message naming the problem, if this target cannot start a run:
        ``init(key)`` must be a finite ``(dim,)`` vector where ``log_density`` is a finite
        scalar with a finite gradient. ``bw.sample`` calls it once per target. Returns the
        target's fingerprint: ``log_density`` at ``FINGERPRINT_POINTS`` fixed points (see
        :func:`same_density`), evaluated in the same compiled program.

        Example:
            >>> import jax.numpy as jnp
            >>> bad = Target.from_logdensity(lambda x: jnp.log(x[0]), dim=1, name="log",
            ...                              init=lambda key: -jnp.ones(1))
            >>> bad.check(jax.random.key(0))
            Traceback (most recent call last):
            ...
            ValueError: target 'log': log_density is nan at the initial point [-1.] (a run ...
        """
        x = jax.eval_shape(self.init, key)
        if x.shape != (self.dim,):
            raise ValueError(
                f"target {self.name!r}: init returned shape {x.shape}, expected ({self.dim},)"
            )
        # one program for the points, one for the density: eager calls would compile a
        # small program for each operation, in every new process
        points = np.asarray(brief_jit(self._check_points)(key))
        x = points[0]
        if not np.all(np.isfinite(x)):
            raise ValueError(f"target {self.name!r}: init returned a non-finite position {x}")
        point = np.array2string(x, threshold=6, precision=4, separator=", ")
        try:
            shape = jax.eval_shape(self.log_density, x).shape
            if shape == ():
                values, grads = brief_jit(jax.vmap(self.log_density_and_grad))(points)
                values, grads = np.asarray(values), np.asarray(grads)
        except Exception as error:
            raise ValueError(
                f"target {self.name!r}: log_density raised at the initial point {point}: "
                f"{type(error).__name__}: {error}"
            ) from error
        if shape != ():
            raise ValueError(
                f"target {self.name!r}: log_density must return a scalar for one (dim,) "
                f"vector, got shape {shape}"
            )
        if not np.isfinite(values[0]):
            raise ValueError(
                f"target {self.name!r}: log_density is {float(values[0])} at the initial point "
                f"{point} (a run must start where the density is positive)"
            )
        if not np.all(np.isfinite(grads[0])):
            raise ValueError(
                f"target {self.name!r}: the gradient of log_density is not finite at the "
                f"initial point {point}"
            )
        return np.asarray(values[1:], dtype=np.float64)

    def _check_points(self, key: Array) -> Array:
        """``init(key)`` and the fingerprint's fixed points ``init(jax.random.key(k))``,
        k < FINGERPRINT_POINTS, stacked: (1 + FINGERPRINT_POINTS, dim)."""
        x = self.init(key)
        keys = jax.vmap(jax.random.key)(jnp.arange(FINGERPRINT_POINTS))
        return jnp.concatenate([x[None], jax.vmap(self.init)(keys).astype(x.dtype)])

    def log_density_and_grad(self, x: Array) -> tuple[Array, Array]:
        return jax.value_and_grad(self.log_density)(x)


def _numpyro_minibatch(
    model: Callable, args: tuple, kwargs: dict, trace: Any, unravel: Callable
) -> MinibatchData | None:
    """The minibatch interface of a numpyro model, or None where the model does not have
    i.i.d. observations (see :mod:`bayeswb.core.numpyro_minibatch`)."""
    from bayeswb.core.numpyro_minibatch import NotMinibatchable, derive

    try:
        return MinibatchData(*derive(model, args, kwargs, trace, unravel))
    except NotMinibatchable:
        return None
