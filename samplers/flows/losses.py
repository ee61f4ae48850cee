"""Flow training losses: reverse KL (with sticking the landing and annealing), forward KL,
their mix (:func:`objective_loss`, by a config's ``objective``), and the annealing
schedule; flowjax's losses, as ``loss(params, static, key) -> (loss, aux)`` for
:func:`~.training.train_flow`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flowjax.train.losses import ElboLoss, MaximumLikelihoodLoss

from bayeswb.core.target import Target

Array = jax.Array
LossFn = Callable[..., tuple[Array, dict[str, Array]]]


def reverse_kl_loss(
    logdensity_fn: Callable[[Array], Array], num_mc_samples: int, stl_estimator: bool
) -> LossFn:
    """Reverse KL up to log Z: ``E_q[log q(x) - log p(x)] = -ELBO`` (Rezende and Mohamed
    2015, eq. 15), flowjax's ``ElboLoss`` with ``num_mc_samples`` reparameterised draws;
    ``stl_estimator`` is the sticking-the-landing gradient (Roeder, Wu and Duvenaud 2017,
    eq. 8). Each evaluation costs ``num_mc_samples`` target gradients.

    Returns ``loss(params, static, key, beta=1.0) -> (loss, {"elbo": -loss})``; ``beta``
    is an inverse temperature on the target, ``E_q[log q - beta log p]`` (the annealed
    free energy of Rezende and Mohamed 2015, section 6.1, used with a schedule by
    :func:`~.training.train_flow`).
    """
    # flowjax annotates the target as taking any ArrayLike, but calls it only on its own
    # samples, which are Arrays
    elbo_loss = ElboLoss(
        logdensity_fn,  # type: ignore[arg-type]
        num_mc_samples,
        stick_the_landing=stl_estimator,
    )

    def loss(
        params: Any, static: Any, key: Array, beta: Array | float = 1.0
    ) -> tuple[Array, dict[str, Array]]:
        if isinstance(beta, float) and beta == 1.0:
            value = elbo_loss(params, static, key)
        else:
            tempered = lambda x: beta * logdensity_fn(x)
            value = ElboLoss(tempered, num_mc_samples, stick_the_landing=stl_estimator)(
                params, static, key
            )
        return value, {"elbo": -value}

    return loss


def forward_kl_loss(sample_fn: Callable[[Array, int], Array], batch_size: int) -> LossFn:
    """Forward KL up to the target's entropy: ``-E_p[log q(x)]`` on ``batch_size`` draws
    ``sample_fn(key, n) -> (n, dim)`` of the target (maximum likelihood; the Boltzmann
    generator's "training by example", Noe et al. 2019, eq. 6); flowjax's
    ``MaximumLikelihoodLoss``. Costs no target evaluation.

    Returns ``loss(params, static, key) -> (loss, {"forward_nll": loss})``.
    """
    nll = MaximumLikelihoodLoss()

    def loss(params: Any, static: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        value = nll(params, static, sample_fn(key, batch_size))
        return value, {"forward_nll": value}

    return loss


def mixed_loss(reverse: LossFn, forward: LossFn, forward_weight: float) -> LossFn:
    """``forward_weight * forward + (1 - forward_weight) * reverse`` (Noe et al. 2019,
    eq. 8, with their weights normalised to sum to one); the aux dicts are merged."""

    def loss(params: Any, static: Any, key: Array) -> tuple[Array, dict[str, Array]]:
        reverse_key, forward_key = jax.random.split(key)
        reverse_value, reverse_aux = reverse(params, static, reverse_key)
        forward_value, forward_aux = forward(params, static, forward_key)
        value = forward_weight * forward_value + (1.0 - forward_weight) * reverse_value
        return value, {**reverse_aux, **forward_aux}

    return loss


def linear_annealing(num_anneal_steps: int, beta_0: float = 0.01) -> Callable[[Array], Array]:
    """``beta_t = min(1, beta_0 + t / num_anneal_steps)``: the inverse-temperature ramp of
    Rezende and Mohamed (2015, section 6.1: ``beta_0 = 0.01`` over 10000 steps).

    Example:
        >>> [round(float(linear_annealing(100)(t)), 4) for t in (0, 50, 200)]
        [0.01, 0.51, 1.0]
    """
    return lambda step: jnp.minimum(1.0, beta_0 + step / num_anneal_steps)


def objective_loss(
    objective: str,
    target: Target,
    reverse: LossFn,
    forward: Callable[[Callable[[Array, int], Array]], LossFn],
    forward_weight: float,
) -> LossFn:
    """The training loss ``objective`` names (``"reverse_kl"``, ``"forward_kl"`` or
    ``"mixed"``, :func:`mixed_loss`), from the ``reverse`` loss and ``forward(sample_fn)``,
    the forward loss on draws ``sample_fn(key, n)``; forward KL and mixed need
    ``target.sample_exact``.

    Example:
        >>> import bayeswb as bw
        >>> target = bw.Target.from_logdensity(lambda x: -0.5 * x @ x, dim=2)
        >>> objective_loss("mixed", target, None, None, 0.5)
        Traceback (most recent call last):
        ValueError: objective 'mixed' needs exact target samples, and target ...
    """
    if objective == "reverse_kl":
        return reverse
    if target.sample_exact is None:
        raise ValueError(
            f"objective {objective!r} needs exact target samples, and target "
            f"{target.name!r} has no sample_exact; use objective='reverse_kl'"
        )
    forward_loss = forward(target.sample_exact)
    if objective == "forward_kl":
        return forward_loss
    return mixed_loss(reverse, forward_loss, forward_weight)
