"""Structure checks: bonds and angles in their training ranges, no overlaps beyond the
excluded (1-2, 1-3, and 1-4 in 3D) pairs."""

import numpy as np
import pytest
from helpers import random_chain

import polyvae
from polyvae.analysis.validity import StructureChecks
from polyvae.cli import main


def _zigzag(n=8, dim=2, rng=None):
    """Chains with unit bonds and turning angles of 60-90 degrees, alternating sides."""
    rng = np.random.default_rng(0) if rng is None else rng
    t = 64
    turns = rng.uniform(np.pi / 3, np.pi / 2, size=(t, n - 1)) * np.where(
        np.arange(n - 1) % 2, 1, -1
    )
    heading = np.cumsum(turns, axis=1)
    steps = np.stack([np.cos(heading), np.sin(heading)], axis=-1)
    x = np.concatenate([np.zeros((t, 1, 2)), np.cumsum(steps, axis=1)], axis=1)
    if dim == 3:
        x = np.concatenate([x, rng.normal(scale=0.05, size=(t, n, 1))], axis=-1)
    return x


def test_training_frames_pass_and_each_defect_is_caught():
    x = _zigzag()
    checks = StructureChecks.from_training(x)
    assert checks.check(x).fraction_valid == 1.0
    assert checks.exclude == 2 and len(checks.angles) == 6
    stretched = x[:1].copy()
    stretched[0, 5:] += 0.5 * (stretched[0, 5] - stretched[0, 4])  # bond 4-5 longer
    report = checks.check(stretched)
    assert not report.bonds_ok[0] and report.angles_ok[0] and not report.valid[0]
    folded = x[:1].copy()
    folded[0, 4:] = 2 * folded[0, 3] - folded[0, 4:]  # point reflection: a 180-degree turn
    assert not checks.check(folded).angles_ok[0]
    crossed = x[:1].copy()
    crossed[0, 7] = crossed[0, 0] + 0.05  # the last bead on top of the first
    assert not checks.check(crossed).contacts_ok[0]


def test_close_angle_pairs_are_not_overlaps_but_close_1_4_pairs_are_in_2d():
    x = _zigzag()
    checks = StructureChecks.from_training(x)
    pairs = {tuple(p) for p in checks.pairs.tolist()}
    assert (0, 2) not in pairs and (0, 3) in pairs  # 1-3 excluded, 1-4 checked in 2D
    checks3 = StructureChecks.from_training(_zigzag(dim=3))
    pairs3 = {tuple(p) for p in checks3.pairs.tolist()}
    assert checks3.exclude == 3 and (0, 3) not in pairs3 and (0, 4) in pairs3


def test_json_round_trip_and_errors():
    checks = StructureChecks.from_training(_zigzag(), percentiles=(0.5, 99.5))
    again = StructureChecks.from_dict(checks.to_dict())
    np.testing.assert_array_equal(again.bond_range, checks.bond_range)
    assert again.min_contact == checks.min_contact
    bad = checks.to_dict() | {"bond_range": [[1.0, 2.0]]}
    with pytest.raises(ValueError, match="structure_checks is malformed"):
        StructureChecks.from_dict(bad)
    with pytest.raises(ValueError, match=r"percentiles\[1\] must be a finite number >= 50"):
        StructureChecks.from_training(_zigzag(), percentiles=(50, 10))
    with pytest.raises(ValueError, match="no pair of the 3 atoms is more than 2 bonds apart"):
        StructureChecks.from_training(_zigzag(n=3))
    with pytest.raises(ValueError, match="positions must hold the 8 atoms"):
        checks.check(np.zeros((1, 9, 2)))


def test_model_file_keeps_the_checks_and_generate_reports_validity(tmp_path, capsys):
    x = random_chain(np.random.default_rng(4), n_frames=128, n_atoms=8)
    np.savez(tmp_path / "traj.npz", arr=x)
    model_path = tmp_path / "m.polyvae"
    args = ["-q", "train", str(tmp_path / "traj.npz"), "--epochs", "3", "--hidden", "16"]
    assert main([*args, "-o", str(model_path)]) == 0
    model = polyvae.load_model(model_path)
    assert model.check_structures(model.pipeline.align_frames(x)).fraction_valid == 1.0
    report = model.check_structures(model.generate(64, seed=1))
    n_valid = int(report.valid.sum())
    assert main(["generate", str(model_path), "-n", "64", "-o", str(tmp_path / "all.npz")]) == 0
    assert f"{n_valid} of 64 valid" in capsys.readouterr().out
    if n_valid:
        out = tmp_path / "valid.npz"
        assert main(["generate", str(model_path), "-n", "64", "--valid-only", "-o", str(out)]) == 0
        assert f"kept the {n_valid} valid of 64 drawn" in capsys.readouterr().out
        kept = np.load(out)["positions"]
        assert len(kept) == n_valid and model.check_structures(kept).fraction_valid == 1.0
    # a model file without checks (older files): reported, and --valid-only refuses
    model.metadata.pop("structure_checks")
    model.save(tmp_path / "old.polyvae")
    assert main(["generate", str(tmp_path / "old.polyvae"), "-o", str(tmp_path / "o.npz")]) == 0
    assert "validity not checked" in capsys.readouterr().out
    code = main(
        ["generate", str(tmp_path / "old.polyvae"), "--valid-only", "-o", str(tmp_path / "v.npz")]
    )
    assert code == 2
    assert "--valid-only needs the structure checks" in capsys.readouterr().err


def test_stored_bands_narrow_the_ranges_and_older_files_load():
    x = _zigzag()
    checks = StructureChecks.from_training(x)
    band = checks.band((0.5, 99.5))
    assert band.percentiles == (0.5, 99.5) and checks.band((0, 100)) is checks
    assert np.all(band.bond_range[:, 0] >= checks.bond_range[:, 0])
    assert np.all(band.bond_range[:, 1] <= checks.bond_range[:, 1])
    lengths = np.linalg.norm(np.diff(x, axis=1), axis=-1)
    np.testing.assert_allclose(band.bond_range, np.percentile(lengths, [0.5, 99.5], axis=0).T)
    assert band.check(x).fraction_valid < 1.0  # the band leaves out the extreme frames
    again = StructureChecks.from_dict(checks.to_dict())
    np.testing.assert_array_equal(again.band((0.5, 99.5)).angle_range, band.angle_range)
    old = {k: v for k, v in checks.to_dict().items() if k not in ("percentiles", "bands")}
    legacy = StructureChecks.from_dict(old)  # a file written before the bands were stored
    assert legacy.percentiles == (0.0, 100.0) and legacy.bands == {}
    with pytest.raises(
        ValueError,
        match=r"percentiles must be a stored band .* \[\[0.0, 100.0\]\]; got \[0.5, 99.5\]",
    ):
        legacy.band((0.5, 99.5))
    with pytest.raises(ValueError, match=r"percentiles must be a pair \(low, high\); got 5"):
        checks.band(5)


def test_held_out_margin_is_the_largest_extreme_gap_in_standard_deviations():
    from polyvae.analysis.validity import held_out_margin

    v = np.array([[0.0, 5.0, 1.0], [1.0, 5.0, 1.1], [2.0, 5.0, 1.2], [10.0, 5.0, 1.3]])
    # column 0: the highest value lies 8 above the second highest; column 1 is constant
    # (left out), column 2's gaps are 0.1
    expected = max(8.0 / v[:, 0].std(), 0.1 / v[:, 2].std())
    assert held_out_margin(v) == pytest.approx(expected)
    assert held_out_margin(v, floor=[10.0, 0.0, 0.0]) == pytest.approx(0.1 / v[:, 2].std())
    assert held_out_margin(v[:2]) == 0.0 and held_out_margin(v[:, 1:2]) == 0.0


def test_real_md_frames_the_checks_have_not_seen_pass_and_defects_still_fail():
    """AdK's Cα chain (214 atoms: 213 bonds, 212 angles) from two MDAnalysisTests paths:
    checks fitted on every other frame pass the frames in between; without the held-out
    margin the plain ranges pass none of them."""
    mda = pytest.importorskip("MDAnalysis")
    data = pytest.importorskip("MDAnalysisTests.datafiles")
    frames = []
    for traj in (data.DCD2, data.DCD):
        ca = mda.Universe(data.PSF, traj).select_atoms("name CA")
        frames.extend(ca.positions.copy() for _ in ca.universe.trajectory)
    x = np.asarray(frames, dtype=np.float64)
    fit, unseen = x[::2], x[1::2]
    checks = StructureChecks.from_training(fit)
    assert 0.5 < checks.margin < 5.0
    assert checks.check(fit).fraction_valid == 1.0
    assert checks.check(unseen).fraction_valid >= 0.95
    plain = StructureChecks(
        **{
            **vars(checks),
            "bond_range": np.sort(
                np.percentile(np.linalg.norm(np.diff(fit, axis=1), axis=-1), [0, 100], axis=0).T
            ),
            "margin": 0.0,
        }
    )
    assert plain.check(unseen).bonds_ok.mean() < 0.2
    again = StructureChecks.from_dict(checks.to_dict())
    assert again.margin == checks.margin
    np.testing.assert_array_equal(again.bond_range, checks.bond_range)
    legacy = StructureChecks.from_dict({k: v for k, v in checks.to_dict().items() if k != "margin"})
    assert legacy.margin == 0.0
    # a bond stretched by 0.5 Å (13 %), and a Cα put midway between its neighbours, fail
    broken = unseen[:1].copy()
    broken[0, 100:] += (
        0.5 * (broken[0, 100] - broken[0, 99]) / np.linalg.norm(broken[0, 100] - broken[0, 99])
    )
    assert not checks.check(broken).bonds_ok[0]
    bent = unseen[:1].copy()
    bent[0, 50] = 0.5 * (bent[0, 49] + bent[0, 51])
    report = checks.check(bent)
    assert not report.bonds_ok[0] and not report.angles_ok[0]
