"""What a numpyro model adds to a run's InferenceData, as ArviZ expects it from numpyro:
plate names as dimension names, ``observed_data`` and ``constant_data`` (every run of a
numpyro target), and the pointwise ``log_likelihood`` of each observed site
(:func:`add_log_likelihood`, so that ``az.loo``, ``az.waic`` and ``az.compare`` work).

Dimensions: a site inside ``numpyro.plate("school", 8)`` gets the dimension name
``school`` at the plate's position; dimensions no plate names keep the automatic
``{site}_dim_{i}``. A plate name that is also a variable's name is not used (xarray
cannot hold both).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayeswb.core.target import NumpyroModel, Target

# the constrained groups whose variables are named after the model's sites
SITE_GROUPS = ("posterior", "weighted_posterior", "warmup_posterior")


def is_observation(site: dict[str, Any]) -> bool:
    """An observed sample site of data (``numpyro.factor``'s sites are observed too, but
    they add a term to the density, not data)."""
    from numpyro.distributions import Unit

    return site["type"] == "sample" and site["is_observed"] and not isinstance(site["fn"], Unit)


def model_trace(target: Target) -> dict[str, Any]:
    """One run of ``target``'s numpyro model with its data, its latent sites set to the
    target's initial point (``target.init``, constrained): drawing them from the prior
    instead can give a value the model's distributions refuse (a Cauchy prior's tail)."""
    from numpyro import handlers

    numpyro = _numpyro_of(target)
    start = target.constrain(target.init(jax.random.key(0)))
    with handlers.trace() as trace, handlers.seed(rng_seed=0), handlers.substitute(data=start):
        numpyro.model(*numpyro.args, **numpyro.kwargs)
    return dict(trace)


def plate_dims(trace: dict[str, Any]) -> dict[str, tuple[str | None, ...]]:
    """For every sample and deterministic site, the plate name of each of its dimensions
    (None where no plate names it).

    Example:
        >>> import numpyro, numpyro.distributions as dist
        >>> def model():
        ...     with numpyro.plate("school", 3):
        ...         numpyro.sample("theta", dist.Normal(0, 1))
        >>> plate_dims(model_trace(Target.from_numpyro(model)))
        {'theta': ('school',)}
    """
    dims = {}
    for name, site in trace.items():
        if site["type"] not in ("sample", "deterministic"):
            continue
        shape = jnp.shape(site["value"])
        event_dim = site["fn"].event_dim if site["type"] == "sample" else 0
        batch = len(shape) - event_dim
        names: list[str | None] = [None] * len(shape)
        for frame in site.get("cond_indep_stack", ()):
            position = batch + frame.dim
            if 0 <= position < batch and shape[position] == frame.size:
                names[position] = frame.name
        dims[name] = tuple(names)
    return dims


def name_plate_dims(idata: az.InferenceData, trace: dict[str, Any]) -> None:
    """Rename the automatic ``{site}_dim_{i}`` dimensions of :data:`SITE_GROUPS` to the
    model's plate names, in place."""
    dims = plate_dims(trace)
    for group in SITE_GROUPS:
        if group in idata.groups():
            put_group(idata, group, _renamed(idata[group], dims, leading=2))


def put_group(idata: az.InferenceData, name: str, dataset: xr.Dataset) -> None:
    """Set group ``name`` of ``idata`` to ``dataset``, replacing it if it exists (ArviZ's
    ``idata[name] = ...`` would list an existing group twice)."""
    if name in idata.groups():
        setattr(idata, name, dataset)
    else:
        idata[name] = dataset


def _renamed(
    dataset: xr.Dataset, dims: dict[str, tuple[str | None, ...]], leading: int
) -> xr.Dataset:
    renamed = {}
    sizes: dict[str, int] = {}
    for name, variable in dataset.data_vars.items():
        plates = dims.get(str(name), ())
        extra = variable.dims[leading:]
        if len(plates) != len(extra):
            continue  # a site whose shape is not the model's (never expected)
        mapping = {}
        for old, plate in zip(extra, plates, strict=True):
            size = variable.sizes[old]
            if plate is None or plate in dataset.data_vars or sizes.get(plate, size) != size:
                continue
            sizes[plate] = size
            mapping[old] = plate
        renamed[name] = variable.rename(mapping) if mapping else variable
    out = xr.Dataset(renamed, attrs=dataset.attrs).assign_coords(
        {dim: dataset.coords[dim] for dim in dataset.coords if dim in ("chain", "draw")}
    )
    out.encoding = dict(dataset.encoding)  # a streamed run's group still names its file
    return out


def observed_and_constant(
    numpyro: NumpyroModel, trace: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The observed sites' values by site name, and the model's other array arguments by
    parameter name (its covariates, scales, ...)."""
    observed = {
        name: np.asarray(site["value"]) for name, site in trace.items() if is_observation(site)
    }
    try:
        bound = inspect.signature(numpyro.model).bind(*numpyro.args, **numpyro.kwargs)
        arguments = dict(bound.arguments)
    except (TypeError, ValueError):  # a callable without a usable signature
        arguments = {f"arg{i}": value for i, value in enumerate(numpyro.args)}
        arguments.update(numpyro.kwargs)
    constant = {}
    for name, value in arguments.items():
        if not isinstance(value, np.ndarray | jax.Array) or name in observed:
            continue
        array = np.asarray(value)
        if not any(_same(array, obs) for obs in observed.values()):
            constant[name] = array
    return observed, constant


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))


def add_model_data(
    idata: az.InferenceData, target: Target, trace: dict[str, Any] | None = None
) -> None:
    """For a numpyro target: plate names as dimensions, ``observed_data`` and
    ``constant_data`` groups (in place); nothing for any other target. ``trace``: the
    model's :func:`model_trace`, if already made."""
    if target.numpyro is None:
        return
    trace = trace or model_trace(target)
    name_plate_dims(idata, trace)  # the groups that exist of SITE_GROUPS
    observed, constant = observed_and_constant(target.numpyro, trace)
    dims = plate_dims(trace)
    groups = {}
    if observed:
        groups["observed_data"] = _data(observed, dims)
    if constant:
        groups["constant_data"] = _data(constant, {})
    for name, dataset in groups.items():
        put_group(idata, name, dataset)


def _data(arrays: dict[str, np.ndarray], dims: dict[str, tuple[str | None, ...]]) -> xr.Dataset:
    variables = {}
    for name, value in arrays.items():
        names = dims.get(name, (None,) * value.ndim)
        variables[name] = (
            tuple(plate or f"{name}_dim_{i}" for i, plate in enumerate(names)),
            value,
        )
    return xr.Dataset(variables)


def pointwise_log_likelihood(
    numpyro: NumpyroModel, trace: dict[str, Any]
) -> Callable[[dict[str, jax.Array]], dict[str, jax.Array]]:
    """A function of one draw's constrained latent values (by site name) that gives the
    log likelihood of every observation of every observed site. An observation that the
    model masks out (``numpyro.handlers.mask``) gets 0: it adds nothing to the elpd."""
    from numpyro import handlers

    latent = {name for name, site in trace.items() if _is_latent(site)}

    def one_draw(values: dict[str, jax.Array]) -> dict[str, jax.Array]:
        given = {name: value for name, value in values.items() if name in latent}
        model = handlers.substitute(handlers.seed(numpyro.model, 0), data=given)
        with handlers.trace() as run:
            model(*numpyro.args, **numpyro.kwargs)
        out = {}
        for name, site in run.items():
            if is_observation(site):
                log_lik = site["fn"].log_prob(site["value"])
                mask = site.get("mask")
                out[name] = log_lik if mask is None else jnp.where(mask, log_lik, 0.0)
        return out

    return one_draw


def add_log_likelihood(
    idata: az.InferenceData, target: Target, trace: dict[str, Any] | None = None
) -> None:
    """Add the ``log_likelihood`` group (per observed site, per observation, dims chain,
    draw and the site's plates) of ``idata``'s posterior draws under ``target``'s numpyro
    model, in place: one compiled program over all draws.

    Raises:
        ValueError: the target is not a numpyro model, or the model has discrete latent
            sites (enumerated: the draws hold no value for them to condition on).
    """
    numpyro = _numpyro_of(target)
    trace = trace or model_trace(target)
    posterior = idata.posterior
    missing = [name for name, site in trace.items() if _is_latent(site) and name not in posterior]
    if missing:
        raise ValueError(
            f"the draws hold no value for the latent sites {missing} (discrete, summed out "
            "by enumeration): their pointwise log likelihood is not defined by the draws"
        )
    values = {str(name): jnp.asarray(var.values) for name, var in posterior.data_vars.items()}
    one_draw = pointwise_log_likelihood(numpyro, trace)
    log_lik = jax.jit(jax.vmap(jax.vmap(one_draw)))(values)
    dataset = _draws_dataset(log_lik, plate_dims(trace)).assign_coords(
        chain=posterior.coords["chain"].values, draw=posterior.coords["draw"].values
    )
    put_group(idata, "log_likelihood", dataset)


# above this many values (chains x draws x observations) a run gets no log_likelihood
# group by itself (2**27 float32 values are 512 MB); log_likelihood() still adds it
LOG_LIKELIHOOD_MAX_VALUES = 2**27


def add_numpyro_groups(idata: az.InferenceData, target: Target) -> None:
    """What every run of a numpyro target gets: :func:`add_model_data`, and the
    ``log_likelihood`` group unless the model has enumerated discrete sites or the group
    would hold more than :data:`LOG_LIKELIHOOD_MAX_VALUES` values."""
    if target.numpyro is None:
        return
    trace = model_trace(target)
    add_model_data(idata, target, trace)
    if any(_is_latent(site) and name not in idata.posterior for name, site in trace.items()):
        return  # discrete sites summed out: the draws do not define a pointwise likelihood
    observations = sum(
        int(np.size(site["value"])) for site in trace.values() if is_observation(site)
    )
    draws = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    if 0 < observations * draws <= LOG_LIKELIHOOD_MAX_VALUES:
        try:
            add_log_likelihood(idata, target, trace)
        except Exception as error:  # the draws are kept; only this group is missing
            warnings.warn(
                f"no log_likelihood group for {target.name!r}: {type(error).__name__}: {error}",
                UserWarning,
                stacklevel=2,
            )


def _is_latent(site: dict[str, Any]) -> bool:
    return site["type"] == "sample" and not site["is_observed"]


def log_likelihood(result: Any, target: Target) -> Any:
    """``result`` with a ``log_likelihood`` group for ``target`` (its numpyro model), for a
    run too large to get one by itself or loaded from an older file. Returns ``result``.

    Example:
        >>> import arviz as az, bayeswb as bw
        >>> t = bw.models.get("eight_schools_noncentered")
        >>> r = bw.sample(t, "nuts", num_chains=2, num_samples=100, num_warmup=100)
        >>> dict(bw.log_likelihood(r, t).idata.log_likelihood.sizes)
        {'chain': 2, 'draw': 100, 'school': 8}
    """
    add_log_likelihood(result.idata, target)
    return result


def _unobserved(model: Callable[..., Any]) -> Callable[..., Any]:
    """``model`` with its observed data sites turned into draws from their distributions."""
    from numpyro.distributions import Unit
    from numpyro.primitives import Messenger

    class Unobserve(Messenger):
        def process_message(self, msg: dict[str, Any]) -> None:
            if msg["type"] == "sample" and msg["is_observed"] and not isinstance(msg["fn"], Unit):
                msg["is_observed"] = False
                msg["value"] = None

    return Unobserve(model)


def _draws_dataset(
    arrays: dict[str, Any], dims: dict[str, tuple[str | None, ...]], leading: int = 2
) -> xr.Dataset:
    variables = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        plates = tuple(dims.get(name, ()))[: value.ndim - leading]
        plates += (None,) * (value.ndim - leading - len(plates))
        labels = [plate or f"{name}_dim_{i}" for i, plate in enumerate(plates)]
        variables[name] = (("chain", "draw", *labels), value)
    dataset = xr.Dataset(variables)
    return dataset.assign_coords(
        chain=np.arange(dataset.sizes["chain"]), draw=np.arange(dataset.sizes["draw"])
    )


def predictive(result: Any, target: Target, seed: int = 0) -> Any:
    """``result`` with a ``posterior_predictive`` group: for every posterior draw, one
    draw of every observed site of ``target``'s numpyro model (replicated data, for
    ``az.plot_ppc`` and posterior predictive checks). One compiled program over all
    draws; ``seed`` picks the replicates. Returns ``result``.

    Example:
        >>> import bayeswb as bw
        >>> t = bw.models.get("eight_schools_noncentered")
        >>> r = bw.sample(t, "nuts", num_chains=2, num_samples=100, num_warmup=100)
        >>> dict(bw.predictive(r, t).idata.posterior_predictive["y"].sizes)
        {'chain': 2, 'draw': 100, 'school': 8}
    """
    from numpyro import handlers

    numpyro = _numpyro_of(target)
    trace = model_trace(target)
    posterior = result.idata.posterior
    latent = [name for name, site in trace.items() if _is_latent(site) and name in posterior]
    observed = [name for name, site in trace.items() if is_observation(site)]
    model = _unobserved(numpyro.model)

    def one_draw(values: dict[str, jax.Array], key: jax.Array) -> dict[str, jax.Array]:
        run = handlers.trace(handlers.seed(handlers.substitute(model, data=values), key))
        sites = run.get_trace(*numpyro.args, **numpyro.kwargs)
        return {name: sites[name]["value"] for name in observed}

    values = {name: jnp.asarray(posterior[name].values) for name in latent}
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    keys = jax.random.split(jax.random.key(seed), (chains, draws))
    replicated = jax.jit(jax.vmap(jax.vmap(one_draw)))(values, keys)
    put_group(result.idata, "posterior_predictive", _draws_dataset(replicated, plate_dims(trace)))
    return result


def prior_predictive(target: Target, num_samples: int = 500, seed: int = 0) -> az.InferenceData:
    """Draws from ``target``'s numpyro model with nothing observed: InferenceData with
    ``prior`` (latent and deterministic sites), ``prior_predictive`` (the observed sites),
    ``observed_data`` and ``constant_data``, one chain of ``num_samples`` draws.

    Example:
        >>> import bayeswb as bw
        >>> prior = bw.prior_predictive(bw.models.get("eight_schools_noncentered"), 50)
        >>> dict(prior.prior_predictive["y"].sizes)
        {'chain': 1, 'draw': 50, 'school': 8}
    """
    from numpyro.infer import Predictive

    numpyro = _numpyro_of(target)
    trace = model_trace(target)
    observed = [name for name, site in trace.items() if is_observation(site)]
    draws = Predictive(_unobserved(numpyro.model), num_samples=num_samples)(
        jax.random.key(seed), *numpyro.args, **numpyro.kwargs
    )
    dims = plate_dims(trace)
    per_group: dict[str, dict[str, Any]] = {"prior": {}, "prior_predictive": {}}
    for name, value in draws.items():
        group = "prior_predictive" if name in observed else "prior"
        per_group[group][name] = np.asarray(value)[None]
    idata = az.InferenceData(
        **{group: _draws_dataset(arrays, dims) for group, arrays in per_group.items() if arrays}
    )
    add_model_data(idata, target, trace)
    return idata


def _numpyro_of(target: Target) -> NumpyroModel:
    if target.numpyro is None:
        raise ValueError(
            f"target {target.name!r} is not a numpyro model: it has no observations to replicate"
        )
    return target.numpyro
