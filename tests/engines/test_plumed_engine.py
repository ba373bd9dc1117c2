"""The PLUMED export inside a real PLUMED: ``plumed driver`` over a real trajectory.

Adenylate kinase Cα atoms (MDAnalysisTests' PSF + DCD, 98 frames of 3341 atoms): models
with Kabsch-aligned position inputs and with distance inputs are exported with
``polyvae export plumed``; the COLVAR PLUMED writes must equal ``polyvae encode`` to 1e-5
of the CV's range, and the atom forces of a restraint on the CV (``--dump-forces``) must
equal minus the JAX gradient of the restraint to 1e-4 relative. PLUMED comes from the
``hillclimber`` wheel (``make test`` installs it with ``--no-deps``) or wherever
:func:`polyvae.export.plumed_driver.find_plumed` finds one; without it these tests skip
and say why.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import polyvae
from polyvae.cli import main
from polyvae.export import read_colvar
from polyvae.export.plumed_driver import find_plumed, read_forces, run_driver

pytest.importorskip("MDAnalysisTests")
from MDAnalysisTests.datafiles import DCD, PSF  # noqa: E402

KJ_PER_NM = 10.0  # the driver dumps forces in kJ/mol/nm; the CV's lengths are Å


@pytest.fixture(scope="module")
def plumed():
    try:
        return find_plumed()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def adk():
    return polyvae.io.read_frames(DCD, topology=PSF, select="name CA")


@pytest.fixture(scope="module", params=["kabsch", "distances"])
def model_file(request, adk, tmp_path_factory):
    """A small tanh model of the Cα frames, saved: Kabsch positions or distances."""
    kw = dict(hidden=(32, 32), activation="tanh", epochs=20, decoder="cartesian", progress=False)
    if request.param == "kabsch":
        kw["align"] = "kabsch"
    else:
        kw.update(features="distances", pairs=97)  # every 97th of the 22,791 pairs
    path = tmp_path_factory.mktemp(request.param) / "m.polyvae"
    polyvae.train(adk, output=path, **kw)
    return path


def _export(model_file, out, restraint: str = ""):
    assert main(["-q", "export", "plumed", str(model_file), "-o", str(out)]) == 0
    dat = out / "plumed.dat"
    if restraint:
        dat.write_text(dat.read_text() + restraint + "\n")
    return dat


def test_plumed_colvar_equals_polyvae_encode(plumed, model_file, tmp_path):
    dat = _export(model_file, tmp_path / "plumed")
    names, values = read_colvar(run_driver(dat, DCD, plumed=plumed))
    assert names == ["time", "ann.node-0", "ann.node-1"]
    enc = tmp_path / "cv.npz"
    args = ["-q", "encode", str(model_file), DCD, "--top", PSF, "-o", str(enc)]
    assert main(args) == 0
    z = np.load(enc)["latent"].astype(np.float64)
    assert values.shape == (98, 3) and z.shape == (98, 2)
    span = np.ptp(z, axis=0)
    assert np.all(span > 0)
    np.testing.assert_array_less(np.abs(values[:, 1:] - z).max(axis=0), 1e-5 * span)


def test_plumed_restraint_forces_equal_minus_jax_gradient(plumed, model_file, adk, tmp_path):
    model = polyvae.load_model(model_file)
    z, _ = model.encode(adk)
    centre, kappa = float(np.median(z[:, 0])), 50.0  # kJ/mol per CV unit^2
    restraint = f"RESTRAINT ARG=ann.node-0 AT={centre!r} KAPPA={kappa} LABEL=pull"
    dat = _export(model_file, tmp_path / "plumed", restraint)
    run_driver(dat, DCD, dump_forces="forces.txt", plumed=plumed)
    forces = read_forces(dat.parent / "forces.txt")
    assert forces.shape == (98, 3341, 3)
    idx = np.asarray(model.atoms.indices)
    cv = model.cv_fn()
    grad = jax.vmap(jax.grad(lambda x: 0.5 * kappa * (cv(x)[0] - centre) ** 2))
    expected = -KJ_PER_NM * np.asarray(grad(jnp.asarray(adk.positions)), np.float64)
    scale = np.abs(expected).max()
    assert scale > 1.0  # the restraint pulls
    np.testing.assert_allclose(forces[:, idx], expected, rtol=0, atol=1e-4 * scale)
    assert not np.delete(forces, idx, axis=1).any()  # no other atom feels the CV


def test_cv_fn_equals_encode_and_refuses_principal_axes(model_file, adk):
    model = polyvae.load_model(model_file)
    z, _ = model.encode(adk)
    got = np.asarray(jax.vmap(model.cv_fn())(jnp.asarray(adk.positions)))
    np.testing.assert_allclose(got, z, atol=1e-4 * np.ptp(z))
    principal = polyvae.train(adk, hidden=(8,), epochs=1, decoder="cartesian", progress=False)
    with pytest.raises(
        ValueError, match="cv_fn needs distance or torsion inputs, or align=.kabsch."
    ):
        principal.cv_fn()


def test_driver_errors(plumed, tmp_path, monkeypatch):
    dat = tmp_path / "plumed.dat"
    dat.write_text("d: DISTANCE ATOMS=1,2\nPRINT ARG=d FILE=COLVAR\n")
    with pytest.raises(ValueError, match=r"trajectory must be one of .dcd.*got 'x.nc'"):
        run_driver(dat, tmp_path / "x.nc", plumed=plumed)
    with pytest.raises(FileNotFoundError, match="trajectory .*missing.dcd' does not exist"):
        run_driver(dat, tmp_path / "missing.dcd", plumed=plumed)
    dat.write_text("d: NOT_AN_ACTION ATOMS=1,2\n")
    with pytest.raises(RuntimeError, match="plumed exited with code"):
        run_driver(dat, DCD, plumed=plumed)
    monkeypatch.setenv("POLYVAE_PLUMED", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="POLYVAE_PLUMED names .*nothing.*not a file"):
        find_plumed()


@pytest.fixture(scope="module")
def torsion_run(peptide_md, tmp_path_factory):
    """A torsion model (sin/cos of phi, psi) of an OpenMM alanine dipeptide run, and the
    run as a DCD that PLUMED reads."""
    work = tmp_path_factory.mktemp("torsions")
    model = polyvae.train(
        peptide_md, features="torsions", activation="tanh", hidden=(32, 32), epochs=20,
        decoder="cartesian", output=work / "t.polyvae", progress=False,
    )  # fmt: skip
    dcd = polyvae.io.write_positions(
        work / "ala2.dcd", peptide_md.positions, atoms=polyvae.io.model_atoms(model)
    )
    return work / "t.polyvae", dcd, peptide_md


def test_plumed_torsion_cv_and_forces(plumed, torsion_run, tmp_path):
    model_file, dcd, frames = torsion_run
    out = tmp_path / "plumed"
    args = ["-q", "export", "plumed", str(model_file), "--atoms", "1-22", "-o", str(out)]
    assert main(args) == 0
    model = polyvae.load_model(model_file)
    z, _ = model.encode(frames)
    centre, kappa = float(np.median(z[:, 1])), 20.0
    dat = out / "plumed.dat"
    dat.write_text(dat.read_text() + f"RESTRAINT ARG=ann.node-1 AT={centre!r} KAPPA={kappa}\n")
    names, values = read_colvar(run_driver(dat, dcd, dump_forces="forces.txt", plumed=plumed))
    assert names == ["time", "ann.node-0", "ann.node-1"] and values.shape == (2000, 3)
    np.testing.assert_array_less(np.abs(values[:, 1:] - z).max(axis=0), 1e-5 * np.ptp(z, axis=0))
    cv = model.cv_fn()
    grad = jax.vmap(jax.grad(lambda x: 0.5 * kappa * (cv(x)[1] - centre) ** 2))
    expected = -KJ_PER_NM * np.asarray(grad(jnp.asarray(frames.positions)), np.float64)
    forces = read_forces(out / "forces.txt")
    scale = np.abs(expected).max()
    assert scale > 1.0
    np.testing.assert_allclose(forces, expected, rtol=0, atol=1e-4 * scale)
