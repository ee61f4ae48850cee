"""Sequential Monte Carlo with log Z: adaptive tempered SMC, AIS and annealed-Langevin SMC.

All three anneal from a Gaussian reference ``q = N(0, reference_scale^2 I)`` (smc and ais
optionally from a multivariate Student-t, ``reference_dof``, whose polynomial tails temper
a target's far tails much less, or from a Gaussian fitted to an independent pilot run's
particles, ``fit_reference_particles``; smc_flow, a flow-family sampler, from
a trained flow: any :class:`~.references.Reference` works) to the target ``gamma``
(unnormalised) along the geometric path

    pi_beta(x)  proportional to  q(x)^(1 - beta) gamma(x)^beta,   0 = beta_0 < ... < beta_T = 1,

and estimate ``Z = int gamma`` (``q`` is normalised, so ``Z_0 = 1``). They share one loop
(:func:`~.kernel.anneal`, driven by :func:`~.annealing.run_annealing`), run per
independent run as a ``lax.while_loop`` of :func:`~.kernel.step` and vmapped over
``num_chains`` runs of ``num_samples`` particles. One step ``t -> t + 1``:

1. next temperature: fixed schedule, or the largest ``beta`` whose conditional ESS
   ``N (sum_i W_i w_i)^2 / sum_i W_i w_i^2`` (Zhou, Johansen and Aston 2016, section 3)
   of the incremental weights ``w_i`` equals
   ``target_conditional_ess * N``, by blackjax's bisection (``smc.solver.dichotomy``);
2. reweight: ``log w_i += (beta_{t+1} - beta_t) (log gamma(x_i) - log q(x_i))``,
   ``log Z += log sum_i W_i exp(...)`` (W normalised weights);
3. resample (blackjax's schemes) only if the ESS falls below ``ess_threshold * N``;
4. move every particle with a kernel for ``pi_{beta_{t+1}}`` (:mod:`.moves`), run
   in coordinates whitened by the weighted particles' mean and covariance (its Cholesky
   factor where their correlations are badly conditioned, else their sds; the sds above
   100 coordinates: :func:`.tuning.particle_whitening`; a move then sees a strongly
   correlated target as uncorrelated), with the step size
   retuned from the population's acceptance rate after every sweep; optionally each
   particle's step size is drawn from ``h exp(-s U)`` (``step_size_spread = s``), a
   mixture of invariant kernels that covers regions of very different scales (a
   funnel's neck and mouth: ``move="hmc", step_size_spread=4.6,
   target_conditional_ess=0.9`` passes the funnel test, where MALA with one step misses
   the neck); ``move="local_hmc"`` instead scales each transition's step by the local
   gradient norm (exact by a GIST correction, :func:`.moves.local_hmc_move`), which
   with ``precondition=False`` and a Student-t reference is what fills the dim-10 funnel's
   neck and mouth in the Sendera et al. benchmark.

Defaults tune themselves from the target's density and the particles, never from a known
answer (``reference_scale=None``, ``num_mcmc_steps=None``):

- the reference: a ray probe of log gamma (:func:`~bayeswb.core.probe.probe_scale`: the largest
  radius from the origin at which the density is within a Gaussian typical-set margin of
  the highest value seen, doubled) gives a wide ``N(0, s^2 I)``; an independent pilot
  run (adaptive tempered SMC with an MCMC move; for smc as many particles as the main
  run, and the two are two passes of one compiled loop; for ais and smc_langevin, whose
  main runs differ from it, 512 in two independent runs of 256) anneals from it, and the
  main run starts from ``N(mean, diag (2 sd)^2)`` of the pilot's weighted particles, or
  ``N(mean, 4 Sigma)`` with their covariance where their correlations are badly
  conditioned, as the moves' whitening, or for the two halves where the covariance of
  each predicts the other better than its sds (:func:`.tuning.held_out_whitening`:
  particles that share a few ancestors share their modes too) (the factor 2 is argued in
  :func:`~.annealing.run_annealing`). A pilot that starts wider
  than the target sees every mode its particles can reach by reweighting, so its sd
  includes the spread between modes (gmm25: sd 7, not the modes' 0.55);
- the step size: retuned after every sweep towards the move's target acceptance;
- the sweeps per temperature (smc, ais): until the particles have moved as far as
  independent draws would, each coordinate measured against the population's spread of
  it (Buchholz, Chopin and Jacob 2021), or their reach saturates,
  at most ``max_mcmc_steps`` (:func:`~.mutation.adaptive_sweeps`); smc_langevin keeps 5
  unadjusted steps (each adds to the weights' variance).

Exactness: with a fixed schedule, ``precondition=False`` and ``adapt_step_size=False``
each run's ``Z`` estimate is unbiased. Adapting temperatures, whitening and step size
from the run's own particles makes it consistent with an O(1/N) bias (measured: +5% in Z
at N = 128, +1.3% at N = 512, on a 10-d Gaussian with 10 steps), large for the
unadjusted transport, whose weights depend on the tuning. ``pilot_particles = n > 0``
removes it: an independent pilot run of n particles adapts, and the main run replays its
temperatures, whitening and step sizes (Tuning) without adapting anything.

Log weights stay in log space; a NaN log density is mapped to -inf (weight zero), and a
run whose particles all die has ``log_z = -inf``, never NaN.

Output (``Draws``): positions (runs, particles, dim) at beta = 1; ``log_weights`` =
``log Z_r + log W_{r,i}`` (unnormalised: pooled over runs they weight each run by its
evidence, as raw importance weights do); ``log_z`` (runs,); ``log_z_relative_variance``
(runs,), each run's own estimate of ``Var(Z_hat) / Z**2`` from its particles' genealogy
(:mod:`.genealogy`; None for waste-free SMC); ``stats["lp"]`` = log gamma,
``stats["family"]`` each particle's initial ancestor.
``path_stats`` (runs, num_steps), entry t describing step t (padding value after a run's
last step: NaN for floats, False for ``resampled``):

- ``temperature``: beta after the step; ``log_z_increment``: its log Z increment
- ``ess``: ESS of the weights after reweighting, before resampling
- ``resampled``: whether the step resampled
- ``acceptance_rate``: weighted mean acceptance of the move, averaged over its sweeps
  (for an unadjusted transport: the Metropolis-Hastings probability it would have had)
- ``step_size``: the step size (in whitened coordinates) at the end of the step
- ``num_sweeps``: the move's sweeps at the step (exact cost: ``n_grad_evals`` counts them)
- ``reference_pilot_temperature``, ``reference_pilot_num_sweeps``,
  ``reference_pilot_ess``: the same for the reference-fitting pilot, when there is one

``num_warmup`` is unused by the SMC family.

Modules (blackjax's shape: a :class:`~.state.State`, a :func:`~.kernel.step` made of small
parts passed in as functions, :class:`~.kernel.Parts`, and a loop over steps):

- :mod:`.state`: State, Info (one step's report) and Tuning (what a pilot hands on)
- :mod:`.kernel`: Parts, init, step and anneal (the loop)
- :mod:`.tempering`: schedules and reweighting; :mod:`.resampling`: ESS-triggered, none
  (AIS), waste-free; :mod:`.tuning`: whitening and step size; :mod:`.mutation`: the
  move's sweeps and which states are kept (waste-free keeps all)
- :mod:`.moves`: the moves; :mod:`.references`: the references q
- :mod:`.settings`: the configs; :mod:`.annealing`: run_annealing (pilots, cost);
  :mod:`.tempered`: the registered smc, ais and smc_langevin; :mod:`.genealogy`: a
  run's own variance of its log Z
"""

from bayeswb.core.probe import probe_scale
from bayeswb.samplers.smc.annealing import annealing_parts, run_annealing
from bayeswb.samplers.smc.kernel import Annealed, Parts, anneal, init, step
from bayeswb.samplers.smc.moves import (
    MCMC_MOVES,
    TRANSPORT_MOVES,
    Move,
    MoveInfo,
    hmc_move,
    kinetic_langevin_move,
    local_hmc_move,
    make_move,
    mala_move,
    mcmc_move,
    rwm_move,
    ula_transport,
)
from bayeswb.samplers.smc.mutation import (
    Kept,
    Sweeps,
    adaptive_sweeps,
    keep_all,
    keep_last,
    sweeps,
)
from bayeswb.samplers.smc.references import (
    Reference,
    diagonal_gaussian_reference,
    diagonal_student_t_reference,
    gaussian_reference,
    moment_matched_reference,
    student_t_reference,
    whitened_reference,
)
from bayeswb.samplers.smc.resampling import (
    RESAMPLING_SCHEMES,
    Resampled,
    ess_resampling,
    no_resampling,
    waste_free_resampling,
)
from bayeswb.samplers.smc.settings import (
    AISConfig,
    AnnealingSettings,
    LangevinTransportSettings,
    SMCConfig,
    SMCLangevinConfig,
)
from bayeswb.samplers.smc.state import Info, State, Tuning
from bayeswb.samplers.smc.tempered import run_ais, run_smc, run_smc_langevin
from bayeswb.samplers.smc.tempering import (
    SCHEDULES,
    Reweighted,
    adaptive_schedule,
    fixed_schedule,
    ladder_schedule,
    make_schedule,
    reweight,
)
from bayeswb.samplers.smc.tuning import (
    Tuner,
    Whitening,
    adaptive_tuner,
    alive_weights,
    covariance_whitening,
    moment_whitening,
    normalised_weights,
    replay_tuner,
)

__all__ = [
    "MCMC_MOVES",
    "RESAMPLING_SCHEMES",
    "SCHEDULES",
    "TRANSPORT_MOVES",
    "AISConfig",
    "Annealed",
    "AnnealingSettings",
    "Info",
    "Kept",
    "LangevinTransportSettings",
    "Move",
    "MoveInfo",
    "Parts",
    "Reference",
    "Resampled",
    "Reweighted",
    "SMCConfig",
    "SMCLangevinConfig",
    "State",
    "Sweeps",
    "Tuner",
    "Tuning",
    "Whitening",
    "adaptive_schedule",
    "adaptive_sweeps",
    "adaptive_tuner",
    "alive_weights",
    "anneal",
    "annealing_parts",
    "covariance_whitening",
    "diagonal_gaussian_reference",
    "diagonal_student_t_reference",
    "ess_resampling",
    "fixed_schedule",
    "gaussian_reference",
    "hmc_move",
    "init",
    "keep_all",
    "keep_last",
    "kinetic_langevin_move",
    "ladder_schedule",
    "local_hmc_move",
    "make_move",
    "make_schedule",
    "mala_move",
    "mcmc_move",
    "moment_matched_reference",
    "moment_whitening",
    "no_resampling",
    "probe_scale",
    "normalised_weights",
    "replay_tuner",
    "reweight",
    "run_ais",
    "run_annealing",
    "run_smc",
    "run_smc_langevin",
    "rwm_move",
    "step",
    "student_t_reference",
    "sweeps",
    "ula_transport",
    "waste_free_resampling",
    "whitened_reference",
]
