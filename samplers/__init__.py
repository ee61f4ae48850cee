"""The sampler families, registered as they are first asked for.

Each subpackage or module is a family and registers its samplers on import (with
:func:`register`); the registry itself lives in the core (:mod:`bayeswb.core.sampler`).
It imports them through :func:`load`: a run imports its own sampler's module (found in
:data:`MODULES`), a list of the names imports them all, so that a process pays for the
families it uses (a NUTS run saves about 0.5-0.8 s of imports on a 2-core machine).

Example:
    >>> import bayeswb as bw
    >>> "nuts" in bw.samplers.names()
    True
    >>> bw.samplers.get("nuts").make_config(num_chains=2).num_chains
    2
"""

from __future__ import annotations

import importlib
import pkgutil

from bayeswb.core.sampler import SAMPLERS, SamplerSpec
from bayeswb.core.sampler import register_sampler as register

__all__ = ["MODULES", "SamplerSpec", "get", "load", "names", "register"]


def names() -> list[str]:
    """Registered sampler names."""
    return SAMPLERS.names()


def get(name: str) -> SamplerSpec:
    """The sampler registered as ``name``; KeyError listing close names otherwise."""
    return SAMPLERS.get(name)


# sampler -> the module of this package that registers it (tests/bayeswb/
# test_registry.py keeps it complete); a sampler missing here is still found, by
# importing every module
MODULES = {
    "ais": "smc.tempered",
    "amis": "importance.adaptive",
    "cmcd": "diffusion.annealed",
    "consensus": "fusion",
    "craft": "flows.craft",
    "csgmcmc": "langevin.sg_hamiltonian",
    "dds": "diffusion.samplers",
    "entropy_mcmc": "langevin.stochastic_gradient",
    "fab": "flows.fab",
    "fbgvi": "fbgvi",
    "flow_is": "flows.weighted",
    "flow_mcmc": "flows.mcmc",
    "flow_vi": "flows.weighted",
    "fullrank_vi": "baselines",
    "fusion": "fusion",
    "gfn_tb": "diffusion.balance",
    "hmc": "baselines",
    "is": "importance.self_normalised",
    "kinetic_langevin": "langevin.kinetic",
    "mala": "langevin.overdamped",
    "mams": "langevin.microcanonical",
    "mc_fusion": "mc_fusion",
    "mclmc": "langevin.microcanonical",
    "meanfield_vi": "baselines",
    "nrpt": "tempering.nrpt",
    "nuts": "baselines",
    "pathfinder": "baselines",
    "pis": "diffusion.samplers",
    "randomized_midpoint": "langevin.randomized_midpoint",
    "scld": "diffusion.sequential",
    "sghmc": "langevin.sg_hamiltonian",
    "sgld": "langevin.stochastic_gradient",
    "smc": "smc.tempered",
    "smc_flow": "flows.smc_flow",
    "smc_langevin": "smc.tempered",
    "snf": "flows.snf",
    "ula": "langevin.overdamped",
    "vis": "importance.variational",
}


def load(name: str | None = None) -> None:
    """Import the module that registers sampler ``name`` (None, or a name not in
    :data:`MODULES`: every module and subpackage of this package)."""
    if name in MODULES:
        importlib.import_module(f"{__name__}.{MODULES[name]}")
        return
    for module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(module.name)
