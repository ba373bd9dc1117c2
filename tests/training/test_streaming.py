"""Streaming training from host memory: equal to fit, block-size independent, errors."""

from functools import partial

import jax
import numpy as np
import pytest

from polyvae.nn.model import VAEConfig, init_params
from polyvae.training.trainer import TrainConfig, TrainingDivergedError, fit

fit_streaming = partial(fit, stream=True)

CFG = VAEConfig(n_features=8, hidden=(16, 16))
TC = TrainConfig(epochs=4, batch_size=16, seed=3)


def _data(n=600, f=8, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    return (z @ rng.normal(size=(2, f)) + 0.1 * rng.normal(size=(n, f))).astype(np.float32)


def _leaves(params):
    return [np.asarray(a) for a in jax.tree.leaves(params)]


@pytest.fixture(scope="module")
def reference():
    x = _data()
    return x, fit(x, CFG, TC, progress=False)


def test_one_block_equals_fit_bit_for_bit(reference):
    x, (p_fit, h_fit) = reference
    p, h = fit_streaming(x, CFG, TC, block_frames=x.shape[0], progress=False)
    for a, b in zip(_leaves(p), _leaves(p_fit), strict=True):
        np.testing.assert_array_equal(a, b)
    for k in ("train_recon", "train_kl", "train_elbo", "train_loss", "val_loss", "val_elbo"):
        assert h[k] == h_fit[k], k
    assert len(h["epoch_time_s"]) == TC.epochs


def test_weighted_streaming_equals_weighted_fit_and_weights_matter():
    x = _data()
    w = np.random.default_rng(1).uniform(0.0, 3.0, size=x.shape[0])
    p_fit, h_fit = fit(x, CFG, TC, weights=w, progress=False)
    p, h = fit_streaming(x, CFG, TC, weights=w, block_frames=x.shape[0], progress=False)
    for a, b in zip(_leaves(p), _leaves(p_fit), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h["val_loss"], h_fit["val_loss"], rtol=1e-6)
    p_plain, _ = fit(x, CFG, TC, progress=False)
    assert not np.allclose(_leaves(p_plain)[0], _leaves(p_fit)[0])


def test_small_blocks_train_the_same_steps_and_are_deterministic(reference, monkeypatch):
    x, (p_fit, h_fit) = reference
    shapes = []
    put = jax.device_put

    def spy(value, *args, **kwargs):
        shapes.extend(np.shape(leaf) for leaf in jax.tree.leaves(value))
        return put(value, *args, **kwargs)

    monkeypatch.setattr(jax, "device_put", spy)
    p1, h1 = fit_streaming(x, CFG, TC, block_frames=100, progress=False)  # 6 batches a block
    monkeypatch.undo()
    # only blocks of at most 96 rows (and their step keys) were moved to the device
    assert max(s[0] for s in shapes if len(s) == 2 and s[1] == 8) == 96
    p2, h2 = fit_streaming(x, CFG, TC, block_frames=100, progress=False)
    for a, b in zip(_leaves(p1), _leaves(p2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h1["train_loss"] == h2["train_loss"]
    # the same permutation and keys as fit: equal up to rounding of other compiled code
    for a, b in zip(_leaves(p1), _leaves(p_fit), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1["train_loss"], h_fit["train_loss"], rtol=1e-5)
    assert h1["train_loss"][-1] < h1["train_loss"][0]
    assert h1["val_loss"][-1] < h1["val_loss"][0]
    p3, _ = fit_streaming(x, CFG, TrainConfig(epochs=1, batch_size=16, seed=4), progress=False)
    assert not np.array_equal(p3["decoder"][0]["w"], p1["decoder"][0]["w"])


def test_memmap_file_float64(reference, tmp_path):
    x = reference[0].astype(np.float64)
    path = tmp_path / "features.f64"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    del mm
    ro = np.memmap(path, dtype=np.float64, mode="r", shape=x.shape)
    p_mm, h_mm = fit_streaming(ro, CFG, TC, block_frames=100, progress=False)
    p_np, h_np = fit_streaming(reference[0], CFG, TC, block_frames=100, progress=False)
    for a, b in zip(_leaves(p_mm), _leaves(p_np), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h_mm == {**h_np, "epoch_time_s": h_mm["epoch_time_s"]}


def test_encoder_inputs_no_validation_split():
    cfg = VAEConfig(n_features=8, hidden=(16,), n_inputs=5)
    x = _data(300)
    x_in = _data(300, 5, seed=1)
    tc = TrainConfig(epochs=2, batch_size=32, validation_fraction=0.0)
    p_fit, h_fit = fit(x, cfg, tc, inputs=x_in, progress=False)
    p, h = fit_streaming(x, cfg, tc, inputs=x_in, block_frames=10**6, progress=False)
    for a, b in zip(_leaves(p), _leaves(p_fit), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h["train_loss"] == h_fit["train_loss"] and "val_loss" not in h


def test_divergence_keeps_last_finite_params():
    x = _data() * 1e19  # finite data whose squared residuals overflow float32
    tc = TrainConfig(epochs=3, batch_size=16)  # the shapes of the tests above: compiled once
    with pytest.raises(TrainingDivergedError, match="NaN or inf in epoch 1") as info:
        fit_streaming(x, CFG, tc, block_frames=100, progress=False)
    init = init_params(CFG, key=jax.random.split(jax.random.PRNGKey(0), 3)[1])
    for a, b in zip(_leaves(info.value.params), _leaves(init), strict=True):
        np.testing.assert_array_equal(a, b)
    assert info.value.epoch == 1 and info.value.history == {}


def test_errors():
    x = _data(200)
    tc = TrainConfig(epochs=1, batch_size=32)
    # a block smaller than a batch holds one batch: block_frames is no user's concern
    small, _ = fit_streaming(x, CFG, tc, block_frames=16, progress=False)
    one, _ = fit_streaming(x, CFG, tc, block_frames=32, progress=False)
    for a, b in zip(_leaves(small), _leaves(one), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="block_frames must be >= 1; got 0"):
        fit_streaming(x, CFG, tc, block_frames=0, progress=False)
    with pytest.raises(TypeError, match="block_frames must be an integer; got 1.5"):
        fit_streaming(x, CFG, tc, block_frames=1.5, progress=False)
    with pytest.raises(
        ValueError,
        match=r"features must have shape \(T, 8\) to match the model.s n_features; got \(200, 5\)",
    ):
        fit_streaming(x[:, :5], CFG, tc, progress=False)
    with pytest.raises(TypeError, match="features must be a real-valued array; got dtype"):
        fit_streaming(np.full((200, 8), "a"), CFG, tc, progress=False)
    bad = x.copy()
    bad[150, 3] = np.nan
    with pytest.raises(ValueError, match="features contains NaN or inf: first bad row is 150"):
        fit_streaming(bad, CFG, tc, block_frames=64, progress=False)
    with pytest.raises(TypeError, match="config must be a VAEConfig; got dict"):
        fit_streaming(x, {}, tc, progress=False)
    with pytest.raises(TypeError, match="train_config must be a TrainConfig; got dict"):
        fit_streaming(x, CFG, {}, progress=False)
    with pytest.raises(ValueError, match="batch_size=32 is larger than the 27 training frames"):
        fit_streaming(x[:30], CFG, TrainConfig(batch_size=32), progress=False)
    with pytest.raises(ValueError, match="inputs given but config.n_inputs is None"):
        fit_streaming(x, CFG, tc, inputs=x, progress=False)
    cfg_in = VAEConfig(n_features=8, hidden=(16,), n_inputs=5)
    with pytest.raises(ValueError, match=r"inputs \(T, 5\) are required"):
        fit_streaming(x, cfg_in, tc, progress=False)
    with pytest.raises(
        ValueError,
        match=r"inputs must have shape \(200, 5\) to match the model.s n_inputs; got \(199, 5\)",
    ):
        fit_streaming(x, cfg_in, tc, inputs=x[:199, :5], progress=False)
    onehot = np.eye(4, dtype=np.float32)[np.arange(200) % 4]
    onehot[70] = [0.5, 0.5, 0, 0]
    cat = VAEConfig(n_features=4, hidden=(8,), likelihood="categorical")
    with pytest.raises(ValueError, match="must be one-hot rows .* row 70 is not"):
        fit_streaming(onehot, cat, tc, block_frames=32, progress=False)


def test_train_streams_when_asked_or_above_the_size_limit(monkeypatch, caplog):
    """polyvae.train reaches the streamed trainer: by stream=True, or automatically above
    STREAM_ABOVE_BYTES; one block gives the in-memory parameters bit for bit."""
    import logging

    from helpers import random_chain

    import polyvae
    from polyvae.training import data as training

    frames = random_chain(np.random.default_rng(2), n_frames=200, n_atoms=6)
    kwargs = dict(hidden=(16,), epochs=2, batch_size=16, progress=False)
    in_memory = polyvae.train(frames, stream=False, **kwargs)
    with caplog.at_level(logging.INFO, logger="polyvae.training.trainer"):
        streamed = polyvae.train(frames, stream=True, **kwargs)
    assert "streamed in blocks" in caplog.text
    for a, b in zip(_leaves(streamed.params), _leaves(in_memory.params), strict=True):
        np.testing.assert_array_equal(a, b)
    caplog.clear()
    monkeypatch.setattr(training, "STREAM_ABOVE_BYTES", 1000)  # 200 x 12 float32 > 1000 B
    with caplog.at_level(logging.INFO, logger="polyvae.training.trainer"):
        polyvae.train(frames, **kwargs)
    assert "streamed in blocks" in caplog.text
    with pytest.raises(TypeError, match="stream must be True, False or None"):
        polyvae.train(frames, stream="yes", **kwargs)
