"""The registered samplers of the SMC family: ``smc``, ``ais`` and ``smc_langevin``
(see :mod:`bayeswb.samplers.smc` for the path, the step and the outputs)."""

from __future__ import annotations

import jax

from bayeswb.core.draws import Draws
from bayeswb.core.target import Target
from bayeswb.execution.driver import ChainLayout
from bayeswb.samplers import register
from bayeswb.samplers.smc.annealing import run_annealing
from bayeswb.samplers.smc.settings import AISConfig, SMCConfig, SMCLangevinConfig

Array = jax.Array


@register("smc", SMCConfig, family="smc")
def run_smc(
    key: Array, target: Target, config: SMCConfig, layout: ChainLayout | None = None
) -> Draws:
    """Adaptive tempered SMC sampler (Del Moral, Doucet and Jasra 2006, Section 3.3.2.3:
    MCMC moves with the time-reversal backward kernel, incremental weight
    ``gamma_n(x_{n-1}) / gamma_{n-1}(x_{n-1})``; their eq. 14 gives the log Z estimate as
    the product of the mean incremental weights).

    Temperatures by bisection on the conditional ESS (Zhou, Johansen and Aston 2016);
    resampling only when the ESS falls below ``ess_threshold * N`` (systematic,
    stratified, multinomial or residual, from blackjax); moves (``mala``, ``hmc``,
    ``local_hmc``, ``rwm``, ``kinetic_langevin`` or any
    :class:`~bayeswb.samplers.smc.moves.Move`) on whitened particles with
    the step size retuned after each sweep, ``log h += acceptance - target``. With
    ``waste_free_chains = M``, the waste-free variant of Dau and Chopin (2022, Algorithm
    2): resample M particles, run each as a chain of ``N / M - 1`` steps and keep all
    states. See the module docstring for outputs and ``path_stats``.

    Defaults tune themselves: the reference is fitted by a pilot run started from a
    probe-widened Gaussian and widened twice over (:func:`~.annealing.run_annealing`),
    and the sweeps per temperature run until the particles decorrelate
    (:func:`~.mutation.adaptive_sweeps`, after Buchholz, Chopin and Jacob 2021); an
    explicit ``reference_scale`` or ``num_mcmc_steps`` fixes them as before.

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample(bw.models.get("gaussian", dim=2), "smc", num_chains=2,
        ...               num_samples=200)
        >>> r.log_z is not None, "temperature" in r.idata.path_stats
        (True, True)
    """
    draws, _ = run_annealing(
        key,
        target,
        config,
        config.resampling,
        config.ess_threshold,
        config.waste_free_chains,
        reference_scale=config.reference_scale,
        reference_dof=config.reference_dof,
        fit_reference_particles=config.fit_reference_particles,
        layout=layout,
    )
    return draws


@register("ais", AISConfig, family="smc")
def run_ais(
    key: Array, target: Target, config: AISConfig, layout: ChainLayout | None = None
) -> Draws:
    """Annealed importance sampling (Neal 2001, section 2): each particle is moved by
    kernels ``T_j`` leaving ``pi_{beta_j}`` invariant and weighted by
    ``prod_j gamma_{beta_j}(x_{j-1}) / gamma_{beta_{j-1}}(x_{j-1})``; no resampling.
    Same moves and schedules as :func:`run_smc` (the whitening and step size are
    computed from the weighted population). ``log Z`` of a run is the log mean of its
    particles' weights. Its default reference and sweeps are tuned as :func:`run_smc`'s
    (the reference-fitting pilot is a resampled SMC run, not AIS).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample(bw.models.get("gaussian", dim=2), "ais", num_chains=2,
        ...               num_samples=100, num_steps=20)
        >>> bool(r.idata.path_stats["resampled"].any())
        False
    """
    draws, _ = run_annealing(
        key,
        target,
        config,
        None,
        0.0,
        reference_scale=config.reference_scale,
        reference_dof=config.reference_dof,
        fit_reference_particles=config.fit_reference_particles,
        layout=layout,
    )
    return draws


@register("smc_langevin", SMCLangevinConfig, family="smc")
def run_smc_langevin(
    key: Array, target: Target, config: SMCLangevinConfig, layout: ChainLayout | None = None
) -> Draws:
    """Annealed-Langevin SMC: the continuous-time SMC of Sequential Boltzmann Generators
    (Tan, Bose, Lin, Klein, Bronstein and Tong 2025, without the flow) made exact in
    discrete time.

    Particles are transported by ``num_mcmc_steps`` unadjusted Langevin steps per
    temperature (never rejected), and weighted by the tempering factor times each step's
    ``pi(y) K(x | y) / (pi(x) K(y | x))`` (:func:`~bayeswb.samplers.smc.moves.ula_transport`),
    i.e. the work of Jarzynski (1997: ``<exp(-W)> = exp(-Delta F)``) plus the
    Euler discretisation correction, so log Z is unbiased on the natural scale for every
    step size. Resampling is triggered by the ESS. The step size is retuned so the
    would-be MALA acceptance (which controls the weights' variance) meets the target.
    The default reference is fitted as :func:`run_smc`'s (its pilot moves by MALA).

    Example:
        >>> import bayeswb as bw
        >>> r = bw.sample(bw.models.get("gaussian", dim=2), "smc_langevin", num_chains=2,
        ...               num_samples=200)
        >>> r.idata.path_stats["ess"].dims
        ('chain', 'step')
    """
    draws, _ = run_annealing(
        key,
        target,
        config,
        config.resampling,
        config.ess_threshold,
        reference_scale=config.reference_scale,
        fit_reference_particles=config.fit_reference_particles,
        layout=layout,
    )
    return draws
