"""Frame weights: checks, bias reweighting, weighted loss, training and marginals, CLI."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import polyvae
from polyvae import geometry
from polyvae.cli import main
from polyvae.measures.marginals import distance_marginals
from polyvae.measures.weights import (
    KB_KJ_PER_MOL_K,
    bias_weights,
    check_weights,
    effective_sample_size,
    read_weights,
)
from polyvae.nn.model import VAEConfig, init_params, loss


@pytest.mark.parametrize(
    "weights, message",
    [
        (np.ones(4), r"weights must hold one weight per frame \(5\); got 4"),
        (np.ones((5, 2)), r"weights must be one number per frame, shape \(5,\); got \(5, 2\)"),
        ([1, 2, np.nan, 1, 1], "weights must be finite; frame 2 has nan"),
        ([1, 2, 1, np.inf, 1], "weights must be finite; frame 3 has inf"),
        ([1, -0.5, 1, 1, 1], r"weights must be >= 0; frame 1 has -0.5"),
        (np.zeros(5), "weights are all zero: no frame would count"),
    ],
)
def test_check_weights_errors(weights, message):
    with pytest.raises(ValueError, match=message):
        check_weights(weights, 5)


def test_check_weights_normalizes_and_ess():
    w = check_weights([1, 3, 0, 4], 4)
    np.testing.assert_allclose(w, [0.5, 1.5, 0.0, 2.0])
    assert effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert effective_sample_size([0, 0, 5, 0]) == pytest.approx(1)
    with pytest.raises(TypeError, match="weights must be numbers, one per frame; got dtype"):
        check_weights(["a", "b"], 2)


def test_bias_weights_are_boltzmann_factors_without_overflow():
    temperature = 300.0
    kt = KB_KJ_PER_MOL_K * temperature
    v = 1e5 + np.array([0.0, kt, 2 * kt])  # 1e5 kJ/mol: exp(V/kT) overflows float64
    w = bias_weights(v, temperature)
    assert np.all(np.isfinite(w)) and w.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(w[1] / w[0], np.e, rtol=1e-12)
    np.testing.assert_allclose(w[2] / w[1], np.e, rtol=1e-12)
    with pytest.raises(
        ValueError, match=r"temperature must be a finite number > 0 \(kelvin\); got -1"
    ):
        bias_weights(v, -1)
    with pytest.raises(ValueError, match="bias must be finite; frame 1 has nan"):
        bias_weights([0.0, np.nan], 300.0)


def test_read_weights_files_and_colvar_columns(tmp_path):
    np.save(tmp_path / "w.npy", np.array([1.0, 2.0, 3.0]))
    (tmp_path / "w.txt").write_text("1\n2\n3\n")
    for name in ("w.npy", "w.txt"):
        np.testing.assert_allclose(read_weights(tmp_path / name, 3), [0.5, 1.0, 1.5])
    colvar = tmp_path / "COLVAR"
    colvar.write_text("#! FIELDS time cv metad.bias\n0 0.1 0.0\n1 0.2 2.5\n2 0.3 5.0\n")
    w = read_weights(f"{colvar}:metad.bias", 3, temperature=300.0)
    np.testing.assert_allclose(w, bias_weights([0.0, 2.5, 5.0], 300.0))
    with pytest.raises(ValueError, match="need the temperature .* pass temperature"):
        read_weights(f"{colvar}:metad.bias", 3)
    with pytest.raises(
        ValueError, match=r"has no column 'bias'; it has \['time', 'cv', 'metad.bias'\]"
    ):
        read_weights(f"{colvar}:bias", 3, temperature=300.0)
    with pytest.raises(ValueError, match="has 3 rows but the trajectory has 4 frames"):
        read_weights(f"{colvar}:metad.bias", 4, temperature=300.0)
    with pytest.raises(ValueError, match="temperature is used only with weights from a COLVAR"):
        read_weights(tmp_path / "w.txt", 3, temperature=300.0)
    with pytest.raises(FileNotFoundError, match="weights file .*nothing.txt' does not exist"):
        read_weights(tmp_path / "nothing.txt", 3)
    with pytest.raises(FileNotFoundError, match="COLVAR file .*NOPE' does not exist"):
        read_weights(f"{tmp_path / 'NOPE'}:metad.bias", 3, temperature=300.0)
    (tmp_path / "bad.txt").write_text("1\nabc\n")
    with pytest.raises(ValueError, match="bad.txt: not one number per line"):
        read_weights(tmp_path / "bad.txt", 2)


def test_integer_weights_equal_repeated_frames_in_the_loss():
    """A frame of weight 2 counts as that frame twice, weight 0 as no frame."""
    cfg = VAEConfig(n_features=6, hidden=(8,))
    params = init_params(cfg, key=__import__("jax").random.PRNGKey(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    eps = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)
    w = jnp.asarray([2.0, 0.0, 1.0, 1.0])  # mean 1
    weighted, _ = loss(params, x, cfg, eps=eps, weights=w)
    rep = jnp.asarray([0, 0, 2, 3])
    repeated, _ = loss(params, x[rep], cfg, eps=eps[rep])
    np.testing.assert_allclose(float(weighted), float(repeated), rtol=1e-6)


@pytest.fixture(scope="module")
def biased_run():
    """Frames of the bundled polymer drawn as a biased run would visit them: the bias
    V favours extended chains, p_biased ∝ p exp(-V/kT); weights exp(V/kT) undo it."""
    from polyvae.job import DEFAULT_DATA

    x = polyvae.io.read_frames(DEFAULT_DATA).positions
    rg = geometry.radius_of_gyration(x.astype(np.float64), np.full(x.shape[1], 1 / x.shape[1]))
    v_kt = -0.8 * (rg - rg.mean()) / rg.std()
    p = np.exp(-v_kt) / np.exp(-v_kt).sum()
    idx = np.random.default_rng(0).choice(len(x), size=2048, p=p)
    return x, x[idx], np.exp(v_kt[idx])


def test_weighted_training_recovers_the_unbiased_marginals(biased_run):
    reference, biased, w = biased_run
    w1 = {}
    for name, weights in (("plain", None), ("weighted", w)):
        model = polyvae.train(biased, epochs=40, seed=0, weights=weights, progress=False)
        gen = model.generate(2048, seed=1)
        w1[name] = distance_marginals(
            model.pipeline.align_frames(reference), gen
        ).mean_w1_normalized
        if weights is not None:
            ess = model.metadata["weights"]["effective_sample_size"]
            assert ess == pytest.approx(effective_sample_size(w)) and 100 < ess < 2048
    assert w1["weighted"] < 0.7 * w1["plain"], w1


def test_weighted_marginals_of_the_biased_frames_match_the_reference(biased_run):
    """The weighted W1 between the biased frames and the reference is far below the
    unweighted one: the weights turn the biased frames into the unbiased ensemble."""
    reference, biased, w = biased_run
    plain = distance_marginals(biased, reference).mean_w1_normalized
    weighted = distance_marginals(biased, reference, train_weights=w).mean_w1_normalized
    assert weighted < 0.5 * plain
    with pytest.raises(ValueError, match=r"train_weights must hold one weight per frame \(2048\)"):
        distance_marginals(biased, reference, train_weights=w[:10])


def test_fit_refuses_weights_that_leave_no_validation_frame():
    from polyvae.training.trainer import TrainConfig, fit, split_indices

    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    _, val = split_indices(40, 0.25, 0)
    w = np.ones(40)
    w[val] = 0.0
    cfg = VAEConfig(n_features=4, hidden=(8,))
    with pytest.raises(ValueError, match="every validation frame has weight 0"):
        fit(x, cfg, TrainConfig(epochs=1, batch_size=8, validation_fraction=0.25), weights=w)


def test_cli_train_and_marginals_take_weights(tmp_path, biased_run, capsys):
    _, biased, w = biased_run
    np.savez(tmp_path / "traj.npz", arr=biased[:256])
    kt = KB_KJ_PER_MOL_K * 300.0
    bias = np.log(w[:256]) * kt
    lines = "".join(f"{t} {float(b)!r}\n" for t, b in enumerate(bias))
    (tmp_path / "COLVAR").write_text("#! FIELDS time metad.bias\n" + lines)
    fast = ["--epochs", "2", "--hidden", "16,16", "--decoder", "cartesian"]
    common = ["-q", "train", str(tmp_path / "traj.npz"), *fast, "-o"]
    args = [*common, str(tmp_path / "m.polyvae"), "--weights", f"{tmp_path}/COLVAR:metad.bias"]
    assert main([*args, "--temperature", "300"]) == 0
    m = polyvae.load_model(tmp_path / "m.polyvae")
    want = effective_sample_size(w[:256])
    assert m.metadata["weights"]["effective_sample_size"] == pytest.approx(want, rel=1e-9)
    np.save(tmp_path / "w.npy", w[:256])
    out = tmp_path / "marg"
    marg = ["-q", "marginals", str(tmp_path / "m.polyvae"), str(tmp_path / "traj.npz")]
    assert main([*marg, "-n", "64", "--weights", str(tmp_path / "w.npy"), "-o", str(out)]) == 0
    import json

    res = json.loads((out / "marginals.json").read_text())
    assert res["weights"]["effective_sample_size"] == pytest.approx(want, rel=1e-9)
    capsys.readouterr()
    # each bad input: one line, exit 2, the flag named, nothing written
    bad = [
        ([*args], "add --temperature K"),
        ([*args, "--temperature", "-3"], "--temperature must be a finite number > 0"),
        ([*common, str(tmp_path / "x.polyvae"), "--temperature", "300"],
         "--temperature is used only with --weights COLVAR:COLUMN"),
        ([*common, str(tmp_path / "x.polyvae"), "--weights", str(tmp_path / "w.npy"),
          "--temperature", "300"], "--temperature is used only with --weights COLVAR:COLUMN"),
        ([*common, str(tmp_path / "x.polyvae"), "--weights", f"{tmp_path}/COLVAR:nope",
          "--temperature", "300"], "has no column 'nope'"),
    ]  # fmt: skip
    np.save(tmp_path / "neg.npy", -w[:256])
    bad.append(([*common, str(tmp_path / "x.polyvae"), "--weights", str(tmp_path / "neg.npy")],
                "weights must be >= 0; frame 0 has"))  # fmt: skip
    for argv, message in bad:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (message, err)
        assert not (tmp_path / "x.polyvae").exists()
