"""The command line on real MD files: AdK (PSF + DCD) from MDAnalysisTests."""

import gc
import json
import zipfile

import numpy as np
import pytest

from polyvae.cli import main

mda = pytest.importorskip("MDAnalysis")
md = pytest.importorskip("mdtraj")
datafiles = pytest.importorskip("MDAnalysisTests.datafiles")


@pytest.fixture(scope="module")
def adk_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("adk")
    model = d / "adk.polyvae"
    code = main(
        [
            "-q",
            "train",
            datafiles.DCD,
            "--top",
            datafiles.PSF,
            "--select",
            "name CA",
            "--epochs",
            "5",
            "--hidden",
            "64,64",
            "-o",
            str(model),
        ]
    )
    assert code == 0
    return d, model


def test_train_stores_the_atom_selection(adk_model):
    _, model = adk_model
    cfg = json.loads(zipfile.ZipFile(model).read("config.json"))
    atoms = cfg["metadata"]["atoms"]
    u = mda.Universe(datafiles.PSF)
    ca = u.select_atoms("name CA")
    assert atoms["selection"] == "name CA" and len(atoms["indices"]) == 214
    assert atoms["indices"] == ca.indices.tolist() and atoms["resnames"] == ca.resnames.tolist()
    np.testing.assert_allclose(atoms["masses"], ca.masses)
    assert cfg["pipeline"]["dim"] == 3 and cfg["metadata"]["unit"] == "Å"


def test_encode_generate_write_and_read_back(adk_model):
    d, model = adk_model
    assert (
        main(
            [
                "-q",
                "encode",
                str(model),
                datafiles.DCD,
                "--top",
                datafiles.PSF,
                "--chunk-size",
                "30",
                "-o",
                str(d / "cv.npz"),
            ]
        )
        == 0
    )
    cv = np.load(d / "cv.npz")
    assert cv["latent"].shape == (98, 2) and cv["times"].shape == (98,)
    for suffix in ("npz", "pdb", "dcd"):
        assert (
            main(
                [
                    "-q",
                    "generate",
                    str(model),
                    "-n",
                    "100",
                    "--seed",
                    "4",
                    "-o",
                    str(d / f"gen.{suffix}"),
                ]
            )
            == 0
        )
    ref = np.load(d / "gen.npz")["positions"]
    assert ref.shape == (100, 214, 3)
    u = mda.Universe(str(d / "gen.pdb"), str(d / "gen.dcd"))
    assert u.trajectory.n_frames == 100 and u.atoms.n_atoms == 214
    assert list(u.atoms.names[:2]) == ["CA", "CA"] and u.atoms.resnames[0] == "MET"
    got = np.stack([u.atoms.positions.copy() for _ in u.trajectory])
    np.testing.assert_allclose(got, ref, atol=1e-4)  # DCD: float32
    pdb = mda.Universe(str(d / "gen.pdb"))
    assert pdb.trajectory.n_frames == 100
    np.testing.assert_allclose(pdb.atoms.positions, ref[0], atol=1e-3)  # PDB: 3 decimals
    t = md.load(str(d / "gen.dcd"), top=str(d / "gen.pdb"))
    np.testing.assert_allclose(t.xyz * 10.0, ref, atol=1e-4)  # mdtraj works in nm


def test_kabsch_alignment_with_reference_frame(adk_model, tmp_path):
    out = tmp_path / "k.polyvae"
    assert (
        main(
            [
                "-q",
                "train",
                datafiles.DCD,
                "--top",
                datafiles.PSF,
                "--select",
                "name CA",
                "--align",
                "kabsch",
                "--reference",
                "5",
                "--decoder",
                "cartesian",
                "--epochs",
                "2",
                "--hidden",
                "16",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    cfg = json.loads(zipfile.ZipFile(out).read("config.json"))
    assert cfg["pipeline"]["align"] == "kabsch"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train", "{DCD}", "--top", "{PSF}", "--select", "name XYZ", "-o", "{d}/x.polyvae"],
            "select 'name XYZ' matches no atoms",
        ),
        (["train", "{XTC}", "--top", "{PSF}", "-o", "{d}/x.polyvae"], "atoms"),
        (["train", "{d}/missing.dcd", "--top", "{PSF}", "-o", "{d}/x.polyvae"], "missing.dcd"),
        (["encode", "{model}", "{DCD}", "--top", "{DCD}", "-o", "{d}/cv.npz"], "has no atom names"),
        (["train", "{d}/cut.dcd", "--top", "{PSF}", "-o", "{d}/x.polyvae"], "truncated: read"),
        (
            ["train", "{d}/text.dcd", "--top", "{PSF}", "-o", "{d}/x.polyvae"],
            "MDAnalysis could not read trajectory '{d}/text.dcd': Reading DCD header failed",
        ),
        (
            ["train", "{DCD}", "--top", "{d}/bad.pdb", "-o", "{d}/x.polyvae"],
            "MDAnalysis could not read topology '{d}/bad.pdb': no atoms could be parsed from it",
        ),
        (
            [
                "train",
                "{DCD}",
                "--top",
                "{PSF}",
                "--select",
                "name CA",
                "--align",
                "kabsch",
                "--reference",
                "500",
                "-o",
                "{d}/x.polyvae",
            ],
            "reference frame 500 is out of range",
        ),
    ],
)
def test_md_errors_are_one_line(adk_model, capsys, args, message):
    d, model = adk_model
    raw = open(datafiles.DCD, "rb").read()
    (d / "cut.dcd").write_bytes(raw[: len(raw) // 2 + 100])
    (d / "text.dcd").write_text("not a DCD file\n")
    (d / "bad.pdb").write_text("x\n")
    names = dict(d=d, model=model, DCD=datafiles.DCD, PSF=datafiles.PSF, XTC=datafiles.XTC)
    assert main(["-q", *[a.format(**names) for a in args]]) == 2
    gc.collect()  # a reader left half-built must not print a traceback when collected
    err = capsys.readouterr().err
    assert err.startswith("polyvae: error:") and message.format(d=d) in err
    assert err.count("\n") == 1


def test_allow_truncated_goes_on_with_the_frames_read(adk_model, tmp_path, capsys):
    d, model = adk_model
    raw = open(datafiles.DCD, "rb").read()
    (tmp_path / "cut.dcd").write_bytes(raw[: len(raw) // 2 + 100])
    assert (
        main(
            [
                "-q",
                "encode",
                str(model),
                str(tmp_path / "cut.dcd"),
                "--top",
                datafiles.PSF,
                "-o",
                str(tmp_path / "cv.npz"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--allow-truncated" in err and "can be used" in err and ".frames" not in err
    assert (
        main(
            [
                "encode",
                str(model),
                str(tmp_path / "cut.dcd"),
                "--top",
                datafiles.PSF,
                "--allow-truncated",
                "--chunk-size",
                "20",
                "-o",
                str(tmp_path / "cv.npz"),
            ]
        )
        == 0
    )
    assert "truncated: read 48 frames" in capsys.readouterr().err
    cut = np.load(tmp_path / "cv.npz")["latent"]
    assert (
        main(
            [
                "-q",
                "encode",
                str(model),
                datafiles.DCD,
                "--top",
                datafiles.PSF,
                "-o",
                str(tmp_path / "full.npz"),
            ]
        )
        == 0
    )
    # chunks of 20 frames against one of 98: float32 matmuls of other shapes differ by ~1e-6
    np.testing.assert_allclose(cut, np.load(tmp_path / "full.npz")["latent"][:48], atol=1e-5)
