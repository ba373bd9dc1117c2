"""Distance-feature encoders: distances in, aligned coordinates out."""

import numpy as np
import pytest
from helpers import random_chain
from scipy.spatial.distance import pdist
from scipy.spatial.transform import Rotation

import polyvae
from polyvae.cli import main
from polyvae.features.pipeline import Pipeline
from polyvae.nn.model import VAEConfig
from polyvae.training.trainer import TrainConfig, fit


@pytest.fixture(scope="module")
def dist_model():
    x = random_chain(np.random.default_rng(5), 300, 7, 3)
    return polyvae.train(x, hidden=(32,), epochs=5, features="distances", progress=False), x


def test_pipeline_encoder_inputs_are_standardized_distances(rng):
    x = rng.normal(size=(50, 6, 3)).astype(np.float32)
    p = Pipeline(features="distances").fit(x)
    d = np.array([pdist(f) for f in x.astype(np.float64)])  # same order as all_pairs
    np.testing.assert_allclose(p.pairs.shape, (15, 2))
    np.testing.assert_allclose(p.encoder_inputs(x), (d - d.mean(0)) / d.std(0), atol=1e-5)
    assert p.n_inputs == 15 and p.n_features == 18
    # the decoder side is unchanged: aligned, standardized coordinates
    np.testing.assert_array_equal(p.transform(x), Pipeline().fit(x).transform(x))
    # a rigid distance (a constrained bond) is centred but not scaled
    chain = random_chain(rng, 50, 6, 3)  # unit bonds
    q = Pipeline(features="distances").fit(chain)
    np.testing.assert_array_equal(q.in_scale[[0, 5, 9, 12, 14]], 1.0)


def test_pairs_stride_and_explicit():
    x = random_chain(np.random.default_rng(0), 20, 8, 3)
    assert Pipeline(features="distances", pairs=4).fit(x).n_inputs == 7  # 28 pairs, every 4th
    p = Pipeline(features="distances", pairs=[(0, 7), (2, 5)]).fit(x)
    np.testing.assert_array_equal(p.pairs, [[0, 7], [2, 5]])


def test_cv_needs_no_alignment_and_survives_save_load(dist_model, tmp_path):
    model, x = dist_model
    assert model.config.n_inputs == 21 and model.pipeline.features == "distances"
    rot = Rotation.random(len(x), random_state=3).as_matrix()
    moved = np.einsum("tnd,tkd->tnk", x, rot) + 30.0
    np.testing.assert_allclose(model.encode(moved)[0], model.encode(x)[0], atol=1e-4)
    loaded = polyvae.load_model(model.save(tmp_path / "d.polyvae"))
    np.testing.assert_array_equal(loaded.encode(x)[0], model.encode(x)[0])
    assert loaded.generate(4, seed=2).shape == (4, 7, 3)
    assert np.all(np.isfinite(loaded.iw_log_likelihood(x[:8])))
    chunked = loaded.encode_chunks(polyvae.Frames(x)[i : i + 64] for i in range(0, len(x), 64))
    np.testing.assert_allclose(chunked[0], model.encode(x)[0], atol=1e-6)


def test_latentcv_with_distance_model(dist_model):
    mda = pytest.importorskip("MDAnalysis")
    from MDAnalysis.coordinates.memory import MemoryReader

    from polyvae.mda import LatentCV

    model, x = dist_model
    u = mda.Universe.empty(7, trajectory=True)
    u.add_TopologyAttr("masses", np.ones(7))
    u.load_new(x[:40].copy(), format=MemoryReader)
    cv = LatentCV(u.atoms, model).run()
    np.testing.assert_allclose(cv.results.latent, model.encode(x[:40])[0], atol=1e-5)


def test_errors():
    x = random_chain(np.random.default_rng(0), 20, 5, 3)
    with pytest.raises(ValueError, match="features must be one of .*got 'angles'"):
        Pipeline(features="angles")
    with pytest.raises(ValueError, match='pairs applies to features="distances" only'):
        Pipeline(pairs=[(0, 1)])
    with pytest.raises(
        ValueError, match=r"pairs must be >= 1 \(as a stride: every k-th pair\); got 0"
    ):
        Pipeline(features="distances", pairs=0).fit(x)
    with pytest.raises(ValueError, match=r"pairs must index atoms 0 .. 4"):
        Pipeline(features="distances", pairs=[(0, 9)]).fit(x)
    with pytest.raises(ValueError, match="pairs must hold at least one atom pair"):
        Pipeline(features="distances", pairs=np.zeros((0, 2), int)).fit(x)
    cfg = VAEConfig(n_features=15, n_inputs=10, hidden=(8,))
    feats = np.zeros((20, 15), np.float32)
    with pytest.raises(ValueError, match=r"inputs \(T, 10\) are required"):
        fit(feats, cfg, TrainConfig(batch_size=4), progress=False)
    with pytest.raises(
        ValueError,
        match=r"inputs must have shape \(20, 10\) to match the model.s n_inputs; got \(20, 9\)",
    ):
        fit(feats, cfg, TrainConfig(batch_size=4), inputs=np.zeros((20, 9)), progress=False)
    with pytest.raises(ValueError, match="inputs given but config.n_inputs is None"):
        fit(feats, VAEConfig(n_features=15), inputs=np.zeros((20, 15)), progress=False)
    with pytest.raises(ValueError, match="n_inputs must be >= 1"):
        VAEConfig(n_features=4, n_inputs=0)


def test_cli_distance_features(tmp_path, capsys):
    x = random_chain(np.random.default_rng(2), 80, 6, 3)
    np.savez(tmp_path / "t.npz", arr=x)
    np.savetxt(tmp_path / "pairs.txt", [[0, 5], [1, 4], [2, 3]], fmt="%d")
    args = [
        "-q",
        "train",
        str(tmp_path / "t.npz"),
        "--epochs",
        "2",
        "--hidden",
        "8",
        "--batch-size",
        "16",
        "--features",
        "distances",
    ]
    assert main([*args, "--pairs", str(tmp_path / "pairs.txt"), "-o", str(tmp_path / "a")]) == 0
    assert polyvae.load_model(tmp_path / "a").config.n_inputs == 3
    assert main([*args, "--pairs", "5", "-o", str(tmp_path / "b")]) == 0
    assert polyvae.load_model(tmp_path / "b").config.n_inputs == 3  # 15 pairs, every 5th
    assert main([*args, "--pairs", str(tmp_path / "none.txt"), "-o", str(tmp_path / "c")]) == 2
    assert "--pairs file" in capsys.readouterr().err
