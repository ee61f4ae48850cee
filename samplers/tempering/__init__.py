"""Non-reversible parallel tempering (``nrpt``).

Syed, Bouchard-Cote, Deligiannidis and Doucet (2021), "Non-reversible parallel tempering:
a scalable highly parallel MCMC scheme", JRSS B 84(2), 321-350.

K + 1 replicas sit at inverse temperatures ``0 = beta_0 < ... < beta_K = 1`` of the path

    pi_beta(x)  proportional to  pi_0(x)^(1 - beta) pi(x)^beta,   log L = log pi - log pi_0,

with ``pi_0`` a normalised reference that is sampled exactly (:mod:`.reference`: smc's
automatic reference by default). A round (their Algorithm 1) is

1. local exploration: a fresh exact draw from ``pi_0`` at level 0, and
   ``num_explore_steps`` steps of an MCMC kernel (one of smc's moves, MALA by default) on
   ``pi_{beta_i}`` at each level i >= 1, in coordinates whitened by the reference fit;
2. communication, deterministic even-odd (DEO): at even rounds the pairs (0, 1), (2, 3),
   ..., at odd rounds (1, 2), (3, 4), ... swap their states with probability

       alpha_i = min(1, exp((beta_{i+1} - beta_i) (log L(x_i) - log L(x_{i+1})))).

DEO makes the index process non-reversible, so a state crosses the ladder in O(K) rounds
rather than O(K^2) (their Theorem 3). The round trip rate, ``1 / (2 + 2 Lambda)`` for
the communication barrier ``Lambda = int_0^1 lambda(beta) d beta`` (their eq. 12, lambda
the local swap rejection rate), is what the schedule maximises: in warmup,
``num_tuning_rounds`` rounds of doubling length each estimate the rejection rates
``r_i`` and re-place the betas at equal steps of ``Lambda(beta_i) = sum_{j<i} r_j``
(their Algorithm 4, :func:`.swaps.barrier_schedule`); a last window, half the warmup,
tunes each level's step size (dual averaging to ``target_acceptance_rate``) for the final
schedule.

log Z by stepping stones (their section 5.3) over the sampling rounds:

    log Z = sum_{i < K} log mean_n exp((beta_{i+1} - beta_i) log L(x_{i,n})).

Output: one chain is one run; its draws are the beta = 1 replica after each round's
swaps; stats ``lp``, ``acceptance_rate``, ``diverging`` and ``step_size`` (the explorer
at beta = 1), ``swap_rejection`` (mean over pairs), ``communication_barrier`` (sum of
the round's rejection probabilities: its mean estimates Lambda), ``round_trips``
(cumulative over the draws), ``n_grad_evals``, ``n_logdensity_evals`` (a round's costs)
and ``log_z`` (the running stepping-stone estimate; the run's ``log_z`` is the estimate
of its last carry, whole or chunked).

Cost per round: ``K (grads_per_init + num_explore_steps grads_per_step)`` gradients of
the explorer (1 + 3 for MALA), as many log densities plus one at level 0; the reference
fit's probe and pilot are counted in the start (gradients and log densities).

Example:
    >>> import bayeswb as bw
    >>> "nrpt" in bw.samplers.names()
    True
"""

from bayeswb.samplers.tempering.nrpt import NRPT_KERNEL, NRPTConfig, run_nrpt

__all__ = ["NRPT_KERNEL", "NRPTConfig", "run_nrpt"]
