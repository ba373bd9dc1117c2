"""Generation from the training frames' latent codes (the aggregate posterior) or the prior."""

import numpy as np
import pytest

import polyvae
from polyvae.cli import main
from polyvae.io import read_npz
from polyvae.job import DEFAULT_DATA
from polyvae.nn.latent_codes import KEPT_CODES, LatentCodes


@pytest.fixture(scope="module")
def model():
    frames = read_npz(DEFAULT_DATA)
    return polyvae.train(frames[:512], epochs=3, hidden=(16,), seed=0, progress=False)


def test_a_trained_model_keeps_its_frames_codes_and_draws_from_them(model):
    codes = model.latent_codes
    assert codes.n_frames == 512 and codes.mean.shape == (512, model.latent_dim)
    np.testing.assert_allclose(codes.weight.sum(), 1.0)
    frames = read_npz(DEFAULT_DATA)[:512]
    mean, std = model.encode(frames)
    np.testing.assert_allclose(codes.mean, mean, atol=1e-5)
    np.testing.assert_allclose(codes.std, std, atol=1e-5)
    # draws lie near the codes: each within a few encoder stds of some frame's mean
    import jax

    z = np.asarray(codes.draw(400, jax.random.PRNGKey(0)))
    gap = np.abs((z[:, None] - codes.mean[None]) / codes.std[None]).max(axis=-1).min(axis=1)
    assert np.percentile(gap, 99) < 5
    prior = np.random.default_rng(0).normal(size=z.shape)
    gap_prior = np.abs((prior[:, None] - codes.mean[None]) / codes.std[None]).max(-1).min(1)
    assert np.median(gap_prior) > np.median(gap)


def test_generate_defaults_to_the_training_codes_and_keeps_the_prior(model):
    a = model.generate(64, seed=1)
    b = model.generate(64, seed=1, latent="training")
    c = model.generate(64, seed=1, latent="prior")
    np.testing.assert_array_equal(a, b)
    assert a.shape == c.shape and not np.allclose(a, c)
    with pytest.raises(ValueError, match=r"^latent must be one of"):
        model.generate(4, latent="posterior")


def test_codes_survive_the_model_file_and_old_files_draw_from_the_prior(model, tmp_path):
    back = polyvae.load_model(model.save(tmp_path / "m.polyvae"))
    np.testing.assert_array_equal(back.latent_codes.mean, model.latent_codes.mean)
    np.testing.assert_array_equal(back.generate(16, seed=2), model.generate(16, seed=2))
    from dataclasses import replace

    old = replace(model, latent_codes=None)
    np.testing.assert_array_equal(
        old.generate(16, seed=2), model.generate(16, seed=2, latent="prior")
    )
    with pytest.raises(
        ValueError,
        match=r'^latent="training" needs the latent codes of the training frames, which this '
        r'model does not keep \(trained before they were kept\): use latent="prior"$',
    ):
        old.generate(4, latent="training")


def test_weights_choose_the_frames_and_weight_zero_frames_are_left_out(model):
    frames = read_npz(DEFAULT_DATA)[:512]
    w = np.zeros(512)
    w[:100] = 1.0
    w[100:200] = 3.0
    codes = LatentCodes.of(model, frames, w)
    assert len(codes.weight) == 200
    np.testing.assert_allclose(codes.weight[:100].sum(), 0.25)
    few = LatentCodes.of(model, frames, limit=10)
    assert len(few.mean) == 10 and few.n_frames == 512
    assert KEPT_CODES == 4096


def test_cli_generate_latent_option(model, tmp_path, capsys):
    path = model.save(tmp_path / "m.polyvae")
    for source in ("training", "prior"):
        out = tmp_path / f"{source}.npz"
        assert main(["generate", str(path), "-n", "32", "--latent", source, "-o", str(out)]) == 0
    a = np.load(tmp_path / "training.npz")["positions"]
    b = np.load(tmp_path / "prior.npz")["positions"]
    assert a.shape == b.shape and not np.allclose(a, b)
    with pytest.raises(SystemExit) as exit_:
        main(["generate", str(path), "--latent", "post", "-o", str(tmp_path / "x.npz")])
    assert exit_.value.code == 2
    from dataclasses import replace

    old = replace(model, latent_codes=None).save(tmp_path / "old.polyvae")
    out = tmp_path / "old.npz"
    assert main(["generate", str(old), "-n", "8", "--latent", "training", "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "polyvae: error: --latent training needs the latent codes of the training frames, "
        "which this model does not keep (trained before they were kept): use --latent prior"
    )
    assert not out.exists()
    assert main(["generate", str(old), "-n", "8", "-o", str(out)]) == 0  # the prior


def test_a_model_file_with_broken_codes_is_refused(model, tmp_path):
    import zipfile

    good = model.save(tmp_path / "m.polyvae")
    with zipfile.ZipFile(good) as zf:
        arrays = dict(np.load(zf.open("params.npz")))
        config = zf.read("config.json")
    arrays["latent/std"] = -arrays["latent/std"]
    bad = tmp_path / "bad.polyvae"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", config)
        with zf.open("params.npz", "w") as fh:
            np.savez(fh, **arrays)
    with pytest.raises(
        ValueError,
        match=r"^model file '.*bad.polyvae': part 'latent' \(params.npz 'latent/\*'\) is "
        r"incomplete or inconsistent: "
        r"latent codes must hold at least one frame, std > 0, weights summing to 1$",
    ):
        polyvae.load_model(bad)
