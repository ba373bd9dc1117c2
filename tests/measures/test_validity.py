"""Structure checks: bonds and angles in their training ranges, no overlaps beyond the
excluded (1-2, 1-3, and 1-4 in 3D) pairs."""

import json

import numpy as np
import pytest

import polyvae
from polyvae import geometry
from polyvae.cli import main
from polyvae.measures import validity
from polyvae.measures.validity import AtomLabels, Offender, StructureChecks


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


def _bend(x, atom, degrees):
    """2D frames with the bond angle at ``atom`` set to ``degrees``, the atoms after it
    turned rigidly about it (every bond and other angle kept)."""
    y = x.copy()
    for f in y:
        u, v = f[atom - 1] - f[atom], f[atom + 1] - f[atom]
        side = np.sign(u[0] * v[1] - u[1] * v[0])
        turn = np.arctan2(u[1], u[0]) + side * np.radians(degrees) - np.arctan2(v[1], v[0])
        c, s = np.cos(turn), np.sin(turn)
        f[atom + 1 :] = f[atom] + (f[atom + 1 :] - f[atom]) @ np.array([[c, s], [-s, c]])
    return y


@pytest.fixture(scope="module")
def cli_model(small_model_file):
    """The small model's file (8-bead chains in 2D) and its frames."""
    return small_model_file


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


def test_model_file_keeps_the_checks_and_generate_reports_validity(cli_model, tmp_path, capsys):
    model_path, x = cli_model
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
    from polyvae.measures.validity import held_out_margin

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


# ---- contacts from neighbour lists ----------------------------------------------------
def _ring_with_tail(rng):
    """8 atoms: a 6-ring (0-5) with a 2-atom tail on atom 3, random 3D frames."""
    bonds = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 0], [3, 6], [6, 7]])
    return rng.normal(scale=1.5, size=(40, 8, 3)), bonds


@pytest.mark.parametrize("case", ["chain 2D", "chain 3D", "ring 3D", "peptide"])
@pytest.mark.parametrize("exclude", [None, 1])
def test_neighbour_lists_give_the_all_pairs_results(case, exclude, monkeypatch, request):
    """The excluded pairs, the closest training contact and every structure's contact
    check of both paths (all pairs; a k-d tree per frame) match the former computation
    over ``geometry.nonbonded_pairs``."""
    rng = np.random.default_rng(5)
    if case == "peptide":
        peptide = request.getfixturevalue("peptide")
        fit, bonds = peptide.positions, peptide.bonds
    elif case == "ring 3D":
        fit, bonds = _ring_with_tail(rng)
    else:
        fit, bonds = _zigzag(n=12, dim=2 if case == "chain 2D" else 3), None
    n, d = fit.shape[1:]
    bonds = geometry.chain_bonds(n) if bonds is None else bonds
    depth = (3 if d == 3 else 2) if exclude is None else exclude
    pairs = geometry.nonbonded_pairs(n, bonds, depth)
    closest = geometry.pair_distances(fit, pairs).min()
    moved = np.concatenate([fit, fit + rng.normal(scale=0.3, size=fit.shape), 0.8 * fit])
    reports = []
    for limit in (validity.ALL_PAIRS_LIMIT, 0):  # all pairs, then neighbour lists
        monkeypatch.setattr(validity, "ALL_PAIRS_LIMIT", limit)
        checks = StructureChecks.from_training(fit, bonds, exclude=exclude)
        np.testing.assert_array_equal(checks.pairs, pairs)
        assert checks.min_contact == pytest.approx(closest, rel=1e-12, abs=0)
        expected = geometry.pair_distances(moved, pairs).min(axis=1) >= checks.min_contact
        report = checks.check(moved)
        np.testing.assert_array_equal(report.contacts_ok, expected)
        assert report.contacts_ok[: len(fit)].all() and not report.contacts_ok.all()
        reports.append(report)
    for a, b in zip(reports[0].failures["contacts"], reports[1].failures["contacts"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_checks_of_20000_atoms_never_form_all_pairs():
    """A 20 000-atom chain: all pairs would take 3.2 GB as float64; the checks stay far
    below 200 MB and name the one pair put too close."""
    import tracemalloc

    rng = np.random.default_rng(6)
    steps = rng.normal(size=(3, 20_000, 3))
    x = np.cumsum(steps / np.linalg.norm(steps, axis=-1, keepdims=True), axis=1)
    tracemalloc.start()
    try:
        checks = StructureChecks.from_training(x)
        close = x[:1].copy()
        close[0, 10_000] = close[0, 5] + 0.5 * checks.min_contact / np.sqrt(3)
        report = checks.check(np.concatenate([x, close]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6
    assert checks.min_contact == pytest.approx(
        geometry.closest_nonbonded(x, checks.excluded_codes, 1.0).min()
    )
    assert report.contacts_ok.tolist() == [True, True, True, False]
    assert [5, 10_000] in report.failures["contacts"][0].tolist()


# ---- the report: which check fails, and for which atoms ---------------------------------
def test_atom_labels_name_residues_and_tell_repeated_names_apart():
    names = ["N", "CA", "C", "N", "CA", "C"]
    labels = AtomLabels.of(names, ["ALA"] * 3 + ["GLY"] * 3, [2, 2, 2, 3, 3, 3])
    assert labels.item([0, 1, 2]) == "ALA2:N-CA-C"
    assert labels.item([2, 3]) == "ALA2:C-GLY3:N"
    plain = AtomLabels.of(names)  # no residues: repeated names carry their index
    assert plain.residues is None and plain.item([1, 2, 3]) == "CA(1)-C(2)-N(3)"
    one = AtomLabels.of(["H1", "CH3", "H2"], ["ACE"] * 3, [1, 1, 1])
    assert one.residues is None and one.item([0, 1, 2]) == "H1-CH3-H2"


def test_report_names_a_bent_angle_and_the_fraction_that_fails():
    x = _zigzag()
    checks = StructureChecks.from_training(x)
    y = np.concatenate([_bend(x[:6], 4, 150.0), x[6:10]])  # 6 of 10 bent at atom 4
    names = [f"C{i + 1}" for i in range(8)]
    report = checks.check(y, labels=names)
    assert report.valid.tolist() == [False] * 6 + [True] * 4
    assert report.worst() == [Offender("angles", (3, 4, 5), "C4-C5-C6", 0.6)]
    assert report.summary() == ["angle C4-C5-C6 fails in 60 %"]
    assert report.warning() == (
        "only 4 of 10 structures (40 %) pass the checks; most failures: angle C4-C5-C6 "
        "fails in 60 %"
    )
    out = report.to_dict()
    assert (out["fraction_valid"], out["fraction_bonds_ok"], out["fraction_angles_ok"]) == (
        0.4,
        1.0,
        0.4,
    )
    assert out["fraction_contacts_ok"] == 1.0 and "fraction_chirality_ok" not in out
    assert out["worst_offenders"] == {
        "bonds": [],
        "angles": [{"atoms": [3, 4, 5], "label": "C4-C5-C6", "fraction_failing": 0.6}],
        "contacts": [],
    }
    assert json.loads(json.dumps(out)) == out
    # without names, atoms by index; most pass: no warning
    assert checks.check(y).summary() == ["angle 3-4-5 fails in 60 %"]
    assert checks.check(y[3:]).warning() is None and checks.check(x).summary() == []
    crossed = x[:4].copy()
    crossed[:, 7] = crossed[:, 0] + 0.05  # the last bead on top of the first; ties: in order
    assert checks.check(crossed, labels=names).summary() == [
        "bond C7-C8 fails in 100 %",
        "angle C6-C7-C8 fails in 100 %",
        "contact C1-C8 fails in 100 %",
    ]


def test_report_names_a_mirrored_centre_by_residue(peptide):
    atoms = peptide.metadata["atoms"]
    labels = AtomLabels.of(peptide.names, atoms["resnames"], atoms["resids"])
    checks = StructureChecks.from_training(peptide.positions, peptide.bonds, names=peptide.names)
    x = peptide.positions.copy()
    x[:4] *= np.array([1.0, 1.0, -1.0])  # 4 of 11 mirrored
    report = checks.check(x, labels=labels)
    assert report.summary() == ["chiral centre ALA2:CA fails in 36 %"]
    assert report.to_dict()["worst_offenders"]["chirality"] == [
        {"atoms": [8], "label": "ALA2:CA", "fraction_failing": 4 / 11}
    ]
    with pytest.raises(ValueError, match="labels must name the 22 atoms of the checks; got 3"):
        checks.check(x, labels=["N", "CA", "C"])


def test_generate_warns_when_fewer_than_half_pass(cli_model, tmp_path, monkeypatch, capsys):
    """The warning on stderr names the failing angle (also with -q); the output line gives
    every check's pass rate; exit code 0. Generated structures are stood in for."""
    from polyvae.vae import VAEModel

    model = polyvae.load_model(cli_model[0])
    zigzag = _zigzag()
    model.metadata["structure_checks"] = StructureChecks.from_training(zigzag).to_dict()
    model.save(tmp_path / "z.polyvae")
    bent = np.concatenate([_bend(zigzag[:6], 4, 150.0), zigzag[6:10]])
    out = tmp_path / "g.npz"
    args = ["-q", "generate", str(tmp_path / "z.polyvae"), "-n", "10", "-o", str(out)]
    for frames, n_valid in ((bent, 4), (bent[3:], 4)):
        monkeypatch.setattr(VAEModel, "generate", lambda self, n, f=frames, **kw: f)
        assert main(args) == 0
        captured = capsys.readouterr()
        pct = f"{100 * n_valid / len(frames):.1f} %"  # only the bent angle fails
        assert captured.out == (
            f"{len(frames)} conformations written to {out}; {n_valid} of {len(frames)} valid "
            f"({pct}); pass rate per check: bonds 100.0 %, angles {pct}, contacts 100.0 %\n"
        )
        if len(frames) == 10:
            assert captured.err == (
                "polyvae: warning: only 4 of 10 generated structures (40 %) pass the model's "
                "checks; most failures: angle B3-B4-B5 fails in 60 %\n"
            )
        else:  # 4 of 7 pass: no warning
            assert captured.err == ""
