"""Proposals: what they are, how draws get weighted, and the registry ``is`` chooses from.

A *proposal* is any object with ``sample_and_log_prob(key, sample_shape) -> (x, log_q)``,
``x`` of shape ``sample_shape + (dim,)`` and ``log_q`` of shape ``sample_shape``. That is
flowjax's signature, so a flowjax distribution (a trained flow) is a proposal as it is;
numpyro distributions are wrapped by :class:`DistributionProposal`. Proposals are built per
run by a *proposal builder* registered with :func:`register_proposal`, which is the hook
through which a flow module adds ``proposal="flow"`` without touching this package (the
built-in builders are in :mod:`bayeswb.samplers.importance.standard_proposals`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpyro.distributions as dist

from bayeswb.core.target import Target
from bayeswb.core.weights import safe_log_weights

Array = jax.Array


class DistributionProposal(NamedTuple):
    """A numpyro distribution (event shape ``(dim,)``) as a proposal.

    Example:
        >>> import jax.numpy as jnp
        >>> q = DistributionProposal(dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)))
        >>> x, log_q = q.sample_and_log_prob(jax.random.key(0), (5,))
        >>> x.shape, log_q.shape
        ((5, 2), (5,))
    """

    distribution: dist.Distribution

    def sample_and_log_prob(
        self, key: Array, sample_shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        x = self.distribution.sample(key, sample_shape)
        return x, self.distribution.log_prob(x)

    def log_prob(self, x: Array) -> Array:
        return self.distribution.log_prob(x)


class FunctionProposal(NamedTuple):
    """A proposal from ``sample(key, n) -> (n, dim)`` and ``log_prob(x) -> scalar``."""

    sample: Callable[[Array, int], Array]
    log_prob: Callable[[Array], Array]

    def sample_and_log_prob(
        self, key: Array, sample_shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        (n,) = sample_shape
        x = self.sample(key, n)
        return x, jax.vmap(self.log_prob)(x)


def gaussian_or_student_t(
    loc: Array, scale_tril: Array, family: str, df: float
) -> dist.Distribution:
    """``N(loc, L L^T)`` or the multivariate Student-t with ``df`` and scale ``L`` (numpyro)."""
    if family == "student_t":
        return dist.MultivariateStudentT(df, loc, scale_tril=scale_tril)
    return dist.MultivariateNormal(loc, scale_tril=scale_tril)


def importance_sample(
    key: Array, logdensity_fn: Callable[[Array], Array], proposal: Any, num_samples: int
) -> tuple[Array, Array, Array, Array]:
    """Draw ``num_samples`` from ``proposal`` and weight them by ``logdensity_fn``.

    Returns ``(positions (n, dim), log_weights (n,), log pi (n,), log q (n,))``; NaN
    log weights are ``-inf``. ``proposal`` is anything with ``sample_and_log_prob(key,
    sample_shape)`` (a flowjax distribution works unchanged).

    Example:
        >>> import jax.numpy as jnp
        >>> from bayeswb.core.weights import log_mean_exp
        >>> q = DistributionProposal(dist.MultivariateNormal(jnp.zeros(2), 4 * jnp.eye(2)))
        >>> x, lw, lp, lq = importance_sample(
        ...     jax.random.key(0), lambda x: -0.5 * x @ x, q, 20000)
        >>> round(float(log_mean_exp(lw)), 1)  # log(2 pi) = 1.84
        1.8
    """
    positions, log_q = proposal.sample_and_log_prob(key, (num_samples,))
    log_p = jax.vmap(logdensity_fn)(positions)
    return positions, safe_log_weights(log_p - log_q), log_p, log_q


# Builders: (key, target, config) -> (proposal, n_grad_evals, n_logdensity_evals, curves)
# where curves is a dict of (num_warmup,) arrays (a fit's loss), traced per run.
ProposalBuilder = Callable[[Array, Target, Any], tuple[Any, Array, Array, dict[str, Array]]]
_PROPOSALS: dict[str, ProposalBuilder] = {}


def register_proposal(name: str, builder: ProposalBuilder) -> None:
    """Make ``proposal=name`` available to ``is``.

    ``builder(key, target, config)`` runs once per independent run inside the jitted
    program and returns ``(proposal, n_grad_evals, n_logdensity_evals, curves)``:
    the proposal object, the exact cost of building it (a
    :class:`~bayeswb.core.draws.Count`, or an int that stays small: one run's), and a
    dict of per-step arrays of length ``config.num_warmup`` (a training curve) or ``{}``.
    """
    _PROPOSALS[name] = builder


def proposal_builder(name: str) -> ProposalBuilder:
    """The builder registered as ``name`` (KeyError if there is none)."""
    return _PROPOSALS[name]


def known_proposal(value: Any) -> str | None:
    """Option check for ``proposal``: None for a registered name, else the message."""
    if isinstance(value, str) and value in _PROPOSALS:  # a list or array is no name
        return None
    return f"must be one of {', '.join(map(repr, sorted(_PROPOSALS)))}"
