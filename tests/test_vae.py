"""The trained model: CVs, generation, log-likelihood, and the safe model file."""

import io
import json
import zipfile

import numpy as np
import pytest
from helpers import random_chain

import polyvae


def test_encode_is_deterministic_mean_and_std(small_model):
    model, x = small_model
    mean, std = model.encode(x)
    mean2, std2 = model.encode(polyvae.Frames(x))
    assert mean.shape == std.shape == (len(x), 2)
    np.testing.assert_array_equal(mean, mean2)
    assert np.all(std > 0)
    # chunking and padding do not change values
    np.testing.assert_allclose(model.encode(x[:37])[0], mean[:37], rtol=1e-6, atol=1e-6)


def test_cv_invariant_under_rigid_motion(small_model, rng):
    model, x = small_model
    th = rng.uniform(0, 2 * np.pi, len(x))
    rot = np.stack([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]).transpose(2, 0, 1)
    moved = np.einsum("tnd,tkd->tnk", x, rot) + rng.normal(size=(len(x), 1, 2)) * 20
    np.testing.assert_allclose(model.encode(moved)[0], model.encode(x)[0], atol=2e-3)


def test_generate_shapes_noise_and_seed(small_model):
    model, _ = small_model
    g = model.generate(50, seed=3)
    assert g.shape == (50, 8, 2) and g.dtype == np.float32
    np.testing.assert_array_equal(g, model.generate(50, seed=3))
    assert not np.array_equal(g, model.generate(50, seed=4))
    mean_only = model.generate(50, seed=3, mean_only=True)
    assert not np.allclose(g, mean_only)
    # the noiseless samples are the decoder mean of the same prior draws
    assert mean_only.std(axis=0).mean() < g.std(axis=0).mean()


def test_decode_and_reconstruct(small_model):
    model, x = small_model
    z, _ = model.encode(x[:5])
    np.testing.assert_allclose(model.decode(z), model.reconstruct(x[:5]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"z must have shape \(M, 2\); got \(5, 3\)"):
        model.decode(np.zeros((5, 3)))


def test_iw_log_likelihood_finite_and_above_elbo(small_model):
    model, x = small_model
    ll64 = model.iw_log_likelihood(x[:64], n_samples=64)
    ll1 = model.iw_log_likelihood(x[:64], n_samples=1)
    assert ll64.shape == (64,) and np.all(np.isfinite(ll64))
    assert ll64.mean() > ll1.mean()


def test_model_applied_to_other_atom_count(small_model):
    model, _ = small_model
    with pytest.raises(ValueError, match="has 9 atoms in 2D but the model was trained on 8 atoms"):
        model.encode(random_chain(np.random.default_rng(0), 4, 9, 2))
    with pytest.raises(ValueError, match="has 8 atoms in 3D"):
        model.encode(random_chain(np.random.default_rng(0), 4, 8, 3))


def test_save_load_roundtrip_bit_identical(small_model, tmp_path):
    model, x = small_model
    path = model.save(tmp_path / "model.polyvae")
    loaded = polyvae.load_model(path)
    assert loaded.config == model.config and loaded.train_config == model.train_config
    assert loaded.history == model.history and loaded.metadata == model.metadata
    for a, b in zip(model.encode(x), loaded.encode(x), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.generate(20, seed=1), loaded.generate(20, seed=1))
    with zipfile.ZipFile(path) as zf:
        cfg = json.loads(zf.read("config.json"))
    assert cfg["format"] == "polyvae-model" and cfg["polyvae_version"] == polyvae.__version__
    assert cfg["pipeline"]["align"] == "principal" and cfg["metadata"]["unit"] == "Å"


def test_load_from_folder(small_model, tmp_path):
    model, x = small_model
    path = model.save(tmp_path / "m.polyvae")
    folder = tmp_path / "folder"
    with zipfile.ZipFile(path) as zf:
        zf.extractall(folder)
    np.testing.assert_array_equal(polyvae.load_model(folder).encode(x)[0], model.encode(x)[0])


def _rewrite(path, out, config=None, params=None):
    with zipfile.ZipFile(path) as zf:
        cfg, arr = zf.read("config.json"), zf.read("params.npz")
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("config.json", cfg if config is None else config)
        zf.writestr("params.npz", arr if params is None else params)
    return out


def test_bad_model_files(small_model, tmp_path):
    model, _ = small_model
    good = model.save(tmp_path / "good.polyvae")
    raw = good.read_bytes()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        polyvae.load_model(tmp_path / "nothing.polyvae")
    (tmp_path / "trunc.polyvae").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupt, truncated or not a polyvae model"):
        polyvae.load_model(tmp_path / "trunc.polyvae")
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ValueError, match="corrupt, truncated or not a polyvae model"):
        polyvae.load_model(tmp_path / "random.bin")
    with zipfile.ZipFile(tmp_path / "foreign.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="lacks config.json and params.npz"):
        polyvae.load_model(tmp_path / "foreign.zip")
    cfg = json.loads(zipfile.ZipFile(good).read("config.json"))
    other = _rewrite(good, tmp_path / "other.polyvae", json.dumps({**cfg, "format": "keras"}))
    with pytest.raises(ValueError, match="not a polyvae model file .format 'keras'"):
        polyvae.load_model(other)
    newer = _rewrite(good, tmp_path / "newer.polyvae", json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(ValueError, match="format version 99.*upgrade polyvae"):
        polyvae.load_model(newer)
    no_model = _rewrite(
        good,
        tmp_path / "nomodel.polyvae",
        json.dumps({k: v for k, v in cfg.items() if k != "model"}),
    )
    with pytest.raises(ValueError, match=r"lacks its part 'model' \(config.json 'model'\), which every model file "
                       r"polyvae writes has; the file is damaged or not written by polyvae$"):  # fmt: skip
        polyvae.load_model(no_model)
    broken = _rewrite(good, tmp_path / "json.polyvae", b"{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        polyvae.load_model(broken)
    buf = io.BytesIO()
    np.savez(buf, nothing=np.zeros(3))
    missing = _rewrite(good, tmp_path / "missing.polyvae", params=buf.getvalue())
    with pytest.raises(ValueError, match="incomplete or inconsistent.*missing from params.npz"):
        polyvae.load_model(missing)
    pickled = io.BytesIO()
    np.savez(pickled, **{"params/encoder/0/w": np.array([object()], dtype=object)})
    evil = _rewrite(good, tmp_path / "evil.polyvae", params=pickled.getvalue())
    with pytest.raises(ValueError, match="params.npz is unreadable"):
        polyvae.load_model(evil)
    cfg2 = json.loads(json.dumps(cfg))
    cfg2["model"]["latent_dim"] = 3
    mismatch = _rewrite(good, tmp_path / "shape.polyvae", json.dumps(cfg2))
    with pytest.raises(ValueError, match="parameter shapes do not match its config"):
        polyvae.load_model(mismatch)


def test_encode_chunks_streams_to_the_same_cvs(small_model):
    model, x = small_model
    frames = polyvae.Frames(x, times=np.arange(len(x)) * 2.0)
    mean, std = model.encode(frames)
    chunked = model.encode_chunks(frames[i : i + 37] for i in range(0, len(x), 37))
    np.testing.assert_allclose(chunked[0], mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chunked[1], std, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(chunked[2], frames.times)
    with pytest.raises(ValueError, match="chunks held no frames"):
        model.encode_chunks(iter([]))


def test_frames_unlike_the_training_frames_are_reported_where_names_cannot_tell(
    peptide_md, tmp_path, caplog
):
    """A model trained on bare positions (no atom names) cannot check atoms by name:
    frames with the atoms in reverse order encode with a warning that compares their
    reconstruction with the training frames'; the training frames themselves do not."""
    x = np.asarray(peptide_md.positions[::2], np.float32)
    model = polyvae.train(x, epochs=20, hidden=(32, 32), decoder="cartesian", progress=False)
    ref = model.metadata["reconstruction_rmsd"]
    assert 0 < ref["median"] <= ref["p99"]
    loaded = polyvae.load_model(model.save(tmp_path / "m.polyvae"))
    assert loaded.metadata["reconstruction_rmsd"] == ref
    caplog.set_level("WARNING", logger="polyvae")
    loaded.encode(x[:200])
    loaded.encode_chunks([polyvae.Frames(x[:100]), polyvae.Frames(x[100:200])])
    assert "reconstruct" not in caplog.text
    mean, _ = loaded.encode(x[:200, ::-1])
    assert mean.shape == (200, 2)  # a warning, not a refusal: the CVs are there
    assert "frames reconstruct" in caplog.text and "model's atoms in its order" in caplog.text
    rmsd = loaded.reconstruction_rmsd(x[:200, ::-1])
    assert np.median(rmsd) > 2 * ref["p99"]
    caplog.clear()
    loaded.encode_chunks([polyvae.Frames(x[:100, ::-1])])
    assert "frames reconstruct" in caplog.text
