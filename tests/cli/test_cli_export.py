"""`polyvae export ...` on a model trained from AdK CA atoms (distance features, tanh)."""

import numpy as np
import pytest
from plumed_reader import read_plumed_ann

import polyvae
from polyvae.cli import main
from polyvae.export import read_colvar

datafiles = pytest.importorskip("MDAnalysisTests.datafiles")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    common = [
        "-q",
        "train",
        datafiles.DCD,
        "--top",
        datafiles.PSF,
        "--select",
        "name CA",
        "--epochs",
        "3",
        "--hidden",
        "16",
        "--activation",
        "tanh",
        "--decoder",  # the CV is the encoder's: the cheaper decoder is enough here
        "cartesian",
    ]
    assert main([*common, "--features", "distances", "--pairs", "40", "-o", str(d / "dist")]) == 0
    assert main([*common, "--align", "kabsch", "-o", str(d / "pos")]) == 0
    assert (
        main(
            [
                *common[:-4],
                "--activation",
                "relu",
                "--decoder",
                "cartesian",
                "--features",
                "distances",
                "--pairs",
                "40",
                "-o",
                str(d / "relu"),
            ]
        )
        == 0
    )
    return d


def test_export_colvars_and_plumed(models, tmp_path, capsys):
    d = models
    assert main(["-q", "export", "colvars", str(d / "dist"), "-o", str(tmp_path / "cv")]) == 0
    text = (tmp_path / "cv" / "polyvae.colvars").read_text()
    assert "NeuralNetwork" in text and "distance" in text and "Å" in text
    assert main(["-q", "export", "plumed", str(d / "pos"), "-o", str(tmp_path / "pl")]) == 0
    plumed = (tmp_path / "pl" / "plumed.dat").read_text()
    assert "UNITS LENGTH=A" in plumed and "FIT_TO_TEMPLATE" in plumed and "ANN" in plumed
    assert (tmp_path / "pl" / "reference.pdb").exists()
    parsed = read_plumed_ann(tmp_path / "pl" / "plumed.dat")
    assert parsed is not None


def test_export_colvar_file_of_a_trajectory(models, tmp_path):
    d = models
    out = tmp_path / "COLVAR"
    assert (
        main(
            [
                "-q",
                "export",
                "colvar",
                str(d / "dist"),
                datafiles.DCD,
                "--top",
                datafiles.PSF,
                "-o",
                str(out),
            ]
        )
        == 0
    )
    fields, data = read_colvar(out)
    assert fields == ["time", "z0", "z1"] and data.shape == (98, 3)
    assert out.read_text().startswith("#! FIELDS time z0 z1")
    model = polyvae.load_model(d / "dist")
    expected, _ = model.encode(
        polyvae.io.read_frames(
            datafiles.DCD, atoms=polyvae.io.model_atoms(model), topology=datafiles.PSF
        )
    )
    np.testing.assert_allclose(data[:, 1:], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "plumed", "{d}/relu", "-o", "{t}/x"], "--activation tanh"),
        (["export", "colvars", "{d}/pos", "-o", "{t}/x"], "Colvars export needs distance features"),
        (["export", "colvar", "{d}/dist", "-o", "{t}/x"], "needs the trajectories to encode"),
        (["export", "plumed", "{d}/dist", "{d}/dist", "-o", "{t}/x"], "takes no trajectories"),
    ],
)
def test_export_errors(models, tmp_path, capsys, args, message):
    assert main(["-q", *[a.format(d=models, t=tmp_path) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polyvae: error:") and message in err and err.count("\n") == 1


def test_export_needs_atom_indices(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(64, 5, 3)).astype(np.float32)
    np.savez(tmp_path / "t.npz", arr=x)
    assert (
        main(
            [
                "-q",
                "train",
                str(tmp_path / "t.npz"),
                "--epochs",
                "1",
                "--hidden",
                "8",
                "--features",
                "distances",
                "--activation",
                "tanh",
                "-o",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    assert main(["-q", "export", "colvars", str(tmp_path / "m"), "-o", str(tmp_path / "c")]) == 2
    assert "no atom indices" in capsys.readouterr().err


def test_export_torchscript(models, tmp_path):
    pytest.importorskip("torch", reason="torch==2.13.0 is not installed")
    assert (
        main(["-q", "export", "torchscript", str(models / "dist"), "-o", str(tmp_path / "cv.pt")])
        == 0
    )
    assert (tmp_path / "cv.pt").exists() and (tmp_path / "cv.json").exists()
