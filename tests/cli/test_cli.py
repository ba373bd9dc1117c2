"""The polyvae command line: every subcommand, and errors as one line with exit code 2."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import random_chain

import polyvae
from polyvae.cli import main

FAST = ["--epochs", "3", "--hidden", "16,16", "--batch-size", "16"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, small_model_file):
    """A folder holding the small model's file (m.polyvae) and its frames (traj.npz)."""
    d = tmp_path_factory.mktemp("cli")
    path, x = small_model_file
    np.savez(d / "traj.npz", arr=x)
    shutil.copy(path, d / "m.polyvae")
    return d


def test_train_writes_model_with_options(workspace, capsys):
    d = workspace
    code = main(
        [
            "-q",
            "train",
            str(d / "traj.npz"),
            "-o",
            str(d / "m2.polyvae"),
            "--latent-dim",
            "3",
            "--activation",
            "tanh",
            "--beta",
            "0.5",
            "--sigma",
            "0.2",
            "--lr",
            "2e-3",
            "--align",
            "kabsch",
            "--patience",
            "7",
            *FAST,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "model written to" in out and ", kept; best " in out
    m = polyvae.load_model(d / "m2.polyvae")
    assert (m.latent_dim, m.config.activation, m.config.beta, m.config.sigma) == (
        3,
        "tanh",
        0.5,
        0.2,
    )
    assert m.pipeline.align == "kabsch" and m.train_config.learning_rate == 2e-3
    assert m.train_config.patience == 7 and 1 <= m.history["best_epoch"] <= 3


def test_encode(workspace):
    d = workspace
    assert (
        main(["-q", "encode", str(d / "m.polyvae"), str(d / "traj.npz"), "-o", str(d / "cv.npz")])
        == 0
    )
    out = np.load(d / "cv.npz")
    model = polyvae.load_model(d / "m.polyvae")
    np.testing.assert_array_equal(out["latent"], model.encode(np.load(d / "traj.npz")["arr"])[0])
    assert out["latent_std"].shape == (256, 2)


def test_generate_with_and_without_noise(workspace):
    d = workspace
    assert (
        main(
            [
                "-q",
                "generate",
                str(d / "m.polyvae"),
                "-n",
                "40",
                "--seed",
                "1",
                "-o",
                str(d / "g.npz"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "-q",
                "generate",
                str(d / "m.polyvae"),
                "-n",
                "40",
                "--seed",
                "1",
                "--mean-only",
                "-o",
                str(d / "gm.npz"),
            ]
        )
        == 0
    )
    g, gm = np.load(d / "g.npz")["positions"], np.load(d / "gm.npz")["positions"]
    assert g.shape == gm.shape == (40, 8, 2) and not np.allclose(g, gm)


def test_optimize(workspace):
    d = workspace
    assert (
        main(
            [
                "-q",
                "optimize",
                str(d / "m.polyvae"),
                "--objective",
                "rg",
                "--starts",
                "4",
                "--steps",
                "50",
                "--no-checks",
                "-o",
                str(d / "opt.npz"),
            ]
        )
        == 0
    )
    out = np.load(d / "opt.npz")
    assert out["positions"].shape == (4, 8, 2) and np.all(np.diff(out["objective"]) >= 0)
    # the internal decoder's samples: the noise of each structure comes with it, rms <= 1
    noise = out["noise"]
    assert noise.shape[0] == 4 and np.all(np.sqrt(np.mean(noise**2, axis=1)) <= 1 + 1e-5)


def test_optimize_mean_only_and_noise_bound(workspace, capsys):
    d = workspace
    base = ["-q", "optimize", str(d / "m.polyvae"), "--starts", "2", "--steps", "8"]
    assert main([*base, "--no-checks", "--mean-only", "-o", str(d / "mean.npz")]) == 0
    assert "noise" not in np.load(d / "mean.npz").files
    assert main([*base, "--noise-rms", "0", "-o", str(d / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert "--noise-rms must be a finite number > 0; got 0.0" in err
    assert not (d / "bad.npz").exists()


def test_optimize_with_checks_writes_only_valid_structures_or_says_none(workspace, capsys):
    """The workspace's chains have rigid unit bonds, which the internal decoder's samples
    keep exactly and a briefly trained decoder's Cartesian mean never meets: with the
    checks on, the samples pass; the means do not, and the command says so."""
    d = workspace
    base = ["-q", "optimize", str(d / "m.polyvae"), "--starts", "4", "--steps", "8"]
    assert main([*base, "--percentiles", "0", "100", "-o", str(d / "ok.npz")]) == 0
    checks = polyvae.load_model(d / "m.polyvae").structure_checks
    assert checks.check(np.load(d / "ok.npz")["positions"]).valid.all()
    base.append("--mean-only")
    assert main([*base, "--percentiles", "0", "100", "-o", str(d / "chk.npz")]) == 2
    err = capsys.readouterr().err
    assert "none of the 4 optimized structures passes the structure checks" in err
    assert "add --no-checks" in err and not (d / "chk.npz").exists()
    assert main([*base, "--percentiles", "2", "98", "-o", str(d / "chk.npz")]) == 2
    assert "--percentiles must be a stored band" in capsys.readouterr().err


def test_marginals(workspace):
    d = workspace
    assert (
        main(
            [
                "-q",
                "marginals",
                str(d / "m.polyvae"),
                str(d / "traj.npz"),
                "-n",
                "200",
                "-o",
                str(d / "marg"),
            ]
        )
        == 0
    )
    res = json.loads((d / "marg" / "marginals.json").read_text())
    assert len(res["pairs"]) == 8 * 7 // 2 and res["mean_w1_normalized"] > 0
    assert (d / "marg" / "marginals.png").stat().st_size > 1000


def test_demo_on_given_data(workspace, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["demo", "--data", str(workspace / "traj.npz"), "-o", str(out), *FAST]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["n_atoms"] == 8  # stdout holds the JSON and nothing else
    assert f"results written to {out}" in printed.err
    summary = json.loads((out / "summary.json").read_text())
    for name in (
        "model.polyvae",
        "latent.npz",
        "generated.npz",
        "marginals.json",
        "optimized.npz",
        "loss.png",
        "latent.png",
        "marginals.png",
        "overlay.png",
        "optimization.png",
    ):
        assert (out / name).exists(), name
    assert summary["n_atoms"] == 8 and 0 < summary["mean_w1_normalized"] < 10
    unit = summary["unit"]
    assert summary["rg_optimized"]["unit"] == summary["rg_training_min"]["unit"] == unit
    opt = np.load(out / "optimized.npz")
    assert summary["rg_optimized"]["value"] == pytest.approx(float(opt["objective"][0]))
    checks = summary["optimized_checks"]  # of the structure returned first
    assert checks["percentiles"] == [0.5, 99.5] and checks["min_contact"]["unit"] == unit
    assert checks["valid"] == bool(opt["valid"][0])
    assert checks["valid"] == (checks["bonds_ok"] and checks["angles_ok"] and checks["contacts_ok"])
    if checks["valid"]:  # the band lies inside the model's checks
        assert summary["validity_optimized"]["fraction_valid"] == 1.0
    else:
        assert "no optimized structure passes the structure checks" in printed.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["encode", "{d}/nothing.polyvae", "{d}/traj.npz", "-o", "{d}/x.npz"], "does not exist"),
        (["train", "{d}/missing.npz", "-o", "{d}/x.polyvae"], "no such file"),
        (
            ["train", "{d}/traj.npz", "-o", "{d}/x.polyvae", "--lr", "0"],
            "learning_rate must be a finite number > 0",
        ),
        (
            ["train", "{d}/traj.npz", "-o", "{d}/x.polyvae", "--latent-dim", "0"],
            "latent_dim must be >= 1",
        ),
        (
            ["train", "{d}/traj.npz", "-o", "{d}/x.polyvae", "--activation", "gelu"],
            "activation must be one of",
        ),
        (
            ["train", "{d}/traj.npz", "-o", "{d}/x.polyvae", "--batch-size", "500"],
            "--batch-size 500 is larger",
        ),
        (
            ["encode", "{d}/m.polyvae", "{d}/other.npz", "-o", "{d}/x.npz"],
            "has 7 atoms in 2D but the model",
        ),
        (["generate", "{d}/m.polyvae", "-n", "0", "-o", "{d}/x.npz"], "-n must be >= 1"),
        (
            ["train", "{d}/traj.npz", "-o", "{d}/x.polyvae", "--patience", "-2"],
            "--patience must be a number of epochs >= 1, or 0 to train all --epochs; got -2",
        ),
    ],
)
def test_errors_are_one_line_exit_2(workspace, capsys, args, message):
    d = workspace
    np.savez(d / "other.npz", arr=random_chain(np.random.default_rng(0), 10, 7, 2))
    code = main(["-q", *[a.format(d=d) for a in args]])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("polyvae: error:") and message in err and err.count("\n") == 1


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "x.npz", "-o", "m", "--hidden", "a,b"])
    assert info.value.code == 2
    assert "--hidden must be comma-separated layer widths" in capsys.readouterr().err


def test_real_entry_point_help_and_error(tmp_path):
    help_out = subprocess.run(
        [sys.executable, "-m", "polyvae.cli", "--help"], capture_output=True, text=True
    )
    assert help_out.returncode == 0
    for word in ("train", "encode", "generate", "marginals", "optimize", "demo", "Å"):
        assert word in help_out.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "polyvae.cli",
            "encode",
            str(tmp_path / "m"),
            "x.npz",
            "-o",
            "o.npz",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0


def test_toy_subcommand(tmp_path, capsys):
    assert main(["-q", "toy", "regression", "--learn-sigma", "--out", str(tmp_path)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["toy"] == "regression" and metrics["sigma"] == "learned"
    assert metrics["pearson_r"] >= 0.95
    assert (tmp_path / "summary.json").exists() and (tmp_path / "histograms.png").exists()
    assert main(["-q", "toy", "discrete", "--learn-sigma"]) == 2
    assert "learn_sigma applies to the regression toy only" in capsys.readouterr().err
