"""Flow-based samplers: normalizing flows (flowjax) trained with optax inside ``lax.scan``.

The samplers, each registered in the ``flow`` family:

- ``flow_vi`` and ``flow_is`` (:mod:`.weighted`): per run, one flow trained
  (:func:`~.fitting.fit_flow`), then its draws importance weighted against the target;
- ``flow_mcmc`` (:mod:`.mcmc`): MALA chains with independence proposals from one flow
  trained on the chains during warmup (flowMC);
- ``snf`` (:mod:`.snf`, the flow and its paths in :mod:`.snf_paths`): stochastic
  normalizing flows, coupling blocks interleaved with Markov steps;
- ``smc_flow`` (:mod:`.smc_flow`): a trained flow's draws annealed to the target by
  annealed-Langevin SMC (a Sequential Boltzmann Generator);
- ``fab`` (:mod:`.fab`): flow annealed importance sampling bootstrap, a flow trained by
  the alpha = 2 divergence estimated with AIS, then AIS from it;
- ``craft`` (:mod:`.craft`): SMC whose steps first push the particles through transports
  trained by CRAFT's objective.

The flow toolkit they share: :mod:`.architectures` (building a flow, and the architecture
options every flow config inherits, declared once), :mod:`.bijections` (the radial layer
flowjax lacks), :mod:`.losses` (reverse KL, forward KL, their mix), :mod:`.training` (the
optax loop), :mod:`.io` (saving and loading a trained flow) and :mod:`.fitting` (one flow
built and trained from a config).

A flow is a flowjax ``Transformed`` distribution: a standard normal base on R^dim pushed
through flowjax's own bijections (planar layers, affine or rational-quadratic-spline
coupling layers, masked autoregressive layers), or through the radial layers of Rezende
and Mohamed (2015), which flowjax lacks and :class:`Radial` adds, followed by a trainable
elementwise affine map ``x = loc + scale * y`` that sets the flow's overall location and
scale. The losses are flowjax's ``ElboLoss`` (reverse KL, with the sticking-the-landing
option) and ``MaximumLikelihoodLoss`` (forward KL). Training is a ``lax.scan`` over optax
steps (flowjax's own ``fit_*`` loops are Python loops), so a whole run, training
included, is one compiled program; the progress bar with the loss is fed from inside the
scan by ``jax.debug.callback`` about every 2% of the steps
(:func:`~bayeswb.core.progress.report_progress`) and is silent when stderr is not a
terminal. The loss curve is also returned.

A step whose loss or gradient is not finite is skipped (parameters and optimiser state
are kept); importance log weights that are NaN or -inf give weight zero, and their
positions are replaced by zeros so that a weighted moment never meets a NaN.

Example:
    >>> import jax
    >>> from bayeswb.samplers.flows import make_flow
    >>> make_flow(jax.random.key(0), 2, "maf", num_layers=2).sample(jax.random.key(1)).shape
    (2,)
"""

from bayeswb.samplers.flows.architectures import (
    FLOW_TYPES,
    INVERTIBLE_FLOW_TYPES,
    FlowArchitecture,
    architecture_option,
    make_flow,
)
from bayeswb.samplers.flows.bijections import Radial, radial_flow
from bayeswb.samplers.flows.craft import CRAFTConfig, run_craft
from bayeswb.samplers.flows.fab import FABConfig, run_fab
from bayeswb.samplers.flows.fitting import (
    FlowConfig,
    FlowISConfig,
    FlowVIConfig,
    fit_flow,
    flow_loss,
    initial_flow,
    training_gradients,
    training_optimizer,
)
from bayeswb.samplers.flows.io import load_flow, save_flow
from bayeswb.samplers.flows.losses import (
    LossFn,
    forward_kl_loss,
    linear_annealing,
    mixed_loss,
    objective_loss,
    reverse_kl_loss,
)
from bayeswb.samplers.flows.mcmc import FlowMCMCConfig, run_flow_mcmc
from bayeswb.samplers.flows.smc_flow import SMCFlowConfig, flow_reference, run_smc_flow
from bayeswb.samplers.flows.snf import SNFConfig, run_snf, train_snf
from bayeswb.samplers.flows.snf_paths import StochasticNormalizingFlow, make_snf
from bayeswb.samplers.flows.training import partition_flow, train_flow
from bayeswb.samplers.flows.weighted import importance_weights, run_flow_is, run_flow_vi

__all__ = [
    "CRAFTConfig",
    "FABConfig",
    "FLOW_TYPES",
    "INVERTIBLE_FLOW_TYPES",
    "FlowArchitecture",
    "FlowConfig",
    "FlowISConfig",
    "FlowMCMCConfig",
    "FlowVIConfig",
    "LossFn",
    "Radial",
    "SMCFlowConfig",
    "SNFConfig",
    "StochasticNormalizingFlow",
    "architecture_option",
    "fit_flow",
    "flow_loss",
    "flow_reference",
    "forward_kl_loss",
    "importance_weights",
    "initial_flow",
    "linear_annealing",
    "load_flow",
    "make_flow",
    "make_snf",
    "mixed_loss",
    "objective_loss",
    "partition_flow",
    "radial_flow",
    "reverse_kl_loss",
    "run_craft",
    "run_fab",
    "run_flow_is",
    "run_flow_mcmc",
    "run_flow_vi",
    "run_smc_flow",
    "run_snf",
    "save_flow",
    "train_flow",
    "train_snf",
    "training_gradients",
    "training_optimizer",
]
