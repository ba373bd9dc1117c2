"""Training: compiled epochs, determinism, history, validation split, divergence."""

import jax
import numpy as np
import pytest
from helpers import random_chain

import polyvae
from polyvae.nn.model import VAEConfig, init_params
from polyvae.nn.steps import epoch_plan
from polyvae.training.trainer import TrainConfig, TrainingDivergedError, fit, split_indices

CFG = VAEConfig(n_features=8, hidden=(16, 16))


def _data(n=200, f=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, f)).astype(np.float32)


def test_same_seed_identical_parameters_other_seed_differs():
    x = _data()
    p1, h1 = fit(x, CFG, TrainConfig(epochs=3, seed=5), progress=False)
    p2, h2 = fit(x, CFG, TrainConfig(epochs=3, seed=5), progress=False)
    p3, _ = fit(x, CFG, TrainConfig(epochs=3, seed=6), progress=False)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h1["train_loss"] == h2["train_loss"]
    assert not np.array_equal(p1["decoder"][0]["w"], p3["decoder"][0]["w"])


def test_history_and_loss_decreases():
    x = _data(400)
    _, h = fit(x, CFG, TrainConfig(epochs=15, batch_size=16), progress=False)
    for k in (
        "train_recon",
        "train_kl",
        "train_elbo",
        "train_loss",
        "val_recon",
        "val_kl",
        "val_elbo",
    ):
        assert len(h[k]) == 15, k
    np.testing.assert_allclose(h["train_elbo"], -(np.array(h["train_recon"]) + h["train_kl"]))
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h["val_elbo"][-1] > h["val_elbo"][0]


def _overfitting(patience):
    """Noise features, 24 frames, a wide decoder: the validation loss soon rises."""
    x = _data(24, f=16, seed=3)
    cfg = VAEConfig(n_features=16, hidden=(256, 256))
    tc = TrainConfig(
        epochs=300, batch_size=8, learning_rate=3e-3, validation_fraction=0.25, patience=patience
    )
    return x, cfg, tc, *fit(x, cfg, tc, progress=False)


def _val_loss(params, x, cfg, tc):
    """The validation loss of params, evaluated as training does (same rows, same key)."""
    from polyvae.nn.steps import evaluate

    _, val_idx = split_indices(len(x), tc.validation_fraction, tc.seed)
    k_val = jax.random.split(jax.random.PRNGKey(tc.seed), 3)[2]
    recon, kl = evaluate(params, (jax.numpy.asarray(x[val_idx]),), cfg, key=k_val)
    return recon + cfg.beta * kl


def test_early_stopping_returns_the_best_validation_epoch(caplog):
    with caplog.at_level("WARNING", logger="polyvae.training.trainer"):
        x, cfg, tc, params, h = _overfitting(patience=60)
    best, n = h["best_epoch"], len(h["train_loss"])
    assert n == best + 60 < 300  # stopped 60 epochs after the best one
    assert h["val_loss"][best - 1] == min(h["val_loss"])
    assert h["val_loss"][-1] > h["val_loss"][best - 1] + 1.0  # it did overfit
    np.testing.assert_allclose(_val_loss(params, x, cfg, tc), h["val_loss"][best - 1], rtol=1e-5)
    assert "the model overfits: validation -ELBO rose by" in caplog.text
    assert f"after its best epoch {best} of {n}" in caplog.text
    assert f"the parameters of epoch {best} are kept" in caplog.text


def test_early_stopping_is_on_by_default(tmp_path, capsys):
    from polyvae.cli import main
    from polyvae.config import DEFAULT_PATIENCE
    from polyvae.training import training_summary

    assert TrainConfig().patience == DEFAULT_PATIENCE == 50
    x = np.random.default_rng(2).normal(size=(24, 5, 2)).astype(np.float32)  # noise: overfits
    model = polyvae.train(
        x,
        hidden=(256, 256),
        batch_size=8,
        learning_rate=3e-3,
        validation_fraction=0.25,
        epochs=400,
        progress=False,
    )
    h = model.history
    run = training_summary(h, model.train_config.patience)
    assert run["epochs_run"] == h["best_epoch"] + 50 < 400
    assert run["kept_epoch"] == h["kept_epoch"] == h["best_epoch"] and run["overfitting"]
    assert run["train_val_gap"] == pytest.approx(
        h["train_elbo"][h["best_epoch"] - 1] - h["val_elbo"][h["best_epoch"] - 1]
    )
    # --patience 0 trains every epoch and keeps the last
    np.savez(tmp_path / "t.npz", arr=x)
    args = ["-q", "train", str(tmp_path / "t.npz"), "-o", str(tmp_path / "m.npz")]
    assert main([*args, "--epochs", "60", "--patience", "0", "--batch-size", "8"]) == 0
    assert "in epoch 60 of 60, kept" in capsys.readouterr().out
    assert polyvae.load_model(tmp_path / "m.npz").train_config.patience is None


def test_without_patience_all_epochs_run_and_the_last_is_returned(caplog):
    with caplog.at_level("WARNING", logger="polyvae.training.trainer"):
        x, cfg, tc, params, h = _overfitting(patience=None)
    best = h["best_epoch"]
    assert (
        len(h["train_loss"]) == 300 and best < 300 and h["val_loss"][best - 1] == min(h["val_loss"])
    )
    np.testing.assert_allclose(_val_loss(params, x, cfg, tc), h["val_loss"][-1], rtol=1e-5)
    assert "the parameters of the last epoch are kept; early stopping (patience=N" in caplog.text
    # without a validation split there is no best epoch: the last parameters come back
    _, h0 = fit(x, cfg, TrainConfig(epochs=3, batch_size=8, validation_fraction=0), progress=False)
    assert "best_epoch" not in h0 and len(h0["train_loss"]) == 3


def test_beta_weights_kl_in_loss():
    cfg = VAEConfig(n_features=8, hidden=(16,), beta=0.25)
    _, h = fit(_data(), cfg, TrainConfig(epochs=2), progress=False)
    np.testing.assert_allclose(
        h["train_loss"], np.array(h["train_recon"]) + 0.25 * np.array(h["train_kl"])
    )


def test_validation_split_is_seeded_and_disjoint():
    tr, va = split_indices(100, 0.2, 3)
    assert len(va) == 20 and len(tr) == 80 and not set(tr) & set(va)
    np.testing.assert_array_equal(split_indices(100, 0.2, 3)[1], va)
    _, h = fit(_data(), CFG, TrainConfig(epochs=2, validation_fraction=0.0), progress=False)
    assert "val_elbo" not in h


def test_epoch_plan_is_a_seeded_shuffle_with_noise():
    order, eps = epoch_plan(jax.random.PRNGKey(7), 100, 32, 3)
    assert order.shape == (3, 32) and order.dtype == np.int32
    assert len(set(order.ravel())) == 96 and order.min() >= 0 and order.max() < 100
    assert eps.shape == (3, 32, 3) and eps.dtype == np.float32
    assert abs(float(eps.mean())) < 0.2 and 0.8 < float(eps.std()) < 1.2
    again = epoch_plan(jax.random.PRNGKey(7), 100, 32, 3)
    np.testing.assert_array_equal(again[0], order)
    np.testing.assert_array_equal(again[1], eps)
    other = epoch_plan(jax.random.PRNGKey(8), 100, 32, 3)
    assert not np.array_equal(other[0], order) and not np.array_equal(other[1], eps)
    # every row is drawn: over many epochs each position is visited about equally often
    counts = np.zeros(100)
    for k in jax.random.split(jax.random.PRNGKey(0), 200):
        np.add.at(counts, epoch_plan(k, 100, 32, 1)[0].ravel(), 1)
    assert counts.min() > 0.8 * 192 and counts.max() < 1.2 * 192


def test_divergence_stops_with_epoch_and_keeps_last_finite_params():
    x = _data() * 1e19  # finite data whose squared residuals overflow float32
    with pytest.raises(TrainingDivergedError, match="NaN or inf in epoch 1") as info:
        fit(x, CFG, TrainConfig(epochs=5), progress=False)
    init = init_params(CFG, key=jax.random.split(jax.random.PRNGKey(0), 3)[1])
    for a, b in zip(jax.tree.leaves(info.value.params), jax.tree.leaves(init), strict=True):
        np.testing.assert_array_equal(a, b)
    assert info.value.epoch == 1 and info.value.history == {}


def test_divergence_saves_last_finite_model_when_output_set(tmp_path):
    x = random_chain(np.random.default_rng(0), 64, 5, 2)
    out = tmp_path / "m.polyvae"
    good = polyvae.train(x, hidden=(8,), epochs=1, output=out, progress=False)
    before = out.read_bytes()
    # a decoder sigma this small overflows the Gaussian log-likelihood at once
    with pytest.raises(
        TrainingDivergedError, match="epoch 1.*saved to .*m.diverged.polyvae"
    ) as info:
        polyvae.train(x, hidden=(8,), epochs=3, sigma=1e-30, output=out, progress=False)
    assert str(out) in str(info.value) and "left as it was" in str(info.value)
    assert out.read_bytes() == before  # the good model is untouched
    assert info.value.saved_to == tmp_path / "m.diverged.polyvae"
    kept = polyvae.load_model(info.value.saved_to)
    assert kept.config.sigma == 1e-30 and good.config.sigma is None
    new = tmp_path / "new.polyvae"  # a path that held nothing: nothing was written there
    with pytest.raises(TrainingDivergedError, match=r"and nothing was written to .*new.polyvae\."):
        polyvae.train(x, hidden=(8,), epochs=3, sigma=1e-30, output=new, progress=False)
    assert not new.exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(learning_rate=0.0), "learning_rate must be a finite number > 0; got 0.0"),
        (dict(learning_rate=-1e-3), "learning_rate must be a finite number > 0"),
        (dict(epochs=0), "epochs must be >= 1"),
        (dict(patience=0), "patience must be >= 1; got 0"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (
            dict(validation_fraction=1.0),
            "validation_fraction must be a finite number >= 0 and < 1; got 1.0",
        ),
    ],
)
def test_train_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_fit_input_errors():
    with pytest.raises(ValueError, match="fewer|larger than the 18 training frames"):
        fit(_data(20), CFG, TrainConfig(batch_size=32), progress=False)
    with pytest.raises(ValueError, match=r"features must have shape \(T, 8\).*got \(10, 5\)"):
        fit(_data(10, 5), CFG, progress=False)
    bad = _data()
    bad[17, 2] = np.nan
    with pytest.raises(ValueError, match="first bad row is 17"):
        fit(bad, CFG, progress=False)
    with pytest.raises(TypeError, match="config must be a VAEConfig"):
        fit(_data(), {"n_features": 8}, progress=False)


def test_train_errors_name_arguments():
    x = random_chain(np.random.default_rng(0), 40, 5, 2)
    with pytest.raises(ValueError, match="batch_size=64 is larger than the 36 training frames"):
        polyvae.train(x, batch_size=64, progress=False)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0; got -1"):
        polyvae.train(x, beta=-1.0, progress=False)
    with pytest.raises(ValueError, match="latent_dim must be >= 1"):
        polyvae.train(x, latent_dim=0, progress=False)
    with pytest.raises(ValueError, match="activation must be one of"):
        polyvae.train(x, activation="swish", progress=False)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        polyvae.train(x, learning_rate=0, progress=False)
