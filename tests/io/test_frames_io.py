"""Frames validation and the npz readers/writer."""

import numpy as np
import pytest

import polyvae
from polyvae import Frames


def test_frames_defaults_and_float32(rng):
    f = Frames(rng.normal(size=(5, 4, 3)))
    assert f.positions.dtype == np.float32
    assert (f.n_frames, f.n_atoms, f.dim) == (5, 4, 3)
    np.testing.assert_array_equal(f.masses, np.ones(4))
    assert f.names == ("B0", "B1", "B2", "B3")
    np.testing.assert_array_equal(f.times, np.arange(5))
    assert f.unit == "Å"
    assert len(f[1:3]) == 2 and f[2].n_frames == 1


def test_single_frame_promoted(rng):
    assert Frames(rng.normal(size=(4, 2))).n_frames == 1


def test_nan_names_first_bad_frame(rng):
    x = rng.normal(size=(10, 4, 2))
    x[6, 1, 0] = np.nan
    x[8, 0, 1] = np.inf
    with pytest.raises(ValueError, match="first bad frame is 6 .2 of 10 frames"):
        Frames(x)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((10, 4, 1), "D = 2 or 3 .*got D=1"),
        ((2, 3, 4, 2), "must have shape \\(T, N, D\\).*got shape \\(2, 3, 4, 2\\)"),
        ((2, 5, 4), "D = 2 or 3 .*got D=4"),
        ((2, 2, 3), "at least 3 atoms.*got N=2"),
        ((0, 5, 3), "no frames"),
    ],
)
def test_shape_errors(shape, message):
    with pytest.raises(ValueError, match=message):
        Frames(np.zeros(shape))


def test_type_errors():
    with pytest.raises(TypeError, match="numeric array"):
        Frames(np.array([["a", "b", "c"]] * 3))
    with pytest.raises(TypeError, match="unit must be a non-empty string"):
        Frames(np.zeros((1, 3, 2)), unit="")


def test_metadata_errors():
    x = np.zeros((2, 3, 2))
    with pytest.raises(ValueError, match=r"masses must have shape \(3,\); got \(2,\)"):
        Frames(x, masses=[1, 2])
    with pytest.raises(ValueError, match="masses must be positive; got min=0"):
        Frames(x, masses=[1, 0, 2])
    with pytest.raises(ValueError, match="masses contains NaN or inf: first bad row is 1"):
        Frames(x, masses=[1, np.nan, 2])
    with pytest.raises(ValueError, match="one entry per atom .N=3.; got 2"):
        Frames(x, names=["A", "B"])
    with pytest.raises(ValueError, match=r"times must have shape \(T,\) = \(2,\)"):
        Frames(x, times=[0.0])


def test_npz_roundtrip(tmp_path, rng):
    f = Frames(
        rng.normal(size=(6, 5, 3)),
        masses=np.arange(1, 6),
        names=list("CNOSP"),
        times=np.linspace(0, 5, 6),
        unit="nm",
    )
    path = polyvae.write_npz(tmp_path / "traj", f)
    assert path.suffix == ".npz"
    g = polyvae.read_npz(path)
    np.testing.assert_array_equal(g.positions, f.positions)
    np.testing.assert_array_equal(g.masses, f.masses)
    np.testing.assert_array_equal(g.times, f.times)
    assert g.names == f.names and g.unit == "nm"
    assert polyvae.read_npz(path, unit="Å").unit == "Å"


def test_chapter_format(tmp_path, rng):
    x = rng.normal(size=(7, 12, 2))
    np.savez(tmp_path / "chapter.npz", arr=x)
    f = polyvae.read_frames(tmp_path / "chapter.npz")
    np.testing.assert_allclose(f.positions, x.astype(np.float32))
    assert f.unit == "Å"


def test_chapter_data(chapter_dir):
    f = polyvae.read_npz(chapter_dir / "long_paths.npz")
    assert f.positions.shape == (2048, 12, 2)


def test_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        polyvae.read_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not a readable .npz file"):
        polyvae.read_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", coords=np.zeros((2, 3, 2)))
    with pytest.raises(
        ValueError, match=r"expected an array under key 'positions'.*found keys \['coords'\]"
    ):
        polyvae.read_npz(tmp_path / "other.npz")
    np.savez(tmp_path / "pickled.npz", positions=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled objects"):
        polyvae.read_npz(tmp_path / "pickled.npz")
    with pytest.raises(ValueError, match="unsupported trajectory format '.xyz'"):
        polyvae.read_frames(tmp_path / "traj.xyz")
    with pytest.raises(TypeError, match="frames must be a polyvae Frames"):
        polyvae.write_npz(tmp_path / "x.npz", np.zeros((2, 3, 2)))


def test_frames_concat():
    rng = np.random.default_rng(0)
    a = polyvae.Frames(rng.normal(size=(3, 4, 2)), masses=[1, 2, 3, 4], times=[0, 1, 2])
    a.metadata["source"] = "a"
    b = polyvae.Frames(rng.normal(size=(2, 4, 2)), times=[5, 6])
    both = polyvae.Frames.concat([a, b])
    np.testing.assert_array_equal(both.positions, np.concatenate([a.positions, b.positions]))
    np.testing.assert_array_equal(both.times, [0, 1, 2, 5, 6])
    np.testing.assert_array_equal(both.masses, a.masses)
    assert both.metadata == {"source": "a"} and both.metadata is not a.metadata
    with pytest.raises(ValueError, match="at least one Frames"):
        polyvae.Frames.concat([])
    with pytest.raises(TypeError, match=r"frames\[1\] must be a polyvae Frames; got ndarray"):
        polyvae.Frames.concat([a, b.positions])
    c = polyvae.Frames(rng.normal(size=(2, 5, 2)))
    with pytest.raises(ValueError, match=r"'c.npz' has 5 atoms in 2D but 'a.npz' has 4 atoms"):
        polyvae.Frames.concat([a, c], labels=["'a.npz'", "'c.npz'"])
    with pytest.raises(ValueError, match=r"frames\[1\] is in unit 'nm' but frames\[0\] in 'Å'"):
        polyvae.Frames.concat([a, polyvae.Frames(b.positions, unit="nm")])
    renamed = polyvae.Frames(b.positions, names=["B0", "X", "B2", "B3"])
    with pytest.raises(ValueError, match=r"atom 1 of frames\[1\] is named 'X' but 'B1'"):
        polyvae.Frames.concat([a, renamed])


def test_read_frames_joins_npz_files(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 4, 3)).astype(np.float32)
    np.savez(tmp_path / "a.npz", arr=x[:4])
    np.savez(tmp_path / "b.npz", arr=x[4:])
    f = polyvae.read_frames([tmp_path / "a.npz", tmp_path / "b.npz"], start=1, step=2)
    np.testing.assert_array_equal(f.positions, x[1::2])
    chunks = list(polyvae.io.iter_frames([tmp_path / "a.npz", tmp_path / "b.npz"], chunk_size=4))
    assert [c.n_frames for c in chunks] == [4, 2]
    np.savez(tmp_path / "c.npz", arr=x[:, :3])
    with pytest.raises(ValueError, match=r"'.*c.npz' has 3 atoms in 3D but '.*a.npz' has 4"):
        polyvae.read_frames([tmp_path / "a.npz", tmp_path / "c.npz"])
