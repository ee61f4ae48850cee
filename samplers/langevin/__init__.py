"""The Langevin family: ``ula``, ``mala``, ``kinetic_langevin``, ``randomized_midpoint``,
``mclmc``, ``mams``, ``sgld``, ``entropy_mcmc``, ``sghmc`` and ``csgmcmc``.

Modules:

- :mod:`~bayeswb.samplers.langevin.overdamped`: ``ula``, ``mala``;
- :mod:`~bayeswb.samplers.langevin.kinetic`: ``kinetic_langevin`` (Euler, BAOAB, OBABO);
- :mod:`~bayeswb.samplers.langevin.randomized_midpoint`: ``randomized_midpoint``;
- :mod:`~bayeswb.samplers.langevin.microcanonical`: ``mclmc``, ``mams`` (blackjax's, with
  their tuners);
- :mod:`~bayeswb.samplers.langevin.stochastic_gradient`: ``sgld``, ``entropy_mcmc``;
- :mod:`~bayeswb.samplers.langevin.sg_hamiltonian`: ``sghmc``, ``csgmcmc`` (cyclical);
- shared: :mod:`~bayeswb.samplers.langevin.chain_kernel` (a sampler's ChainKernel from
  its kernel), :mod:`~bayeswb.samplers.langevin.warmup` (the one warmup, on by default:
  dual averaging of the step size, to an acceptance rate or, for unadjusted samplers, an
  energy-error variance; a diagonal mass matrix in Stan's windows by blackjax's
  adaptation),
  :mod:`~bayeswb.samplers.langevin.preconditioning` (a diagonal mass matrix as a
  whitening) and :mod:`~bayeswb.samplers.langevin.divergence` (non-finite steps).

Every sampler is written once, as a kernel in blackjax's pattern (``init``,
``build_kernel``, ``kernel(key, state, ...) -> (State, Info)``; blackjax's own where it
has one), and run through :func:`~bayeswb.samplers.langevin.chain_kernel.langevin_chain_kernel`,
so one code path runs it whole or in chunks with checkpoints. A new Langevin-type MCMC
sampler is a config class, a ``build(target, config) ->``
:class:`~bayeswb.samplers.langevin.chain_kernel.LangevinMethod` (its kernel, what a step
reports, its :class:`~bayeswb.samplers.langevin.warmup.WarmupPlan`),
``KERNEL = langevin_chain_kernel(build)`` and a registered ``run`` returning
``run_whole(key, target, config, KERNEL, layout)``.
"""

# the names other code imports from the family
from bayeswb.samplers.langevin.kinetic import KineticState, kinetic_build_kernel
from bayeswb.samplers.langevin.randomized_midpoint import randomized_midpoint_noise_matrix

__all__ = ["KineticState", "kinetic_build_kernel", "randomized_midpoint_noise_matrix"]
