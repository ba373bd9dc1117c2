"""The OpenMM export inside a real OpenMM ``Context``.

A model of the OpenMM alanine dipeptide run reads distances, bond angles and the sine and
cosine of the backbone dihedrals. Its exported force, in a System of the molecule's 22
particles and nothing else, must give the CV as the energy (equal to ``encode`` to 1e-5
of the CV's range) and minus the CV's JAX gradient as the forces (to 1e-4 of the
largest), directly, after ``XmlSerializer``, and inside a ``CustomCVForce`` as
``BiasVariable`` uses it.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import polyvae
from polyvae.cli import main
from polyvae.export import EncoderCV, ExportError, openmm_force, write_openmm
from polyvae.export.spec import EncoderSpec
from polyvae.features import topology

openmm = pytest.importorskip("openmm")

KJ_PER_NM = 10.0  # forces in kJ/mol/nm of a CV whose lengths are in Å
FRAMES = slice(0, 2000, 40)  # 50 frames spread over the 1 ns run


@pytest.fixture(scope="module")
def internal_model(peptide_md, tmp_path_factory):
    """Distances (every 7th pair), the backbone's bond angles N-CA-C and the phi/psi
    dihedrals: all three kinds of engine input, with elu layers (3 of them)."""
    names = list(peptide_md.names)
    phi_psi = topology.backbone_dihedrals(names, peptide_md.bonds)
    angles = np.array([[6, 8, 14], [4, 6, 8], [8, 14, 16]])
    assert [names[i] for i in angles[0]] == ["N", "CA", "C"]
    path = tmp_path_factory.mktemp("openmm") / "m.polyvae"
    polyvae.train(
        peptide_md, features="distances", pairs=7, angles=angles, dihedrals=phi_psi,
        hidden=(32, 32, 32), activation="elu", epochs=5, decoder="cartesian",
        output=path, progress=False,
    )  # fmt: skip
    return path


def _context(force, n_atoms=22):
    system = openmm.System()
    for _ in range(n_atoms):
        system.addParticle(12.0)
    system.addForce(force)
    platform = openmm.Platform.getPlatformByName("Reference")
    return openmm.Context(system, openmm.VerletIntegrator(0.001), platform)


def _energies_and_forces(context, positions):
    energies, forces = [], []
    for x in positions:
        context.setPositions(np.asarray(x, np.float64) / 10.0)  # Å -> nm
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy()._value)
        forces.append(state.getForces(asNumpy=True)._value)
    return np.array(energies), np.array(forces)


def _expected(model, positions, cv):
    z, _ = model.encode(positions)
    grad = jax.vmap(jax.grad(lambda x: model.cv_fn()(x)[cv]))(jnp.asarray(positions))
    return z[:, cv], -KJ_PER_NM * np.asarray(grad, np.float64)


def _assert_cv_and_forces(energies, forces, z, expected):
    assert np.ptp(z) > 0.1
    np.testing.assert_array_less(np.abs(energies - z), 1e-5 * np.ptp(z))
    scale = np.abs(expected).max()
    assert scale > 1.0
    np.testing.assert_allclose(forces, expected, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("cv", [0, 1])
def test_openmm_force_gives_the_cv_and_its_forces(internal_model, peptide_md, cv):
    model = polyvae.load_model(internal_model)
    spec_kinds = {f[0] for f in polyvae.export.encoder_spec(model, atoms=range(22)).features}
    assert spec_kinds == {"distance", "angle", "sin_dihedral", "cos_dihedral"}
    x = peptide_md.positions[FRAMES]
    force = openmm_force(model, cv, atoms=range(22))
    assert force.getName() == f"polyvae z{cv}"
    energies, forces = _energies_and_forces(_context(force), x)
    _assert_cv_and_forces(energies, forces, *_expected(model, x, cv))


def test_cli_writes_one_file_per_cv_that_reads_back_into_a_custom_cv_force(
    internal_model, peptide_md, tmp_path
):
    model = polyvae.load_model(internal_model)
    out = tmp_path / "cv.xml"
    assert (
        main(["-q", "export", "openmm", str(internal_model), "--atoms", "1-22", "-o", str(out)])
        == 0
    )
    assert not out.exists()
    files = [tmp_path / "cv_z0.xml", tmp_path / "cv_z1.xml"]
    assert all(f.exists() for f in files)
    one = tmp_path / "one.xml"
    args = ["-q", "export", "openmm", str(internal_model), "--atoms", "1-22", "--cv", "1"]
    assert main([*args, "-o", str(one)]) == 0
    assert one.read_text() == files[1].read_text()
    x = peptide_md.positions[FRAMES][:10]
    for cv, path in enumerate(files):
        force = openmm.XmlSerializer.deserialize(path.read_text())
        # as openmm.app.metadynamics.BiasVariable uses it: a variable of a CustomCVForce
        outer = openmm.CustomCVForce("2*z")
        outer.addCollectiveVariable("z", force)
        energies, forces = _energies_and_forces(_context(outer), x)
        z, expected = _expected(model, x, cv)
        _assert_cv_and_forces(energies / 2, forces / 2, z, expected)


def test_the_force_acts_on_the_model_atoms_among_more_particles(internal_model, peptide_md):
    """Atoms given as indices among a larger System's particles (a solvated peptide)."""
    model = polyvae.load_model(internal_model)
    atoms = np.arange(22) + 5
    x = peptide_md.positions[FRAMES][:5]
    padded = np.concatenate([np.full((5, 5, 3), 40.0), x, np.full((5, 3, 3), -40.0)], axis=1)
    force = openmm_force(model, 0, atoms=atoms)
    energies, forces = _energies_and_forces(_context(force, 30), padded)
    z, expected = _expected(model, x, 0)
    np.testing.assert_array_less(np.abs(energies - z), 1e-5 * np.ptp(z) + 1e-9)
    assert np.all(forces[:, :5] == 0) and np.all(forces[:, 27:] == 0)
    np.testing.assert_allclose(
        forces[:, 5:27], expected, rtol=0, atol=1e-4 * np.abs(expected).max()
    )


def _spec(kind="internal", features=None, activation="tanh"):
    features = features or [("distance", 0, 1), ("angle", 0, 1, 2)]
    n = len(features) if kind != "positions" else 9
    rng = np.random.default_rng(0)
    layers = [(rng.normal(size=(n, 4)), rng.normal(size=4)), (rng.normal(size=(4, 2)), np.zeros(2))]
    return EncoderSpec(
        kind, features, np.arange(3), ["C"] * 3, np.ones(3), None, np.zeros(n), np.ones(n),
        layers, activation, "Å",
    )  # fmt: skip


def test_position_inputs_are_refused_with_what_to_retrain_with():
    spec = _spec("positions", [("position", i, c) for i in range(3) for c in "xyz"])
    with pytest.raises(ExportError, match=r"^the OpenMM export needs a model of internal inputs.*"
                       r"retrain with --features distances or --features torsions"):  # fmt: skip
        openmm_force(spec)


def test_the_command_line_refuses_a_position_model_whatever_its_alignment(
    small_model_file, tmp_path, capsys
):
    """The demo's kind of model (principal axes): the message names what OpenMM needs,
    not the Kabsch alignment that PLUMED would take."""
    path, _ = small_model_file
    out = tmp_path / "cv.xml"
    assert main(["export", "openmm", str(path), "--atoms", "1-8", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polyvae: error: the OpenMM export needs a model of internal inputs")
    assert err.count("\n") == 1 and "kabsch" not in err and "features=" not in err
    assert not out.exists()


def test_bad_arguments_name_themselves(tmp_path):
    with pytest.raises(ValueError, match=r"^cv must be a latent index in 0\.\.1; got 2$"):
        EncoderCV(_spec(), 2)
    with pytest.raises(ValueError, match=r"^periodic must be True or False; got 'yes'$"):
        openmm_force(_spec(), periodic="yes")
    assert [p.name for p in write_openmm(_spec(), tmp_path / "f.xml", cv=0)] == ["f.xml"]


def test_without_openmm_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openmm", None)
    with pytest.raises(ImportError, match=r"^the OpenMM export needs OpenMM: pip install"):
        openmm_force(_spec())


def test_cli_errors_are_one_line_naming_the_option(internal_model, tmp_path, capsys):
    def fails(*args):
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("polyvae: error: ") and err.count("\n") == 1, err
        return err

    model = str(internal_model)
    err = fails("openmm", model, "--atoms", "1-22", "--cv", "2", "-o", str(tmp_path / "a.xml"))
    assert "--cv must be a latent index in 0..1; got 2" in err
    err = fails("plumed", model, "--cv", "0", "-o", str(tmp_path / "p"))
    assert "--cv applies to export openmm only, not plumed" in err
    err = fails("openmm", model, "--atoms", "1-22", "-o", str(tmp_path / "a.txt"))
    assert "-o" in err and ".xml" in err
    assert not list(tmp_path.iterdir())
