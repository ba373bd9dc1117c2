"""The pure-JAX VAE: configuration checks, likelihoods, KL, IW bound, jit and gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from polyvae.nn.model import (
    VAEConfig,
    decode,
    encode,
    init_params,
    iw_log_likelihood,
    kl_divergence,
    log_likelihood,
    loss,
    sample,
)

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "softplus"])
def test_shapes_and_positive_std(activation):
    cfg = VAEConfig(n_features=10, latent_dim=3, hidden=(16, 8), activation=activation)
    p = init_params(cfg, key=KEY)
    assert [layer["w"].shape for layer in p["encoder"]] == [(10, 16), (16, 8), (8, 6)]
    assert [layer["w"].shape for layer in p["decoder"]] == [(3, 8), (8, 16), (16, 10)]
    x = jax.random.normal(KEY, (5, 10))
    mean, std = encode(p, x, cfg)
    assert mean.shape == std.shape == (5, 3) and bool(jnp.all(std > 0))
    out = decode(p, mean, cfg)
    assert out["mean"].shape == (5, 10) and out["sigma"].shape == (10,)


def test_jit_equals_eager_and_gradients_finite():
    cfg = VAEConfig(n_features=6, hidden=(16, 16))
    p = init_params(cfg, key=KEY)
    x = jax.random.normal(KEY, (32, 6))
    eager = loss(p, x, cfg, key=KEY)[0]
    jitted = jax.jit(lambda p, x: loss(p, x, cfg, key=KEY)[0])(p, x)
    np.testing.assert_allclose(eager, jitted, rtol=1e-5)
    grads = jax.grad(lambda p: loss(p, x, cfg, key=KEY)[0])(p)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.abs(g).max()) > 0 for g in leaves)
    assert "log_sigma" in grads  # the learned sigma is trained


def test_given_noise_equals_noise_drawn_from_key():
    cfg = VAEConfig(n_features=6, latent_dim=2, hidden=(16,))
    p = init_params(cfg, key=KEY)
    x = jax.random.normal(KEY, (8, 6))
    k = jax.random.PRNGKey(5)
    eps = jax.random.normal(k, (8, 2))
    np.testing.assert_array_equal(loss(p, x, cfg, key=k)[0], loss(p, x, cfg, eps=eps)[0])
    assert float(loss(p, x, cfg, eps=eps + 1.0)[0]) != float(loss(p, x, cfg, eps=eps)[0])


def test_noise_argument_errors():
    cfg = VAEConfig(n_features=6, latent_dim=2, hidden=(16,))
    p = init_params(cfg, key=KEY)
    x = jnp.zeros((8, 6))
    with pytest.raises(TypeError, match="exactly one of key= .* or eps="):
        loss(p, x, cfg)
    with pytest.raises(TypeError, match="exactly one of key= .* or eps="):
        loss(p, x, cfg, key=KEY, eps=jnp.zeros((8, 2)))
    with pytest.raises(
        ValueError, match=r"eps must have the shape of the latent mean, \(8, 2\); got \(8, 3\)"
    ):
        loss(p, x, cfg, eps=jnp.zeros((8, 3)))


def test_gaussian_log_likelihood_matches_scipy():
    cfg = VAEConfig(n_features=4, hidden=(8,), sigma=0.3)
    p = init_params(cfg, key=KEY)
    z = jnp.array([[0.2, -1.0]])
    x = jnp.array([[0.1, 0.5, -0.2, 1.0]])
    mu = np.asarray(decode(p, z, cfg)["mean"])
    expected = stats.norm(mu, 0.3).logpdf(np.asarray(x)).sum()
    np.testing.assert_allclose(log_likelihood(p, x, z, cfg), [expected], rtol=1e-5)


def test_categorical_log_likelihood_is_log_prob_of_class():
    cfg = VAEConfig(n_features=5, hidden=(8,), likelihood="categorical")
    p = init_params(cfg, key=KEY)
    z = jnp.array([[0.3, 0.1]])
    x = jax.nn.one_hot(jnp.array([2]), 5)
    probs = decode(p, z, cfg)["probs"]
    np.testing.assert_allclose(log_likelihood(p, x, z, cfg), jnp.log(probs[:, 2]), rtol=1e-5)
    np.testing.assert_allclose(jnp.sum(probs), 1.0, rtol=1e-6)


def test_kl_matches_monte_carlo():
    mean, std = jnp.array([0.7, -0.3]), jnp.array([0.5, 1.7])
    eps = jax.random.normal(KEY, (400_000, 2))
    z = mean + std * eps
    log_q = stats.norm(np.asarray(mean), np.asarray(std)).logpdf(np.asarray(z)).sum(1)
    log_p = stats.norm().logpdf(np.asarray(z)).sum(1)
    np.testing.assert_allclose(kl_divergence(mean, std), np.mean(log_q - log_p), rtol=1e-2)
    assert float(kl_divergence(jnp.zeros(3), jnp.ones(3))) == pytest.approx(0.0, abs=1e-7)


def _prior_encoder_constant_decoder(cfg, bias, log_sigma):
    """Encoder output q = N(0, 1) and decoder independent of z: log p(x) is exact."""
    p = init_params(cfg, key=KEY)
    p = jax.tree.map(jnp.zeros_like, p)
    raw_std_one = math.log(math.e - 1.0)  # softplus^-1(1)
    p["encoder"][-1]["b"] = jnp.concatenate(
        [jnp.zeros(cfg.latent_dim), jnp.full(cfg.latent_dim, raw_std_one)]
    )
    p["decoder"][-1]["b"] = bias
    p["log_sigma"] = log_sigma
    return p


def test_iw_log_likelihood_exact_when_q_equals_prior():
    cfg = VAEConfig(n_features=3, hidden=(4,))
    bias, log_sigma = jnp.array([0.5, -1.0, 2.0]), jnp.log(jnp.array([0.5, 1.0, 2.0]))
    p = _prior_encoder_constant_decoder(cfg, bias, log_sigma)
    x = jnp.array([[0.0, 0.0, 0.0], [1.0, -1.0, 3.0]])
    exact = stats.norm(np.asarray(bias), np.exp(np.asarray(log_sigma))).logpdf(np.asarray(x)).sum(1)
    for k in (1, 16):
        np.testing.assert_allclose(
            iw_log_likelihood(p, x, cfg, key=KEY, n_samples=k), exact, rtol=1e-4
        )


def test_iw_bound_tightens_with_more_samples():
    cfg = VAEConfig(n_features=6, hidden=(16,))
    p = init_params(cfg, key=KEY)
    x = jax.random.normal(KEY, (200, 6))
    keys = jax.random.split(KEY, 20)
    lo = np.mean([iw_log_likelihood(p, x, cfg, key=k, n_samples=1).mean() for k in keys])
    hi = np.mean([iw_log_likelihood(p, x, cfg, key=k, n_samples=64).mean() for k in keys])
    assert hi > lo


def test_sample_shapes_and_mean_only():
    cfg = VAEConfig(n_features=4, hidden=(8,))
    p = init_params(cfg, key=KEY)
    x_mean, z = sample(p, 7, cfg, key=KEY, mean_only=True)
    x_noisy, z2 = sample(p, 7, cfg, key=KEY)
    assert x_mean.shape == (7, 4) and z.shape == (7, 2)
    np.testing.assert_array_equal(z, z2)
    np.testing.assert_allclose(x_mean, decode(p, z, cfg)["mean"], rtol=1e-6)
    assert not np.allclose(x_mean, x_noisy)
    cat = VAEConfig(n_features=4, hidden=(8,), likelihood="categorical")
    onehot, _ = sample(init_params(cat, key=KEY), 50, cat, key=KEY)
    np.testing.assert_array_equal(np.asarray(onehot).sum(1), 1.0)


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(latent_dim=0), ValueError, "latent_dim must be >= 1.*got 0"),
        (dict(latent_dim=1.5), TypeError, "latent_dim must be an integer; got 1.5"),
        (dict(activation="gelu"), ValueError, "activation must be one of .*got 'gelu'"),
        (dict(beta=-0.1), ValueError, "beta must be a finite number >= 0; got -0.1"),
        (dict(sigma=0.0), ValueError, r"sigma \(None: learned\) must be a finite number > 0"),
        (dict(hidden=(16, 0)), ValueError, "every hidden layer width"),
        (dict(hidden="abc"), TypeError, "hidden must be an integer"),
        (dict(likelihood="poisson"), ValueError, "likelihood must be one of"),
        (dict(likelihood="categorical", sigma=0.1), ValueError, "sigma applies to the gaussian"),
    ],
)
def test_config_errors(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        VAEConfig(n_features=4, **kwargs)


def test_config_roundtrip():
    cfg = VAEConfig(
        n_features=4, latent_dim=3, hidden=[8, 4], activation="tanh", sigma=0.1, beta=0.5
    )
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
