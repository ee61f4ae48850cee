"""Diffusion samplers: a learnt control steers a Gaussian reference chain from a simple
start to the target, and the exact weight of each path corrects what training left.

- ``pis`` (Zhang and Chen 2022) and ``dds`` (Vargas, Grathwohl and Doucet 2023), trained by
  the reverse KL of the path laws, on a Brownian and an Ornstein-Uhlenbeck reference;
- ``gfn_tb`` (Lahlou et al. 2023; Sendera et al. 2024), PIS's chain trained by trajectory
  balance with a learnt log Z, exploration, local search and a replay buffer
  (:mod:`.balance`);
- ``cmcd`` (Vargas, Padhy, Blessing and Nuesken 2024), annealed Langevin kernels forward
  and backward with a shared learnt control (:mod:`.annealed`);
- ``scld`` (Chen, Richter, Berner, Blessing, Neumann and Anandkumar 2025), cmcd's kernels
  trained by each segment's log-variance on paths resampled between segments, and drawn
  as an SMC sampler over them (:mod:`.sequential`).

:mod:`.paths` holds the reference chains, the control network and the path weights;
:mod:`.samplers` the configs, losses, training (the flows' optax loop and plateau rule)
and the registered samplers, whose output is weighted like the flows' (log Z, ESS,
PSIS k-hat, the training's convergence).
"""

from bayeswb.samplers.diffusion.balance import GFNConfig
from bayeswb.samplers.diffusion.paths import (
    Control,
    Reference,
    brownian_reference,
    ornstein_uhlenbeck_reference,
    simulate,
)
from bayeswb.samplers.diffusion.samplers import DiffusionConfig

__all__ = [
    "Control",
    "DiffusionConfig",
    "GFNConfig",
    "Reference",
    "brownian_reference",
    "ornstein_uhlenbeck_reference",
    "simulate",
]
