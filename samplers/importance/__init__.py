"""The importance family: weighted draws from a proposal, one log Z per independent run.

Samplers (registered on import):

- ``is``   :mod:`~bayeswb.samplers.importance.self_normalised`: self-normalised importance
  sampling with a registered proposal (``prior``, ``laplace``, ``gaussian_vi``, see
  :mod:`~bayeswb.samplers.importance.standard_proposals`, or one a module adds);
- ``amis`` :mod:`~bayeswb.samplers.importance.adaptive`: adaptive multiple importance
  sampling with a mixture proposal (:mod:`~bayeswb.samplers.importance.mixtures`);
- ``vis``  :mod:`~bayeswb.samplers.importance.variational`: a Gaussian proposal fitted by
  forward chi^2 or reverse KL (:mod:`~bayeswb.samplers.importance.gaussian_fits`);
- ``mc_fusion`` (:mod:`samplers.mc_fusion`, beside fusion, whose shards it shares): data
  shards' sub-posterior draws joined through Brownian bridges and weighted, without a
  log Z (the sub-posteriors' normalisers are unknown).

Shared parts: :mod:`~bayeswb.samplers.importance.proposals` (the proposal interface, the
draw-and-weight step and the proposal registry), :mod:`~bayeswb.samplers.importance.output`
(log Z, PSIS k-hat and Kish ESS of a run's weights; the flows use it too) and
:mod:`~bayeswb.samplers.importance.control_variates` (several expectations from one
weighted Result). Conventions: log weights stay logs, a NaN or ``-inf`` log density is a
weight of zero, and a run's ``log Z = log mean w`` is unbiased for ``Z`` on the natural
scale.

Example:
    >>> import bayeswb as bw
    >>> sorted(n for n in bw.samplers.names() if bw.samplers.get(n).family == "importance")
    ['amis', 'is', 'mc_fusion', 'vis']
"""

from bayeswb.core.weights import log_mean_exp
from bayeswb.samplers.importance import standard_proposals  # noqa: F401  (registers prior, ...)
from bayeswb.samplers.importance.adaptive import AMISConfig, run_amis
from bayeswb.samplers.importance.control_variates import (
    control_variate_estimates,
    control_variate_fit,
)
from bayeswb.samplers.importance.gaussian_fits import fit_gaussian_chi2, fit_gaussian_vi
from bayeswb.samplers.importance.mixtures import (
    MixtureParams,
    em_update,
    mixture_component_log_probs,
    mixture_distribution,
    mixture_log_prob,
)
from bayeswb.samplers.importance.output import RELIABLE_PARETO_K, pareto_smooth, weighted_output
from bayeswb.samplers.importance.plain_linalg import cholesky_lower, solve_lower
from bayeswb.samplers.importance.proposals import (
    DistributionProposal,
    FunctionProposal,
    ProposalBuilder,
    gaussian_or_student_t,
    importance_sample,
    register_proposal,
)
from bayeswb.samplers.importance.self_normalised import ISConfig, run_is, run_with_proposal
from bayeswb.samplers.importance.variational import VISConfig, run_vis

__all__ = [
    "RELIABLE_PARETO_K",
    "AMISConfig",
    "DistributionProposal",
    "FunctionProposal",
    "ISConfig",
    "MixtureParams",
    "ProposalBuilder",
    "VISConfig",
    "cholesky_lower",
    "control_variate_estimates",
    "control_variate_fit",
    "em_update",
    "fit_gaussian_chi2",
    "fit_gaussian_vi",
    "gaussian_or_student_t",
    "importance_sample",
    "log_mean_exp",
    "mixture_component_log_probs",
    "mixture_distribution",
    "mixture_log_prob",
    "pareto_smooth",
    "register_proposal",
    "run_amis",
    "run_is",
    "run_vis",
    "run_with_proposal",
    "solve_lower",
    "weighted_output",
]
