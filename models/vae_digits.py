"""vae_digits: a VAE-style latent-variable model on binarized scikit-learn digits.

One stochastic layer (Kingma and Welling 2014, "Auto-Encoding Variational Bayes", sec. 3
and appendix C.1; Burda, Grosse and Salakhutdinov 2016, "Importance Weighted
Autoencoders", sec. 5):

    z ~ N(0, I_d),    x_j | z ~ Bernoulli(sigmoid(f_theta(z)_j)),  j = 1..64,

    log p(x, z) = log N(z; 0, I) + sum_j [x_j log s_j + (1 - x_j) log(1 - s_j)],

with ``f_theta`` a tanh MLP (decoder, two hidden layers). The encoder (inference network)
is ``q_phi(z | x) = N(z; mu_phi(x), diag(sigma_phi(x)^2))``, another tanh MLP giving
``mu`` and ``log sigma``. Samples are reparameterised, ``z = mu + sigma * eps``.

Two stochastic layers (``layers=2``; Burda et al. 2016, sec. 5: x -> h1 -> h2), with
``h1`` of size ``latent_dim`` and ``h2`` of size ``top_dim``:

    p(x, h1, h2) = N(h2; 0, I) N(h1; m_theta(h2), diag(s_theta(h2)^2)) p(x | h1),
    q(h1, h2 | x) = N(h1; mu_phi(x), diag(sigma_phi(x)^2))
                    * N(h2; nu_phi(h1), diag(tau_phi(h1)^2)),

``p(x | h1)`` the Bernoulli decoder above. As in the paper every stochastic layer is
reached through two deterministic tanh layers, and the networks between h1 and h2 are half
as wide (``hidden // 2``) as those between x and h1 (the paper: 100 and 50 units on MNIST).
The latent vector of the model is ``z = (h1, h2)`` concatenated (``noise_dim`` entries),
and the importance weight is ``log p(x, h1, h2) - log q(h1, h2 | x)``, sampled ancestrally
(``h1`` first, then ``h2`` given ``h1``) from standard normal noise of the same size.

The held-out log-likelihood ``log p(x) = log E_q[p(x, z) / q(z | x)]`` has no closed form;
it is estimated as Burda et al. (2016) do, by importance sampling with the encoder
as proposal and ``k = 5000`` draws per image, ``log (1/k) sum_i p(x, z_i) / q(z_i | x)``
(the IWAE bound at k = 5000: a slightly low estimate whose bias shrinks as ``1/k``).

Data: scikit-learn's bundled 8x8 digits (1797 images, pixel values 0..16, no download),
binarized deterministically as ``pixel > 8 -> 1`` and split with a fixed seed
(``numpy.random.default_rng(0)`` permutation) into 1497 training and 300 test images.

The registry entry (one stochastic layer) is the posterior over z of one test image under
a decoder trained for ``train_steps`` ELBO steps (Adam, fixed seed,
:func:`bayeswb.models.iwae.train`): a ``latent_dim``-dimensional target with log density
``log p(x, z)``; its ``log_z`` is ``log p(x)`` estimated by importance sampling (not exact:
see ``describe()``). ``metadata["model"]`` is the :class:`VAEDigits` object (data splits,
parameter init, ``log_joint``, ``test_log_likelihood``) and ``metadata["params"]`` the
trained parameters.

Example:
    >>> import jax
    >>> model = VAEDigits(latent_dim=2, hidden=8)
    >>> model.x_train.shape, model.x_test.shape
    ((1497, 64), (300, 64))
    >>> params = model.init_params(jax.random.key(0))
    >>> x, z = model.x_test[0], jax.numpy.zeros(2)
    >>> bool(jax.numpy.isfinite(model.log_joint(params["decoder"], x, z)))
    True
    >>> two = VAEDigits(latent_dim=2, hidden=8, layers=2, top_dim=1)
    >>> lw = two.log_weights(two.init_params(jax.random.key(0)), jax.random.key(1), x, 3)
    >>> two.noise_dim, lw.shape
    (3, (3,))
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from bayeswb.core.target import Target
from bayeswb.core.weights import log_mean_exp
from bayeswb.models import register
from bayeswb.models.iwae import Objective, train

Array = jax.Array
Params = dict[str, Any]

THRESHOLD = 8
NUM_TEST = 300
SPLIT_SEED = 0
DATA_DIM = 64


def load_binarized_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(x_train, x_test)``: float32 arrays of 0/1, shapes (1497, 64) and (300, 64).

    Pixels of scikit-learn's ``load_digits`` (values 0..16) become 1 where ``> 8``; the
    split is a ``default_rng(0)`` permutation, the last 300 images being the test set.
    """
    from sklearn.datasets import load_digits

    pixels = load_digits().data
    binary = (pixels > THRESHOLD).astype(np.float32)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(binary))
    return binary[order[:-NUM_TEST]], binary[order[-NUM_TEST:]]


def init_mlp(key: Array, sizes: list[int]) -> list[dict[str, Array]]:
    """Layers ``{"w": (n_in, n_out), "b": (n_out,)}``, weights N(0, 1/n_in), biases 0."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (n_in, n_out)) / math.sqrt(n_in),
            "b": jnp.zeros(n_out),
        }
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(layers: list[dict[str, Array]], x: Array) -> Array:
    """tanh hidden layers, linear output; ``x`` of shape (..., n_in)."""
    for layer in layers[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def log_standard_normal(eps: Array) -> Array:
    """``log N(eps; 0, I)`` over the last axis (..., d) -> (...)."""
    return -0.5 * jnp.sum(eps**2, axis=-1) - 0.5 * eps.shape[-1] * math.log(2 * math.pi)


def gaussian_layer(layers: list[dict[str, Array]], inputs: Array) -> tuple[Array, Array]:
    """``(mean, log_sd)`` of a diagonal Gaussian from an MLP whose output (..., 2d) is split
    in halves."""
    out = mlp(layers, inputs)
    size = out.shape[-1] // 2
    return out[..., :size], out[..., size:]


@dataclasses.dataclass(frozen=True, eq=False)
class VAEDigits:
    """The model: data splits, networks, densities and the held-out likelihood.

    ``layers=1``: ``params = {"encoder": mlp, "decoder": mlp}`` (lists of layers).
    ``layers=2``: ``params = {"encoder": {"h1": x -> h1, "h2": h1 -> h2}, "decoder":
    {"h1": h2 -> h1, "x": h1 -> x}}`` (``top_dim`` is used only then). Single images ``x``
    have shape (64,), latents ``z = (h1, h2)`` shape (noise_dim,); functions broadcast over
    leading axes of ``z`` / ``eps``.
    """

    latent_dim: int = 4
    hidden: int = 64
    layers: int = 1
    top_dim: int = 2
    # the binarised digits, loaded in __post_init__
    x_train: np.ndarray = dataclasses.field(init=False, repr=False)
    x_test: np.ndarray = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        for field in ("latent_dim", "hidden", "top_dim"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        if self.layers not in (1, 2):
            raise ValueError(f"layers must be 1 or 2, got {self.layers!r}")
        x_train, x_test = load_binarized_digits()
        object.__setattr__(self, "x_train", x_train)
        object.__setattr__(self, "x_test", x_test)

    @property
    def noise_dim(self) -> int:
        """Size of the latent vector ``z = (h1, h2)`` and of the reparameterisation noise."""
        return self.latent_dim + (self.top_dim if self.layers == 2 else 0)

    def init_params(self, key: Array) -> Params:
        """Fresh encoder (64 -> h -> h -> 2d) and decoder (d -> h -> h -> 64) layers; with
        two layers also d -> h/2 -> h/2 -> 2 top_dim (encoder) and top_dim -> h/2 -> h/2 ->
        2d (decoder)."""
        enc_key, dec_key = jax.random.split(key)
        h, d = self.hidden, self.latent_dim
        encoder = init_mlp(enc_key, [DATA_DIM, h, h, 2 * d])
        decoder = init_mlp(dec_key, [d, h, h, DATA_DIM])
        if self.layers == 1:
            return {"encoder": encoder, "decoder": decoder}
        top_enc_key, top_dec_key = jax.random.split(jax.random.fold_in(key, 1))
        half, top = max(1, h // 2), self.top_dim
        return {
            "encoder": {"h1": encoder, "h2": init_mlp(top_enc_key, [d, half, half, 2 * top])},
            "decoder": {"h1": init_mlp(top_dec_key, [top, half, half, 2 * d]), "x": decoder},
        }

    def encode(self, encoder: Any, x: Array) -> tuple[Array, Array]:
        """``(mu, log_sigma)`` of q(h1 | x) (q(z | x) with one layer), each (latent_dim,)."""
        return gaussian_layer(encoder if self.layers == 1 else encoder["h1"], x)

    def log_prior(self, z: Array) -> Array:
        """``log N(z; 0, I)`` over the last axis: the prior of the top stochastic layer."""
        return log_standard_normal(z)

    def log_likelihood(self, decoder: Any, x: Array, z: Array) -> Array:
        """``log p(x | h1)``: Bernoulli with logits ``f_theta(h1)``, summed over pixels
        (``h1`` the first ``latent_dim`` entries of ``z``)."""
        logits = mlp(decoder if self.layers == 1 else decoder["x"], z[..., : self.latent_dim])
        return jnp.sum(
            x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits), axis=-1
        )

    def log_joint(self, decoder: Any, x: Array, z: Array) -> Array:
        """``log p(x, z) = log p(z) + log p(x | z)``; with two layers ``log p(h2) +
        log p(h1 | h2) + log p(x | h1)``. ``z`` (..., noise_dim) -> (...)."""
        if self.layers == 1:
            return self.log_prior(z) + self.log_likelihood(decoder, x, z)
        h1, h2 = z[..., : self.latent_dim], z[..., self.latent_dim :]
        mean, log_sd = gaussian_layer(decoder["h1"], h2)
        log_p_h1 = log_standard_normal((h1 - mean) * jnp.exp(-log_sd)) - jnp.sum(log_sd, -1)
        return self.log_prior(h2) + log_p_h1 + self.log_likelihood(decoder, x, z)

    def sample_latents(self, encoder: Any, x: Array, eps: Array) -> tuple[Array, Array]:
        """``(z, log q(z | x))`` for standard normal noise ``eps`` (..., noise_dim), drawn
        ancestrally: ``h1 = mu(x) + sigma(x) eps_1``, then ``h2 = nu(h1) + tau(h1) eps_2``."""
        eps1 = eps[..., : self.latent_dim]
        mu, log_sigma = self.encode(encoder, x)
        h1 = mu + jnp.exp(log_sigma) * eps1
        log_q = log_standard_normal(eps1) - jnp.sum(log_sigma, -1)
        if self.layers == 1:
            return h1, log_q
        eps2 = eps[..., self.latent_dim :]
        nu, log_tau = gaussian_layer(encoder["h2"], h1)
        h2 = nu + jnp.exp(log_tau) * eps2
        log_q = log_q + log_standard_normal(eps2) - jnp.sum(log_tau, -1)
        return jnp.concatenate([h1, h2], axis=-1), log_q

    def log_weights_from_noise(self, params: Params, x: Array, eps: Array) -> Array:
        """``log p(x, z) - log q(z | x)`` at the reparameterised ``z`` of
        :meth:`sample_latents`; ``eps`` of shape (..., noise_dim) gives log weights (...)."""
        z, log_q = self.sample_latents(params["encoder"], x, eps)
        return self.log_joint(params["decoder"], x, z) - log_q

    def log_weights(self, params: Params, key: Array, x: Array, num_samples: int) -> Array:
        """``num_samples`` importance log weights for one image, shape (num_samples,)."""
        eps = jax.random.normal(key, (num_samples, self.noise_dim))
        return self.log_weights_from_noise(params, x, eps)

    def log_marginal(
        self, params: Params, key: Array, x: ArrayLike, k: int = 5000, batch_size: int = 10
    ) -> Array:
        """Importance-sampling estimates of ``log p(x)`` for images ``x`` (n, 64) -> (n,):
        ``log mean_i w_i`` over ``k`` encoder draws each; ``batch_size`` images at a time
        (memory ~ batch_size * k * hidden floats)."""
        return _log_marginal(self, params, key, jnp.asarray(x), k, batch_size)

    def test_log_likelihood(
        self, params: Params, key: Array, k: int = 5000, batch_size: int = 10
    ) -> tuple[float, float]:
        """Mean held-out ``log p(x)`` over the 300 test images (IS with ``k`` draws per
        image, as Burda et al. 2016 evaluate) and its standard error across images."""
        values = np.asarray(self.log_marginal(params, key, self.x_test, k, batch_size))
        return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _log_marginal(
    model: VAEDigits, params: Params, key: Array, x: Array, k: int, batch_size: int
) -> Array:
    keys = jax.random.split(key, x.shape[0])

    def one(args: tuple[Array, Array]) -> Array:
        image, image_key = args
        return log_mean_exp(model.log_weights(params, image_key, image, k))

    return jax.lax.map(one, (x, keys), batch_size=batch_size)


@functools.cache
def _trained(latent_dim: int, hidden: int, train_steps: int, seed: int) -> tuple:
    # one training per setting and process: the registry builds this target often
    model = VAEDigits(latent_dim=latent_dim, hidden=hidden)
    params = model.init_params(jax.random.key(seed))
    if train_steps > 0:
        params, _ = train(
            jax.random.key(seed + 1), model, Objective("elbo"), train_steps, params=params
        )
    return model, params


@register("vae_digits")
def vae_digits(
    latent_dim: int = 4,
    hidden: int = 64,
    image: int = 0,
    train_steps: int = 1000,
    seed: int = 0,
    log_z_samples: int = 100_000,
) -> Target:
    """Posterior ``p(z | x) ∝ p(x, z)`` of test image ``image`` under a VAE decoder
    trained by ``train_steps`` Adam steps on the ELBO (batch 100, lr 1e-3, ``seed``).

    Dimension ``latent_dim``. ``log_z = log p(x)`` is an importance-sampling estimate with
    the trained encoder as proposal and ``log_z_samples`` draws (not exact: its standard
    error, by the delta method, is in ``metadata["log_z_se"]`` and in ``describe()``).
    ``init`` draws from the encoder's q(z | x).

    Example:
        >>> t = vae_digits(latent_dim=2, hidden=8, train_steps=0, log_z_samples=1000)
        >>> t.dim, t.metadata["model"].x_test.shape
        (2, (300, 64))
    """
    for name, value, low in (
        ("image", image, 0),
        ("train_steps", train_steps, 0),
        ("seed", seed, 0),
        ("log_z_samples", log_z_samples, 2),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if image >= NUM_TEST:
        raise ValueError(f"image must be below {NUM_TEST}, got {image}")
    model, params = _trained(latent_dim, hidden, train_steps, seed)
    x = jnp.asarray(model.x_test[image])
    decoder = params["decoder"]
    mu, log_sigma = model.encode(params["encoder"], x)

    log_w = np.asarray(
        jax.jit(model.log_weights, static_argnums=3)(
            params, jax.random.key(seed + 2), x, log_z_samples
        ),
        dtype=np.float64,
    )
    shift = log_w.max()
    w = np.exp(log_w - shift)
    log_z = float(shift + np.log(w.mean()))
    log_z_se = float(w.std(ddof=1) / (w.mean() * math.sqrt(log_z_samples)))

    def log_density(z: Array) -> Array:
        return model.log_joint(decoder, x, z)

    def init(key: Array) -> Array:
        return mu + jnp.exp(log_sigma) * jax.random.normal(key, (latent_dim,))

    note = (
        f"not exact: importance sampling with the trained encoder, k={log_z_samples}, "
        f"standard error {log_z_se:.2g}"
    )
    return Target.from_logdensity(
        log_density,
        latent_dim,
        name="vae_digits",
        init=init,
        log_z=log_z,
        constrain=lambda z: {"z": z},
        truth_sources={"log_z": note},
        metadata={
            "model": model,
            "params": params,
            "image": image,
            "log_z_se": log_z_se,
            "config": {
                "latent_dim": latent_dim,
                "hidden": hidden,
                "image": image,
                "train_steps": train_steps,
                "seed": seed,
            },
        },
    )
