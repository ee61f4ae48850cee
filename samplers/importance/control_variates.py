"""Several expectations from one importance sample, with control variates.

The multiple-expectations setting of Demange-Chryst, Bachoc and Morio (2023), "Efficient
estimation of multiple expectations with the same sample by adaptive importance sampling
and control variates" (Statistics and Computing 33, arXiv:2212.00568): one weighted sample
from a proposal ``q`` serves M expectations ``E_pi[f_m]`` at once, and control variates
with known mean zero under ``q``, with coefficients fitted by least squares, remove the
part of each estimator's error that they explain. This module implements that estimator
(it does not reproduce the paper's search for an optimal sampling density) with the
*proposal-score* control variates ``h(x) = grad_x log q(x)``, whose mean under ``q`` is
zero by Stein's identity (``int grad q = 0``): for a Gaussian ``q = N(m, S)`` they are
``-S^{-1}(x - m)``, the score of ``q`` in its location.

The regression estimator (Owen 2013, "Monte Carlo theory, methods and examples", ch. 8.9
and 9.10; Owen and Zhou 2000, "Safe and effective importance sampling", JASA 95, section
4): with ``w_i = pi(x_i) / q(x_i)``, regress the responses ``y_0 = w`` and ``y_m = w f_m``
on ``[1, h]`` by ordinary least squares; the intercepts ``a_0`` and ``a_m`` are the
control-variate estimates of ``Z`` and ``Z E_pi[f_m]`` (the sample mean of ``y`` minus
the fitted ``beta^T mean(h)``, whose expectation is zero), and
``E_pi[f_m] ~ a_m / a_0`` (self-normalised, so ``pi`` may be unnormalised). Its standard
error is the delta method's, from the regression residuals ``e``:
``se_m^2 = sum_i (e_im - mu_m e_i0)^2 / ((n - p - 1) n a_0^2)``. All M expectations share
one design matrix, so one least-squares solve serves them all.

Run ``is``, ``amis`` or ``vis`` with ``control_variates=True`` (which stores the score in
``stats["proposal_score"]``) and call :func:`control_variate_estimates` on the Result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def control_variate_fit(log_weights: Array, scores: Array, values: Array) -> dict[str, Array]:
    """Self-normalised IS with and without score control variates, for M functions.

    Shapes: ``log_weights`` (n,) unnormalised (``-inf`` or NaN is weight zero),
    ``scores`` (n, p) control variates with mean zero under the proposal, ``values``
    (n, M) the functions at the draws. Returns (M,) arrays ``estimate`` and ``se``
    (control variates) and ``plain`` and ``plain_se`` (self-normalised IS, delta-method
    error ``sqrt(sum_i wbar_i^2 (f_i - mu)^2)``, Owen 2013 eq. 9.8).

    Example:
        >>> x = 1.5 * jax.random.normal(jax.random.key(0), (4000, 1))  # q = N(0, 1.5^2)
        >>> log_w = -0.5 * x[:, 0] ** 2 + 0.5 * (x[:, 0] / 1.5) ** 2  # pi = N(0, 1)
        >>> fit = control_variate_fit(log_w, -x / 1.5**2, x)  # score of q, E_pi[x]
        >>> bool(fit["se"][0] < fit["plain_se"][0])
        True
    """
    log_weights = jnp.where(jnp.isnan(log_weights), -jnp.inf, log_weights)
    n = log_weights.shape[0]
    weights = jnp.exp(log_weights - jnp.max(log_weights))
    values = jnp.where(weights[:, None] > 0, values, 0.0)
    responses = jnp.concatenate([weights[:, None], weights[:, None] * values], axis=1)
    design = jnp.concatenate([jnp.ones((n, 1), scores.dtype), scores], axis=1)
    coefficients, *_ = jnp.linalg.lstsq(design, responses)
    intercepts = coefficients[0]
    estimate = intercepts[1:] / intercepts[0]
    residuals = responses - design @ coefficients
    influence = (residuals[:, 1:] - estimate * residuals[:, :1]) / intercepts[0]
    dof = n - design.shape[1]
    se = jnp.sqrt(jnp.sum(influence**2, axis=0) / dof / n)
    normalised = weights / jnp.sum(weights)
    plain = normalised @ values
    plain_se = jnp.sqrt(normalised**2 @ (values - plain) ** 2)
    return {"estimate": estimate, "se": se, "plain": plain, "plain_se": plain_se}


def control_variate_estimates(
    result, functions: Mapping[str, Callable[[Array], Array]], by_run: bool = False
) -> dict[str, np.ndarray | list[str]]:
    """Estimate ``E_pi[f]`` for every ``f`` in ``functions`` from one weighted Result, with
    proposal-score control variates and, for comparison, plain self-normalised IS.

    ``result`` comes from ``is``, ``amis`` or ``vis`` run with ``control_variates=True``;
    each function maps an unconstrained position (dim,) to a scalar (jax-traceable).
    Returns ``names`` and arrays ``estimate``, ``se``, ``plain``, ``plain_se`` of shape
    (M,) pooled over all runs, or (runs, M) with ``by_run=True``. The weights are the
    Result's log weights (the PSIS-smoothed ones if the run reported those).

    Example:
        >>> import bayeswb as bw
        >>> t = bw.models.get("gaussian", dim=2)
        >>> r = bw.sample(t, "is", num_chains=2, num_samples=500, num_warmup=20,
        ...               proposal_scale=1.5, control_variates=True)
        >>> out = control_variate_estimates(r, {"x0": lambda x: x[0]})
        >>> out["names"], out["estimate"].shape
        (['x0'], (1,))
    """
    stats = result.idata.sample_stats
    if "proposal_score" not in stats:
        raise ValueError(
            "control variates need the proposal score: run is, amis or vis with "
            "control_variates=True"
        )
    names = list(functions)
    positions = jnp.asarray(result.positions)
    chains, draws, dim = positions.shape
    scores = jnp.asarray(stats["proposal_score"].values).reshape(chains, draws, dim)
    log_weights = jnp.asarray(result.log_weights)

    def evaluate(x: Array) -> Array:
        return jnp.stack([jnp.asarray(functions[name](x), dtype=x.dtype) for name in names])

    values = jax.vmap(jax.vmap(evaluate))(positions)  # (chains, draws, M)
    if by_run:
        fit = jax.vmap(control_variate_fit)(log_weights, scores, values)
    else:
        fit = control_variate_fit(
            log_weights.reshape(-1), scores.reshape(-1, dim), values.reshape(chains * draws, -1)
        )
    return {"names": names} | {key: np.asarray(value) for key, value in fit.items()}
