"""Importance-weighted learning of latent-variable models (the vae_digits model).

Objectives, for one image x with log weights ``log w_{m,k} = log p(x, z_{m,k}) -
log q(z_{m,k} | x)``, ``z_{m,k} ~ q(z | x)`` i.i.d. and reparameterised (for a model with
two stochastic layers, ``VAEDigits(layers=2)``, ``z = (h1, h2)`` and ``log w = log p(x, h1,
h2) - log q(h1, h2 | x)``, Burda et al. 2016, sec. 5; every objective below takes either):

- ``elbo`` (Kingma and Welling 2014, eq. 3): ``(1/K) sum_k log w_k`` (K = 1 is the VAE).
- ``iwae`` (Burda, Grosse and Salakhutdinov 2016, eq. 8): ``log (1/K) sum_k w_k``.
  In expectation ``elbo <= iwae(K) <= iwae(K + 1) <= log p(x)`` (their Theorem 1).
- From Rainforth, Kosiorek, Le, Maddison, Igl, Wood and Teh (2018), "Tighter Variational
  Bounds are Not Necessarily Better":
  ``miwae`` (M, K): ``(1/M) sum_m log (1/K) sum_k w_{m,k}`` (``miwae(1, K) = iwae(K)``,
  ``miwae(M, 1) = elbo`` with M draws);
  ``ciwae`` (beta): ``beta * elbo + (1 - beta) * iwae(K)`` on the same K draws (the
  paper's convention: beta = 1 is the ELBO, beta = 0 is IWAE);
  ``piwae`` (M, K): the decoder (generative network) follows the gradient of
  ``iwae(MK)``, the encoder (inference network) that of ``miwae(M, K)``, both on the same
  M*K draws (two gradient computations, joined into one surrogate).

Gradients are the reparameterised (pathwise) gradients of these Monte Carlo estimates,
as in both papers. :func:`train` runs optax's Adam inside one ``lax.scan`` (minibatches
drawn at random each step); :func:`gradient_snr` measures Rainforth et al.'s signal-to-
noise ratio ``SNR(theta_i) = |E[g_i]| / sd[g_i]`` of each parameter's
gradient over repeated draws at fixed data, summarised for encoder and decoder apart;
their Theorem 1 predicts ``SNR = O(sqrt(MK))`` for the decoder and ``O(sqrt(M / K))``
for the encoder. The held-out log-likelihood is the model's ``test_log_likelihood``
(importance sampling, k = 5000).

This module registers no sampler and no model: it learns a model's parameters rather than
sampling a fixed target, so it sits next to the model it trains (``vae_digits`` uses
:func:`train` for its registry entry) and imports nothing from the sampler families. It
works with any model object offering ``noise_dim``, ``init_params``, ``x_train`` and
``log_weights_from_noise(params, x, eps)`` (the ``encoder`` / ``decoder`` parameter split
for ``piwae`` and :func:`gradient_snr`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayeswb.core.progress import report_progress
from bayeswb.core.weights import log_mean_exp

Array = jax.Array
Params = dict[str, Any]

OBJECTIVES = ("elbo", "iwae", "miwae", "ciwae", "piwae")


@dataclasses.dataclass(frozen=True)
class Objective:
    """An objective and its sample sizes: ``num_groups`` M times ``num_samples`` K draws
    per image (M is used by ``miwae`` and ``piwae`` only); ``beta`` by ``ciwae`` only.

    Example:
        >>> Objective("miwae", num_samples=4, num_groups=2).total_samples
        8
    """

    name: str = "iwae"
    num_samples: int = 1
    num_groups: int = 1
    beta: float = 0.5

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ValueError(f"name must be one of {OBJECTIVES}, got {self.name!r}")
        for field in ("num_samples", "num_groups"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        if self.num_groups != 1 and self.name not in ("miwae", "piwae"):
            raise ValueError(f"num_groups must be 1 for {self.name!r}, got {self.num_groups}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta!r}")

    @property
    def total_samples(self) -> int:
        return self.num_groups * self.num_samples

    @property
    def label(self) -> str:
        if self.name in ("miwae", "piwae"):
            return f"{self.name}(M={self.num_groups}, K={self.num_samples})"
        if self.name == "ciwae":
            return f"ciwae(beta={self.beta}, K={self.num_samples})"
        return f"{self.name}(k={self.num_samples})"


def bound(objective: Objective, log_weights: Array) -> Array:
    """The objective's value from log weights of shape (M, K) (one image) -> scalar.

    For ``piwae`` this is the decoder's target ``iwae(MK)``.

    Example:
        >>> lw = jnp.log(jnp.array([[1.0, 3.0]]))
        >>> float(bound(Objective("iwae", 2), lw)), float(bound(Objective("elbo", 2), lw))
        (0.6931471..., 0.5493061...)
    """
    name = objective.name
    if name == "elbo":
        return jnp.mean(log_weights)
    if name in ("iwae", "piwae"):
        return log_mean_exp(jnp.ravel(log_weights))
    if name == "miwae":
        return jnp.mean(log_mean_exp(log_weights, axis=-1))
    beta = objective.beta
    return beta * jnp.mean(log_weights) + (1.0 - beta) * log_mean_exp(jnp.ravel(log_weights))


def surrogate(
    model: Any, objective: Objective, params: Params, key: Array, x: Array
) -> tuple[Array, Array]:
    """``(surrogate, value)`` for one image x (64,): the gradient of ``surrogate`` is the
    objective's gradient estimate, ``value`` its Monte Carlo value (:func:`bound`).

    For ``piwae`` the surrogate is ``iwae(MK)`` with the encoder held fixed plus
    ``miwae(M, K)`` with the decoder held fixed, on the same noise: its gradient is the
    IWAE gradient for the decoder and the MIWAE gradient for the encoder.
    """
    shape = (objective.num_groups, objective.num_samples, model.noise_dim)
    eps = jax.random.normal(key, shape)
    if objective.name != "piwae":
        value = bound(objective, model.log_weights_from_noise(params, x, eps))
        return value, value
    stop = jax.lax.stop_gradient
    decoder_view = {"encoder": stop(params["encoder"]), "decoder": params["decoder"]}
    encoder_view = {"encoder": params["encoder"], "decoder": stop(params["decoder"])}
    decoder_value = bound(objective, model.log_weights_from_noise(decoder_view, x, eps))
    miwae = dataclasses.replace(objective, name="miwae")
    encoder_value = bound(miwae, model.log_weights_from_noise(encoder_view, x, eps))
    return decoder_value + encoder_value, decoder_value


def batch_loss(
    model: Any, objective: Objective, params: Params, key: Array, x: Array
) -> tuple[Array, Array]:
    """``(loss, mean value)`` over images ``x`` (B, 64): loss is minus the mean surrogate."""
    keys = jax.random.split(key, x.shape[0])
    surrogates, values = jax.vmap(lambda k, xi: surrogate(model, objective, params, k, xi))(
        keys, x
    )
    return -jnp.mean(surrogates), jnp.mean(values)


def train(
    key: Array,
    model: Any,
    objective: Objective,
    num_steps: int,
    *,
    params: Params | None = None,
    batch_size: int = 100,
    learning_rate: float = 1e-3,
    progress: str | None = None,
) -> tuple[Params, dict[str, Array]]:
    """``num_steps`` Adam steps on ``objective`` over random minibatches of the training
    images, in one ``lax.scan``; the learning rate decays by cosine to 10% at the end.

    Adam as Burda et al. (2016): beta1 = 0.9, beta2 = 0.999, eps = 1e-4. A step
    with a non-finite loss or gradient keeps the old parameters. ``progress`` names a tqdm
    bar (silent when stderr is not a terminal). Returns the parameters and the trace
    ``{"bound": (num_steps,), "skipped": (num_steps,)}`` (minibatch mean of the bound).

    Example:
        >>> from bayeswb.models.vae_digits import VAEDigits
        >>> model = VAEDigits(latent_dim=2, hidden=8)
        >>> params, trace = train(jax.random.key(0), model, Objective("iwae", 3), 5)
        >>> trace["bound"].shape
        (5,)
    """
    init_key, key = jax.random.split(key)
    if params is None:
        params = model.init_params(init_key)
    x_train = jnp.asarray(model.x_train)
    schedule = optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.1)
    optimizer = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-4)
    value_and_grad = jax.value_and_grad(
        lambda p, k, x: batch_loss(model, objective, p, k, x), has_aux=True
    )
    return _train_scan(
        key, params, optimizer, value_and_grad, x_train, num_steps, batch_size, progress
    )


def _train_scan(key, params, optimizer, value_and_grad, x_train, num_steps, batch_size, label):
    def step(carry, inputs):
        params, opt_state = carry
        step_key, index = inputs
        batch_key, loss_key = jax.random.split(step_key)
        rows = jax.random.choice(batch_key, x_train.shape[0], (batch_size,), replace=False)
        (loss, value), grads = value_and_grad(params, loss_key, x_train[rows])
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        leaves = jax.tree.leaves(grads) + [loss]
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        if label is not None:
            report_progress(label, index, num_steps, value)
        carry = (keep(new_params, params), keep(new_opt_state, opt_state))
        return carry, {"bound": value, "skipped": ~finite}

    @jax.jit
    def run(key, params):
        inputs = (jax.random.split(key, num_steps), jnp.arange(num_steps))
        (params, _), trace = jax.lax.scan(step, (params, optimizer.init(params)), inputs)
        return params, trace

    return run(key, params)


def gradient_draws(
    key: Array,
    model: Any,
    params: Params,
    objective: Objective,
    x: Array,
    num_draws: int = 1000,
    batch_size: int | None = None,
) -> tuple[Array, Array]:
    """``num_draws`` independent gradient estimates of the mean objective over the fixed
    images ``x`` (B, 64), flattened: ``(encoder (num_draws, P_enc), decoder (num_draws,
    P_dec))``. Draws run ``batch_size`` at a time (``lax.map``); by default as many as keep
    about 20000 latent samples in flight."""
    if batch_size is None:
        batch_size = max(1, min(num_draws, 20_000 // (x.shape[0] * objective.total_samples)))
    grad_fn = jax.grad(lambda p, k: batch_loss(model, objective, p, k, x)[0])

    def one(draw_key: Array) -> tuple[Array, Array]:
        grads = grad_fn(params, draw_key)
        flat = lambda tree: jnp.concatenate([-leaf.ravel() for leaf in jax.tree.leaves(tree)])
        return flat(grads["encoder"]), flat(grads["decoder"])

    keys = jax.random.split(key, num_draws)
    return jax.jit(lambda ks: jax.lax.map(one, ks, batch_size=batch_size))(keys)


def snr(draws: Array | np.ndarray) -> np.ndarray:
    """Per-column ``|mean| / sd`` of draws (num_draws, P), in float64; columns whose draws
    do not vary (sd = 0) are dropped.

    Example:
        >>> snr(np.array([[1.0, 0.0], [3.0, 0.0]])).round(3).tolist()
        [1.414]
    """
    draws = np.asarray(draws, dtype=np.float64)
    mean, sd = draws.mean(axis=0), draws.std(axis=0, ddof=1)
    varies = sd > 0
    return np.abs(mean[varies]) / sd[varies]


def gradient_snr(
    key: Array,
    model: Any,
    params: Params,
    objective: Objective,
    x: Array,
    num_draws: int = 1000,
) -> dict[str, float]:
    """Rainforth et al. (2018) gradient SNR of every parameter over ``num_draws``
    gradient estimates at fixed ``params`` and images ``x``, summarised per network:
    ``{"encoder_mean", "encoder_median", "decoder_mean", "decoder_median"}`` (see
    :func:`snr` for the per-parameter values).
    """
    encoder, decoder = gradient_draws(key, model, params, objective, jnp.asarray(x), num_draws)
    out = {}
    for net, draws in (("encoder", encoder), ("decoder", decoder)):
        values = snr(draws)
        out[f"{net}_mean"] = float(values.mean())
        out[f"{net}_median"] = float(np.median(values))
    return out
