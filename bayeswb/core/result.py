"""Result: a run's draws as arviz.InferenceData, with its config, cost and log Z.

Saved as NetCDF; the run's metadata (sampler, target, config, cost, log Z) travels in
the posterior group's attributes, the unconstrained positions in the
``unconstrained_posterior`` group, so a loaded Result has everything the saved one had.
A weighted run's particles are in ``weighted_posterior`` and its ``posterior`` holds
equal-weight draws resampled from them (:mod:`bayeswb.core.equal_weights`), so that every
ArviZ function reads it right.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from bayeswb.core.draws import Draws, exact_count
from bayeswb.core.equal_weights import equal_weight_posterior
from bayeswb.core.files import atomic_path, is_same_file
from bayeswb.core.log_evidence import combine_log_z
from bayeswb.core.provenance import stored_manifest
from bayeswb.core.verdict import Verdict, diagnose

# the posterior group attribute that holds a saved run's metadata (JSON)
RESULT_ATTRIBUTE = "bayeswb"


# path stats named ``shard_...`` are per data shard (chain, shard), and ``fusion_...`` per
# fusion of a divide-and-conquer run (chain, fusion), not per step
PER_UNIT = {"shard_": "shard", "fusion_": "fusion"}


def _dataset(arrays: dict[str, Any], leading: tuple[str, ...] = ("chain", "draw")) -> xr.Dataset:
    data_vars = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        extra = tuple(f"{name}_dim_{i}" for i in range(value.ndim - len(leading)))
        data_vars[name] = (leading + extra, value)
    dataset = xr.Dataset(data_vars)
    for dim in leading:
        if dim in dataset.dims:
            dataset = dataset.assign_coords({dim: np.arange(dataset.sizes[dim])})
    return dataset


def build_idata(
    posterior: dict[str, Any],
    positions: Any,
    stats: dict[str, Any],
    log_weights: Any | None = None,
    log_z_per_run: Any | None = None,
    log_z_relative_variance: Any | None = None,
    warmup_posterior: dict[str, Any] | None = None,
    warmup_stats: dict[str, Any] | None = None,
    path_stats: dict[str, Any] | None = None,
) -> az.InferenceData:
    """InferenceData from arrays with leading (chain, draw) axes; see :class:`Result`."""
    sample_stats = dict(stats)
    if log_weights is not None:
        sample_stats["log_weight"] = log_weights
    groups: dict[str, xr.Dataset] = {
        "posterior": _dataset(posterior),
        "unconstrained_posterior": _dataset({"position": positions}),
    }
    if log_weights is not None:
        groups["weighted_posterior"] = groups["posterior"]
        groups["posterior"] = equal_weight_posterior(groups["posterior"], np.asarray(log_weights))
    if sample_stats:
        groups["sample_stats"] = _dataset(sample_stats)
    if log_z_per_run is not None:
        columns = {"log_marginal_likelihood": log_z_per_run}
        if log_z_relative_variance is not None:
            columns["log_z_relative_variance"] = log_z_relative_variance
        per_run = _dataset(columns, leading=("chain",))
        groups["sample_stats"] = groups.get("sample_stats", xr.Dataset()).merge(per_run)
    if warmup_posterior:
        groups["warmup_posterior"] = _dataset(warmup_posterior)
    if warmup_stats:
        groups["warmup_sample_stats"] = _dataset(warmup_stats)
    if path_stats:
        per_step = {k: v for k, v in path_stats.items() if not k.startswith(tuple(PER_UNIT))}
        dataset = _dataset(per_step, leading=("chain", "step"))
        for prefix, dim in PER_UNIT.items():
            per_unit = {k: v for k, v in path_stats.items() if k.startswith(prefix)}
            if per_unit:
                dataset = dataset.merge(_dataset(per_unit, leading=("chain", dim)))
        groups["path_stats"] = dataset
    return az.InferenceData(**groups)


@dataclasses.dataclass(frozen=True)
class Result:
    """The outcome of :func:`bayeswb.sample`.

    idata:     arviz.InferenceData with ``posterior`` (named, constrained parameters,
               chain/draw dims; equally weighted draws, so ArviZ reads them right),
               ``unconstrained_posterior`` (``position``), ``sample_stats`` (ArviZ's
               names; ``log_weight`` and per-run ``log_marginal_likelihood`` for weighted
               output, with ``log_z_relative_variance`` where the runs estimate their
               own), ``warmup_*`` groups and ``path_stats`` (per-step quantities of a
               run, dims chain/step). A weighted run's particles are in
               ``weighted_posterior`` (constrained) and ``unconstrained_posterior``, aligned
               with ``log_weight``; its ``posterior`` is resampled from them, run by run
               (:mod:`bayeswb.core.equal_weights`).
    sampler:   registered sampler name; ``target``: target name
    config:    the sampler's config as a dict
    cost:      ``n_grad_evals``, ``n_logdensity_evals``, ``compile_s``, ``sample_s``
    log_z, log_z_se: pooled log-evidence estimate and its standard error, or None
               (:func:`~bayeswb.core.log_evidence.combine_log_z`)
    partial:   True when a chunked run was interrupted (Ctrl-C) and holds only the draws
               finished before it
    diagnostics: the run's :class:`~bayeswb.core.verdict.Verdict` (computed on first use)

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample("gaussian", "nuts", num_chains=2, num_samples=100, num_warmup=100)
        >>> r.positions.shape
        (2, 100, 10)
    """

    idata: az.InferenceData
    sampler: str
    target: str
    config: dict[str, Any]
    cost: dict[str, float]
    log_z: float | None = None
    log_z_se: float | None = None
    partial: bool = False

    @property
    def positions(self) -> np.ndarray:
        """Unconstrained draws, shape (chains, draws, dim)."""
        return self.idata.unconstrained_posterior["position"].values

    @property
    def log_weights(self) -> np.ndarray | None:
        """Unnormalised log importance weights (chains, draws), or None if unweighted."""
        stats = getattr(self.idata, "sample_stats", None)
        if stats is None or "log_weight" not in stats:
            return None
        return stats["log_weight"].values

    @property
    def manifest(self) -> dict[str, Any] | None:
        """How the run was made: seed, sampler and options, target and its parameters,
        chunking and precision, package versions, git revision, start time (UTC); None
        for a run made before manifests or by hand. See :mod:`bayeswb.core.provenance`."""
        return stored_manifest(self.idata)

    @property
    def is_weighted(self) -> bool:
        return self.log_weights is not None

    @functools.cached_property
    def diagnostics(self) -> Verdict:
        """Whether to believe this run, from its own draws and statistics (no ground truth):
        R-hat, ESS, divergences, E-BFMI, tree depth, acceptance, k-hat, weight collapse,
        log Z spread, flow training; see :mod:`bayeswb.core.verdict`. ``str()`` of it is the
        one-line verdict, ``.ok`` whether every check passed."""
        return diagnose(self.idata, self.config, self.partial)

    def _metadata(self) -> dict[str, Any]:
        return run_metadata(
            self.sampler,
            self.target,
            self.config,
            self.cost,
            self.partial,
            self.log_z,
            self.log_z_se,
        )

    def save(self, path: str) -> str:
        """Write the run to a NetCDF file; :func:`load` reads it back whole.

        The file is replaced whole or not at all (:func:`~bayeswb.core.files.atomic_path`):
        a save killed midway leaves the previous file as it was. A result read lazily from
        ``path`` itself is read into memory first, then saved over its file.
        """
        _read_into_memory_if_from(self.idata, path)
        self.idata.posterior.attrs[RESULT_ATTRIBUTE] = metadata_json(self._metadata())
        with atomic_path(path) as temporary:
            self.idata.to_netcdf(str(temporary))
        return str(path)

    @classmethod
    def load(cls, path: str) -> Result:
        """Read a run written by :meth:`save`."""
        try:
            idata = az.from_netcdf(str(path))
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path} is not a readable bayeswb result ({error})") from None
        if "posterior" not in idata.groups() or RESULT_ATTRIBUTE not in idata.posterior.attrs:
            raise ValueError(
                f"{path} was not written by bayeswb (no {RESULT_ATTRIBUTE!r} metadata)"
            )
        try:
            meta = json.loads(str(idata.posterior.attrs[RESULT_ATTRIBUTE]))
            return cls(idata=_with_weighted_posterior(idata), **meta)
        except (ValueError, TypeError) as error:  # JSONDecodeError is a ValueError
            raise ValueError(
                f"{path}: its bayeswb metadata is damaged ({type(error).__name__}: {error})"
            ) from None

    @classmethod
    def from_draws(
        cls,
        draws: Draws,
        posterior: dict[str, Any],
        warmup_posterior: dict[str, Any] | None,
        *,
        sampler: str,
        target: str,
        config: dict[str, Any],
        timings: dict[str, float],
        partial: bool = False,
    ) -> Result:
        """A Result from a run's host :class:`~bayeswb.core.draws.Draws` and its constrained
        draws (dicts of (chain, draw, ...) arrays); ``timings`` are ``compile_s`` and
        ``sample_s``; log Z is pooled over runs, with each run's own variance where it
        gives one (:func:`~bayeswb.core.log_evidence.combine_log_z`)."""
        log_z_per_run = None if draws.log_z is None else np.asarray(draws.log_z)
        variance = draws.log_z_relative_variance
        own = None if variance is None else np.asarray(variance)
        log_z, log_z_se = combine_log_z(log_z_per_run, own)
        idata = build_idata(
            posterior=posterior,
            positions=draws.positions,
            stats=draws.stats,
            log_weights=draws.log_weights,
            log_z_per_run=log_z_per_run,
            log_z_relative_variance=own,
            warmup_posterior=warmup_posterior,
            warmup_stats=draws.warmup_stats,
            path_stats=draws.path_stats,
        )
        cost = {
            "n_grad_evals": exact_count(draws.n_grad_evals),
            "n_logdensity_evals": exact_count(draws.n_logdensity_evals),
            **timings,
        }
        return cls(idata, sampler, target, config, cost, log_z, log_z_se, partial)

    def __repr__(self) -> str:
        chains, draws, dim = self.positions.shape
        log_z = "" if self.log_z is None else f", log_z={self.log_z:.4g}"
        log_z += ", partial=True" if self.partial else ""
        return (
            f"Result(sampler={self.sampler!r}, target={self.target!r}, chains={chains}, "
            f"draws={draws}, dim={dim}{log_z}, n_grad_evals={self.cost['n_grad_evals']})"
        )


def _read_into_memory_if_from(idata: az.InferenceData, path: str) -> None:
    """Load every group of ``idata`` into memory and close its file, if any group is read
    lazily from ``path`` (which a save is about to replace)."""
    groups = [getattr(idata, name) for name in idata.groups()]
    sources = [group.encoding.get("source") for group in groups]
    if any(source and is_same_file(source, path) for source in sources):
        for group in groups:
            group.load().close()


def _with_weighted_posterior(idata: az.InferenceData) -> az.InferenceData:
    """A weighted run saved before ``weighted_posterior`` existed (its ``posterior`` held
    the weighted particles) in today's layout; any other run as it is."""
    stats = getattr(idata, "sample_stats", None)
    if stats is None or "log_weight" not in stats or "weighted_posterior" in idata.groups():
        return idata
    groups = {name: idata[name] for name in idata.groups()}
    groups["weighted_posterior"] = groups["posterior"]
    groups["posterior"] = equal_weight_posterior(groups["posterior"], stats["log_weight"].values)
    return az.InferenceData(**groups)


def run_metadata(
    sampler: str,
    target: str,
    config: dict[str, Any],
    cost: dict[str, float],
    partial: bool = False,
    log_z: float | None = None,
    log_z_se: float | None = None,
) -> dict[str, Any]:
    """What a saved run keeps besides its draws (``Result``'s fields but ``idata``)."""
    return {
        "sampler": sampler,
        "target": target,
        "config": config,
        "cost": cost,
        "log_z": log_z,
        "log_z_se": log_z_se,
        "partial": partial,
    }


def metadata_json(meta: dict[str, Any]) -> str:
    """``meta`` as the JSON text stored in the ``RESULT_ATTRIBUTE`` attribute (numpy values
    as lists, anything else JSON cannot hold as its repr)."""
    return json.dumps(meta, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return repr(value)


def load(path: str) -> Result:
    """Read a :class:`Result` saved with ``Result.save``.

    Example:
        >>> import bayeswb as bw, tempfile, os
        >>> r = bw.sample("gaussian", "nuts", num_chains=1, num_samples=50, num_warmup=50)
        >>> path = os.path.join(tempfile.mkdtemp(), "run.nc")
        >>> _ = r.save(path)
        >>> bw.load(path).positions.shape
        (1, 50, 10)
    """
    return Result.load(path)
