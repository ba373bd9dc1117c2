"""Several models in one run: members trained together, ranked, saved, resumable."""

import json
import os
import signal

import jax
import numpy as np
import pytest

import polyvae
from polyvae.cli import main
from polyvae.nn.train_state import TrainingInterrupted
from polyvae.training import ensemble
from polyvae.training.ensemble import train_many

SMALL = dict(hidden=(16, 16), batch_size=16, progress=False)
FAST = dict(SMALL, decoder="cartesian")  # compiles in a fraction of the internal decoder's time


def two_factor_chain(rng, n_frames, n_atoms=8):
    """2D chains whose first three turning angles share one random value and the others
    another: two latent factors, so one latent CV is too few."""
    a = rng.uniform(-1.2, 1.2, size=(n_frames, 2))
    turns = np.concatenate([np.repeat(a[:, :1], 3, 1), np.repeat(a[:, 1:], n_atoms - 5, 1)], 1)
    turns += 0.03 * rng.normal(size=turns.shape)
    heading = np.concatenate([np.zeros((n_frames, 1)), np.cumsum(turns, 1)], 1)
    bonds = 1.0 + 0.02 * rng.normal(size=heading.shape)
    steps = bonds[..., None] * np.stack([np.cos(heading), np.sin(heading)], -1)
    return np.concatenate([np.zeros((n_frames, 1, 2)), np.cumsum(steps, 1)], 1).astype(np.float32)


@pytest.fixture(scope="module")
def chain():
    return two_factor_chain(np.random.default_rng(5), 400)


@pytest.fixture(scope="module")
def run(chain, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble")
    result = train_many(chain, seeds=[3, 4], latent_dim=[1, 2], epochs=30, output_dir=out, **SMALL)
    return result, out


def _max_diff(a, b) -> float:
    d = jax.tree.map(lambda u, v: float(np.max(np.abs(np.asarray(u) - np.asarray(v)))), a, b)
    return max(jax.tree.leaves(d))


def test_member_equals_its_single_run(chain, run):
    result, _ = run
    member = next(m for m in result if m.seed == 3 and m.latent_dim == 2)
    single = polyvae.train(chain, seed=3, latent_dim=2, epochs=30, **SMALL)
    # the same initialization, batches and noise; vmapped kernels round differently
    assert _max_diff(member.model.params, single.params) < 1e-3
    assert member.model.history["val_elbo"][-1] == pytest.approx(
        single.history["val_elbo"][-1], abs=1e-3
    )
    other = next(m for m in result if m.seed == 4 and m.latent_dim == 2)
    assert _max_diff(other.model.params, single.params) > 1e-2


def test_a_too_small_latent_space_ranks_last(run):
    result, _ = run
    assert [m.latent_dim for m in result] == [2, 2, 1, 1]
    lls = [m.iw_log_px for m in result]
    assert all(np.isfinite(lls)) and lls == sorted(lls, reverse=True)
    assert lls[1] - lls[2] > 0.5  # nats per frame
    assert [m.active_dims for m in result] == [2, 2, 1, 1]


def test_files_ranking_and_resume_of_a_member(chain, run):
    result, out = run
    saved = json.loads((out / "ranking.json").read_text())
    assert [m["name"] for m in saved["members"]] == [m.name for m in result]
    assert saved["iw_samples"] == ensemble.IW_SAMPLES and saved["n_validation"] == 40
    assert "seed3_beta1_latent2" in (out / "ranking.txt").read_text()
    for m in result:
        loaded = polyvae.load_model(out / f"{m.name}.npz")
        assert loaded.latent_dim == m.latent_dim and loaded.train_config.seed == m.seed
        assert _max_diff(loaded.params, m.model.params) == 0
    # a member continues alone, on the validation split of the run (the first seed's)
    path = out / "seed4_beta1_latent1.npz"
    more = polyvae.train(chain, epochs=32, resume=path)
    assert more.train_state.epoch == 32 and more.train_config.split_seed == 3
    assert len(more.history["val_elbo"]) == 32


def test_betas_train_together_with_their_own_kl_weight(chain):
    result = train_many(chain, seeds=[0], beta=[0.1, 4.0], epochs=15, **FAST)
    by_beta = {m.beta: m for m in result}
    assert by_beta[0.1].model.config.beta == 0.1
    # a heavy KL weight squeezes the posterior towards the prior
    kl = {b: m.model.history["val_kl"][-1] for b, m in by_beta.items()}
    assert kl[4.0] < 0.5 * kl[0.1]


def test_early_stopping_per_member_keeps_its_best_epoch(chain):
    result = train_many(chain, seeds=[0, 1], epochs=400, patience=3, **FAST)
    for m in result:
        h = m.model.history
        assert m.epoch == h["best_epoch"] and m.epochs_run == len(h["val_loss"])
        assert m.epochs_run - m.epoch == 3  # stopped after 3 epochs without improvement
        assert h["val_loss"][m.epoch - 1] == min(h["val_loss"])
        assert m.epochs_run < 400


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seeds=[1, 1]), "seeds must not repeat a value; got 1 more than once"),
        (dict(seeds=[]), "seeds must give at least one value; got none"),
        (dict(latent_dim=[0]), "latent_dim"),
        (dict(validation_fraction=0.0), "validation_fraction must be > 0 for train_many"),
        (dict(iw_samples=0), "iw_samples"),
    ],
)
def test_bad_arguments_are_named(chain, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_many(chain, epochs=1, **{**FAST, **kwargs})


def test_unknown_option_is_named(chain):
    with pytest.raises(TypeError, match="unexpected argument 'stream'"):
        train_many(chain, stream=True, **SMALL)


def test_interrupt_saves_every_member(chain, tmp_path, monkeypatch):
    real = ensemble._evaluate_many

    def evaluate_then_signal(*a, **k):  # SIGINT arrives during the second epoch
        if evaluate_then_signal.calls == 1:
            os.kill(os.getpid(), signal.SIGINT)
        evaluate_then_signal.calls += 1
        return real(*a, **k)

    evaluate_then_signal.calls = 0
    monkeypatch.setattr(ensemble, "_evaluate_many", evaluate_then_signal)
    with pytest.raises(TrainingInterrupted, match="after epoch 2; every model .* saved in"):
        train_many(chain, seeds=[0, 1], epochs=50, output_dir=tmp_path, **FAST)
    for seed in (0, 1):
        model = polyvae.load_model(tmp_path / f"seed{seed}_beta1_latent2.npz")
        assert model.train_state.epoch == 2
        assert polyvae.train(chain, epochs=4, resume=model).train_state.epoch == 4


def test_cli_trains_several_and_prints_the_ranking(chain, tmp_path, capsys):
    np.savez(tmp_path / "t.npz", arr=chain)
    out = tmp_path / "models"
    args = ["train", str(tmp_path / "t.npz"), "-o", str(out), "--epochs", "2"]
    args += ["--hidden", "16,16", "--batch-size", "16", "--decoder", "cartesian"]
    assert main(["-q", *args, "--seeds", "0-1", "--latent-dim", "1,2"]) == 0
    printed = capsys.readouterr().out
    assert "ranked by importance-weighted log p(x)" in printed
    assert "4 models, ranking.json and ranking.txt written to" in printed
    assert len(list(out.glob("seed*_beta1_latent*.npz"))) == 4


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seeds", "0-1", "--resume", "m.npz"], "--resume works on one model; with --seeds"),
        (["--beta", "0.5,1", "--stream"], "--stream works on one model"),
        (["--seeds", "3-1"], "--seeds must be a number or a list like 0-7 or 0,2,5; got '3-1'"),
        (["--latent-dim", "1,x"], "--latent-dim must be a number or a list like 1,2,3"),
        (["--seeds", "0,0"], "seeds must not repeat a value; got 0 more than once"),
    ],
)
def test_cli_errors_are_one_line(chain, tmp_path, capsys, extra, message):
    np.savez(tmp_path / "t.npz", arr=chain)
    args = ["-q", "train", str(tmp_path / "t.npz"), "-o", str(tmp_path / "out"), "--epochs", "1"]
    try:
        code = main([*args, *extra])
    except SystemExit as exc:  # argparse's own check of the value
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "out").exists()
