"""The minibatch interface of a numpyro model with i.i.d. observations, derived from the
model as written (what :meth:`Target.from_numpyro` fills ``Target.minibatch`` with).

A stochastic-gradient sampler (Welling and Teh 2011) needs the log density as a prior
plus a sum over data,

    log p(x | D) = log p(x) + sum_{i=1}^N log p(d_i | x) + const,

in the target's unconstrained coordinates x. For a numpyro model this holds when the data
enter through one plate: every observed site sits in the same plate ``numpyro.plate(name,
N)`` whose dimension is the site's leading batch dimension, no latent site lives in that
plate (no per-datum latents), and the model's array arguments with N rows (covariates,
responses, a mask) are what differ from datum to datum. Then ``d_i`` is the pytree of
those arguments' i-th rows, and

- ``log_prior(x)`` is numpyro's own log joint of the unconstrained point
  (``numpyro.infer.util.potential_energy``, so the ``log |det J|`` of every constraining
  transform is included exactly as in ``Target.log_density``) with the observed sites
  hidden (``numpyro.handlers.block``);
- ``log_likelihood_per_datum(x, d_i)`` runs the model on one-row arguments (leading axis
  1, so the data plate has size 1), the latent sites set to x constrained
  (``numpyro.infer.util.constrain_fn``), and sums the observed sites' log-probabilities
  (``numpyro.infer.util.log_density`` on the model with all other sites hidden): scales
  and masks (``numpyro.handlers.mask``, a mask passed as an argument with N rows is
  sliced with the data) count as numpyro counts them.

Deriving the interface costs two one-row runs of the model in Python (no compilation):
the model must run on one row with the same latent shapes, the data plate must shrink to
size 1 with the arguments, and the observed sites' pointwise log-probabilities of two rows
must equal those of the same rows in the full model at the model's initial point (which
catches a model that standardises its covariates, or otherwise couples its rows, inside
the model). A model that fails any condition gets no interface (:class:`NotMinibatchable`
says why); its target is otherwise unchanged. Refused: observed sites outside any plate
(a Gaussian process's joint likelihood), in different plates, or whose plate is not their
leading dimension; a data plate of a fixed size or with ``subsample_size``; a latent site
inside the data plate (eight schools' per-school effects, a time series' states, and the
latent sites numpyro's ``obs_mask`` imputes); latent shapes that depend on N (a random
walk over the observations); discrete latent sites (summed out by enumeration) and
``param`` sites; a ``numpyro.factor`` outside the data plate (it might depend on the data).

What is not detected: an argument that is not data but happens to have N rows (it would
be sliced with the data; the consistency check at two rows catches it only if it changes
their log-probabilities), and a dependence between rows that leaves rows 0 and N-1 of
the initial point unchanged.

Example:
    >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> def model(x, y):
    ...     slope = numpyro.sample("slope", dist.Normal(0, 1))
    ...     noise = numpyro.sample("noise", dist.HalfNormal(1))
    ...     with numpyro.plate("data", x.shape[0]):
    ...         numpyro.sample("y", dist.Normal(slope * x, noise), obs=y)
    >>> x = jnp.linspace(-1.0, 1.0, 20)
    >>> data, lik, prior = derive_from_model(model, (x, 2 * x), {})
    >>> sorted(data), data["x"].shape
    (['x', 'y'], (20,))
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# relative tolerance of the two-row consistency check (single-precision sums)
CONSISTENCY_RTOL = 1e-4


class NotMinibatchable(Exception):
    """The model's density is not a prior plus a sum over i.i.d. data rows; the message
    says which condition failed."""


class MinibatchParts(NamedTuple):
    """``(data, log_likelihood_per_datum, log_prior)``, the fields of
    :class:`~bayeswb.core.target.MinibatchData` (this module sits below ``target``)."""

    data: dict[str, Array]
    log_likelihood_per_datum: Callable[[Array, Any], Array]
    log_prior: Callable[[Array], Array]


def derive(
    model: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    model_trace: dict[str, Any],
    unravel: Callable[[Array], dict[str, Array]],
) -> MinibatchParts:
    """The minibatch interface of ``model(*args, **kwargs)`` (see the module docstring).

    ``model_trace``: a trace of one run of the model on its data (numpyro's
    ``initialize_model`` returns one), its latent sites at valid values;
    ``unravel``: flat unconstrained ``(dim,)`` -> the latent sites' unconstrained values.

    Raises:
        NotMinibatchable: the model does not have i.i.d. observations in the sense needed,
            or running it on one row fails (never any other exception).
    """
    try:
        return _derive(model, args, kwargs, model_trace, unravel)
    except NotMinibatchable:
        raise
    except Exception as error:  # a model this module cannot read: no interface, no crash
        raise NotMinibatchable(
            f"the model could not be run on one data row: {type(error).__name__}: {error}"
        ) from error


def derive_from_model(
    model: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> MinibatchParts:
    """:func:`derive` for a model and its arguments alone, traced at numpyro's uniform
    initial point (``init_to_uniform``, as ``initialize_model`` starts; no compilation).

    Raises:
        NotMinibatchable: as :func:`derive`.
    """
    from jax.flatten_util import ravel_pytree
    from numpyro import handlers
    from numpyro.infer.initialization import init_to_uniform
    from numpyro.infer.util import unconstrain_fn

    seeded = handlers.seed(model, jax.random.key(0))
    start = handlers.substitute(seeded, substitute_fn=init_to_uniform)
    trace = handlers.trace(start).get_trace(*args, **kwargs)
    latent = {name: site["value"] for name, site in trace.items() if _is_latent(site)}
    _, unravel = ravel_pytree(unconstrain_fn(seeded, args, kwargs, latent))
    return derive(model, args, kwargs, dict(trace), unravel)


def why_not_minibatchable(
    model: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    """Why ``model(*args, **kwargs)`` gets no minibatch interface, or None if it gets one.

    Example:
        >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> def model(y):
        ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
        ...     numpyro.sample("y", dist.Normal(mu, 1).expand([3]).to_event(1), obs=y)
        >>> why_not_minibatchable(model, (jnp.zeros(3),), {})
        "observed site 'y' is outside any plate"
    """
    try:
        derive_from_model(model, args, kwargs)
    except NotMinibatchable as error:
        return str(error)
    return None


def _is_observed_sample(site: dict[str, Any]) -> bool:
    return site["type"] == "sample" and bool(site["is_observed"])


def _is_factor(site: dict[str, Any]) -> bool:
    from numpyro.distributions import Unit

    return isinstance(site["fn"], Unit)


def _is_latent(site: dict[str, Any]) -> bool:
    return site["type"] == "sample" and not site["is_observed"]


def _leading_plate(name: str, site: dict[str, Any]) -> Any:
    """The plate frame of ``site``'s leading batch dimension."""
    frames = site["cond_indep_stack"]
    if not frames:
        raise NotMinibatchable(f"observed site {name!r} is outside any plate")
    batch_ndim = len(site["fn"].batch_shape)
    for frame in frames:
        if batch_ndim + frame.dim == 0:
            return frame
    raise NotMinibatchable(
        f"observed site {name!r}: none of its plates "
        f"{[frame.name for frame in frames]} is its leading batch dimension"
    )


def _check_structure(trace: dict[str, Any]) -> tuple[str, int, list[str]]:
    """The data plate's name and size N, and the observed sites (data and factors)."""
    for name, site in trace.items():
        if site["type"] in ("param", "mutable"):
            raise NotMinibatchable(f"the model has a {site['type']} site {name!r}")
        if _is_latent(site) and site["fn"].support.is_discrete:
            raise NotMinibatchable(f"latent site {name!r} is discrete (summed out by enumeration)")
    observed = [name for name, site in trace.items() if _is_observed_sample(site)]
    if not observed:
        raise NotMinibatchable("the model has no observed sites")
    plates = {name: _leading_plate(name, trace[name]) for name in observed}
    plate_names = sorted({frame.name for frame in plates.values()})
    if len(plate_names) > 1:
        raise NotMinibatchable(f"the observed sites sit in different plates {plate_names}")
    plate = plate_names[0]
    size, subsample_size = trace[plate]["args"] if plate in trace else (None, None)
    if subsample_size is not None and subsample_size != size:
        raise NotMinibatchable(f"the data plate {plate!r} subsamples its data")
    num_data = int(next(iter(plates.values())).size)
    for name in observed:
        scale = trace[name]["scale"]
        if scale is not None and not np.all(np.asarray(scale) == 1):
            raise NotMinibatchable(f"observed site {name!r} is scaled")
    for name, site in trace.items():
        if _is_latent(site) and any(f.name == plate for f in site["cond_indep_stack"]):
            raise NotMinibatchable(
                f"latent site {name!r} lives in the data plate {plate!r} (a per-datum "
                "latent variable: the data are not i.i.d. given the parameters)"
            )
    return plate, num_data, observed


class _Arguments(NamedTuple):
    """The model's arguments as leaves, and which leaves are per-datum (N rows)."""

    leaves: list[Any]
    treedef: Any
    per_datum: dict[str, int]  # name -> leaf index

    def with_rows(self, rows: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        leaves = list(self.leaves)
        for name, index in self.per_datum.items():
            leaves[index] = rows[name]
        args, kwargs = jax.tree.unflatten(self.treedef, leaves)
        return tuple(args), dict(kwargs)


def _split_arguments(
    model: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], num_data: int
) -> _Arguments:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    try:
        parameters = inspect.signature(model).parameters.values()
        positional = [parameter.name for parameter in parameters if parameter.kind in kinds]
    except (TypeError, ValueError):  # a callable without a signature: args[i]
        positional = []
    with_paths, treedef = jax.tree_util.tree_flatten_with_path((tuple(args), dict(kwargs)))
    per_datum = {}
    for index, (path, leaf) in enumerate(with_paths):
        if not isinstance(leaf, np.ndarray | jax.Array) or leaf.ndim == 0:
            continue
        if leaf.shape[0] == num_data:
            name = _argument_name(path, positional)
            # names are for people; the path keeps two leaves apart if names clash
            per_datum[name if name not in per_datum else jax.tree_util.keystr(path)] = index
    if not per_datum:
        raise NotMinibatchable(
            f"no array argument of the model has the data plate's {num_data} rows"
        )
    return _Arguments([leaf for _, leaf in with_paths], treedef, per_datum)


def _argument_name(path: Sequence[Any], positional: list[str]) -> str:
    group, top, *rest = path
    if group.idx == 0:  # a positional argument
        index = top.idx
        name = positional[index] if index < len(positional) else f"args[{index}]"
    else:
        name = str(top.key)
    return name + jax.tree_util.keystr(tuple(rest))


def _run(model: Callable[..., Any], values: dict[str, Any], args: tuple, kwargs: dict) -> Any:
    from numpyro import handlers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a validation run; the model's own run warned
        seeded = handlers.seed(handlers.substitute(model, data=values), rng_seed=0)
        return handlers.trace(seeded).get_trace(*args, **kwargs)


def _site_shape(site: dict[str, Any]) -> tuple[int, ...]:
    """A sample site's shape by its distribution (a substituted value keeps its own)."""
    sample_shape = tuple(site["kwargs"].get("sample_shape", ()))
    return sample_shape + tuple(site["fn"].shape())


def _pointwise(site: dict[str, Any]) -> Array:
    """Log-probability of each row of an observed site (its leading axis)."""
    log_prob = site["fn"].log_prob(site["value"])
    log_prob = jnp.broadcast_to(log_prob, site["fn"].batch_shape)
    return jnp.sum(jnp.reshape(log_prob, (log_prob.shape[0], -1)), axis=1)


def _check_one_row(
    model: Callable[..., Any],
    trace: dict[str, Any],
    arguments: _Arguments,
    plate: str,
    observed: list[str],
    num_data: int,
) -> None:
    """Run the model on rows 0 and N-1 alone, at the latent values of ``trace``: same
    latent shapes, the plate shrunk to 1, and the same pointwise log-probabilities."""
    latent = {name: site["value"] for name, site in trace.items() if _is_latent(site)}
    latent_shapes = {name: _site_shape(trace[name]) for name in latent}
    full = jnp.sum(jnp.stack([_pointwise(trace[name]) for name in observed]), axis=0)
    for row in sorted({0, num_data - 1}):
        rows = {
            name: arguments.leaves[index][row : row + 1]
            for name, index in arguments.per_datum.items()
        }
        one = _run(model, latent, *arguments.with_rows(rows))
        if latent_shapes != {n: _site_shape(s) for n, s in one.items() if _is_latent(s)}:
            raise NotMinibatchable("the latent sites' shapes change with the number of data rows")
        one_observed = [name for name, site in one.items() if _is_observed_sample(site)]
        if sorted(one_observed) != sorted(observed):
            raise NotMinibatchable("the observed sites change with the number of data rows")
        for name in observed:
            frame = next((f for f in one[name]["cond_indep_stack"] if f.name == plate), None)
            batch_shape = tuple(one[name]["fn"].batch_shape)
            if frame is None or frame.size != 1 or batch_shape[:1] != (1,):
                raise NotMinibatchable(
                    f"the data plate {plate!r} does not shrink with the data arguments "
                    "(a fixed plate size?)"
                )
            if batch_shape[1:] != tuple(trace[name]["fn"].batch_shape)[1:]:
                raise NotMinibatchable(f"observed site {name!r} changes shape with the rows")
        alone = float(sum(jnp.sum(_pointwise(one[name])) for name in observed))
        together = float(full[row])
        if not np.isclose(alone, together, rtol=CONSISTENCY_RTOL, atol=CONSISTENCY_RTOL):
            raise NotMinibatchable(
                f"row {row}'s log-likelihood alone ({alone:.6g}) differs from its value "
                f"among all rows ({together:.6g}): the rows are coupled inside the model"
            )


def _derive(
    model: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    model_trace: dict[str, Any],
    unravel: Callable[[Array], dict[str, Array]],
) -> MinibatchParts:
    from numpyro import handlers
    from numpyro.infer.util import constrain_fn, log_density, potential_energy

    trace = dict(model_trace)
    plate, num_data, observed = _check_structure(trace)
    arguments = _split_arguments(model, args, kwargs, num_data)
    _check_one_row(model, trace, arguments, plate, observed, num_data)

    observed_names = frozenset(observed)
    # numpyro's potential runs the model with a default PRNG key; a seed does the same
    seeded = handlers.seed(model, rng_seed=0)
    prior_model = handlers.block(seeded, hide_fn=lambda site: site["name"] in observed_names)

    def log_prior(x: Array) -> Array:
        return -potential_energy(prior_model, args, kwargs, unravel(x))

    def log_likelihood_per_datum(x: Array, datum: dict[str, Array]) -> Array:
        row_args, row_kwargs = arguments.with_rows(
            {name: jnp.expand_dims(value, 0) for name, value in datum.items()}
        )
        params = unravel(x)
        constrained = constrain_fn(seeded, row_args, row_kwargs, params)
        likelihood_model = handlers.block(
            handlers.substitute(seeded, data=constrained),
            hide_fn=lambda site: site["type"] == "sample" and site["name"] not in observed_names,
        )
        value, _ = log_density(likelihood_model, row_args, row_kwargs, {})
        return value

    data = {
        name: jnp.asarray(arguments.leaves[index]) for name, index in arguments.per_datum.items()
    }
    return MinibatchParts(data, log_likelihood_per_datum, log_prior)
