"""Free-energy surfaces: analytic wells, reweighting, block errors, plot, CLI."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from polyvae.analysis.fes import free_energy_surface  # noqa: E402
from polyvae.measures.weights import KB_KJ_PER_MOL_K  # noqa: E402

T = 300.0
KT = KB_KJ_PER_MOL_K * T


def test_harmonic_well_in_1d_and_2d():
    """Gaussian samples of std s: F = kT x^2 / (2 s^2) where the well is well sampled."""
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.5, size=200_000)
    fes = free_energy_surface(x, temperature=T, bins=40, ranges=[(-1.0, 1.0)])
    c = fes.centers[0]
    expected = KT * c**2 / (2 * 0.25)
    expected -= expected.min()
    assert fes.free_energy.shape == (40,) and fes.free_energy.min() == 0.0
    np.testing.assert_allclose(fes.free_energy, expected, atol=0.05 * KT + 3 * fes.error.max())
    np.testing.assert_allclose(fes.in_kt, fes.free_energy / KT)
    xy = rng.normal(0.0, [0.5, 1.0], size=(200_000, 2))
    fes2 = free_energy_surface(xy, temperature=T, bins=20, ranges=[(-1, 1), (-2, 2)])
    cx, cy = fes2.centers
    want = KT * (cx[:, None] ** 2 / 0.5 + cy[None, :] ** 2 / 2.0)
    want -= want.min()
    assert fes2.free_energy.shape == (20, 20)
    well = want < 2 * KT  # where the bins hold hundreds of frames (noise <= 0.1 kT)
    dev = np.abs(fes2.free_energy - want)[well]
    assert dev.max() < 0.3 * KT and np.median(dev) < 0.06 * KT


def test_reweighting_a_biased_sample_recovers_the_unbiased_surface():
    """Samples of a well biased by V = -kappa x (tilted): weights exp(V/kT) undo the tilt."""
    rng = np.random.default_rng(1)
    shift = 0.4  # the bias V(x) = -kT * shift * x / s^2 moves the mean by `shift`
    x = rng.normal(shift, 0.5, size=200_000)
    v = -KT * shift * x / 0.25
    ranges = [(-1.0, 1.0)]
    biased = free_energy_surface(x, temperature=T, bins=20, ranges=ranges)
    weighted = free_energy_surface(x, temperature=T, bins=20, ranges=ranges, weights=np.exp(v / KT))
    c = weighted.centers[0]
    want = KT * c**2 / 0.5
    want -= want.min()
    assert np.abs(weighted.free_energy - want).max() < 0.1 * KT
    assert np.abs(biased.free_energy - want).max() > 1.0 * KT
    assert weighted.effective_sample_size < biased.effective_sample_size == 200_000


def test_block_error_tracks_the_sampling_noise():
    """The error shrinks with more frames and where the density is higher; bins no
    frame reached are inf with a NaN error."""
    rng = np.random.default_rng(2)
    small = free_energy_surface(rng.normal(size=2_000), temperature=T, bins=20, ranges=[(-3, 5)])
    large = free_energy_surface(rng.normal(size=200_000), temperature=T, bins=20, ranges=[(-3, 5)])
    centre = 7  # the bin around 0
    assert 0 < large.error[centre] < small.error[centre] / 3
    assert small.error[centre] < small.error[2]  # the tail is noisier than the centre
    assert np.isinf(small.free_energy[-1]) and np.isnan(small.error[-1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(cv=np.zeros((100, 3))), r"cv must have shape \(T,\), \(T, 1\) or \(T, 2\)"),
        (dict(temperature=0.0), r"temperature must be a finite number > 0 \(kelvin\); got 0.0"),
        (dict(bins=1), "bins must be >= 2"),
        (dict(n_blocks=1), "n_blocks must be >= 2"),
        (dict(n_blocks=20), r"n_blocks=20 needs at least 200 frames \(10 per block\); got 100"),
        (dict(ranges=[(1, 0)]), r"ranges must give \(low, high\) with high > low"),
        (dict(cv=np.ones(100)), "cv does not vary over the frames"),
        (dict(weights=np.ones(99)), r"weights must hold one weight per frame \(100\); got 99"),
        (dict(cv=np.r_[np.zeros(99), np.nan]), "cv must be finite"),
    ],
)
def test_fes_errors(kwargs, message):
    args = dict(cv=np.random.default_rng(0).normal(size=100), temperature=T)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        free_energy_surface(args.pop("cv"), **args)


def test_plot_fes_returns_axes_and_labels_units():
    from polyvae.plotting import plot_fes

    rng = np.random.default_rng(0)
    ax = plot_fes(free_energy_surface(rng.normal(size=5000), temperature=T))
    assert ax.get_ylabel() == "F (kJ/mol)" and "kT = 2.494 kJ/mol" in ax.get_title()
    ax2 = plot_fes(free_energy_surface(rng.normal(size=(5000, 2)), temperature=T, bins=10))
    assert ax2.get_ylabel() == "CV 2" and "kJ/mol" in ax2.figure.axes[-1].get_ylabel()


def test_cli_fes_writes_numbers_and_png(tmp_path, capsys):
    from helpers import random_chain

    import polyvae
    from polyvae.cli import main

    x = random_chain(np.random.default_rng(0), 400, 6, 2)
    np.savez(tmp_path / "traj.npz", arr=x)
    model = polyvae.train(x, hidden=(16,), epochs=2, decoder="cartesian", progress=False)
    model.save(tmp_path / "m.polyvae")
    base = ["-q", "fes", str(tmp_path / "m.polyvae"), str(tmp_path / "traj.npz")]
    assert main([*base, "--temperature", "300", "--bins", "10", "-o", str(tmp_path / "f")]) == 0
    out = np.load(tmp_path / "f" / "fes.npz")
    z, _ = model.encode(x)
    ref = free_energy_surface(z, temperature=300.0, bins=10)
    np.testing.assert_allclose(out["free_energy"], ref.free_energy)
    assert out["free_energy"].shape == (10, 10) and float(out["kt"]) == pytest.approx(ref.kt)
    assert (tmp_path / "f" / "fes.png").stat().st_size > 10_000
    np.save(tmp_path / "w.npy", np.linspace(0.5, 2.0, 400))
    one = [*base, "--temperature", "300", "--cvs", "1", "--weights", str(tmp_path / "w.npy")]
    assert main([*one, "-o", str(tmp_path / "g")]) == 0
    g = np.load(tmp_path / "g" / "fes.npz")
    ess = float(g["effective_sample_size"])
    assert 300 < ess < 400 and list(g["cvs"]) == [1]
    assert g["free_energy"].shape == (int(ess / 10),)  # about 10 frames per bin
    capsys.readouterr()
    for extra, message in (
        (["--cvs", "2"], "--cvs: the model has CVs 0 to 1; got 2"),
        (["--cvs", "a"], "--cvs must be one or two 0-based CV numbers"),
        (["--blocks", "100"], "--blocks 100 needs at least 1000 frames"),
        (["--bins", "1"], "--bins must be >= 2"),
    ):
        assert main([*base, "--temperature", "300", *extra, "-o", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (message, err)
        assert not (tmp_path / "x" / "fes.npz").exists()
    with pytest.raises(SystemExit) as info:  # --temperature is required
        main([*base, "-o", str(tmp_path / "x")])
    assert info.value.code == 2 and "--temperature" in capsys.readouterr().err
    json.dumps(float(out["effective_sample_size"]))
