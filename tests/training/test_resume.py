"""Continuing a training run: bit for bit, from the model file, after SIGINT/SIGTERM."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from helpers import random_chain

import polyvae
from polyvae.cli import main
from polyvae.nn.train_state import TrainingInterrupted

SMALL = dict(latent_dim=2, hidden=(16, 16), batch_size=16, seed=4, progress=False)


@pytest.fixture(scope="module")
def chain():
    return random_chain(np.random.default_rng(11), 160, 7, 2)


def _same(a, b) -> bool:
    return all(
        jax.tree.leaves(
            jax.tree.map(lambda u, v: np.array_equal(np.asarray(u), np.asarray(v)), a, b)
        )
    )


@pytest.mark.parametrize(
    "patience, stream", [(None, False), (100, False), (None, True)], ids=["all", "best", "streamed"]
)
def test_ten_then_ten_equals_twenty_bit_for_bit(chain, tmp_path, patience, stream):
    kw = dict(patience=patience, stream=stream, **SMALL)
    full = polyvae.train(chain, epochs=20, **kw)
    polyvae.train(chain, epochs=10, output=tmp_path / "a.polyvae", **kw)
    half = polyvae.load_model(tmp_path / "a.polyvae")
    assert half.train_state.epoch == 10
    assert not _same(half.params, full.params)
    cont = polyvae.train(chain, epochs=20, resume=tmp_path / "a.polyvae", stream=stream)
    assert _same(cont.params, full.params)
    assert cont.history["train_loss"] == full.history["train_loss"]
    assert cont.history["val_loss"] == full.history["val_loss"]
    assert cont.history["best_epoch"] == full.history["best_epoch"]
    assert cont.train_state.epoch == 20


def test_resume_refuses_what_cannot_continue(chain, tmp_path):
    path = tmp_path / "m.polyvae"
    model = polyvae.train(chain, epochs=3, output=path, **SMALL)
    with pytest.raises(ValueError, match="has trained 3 epochs already; .* must exceed 3; got 3"):
        polyvae.train(chain, epochs=3, resume=path)
    with pytest.raises(ValueError, match="was trained on 160 frames; got 150"):
        polyvae.train(chain[:150], epochs=5, resume=path)
    model.train_state = None
    model.save(tmp_path / "plain.polyvae")
    with pytest.raises(ValueError, match="holds no training state"):
        polyvae.train(chain, epochs=5, resume=tmp_path / "plain.polyvae")
    polyvae.train(chain, epochs=3, weights=np.ones(160), output=tmp_path / "w.polyvae", **SMALL)
    with pytest.raises(ValueError, match="trained with frame weights; pass the same weights"):
        polyvae.train(chain, epochs=5, resume=tmp_path / "w.polyvae")


def test_cli_resume_error_is_one_line(chain, tmp_path, capsys):
    np.savez(tmp_path / "t.npz", arr=chain)
    args = ["-q", "train", str(tmp_path / "t.npz"), "-o", str(tmp_path / "m.polyvae")]
    assert main([*args, "--epochs", "2", "--hidden", "16,16"]) == 0
    capsys.readouterr()
    assert main([*args, "--epochs", "2", "--resume", str(tmp_path / "m.polyvae")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "--resume:" in err and "must exceed 2; got 2" in err


def _interrupt(tmp_path, chain, sig, to_group):
    np.savez(tmp_path / "t.npz", arr=chain)
    out = tmp_path / "m.polyvae"
    cmd = [sys.executable, "-c", "from polyvae.cli import main; import sys; sys.exit(main())"]
    # --patience 0: no early stop may end training before the signal comes
    args = ["train", str(tmp_path / "t.npz"), "-o", str(out), "--epochs", "100000"]
    args += ["--patience", "0"]
    args += ["--hidden", "16,16", "--batch-size", "16"]
    env = {**os.environ, "POLYVAE_COMPILE_CACHE": "0"}
    proc = subprocess.Popen(
        [*cmd, *args], stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    seen = ""
    deadline = time.monotonic() + 120
    while "training:" not in seen and time.monotonic() < deadline:  # the epoch loop started
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
    time.sleep(1.0)
    (os.killpg if to_group else os.kill)(proc.pid, sig)
    _, rest = proc.communicate(timeout=120)
    return proc.returncode, seen + rest, out


@pytest.mark.parametrize(
    "sig, to_group",
    [
        (signal.SIGINT, True),  # Ctrl-C: the whole process group
        (signal.SIGINT, False),  # kill -INT PID
        (signal.SIGTERM, False),
        (signal.SIGHUP, False),  # the terminal closed
    ],
    ids=["SIGINT-group", "SIGINT", "SIGTERM", "SIGHUP"],
)
def test_a_signal_saves_a_resumable_model(chain, tmp_path, sig, to_group):
    code, err, out = _interrupt(tmp_path, chain, sig, to_group)
    assert code == 130, err[-2000:]
    assert f"the model and its training state are saved in {out}" in err
    assert f"continue it with --resume {out}" in err
    model = polyvae.load_model(out)
    done = model.train_state.epoch
    assert done >= 1 and len(model.history["train_loss"]) == done
    more = polyvae.train(chain, epochs=done + 2, resume=out)
    assert more.train_state.epoch == done + 2
    assert len(more.history["train_loss"]) == done + 2


def test_an_interrupt_after_the_last_epoch_leaves_the_trained_model(chain, tmp_path, monkeypatch):
    from polyvae.training import finishing as training
    from polyvae.training.finishing import InterruptedAfterTraining

    def interrupted(*a, **k):  # Ctrl-C during the Cartesian weight scan
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "choose_cartesian_weight", interrupted)
    out = tmp_path / "m.polyvae"
    with pytest.raises(InterruptedAfterTraining) as err:
        polyvae.train(chain, epochs=3, output=out, **SMALL)
    assert str(err.value) == (
        "interrupted after training (epoch 3), while choosing the Cartesian weight; the trained "
        f"model is saved in {out} without that step (continue training with resume={out})"
    )
    assert err.value.saved_to == out and polyvae.load_model(out).train_state.epoch == 3
    with pytest.raises(InterruptedAfterTraining, match="nothing saved: no output file"):
        polyvae.train(chain, epochs=3, **SMALL)
    np.savez(tmp_path / "t.npz", arr=chain)
    args = [
        "-q",
        "train",
        str(tmp_path / "t.npz"),
        "--epochs",
        "3",
        "-o",
        str(tmp_path / "c.polyvae"),
    ]
    assert main(args) == 130
    assert polyvae.load_model(tmp_path / "c.polyvae").train_state.epoch == 3


def test_a_repeated_signal_within_half_a_second_is_the_same_request(monkeypatch):
    from polyvae.training import loop as training

    monkeypatch.setattr(training, "_LAST_SIGNAL", [-np.inf])
    assert not training.repeated_signal()
    assert training.repeated_signal()  # the same Ctrl-C passed on by the supervisor
    time.sleep(training.REPEAT_SIGNAL_S + 0.05)
    assert not training.repeated_signal()


def test_interrupt_without_output_says_nothing_was_saved(chain, monkeypatch):
    from polyvae.training import loop as training

    real = training.evaluate

    def evaluate_then_signal(*a, **k):  # SIGINT arrives during the first epoch
        os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(training, "evaluate", evaluate_then_signal)
    with pytest.raises(TrainingInterrupted, match="after epoch 1 .*nothing saved"):
        polyvae.train(chain, epochs=50, **SMALL)


def test_resume_refuses_other_frames_and_conflicting_settings(chain, tmp_path, capsys):
    polyvae.train(chain, epochs=2, output=tmp_path / "m.polyvae", **SMALL)
    other = chain[::-1].copy()  # as many frames, other positions
    with pytest.raises(ValueError, match=r"^resume: .*m.polyvae was trained on other frames \(as many, 160, but other positions\); continue on the same frames$"):  # fmt: skip
        polyvae.train(other, epochs=4, resume=tmp_path / "m.polyvae")
    with pytest.raises(ValueError, match=r"was trained with hidden=\(16, 16\); got hidden=\(32, 32\): a resumed run keeps its settings; leave hidden out, or train anew$"):  # fmt: skip
        polyvae.train(chain, epochs=4, hidden=(32, 32), resume=tmp_path / "m.polyvae")
    # the settings it was trained with, given again, are no conflict
    more = polyvae.train(chain, epochs=4, resume=tmp_path / "m.polyvae", **SMALL)
    assert more.train_state.epoch == 4
    np.savez(tmp_path / "t.npz", arr=chain)
    args = [
        "-q",
        "train",
        str(tmp_path / "t.npz"),
        "--epochs",
        "6",
        "-o",
        str(tmp_path / "m.polyvae"),
    ]
    assert main([*args, "--resume", str(tmp_path / "m.polyvae"), "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert (
        "--resume: " in err
        and "was trained with --lr 0.001; got --lr 0.01: a resumed run keeps its settings; leave --lr out, or train anew"
        in err
    )
