"""The VAE as pure JAX functions over a params pytree.

Parameters are a nested dict::

    {"encoder": [{"w": (F, H1), "b": (H1,)}, ..., {"w": (Hk, 2L), "b": (2L,)}],
     "decoder": [{"w": (L, Hk), "b": (Hk,)}, ..., {"w": (H1, F_out), "b": (F_out,)}],
     "log_sigma": (F,)}            # only for a Gaussian likelihood with learned sigma

Hyperparameters live in the frozen :class:`VAEConfig`, never in the pytree. All
functions work on a batch (leading axes) of feature vectors ``x`` of shape (..., F).
Randomness always comes from an explicit keyword-only ``key``.

Likelihoods
-----------
``"gaussian"``: independent normals per feature, decoder gives the mean; sigma is a
fixed number (``sigma=0.1``) or a learned global per-feature vector (``sigma=None``).
``"categorical"``: one-hot data; decoder gives class logits (softmax probabilities).

Decoders
--------
``"cartesian"``: the Gaussian features are the standardized aligned coordinates.
``"internal"``: the features are the standardized aligned coordinates followed by the
internal coordinates along a Z-matrix described by ``config.layout``
(:class:`polyvae.features.layout.InternalLayout`): normal on Cartesian coordinates,
bond lengths and angles, wrapped normal on dihedrals, all with learned scales. Two
decoder networks give them (``params["decoder"]`` the internal coordinates,
``params["decoder_cartesian"]`` the Cartesian ones); the internal network sees the
latent sample through ``stop_gradient``, so the Cartesian coordinates alone shape the
latent space (the CVs are those a Cartesian decoder gives: on a nearly ideal chain the
internal coordinates alone leave the latent space unused) and the internal network
learns on it.

The loss per frame is ``-log p(x|z) + beta * KL[q(z|x) || N(0, I)]`` with one
reparameterized sample of z; with ``beta = 1`` it is the negative ELBO.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp

from polyvae.config import VAEConfig

__all__ = [
    "ACTIVATIONS",
    "init_params",
    "encode",
    "decode",
    "log_likelihood",
    "kl_divergence",
    "loss_terms",
    "loss",
    "sample",
    "iw_log_likelihood",
]

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "softplus": jax.nn.softplus,
}
_STD_FLOOR = 1e-6
_LOG_2PI = math.log(2.0 * math.pi)


def _init_layers(key: jax.Array, sizes: list[int], gain: float) -> list[dict]:
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        scale = math.sqrt((1.0 if last else gain) / n_in)
        layers.append(
            {
                "w": scale * jax.random.normal(k, (n_in, n_out), jnp.float32),
                "b": jnp.zeros((n_out,), jnp.float32),
            }
        )
    return layers


def init_params(config: VAEConfig, *, key: jax.Array) -> dict:
    """Random initial parameters (He/LeCun-normal weights, zero biases).

    Parameters
    ----------
    config : VAEConfig
    key : jax.Array
        PRNG key.

    Returns
    -------
    dict
        The params pytree.
    """
    return _init_params(config, key)


@partial(jax.jit, static_argnums=0)
def _init_params(config: VAEConfig, key: jax.Array) -> dict:
    """:func:`init_params`, compiled once per configuration (eager, each of its random
    draws and scalings is a separate dispatch: seconds for a deep model)."""
    gain = 2.0 if config.activation in ("relu", "elu") else 1.0
    k_enc, k_dec = jax.random.split(key)
    f, latent, hidden = config.n_features, config.latent_dim, list(config.hidden)
    f_in = f if config.n_inputs is None else config.n_inputs
    params = {"encoder": _init_layers(k_enc, [f_in, *hidden, 2 * latent], gain)}
    if config.decoder == "internal":
        # the Cartesian network starts as a Cartesian decoder would: with the same seed the
        # encoder and it follow a Cartesian model's objective from its start (the internal
        # network does not reach the latent space); only rounding tells the runs apart
        nc = config.kinds.n_cartesian
        params["decoder_cartesian"] = _init_layers(k_dec, [latent, *hidden[::-1], nc], gain)
        k_int = jax.random.fold_in(k_dec, 1)
        params["decoder"] = _init_layers(k_int, [latent, *hidden[::-1], f - nc], gain)
    else:
        params["decoder"] = _init_layers(k_dec, [latent, *hidden[::-1], f], gain)
    if config.learned_sigma:
        params["log_sigma"] = jnp.zeros((f,), jnp.float32)
    return params


def _mlp(layers: list[dict], x: jax.Array, activation: str) -> jax.Array:
    act = ACTIVATIONS[activation]
    for layer in layers[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def _twin_mlp(first: list[dict], second: list[dict], z: jax.Array, activation: str):
    """Two networks of the same hidden sizes on ``z``, run as one: each hidden layer is a
    single batched product over the pair (half the kernels of two separate networks).
    The second network sees ``z`` through ``stop_gradient``. Returns both outputs,
    concatenated on the last axis."""
    act = ACTIVATIONS[activation]
    lead = z.shape[:-1]
    h = jnp.stack([z, jax.lax.stop_gradient(z)]).reshape(2, -1, z.shape[-1])
    for a, b in zip(first[:-1], second[:-1], strict=True):
        w, bias = jnp.stack([a["w"], b["w"]]), jnp.stack([a["b"], b["b"]])
        h = act(jnp.einsum("kbi,kij->kbj", h, w) + bias[:, None, :])
    out = [h[0] @ first[-1]["w"] + first[-1]["b"], h[1] @ second[-1]["w"] + second[-1]["b"]]
    return jnp.concatenate(out, axis=-1).reshape(lead + (-1,))


def encode(params: dict, x: jax.Array, config: VAEConfig) -> tuple[jax.Array, jax.Array]:
    """Parameters of q(z|x): mean and standard deviation (softplus), each (..., L)."""
    out = _mlp(params["encoder"], x, config.activation)
    mean, raw = jnp.split(out, 2, axis=-1)
    return mean, jax.nn.softplus(raw) + _STD_FLOOR


def decode(params: dict, z: jax.Array, config: VAEConfig) -> dict:
    """Parameters of p(x|z).

    Returns
    -------
    dict
        gaussian: ``{"mean": (..., F), "sigma": (F,)}``;
        categorical: ``{"logits": (..., F), "probs": (..., F)}``.
    """
    if config.decoder == "internal":
        # the Cartesian part shapes the latent space (the CVs); the internal part learns
        # on it without changing it
        out = _twin_mlp(params["decoder_cartesian"], params["decoder"], z, config.activation)
    else:
        out = _mlp(params["decoder"], z, config.activation)
    if config.likelihood == "categorical":
        return {"logits": out, "probs": jax.nn.softmax(out, axis=-1)}
    if config.learned_sigma:
        sigma = jnp.exp(params["log_sigma"])
    else:
        sigma = jnp.full((config.n_features,), config.sigma, out.dtype)
    return {"mean": out, "sigma": sigma}


def log_likelihood(params: dict, x: jax.Array, z: jax.Array, config: VAEConfig) -> jax.Array:
    """log p(x|z) summed over features, shape (...,)."""
    out = decode(params, z, config)
    if config.likelihood == "categorical":
        return jnp.sum(x * jax.nn.log_softmax(out["logits"], axis=-1), axis=-1)
    if config.decoder == "internal":
        return config.kinds.log_likelihood(x, out["mean"], jnp.log(out["sigma"]))
    sigma = out["sigma"]
    resid = (x - out["mean"]) / sigma
    return -0.5 * jnp.sum(resid**2 + 2.0 * jnp.log(sigma) + _LOG_2PI, axis=-1)


def kl_divergence(mean: jax.Array, std: jax.Array) -> jax.Array:
    """KL[N(mean, std^2) || N(0, 1)] summed over latent dimensions, shape (...,)."""
    return jnp.sum(0.5 * (mean**2 + std**2) - jnp.log(std) - 0.5, axis=-1)


def _reparameterize(mean, std, key):
    return mean + std * jax.random.normal(key, mean.shape, mean.dtype)


def _latent_sample(mean, std, key, eps):
    """``mean + std * eps`` with ``eps`` given, or drawn from ``key``; exactly one of the two."""
    if (key is None) == (eps is None):
        raise TypeError(
            "give exactly one of key= (the noise is drawn from it) or eps= (standard-normal "
            "draws shaped like the latent mean)"
        )
    if eps is None:
        eps = jax.random.normal(key, mean.shape, mean.dtype)
    elif eps.shape != mean.shape:
        raise ValueError(
            f"eps must have the shape of the latent mean, {mean.shape}; got {eps.shape}"
        )
    return mean + std * eps


def loss_terms(
    params: dict,
    x: jax.Array,
    config: VAEConfig,
    *,
    key: jax.Array | None = None,
    eps: jax.Array | None = None,
    x_in: jax.Array | None = None,
):
    """Per-frame reconstruction loss -log p(x|z) (one z sample) and KL term.

    The sample is ``z = mean + std * eps`` with ``eps`` drawn from ``key``, or given
    directly as ``eps`` (shape (..., L)); pass exactly one of the two. ``x_in`` is the
    encoder's input when it differs from the reconstructed ``x``.

    Returns
    -------
    recon, kl : jax.Array (...,) each, in nats per frame.
    """
    mean, std = encode(params, x if x_in is None else x_in, config)
    z = _latent_sample(mean, std, key, eps)
    return -log_likelihood(params, x, z, config), kl_divergence(mean, std)


def loss(
    params: dict,
    x: jax.Array,
    config: VAEConfig,
    *,
    key: jax.Array | None = None,
    eps: jax.Array | None = None,
    x_in: jax.Array | None = None,
    weights: jax.Array | None = None,
    beta: float | jax.Array | None = None,
):
    """Batch-mean training objective ``recon + beta * kl`` and its parts.

    ``key`` or ``eps`` as in :func:`loss_terms`. ``weights`` (...,): per-frame weights
    (normalized to mean 1 over the data, so the batch mean stays unbiased). ``beta``
    replaces ``config.beta`` (a traced number, e.g. one per member of an ensemble).

    Returns
    -------
    value : scalar
    (recon, kl) : scalars, batch means.
    """
    recon, kl = loss_terms(params, x, config, key=key, eps=eps, x_in=x_in)
    if weights is not None:  # frame weights, normalized to mean 1 over the training frames
        recon, kl = recon * weights, kl * weights
    recon, kl = jnp.mean(recon), jnp.mean(kl)
    return recon + (config.beta if beta is None else beta) * kl, (recon, kl)


@partial(jax.jit, static_argnames=("n", "config", "mean_only"))
def sample(
    params: dict,
    n: int,
    config: VAEConfig,
    *,
    key: jax.Array,
    mean_only: bool = False,
    z: jax.Array | None = None,
):
    """Draw ``n`` samples of the model's p(x) = ∫ p(x|z) p(z) dz.

    Compiled once per ``n``, ``config`` and ``mean_only``.

    Parameters
    ----------
    z : array (n, L), optional
        Latent points to decode instead of prior draws (e.g. the training frames'
        codes, :class:`polyvae.nn.latent_codes.LatentCodes`).
    mean_only : bool
        Return the decoder's mean (gaussian) or class probabilities (categorical)
        for each prior z instead of a sample from p(x|z).

    Returns
    -------
    x : (n, F) features (one-hot rows for a categorical sample).
    z : (n, L) the latent points decoded (the prior draws unless ``z`` was given).
    """
    k_z, k_x = jax.random.split(key)
    if z is None:
        z = jax.random.normal(k_z, (n, config.latent_dim), jnp.float32)
    out = decode(params, z, config)
    if config.likelihood == "categorical":
        if mean_only:
            return out["probs"], z
        cls = jax.random.categorical(k_x, out["logits"], axis=-1)
        return jax.nn.one_hot(cls, config.n_features, dtype=jnp.float32), z
    if mean_only:
        return out["mean"], z
    if config.decoder == "internal":
        eps = jax.random.normal(k_x, out["mean"].shape, out["mean"].dtype)
        return config.kinds.sample(out["mean"], jnp.log(out["sigma"]), eps), z
    return _reparameterize(out["mean"], jnp.broadcast_to(out["sigma"], out["mean"].shape), k_x), z


def iw_log_likelihood(
    params: dict,
    x: jax.Array,
    config: VAEConfig,
    *,
    key: jax.Array,
    n_samples: int = 64,
    x_in: jax.Array | None = None,
) -> jax.Array:
    """Importance-weighted estimate of log p(x) with K samples from q(z|x).

    ``log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)``, computed with log-sum-exp. It is a
    lower bound that tightens as K grows (K = 1 gives the ELBO in expectation).

    Returns
    -------
    (B,) log p(x) in nats, for x of shape (B, F), in the feature space of ``x``.
    """
    mean, std = encode(params, x if x_in is None else x_in, config)
    eps = jax.random.normal(key, (n_samples,) + mean.shape, mean.dtype)
    z = mean + std * eps  # (K, B, L)
    log_px_z = log_likelihood(params, x[None], z, config)
    log_pz = -0.5 * jnp.sum(z**2 + _LOG_2PI, axis=-1)
    log_qz = -0.5 * jnp.sum(eps**2 + 2.0 * jnp.log(std) + _LOG_2PI, axis=-1)
    log_w = log_px_z + log_pz - log_qz
    return jax.scipy.special.logsumexp(log_w, axis=0) - math.log(n_samples)
