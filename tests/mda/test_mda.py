"""The MDAnalysis plugin (polyvae.mda) and the NumPy encoder it runs in workers.

AdK from MDAnalysisTests: 214 CA atoms, 98 frames, no box (so no unwrapping).
"""

import pickle

import jax
import numpy as np
import pytest

import polyvae
from polyvae.features import pipeline as transforms
from polyvae.nn import model as vae
from polyvae.nn.encoder_numpy import ACTIVATIONS_NUMPY, encode_numpy, numpy_params

# ---- NumPy encoder (needs no MDAnalysis) ------------------------------------------------


def test_numpy_encoder_mirrors_model_constants():
    assert set(ACTIVATIONS_NUMPY) == set(vae.ACTIVATIONS)
    from polyvae.nn import encoder_numpy

    assert encoder_numpy._STD_FLOOR == vae._STD_FLOOR


@pytest.mark.parametrize("activation", sorted(vae.ACTIVATIONS))
def test_encode_numpy_matches_jax(activation):
    config = vae.VAEConfig(n_features=30, latent_dim=3, hidden=(64, 32), activation=activation)
    params = vae.init_params(config, key=jax.random.PRNGKey(1))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    # non-zero biases and large pre-activations exercise every branch
    leaves = [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    params = jax.tree.unflatten(treedef, leaves)
    x = (3.0 * np.random.default_rng(0).normal(size=(50, 30))).astype(np.float32)
    mean_j, std_j = (np.asarray(a) for a in vae.encode(params, x, config))
    mean_n, std_n = encode_numpy(numpy_params(params), x, config)
    assert mean_n.dtype == std_n.dtype == np.float32
    assert mean_n.flags.c_contiguous
    assert mean_n.shape == std_n.shape == (50, 3)
    scale = max(1.0, np.abs(mean_j).max())
    np.testing.assert_allclose(mean_n, mean_j, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(std_n, std_j, rtol=0, atol=1e-6 * max(1.0, std_j.max()))


def test_encode_numpy_softplus_is_stable():
    config = vae.VAEConfig(n_features=2, latent_dim=1, hidden=(2,), activation="softplus")
    params = {
        "encoder": [
            {"w": np.eye(2, dtype=np.float32), "b": np.zeros(2, np.float32)},
            {"w": np.array([[1, 0], [0, 1]], np.float32), "b": np.zeros(2, np.float32)},
        ]
    }
    x = np.array([[1e4, 1e4], [-1e4, -1e4]], np.float32)
    with np.errstate(over="raise", invalid="raise"):
        mean, std = encode_numpy(params, x, config)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))
    np.testing.assert_allclose(std[0], 1e4, rtol=1e-6)


def test_numpy_params_pickle_and_errors():
    config = vae.VAEConfig(n_features=4, latent_dim=2, hidden=(8,))
    params = numpy_params(vae.init_params(config, key=jax.random.PRNGKey(0)))
    assert all(type(leaf) is np.ndarray for leaf in jax.tree.leaves(params))
    again = pickle.loads(pickle.dumps(params))
    x = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(
        encode_numpy(again, x, config)[0], encode_numpy(params, x, config)[0]
    )
    with pytest.raises(ValueError, match=r"x must have shape \(B, F\) = \(B, 4\); got \(3, 5\)"):
        encode_numpy(params, np.ones((3, 5)), config)
    with pytest.raises(ValueError, match="activation in"):
        encode_numpy(params, x, "sigmoid")


# ---- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mda():
    mda = pytest.importorskip("MDAnalysis")
    pytest.importorskip("MDAnalysisTests")
    pytest.importorskip("polyvae.mda")
    return mda


def adk_universe(mda):
    from MDAnalysisTests.datafiles import DCD, PSF

    u = mda.Universe(PSF, DCD)
    return u, u.select_atoms("name CA")


@pytest.fixture(scope="module")
def adk(mda):
    u, ag = adk_universe(mda)
    positions = np.stack([ag.positions.copy() for _ in u.trajectory])
    return u, ag, positions


@pytest.fixture(scope="module")
def model(adk):
    _, ag, positions = adk
    frames = polyvae.Frames(positions, masses=ag.masses)
    # the CV is the encoder's: the cheaper decoder is enough here
    return polyvae.train(frames, hidden=(32, 32), epochs=5, decoder="cartesian", progress=False)


@pytest.fixture(scope="module")
def serial(adk, model):
    from polyvae.mda import LatentCV

    return LatentCV(adk[1], model).run()


# ---- LatentCV -----------------------------------------------------------------------


def test_serial_matches_model_encode(adk, model, serial):
    _, _, positions = adk
    mean, std = model.encode(positions)
    res = serial.results
    assert res.latent.shape == res.latent_std.shape == (98, 2)
    assert res.latent.dtype == res.latent_std.dtype == np.float32
    np.testing.assert_allclose(res.latent, mean, rtol=0, atol=1e-5)
    np.testing.assert_allclose(res.latent_std, std, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(res.frames, np.arange(98))
    assert res.times.shape == (98,)
    assert serial.unwrap is False and serial.latent_dim == 2


def test_start_stop_step_and_chunk_size(adk, model, serial):
    from polyvae.mda import LatentCV

    _, ag, positions = adk
    cv = LatentCV(ag, model, chunk_size=4).run(start=10, stop=80, step=3)
    np.testing.assert_array_equal(cv.results.frames, np.arange(10, 80, 3))
    np.testing.assert_allclose(cv.results.latent, model.encode(positions[10:80:3])[0], atol=1e-5)
    np.testing.assert_allclose(cv.results.latent, serial.results.latent[10:80:3], atol=1e-6)
    for chunk in (1, 7, 98, 5000):
        cv = LatentCV(ag, model, chunk_size=chunk).run()
        # the NumPy encoder gives each frame the same float32 result in any block
        np.testing.assert_array_equal(cv.results.latent, serial.results.latent)
        np.testing.assert_array_equal(cv.results.latent_std, serial.results.latent_std)
    assert cv._buffer is None  # no positions kept after the run
    empty = LatentCV(ag, model).run(start=5, stop=5)
    assert empty.results.latent.shape == (0, 2)


@pytest.mark.parametrize("backend", ["multiprocessing", "dask"])
def test_parallel_equals_serial(adk, model, serial, backend):
    from polyvae.mda import LatentCV

    if backend == "dask":
        pytest.importorskip("dask")
    cv = LatentCV(adk[1], model, chunk_size=16).run(backend=backend, n_workers=2)
    np.testing.assert_array_equal(cv.results.frames, serial.results.frames)
    np.testing.assert_array_equal(cv.results.times, serial.results.times)
    np.testing.assert_allclose(cv.results.latent, serial.results.latent, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cv.results.latent_std, serial.results.latent_std, atol=1e-6)
    # all NumPy, same per-frame arithmetic: in fact bit-identical
    np.testing.assert_array_equal(cv.results.latent, serial.results.latent)


def test_workers_get_no_jax_objects(adk, model):
    from polyvae.mda import LatentCV

    cv = LatentCV(adk[1], model)
    state = pickle.dumps(cv)  # what MDAnalysis sends to each worker
    assert b"jax" not in state
    again = pickle.loads(state)
    assert all(type(leaf) is np.ndarray for leaf in jax.tree.leaves(again._params))


def test_model_file_path(adk, model, serial, tmp_path):
    from polyvae.mda import LatentCV

    path = model.save(tmp_path / "adk.polyvae")
    for m in (path, str(path)):
        cv = LatentCV(adk[1], m).run()
        np.testing.assert_array_equal(cv.results.latent, serial.results.latent)


def test_errors(mda, adk, model):
    from polyvae.mda import LatentCV

    u, ag, _ = adk
    with pytest.raises(
        ValueError, match="atomgroup has 215 atoms but the model was trained on 214"
    ):
        LatentCV(ag + u.atoms[0], model)
    pipe = polyvae.Pipeline().fit(np.random.default_rng(0).normal(size=(8, 214, 2)))
    config = vae.VAEConfig(n_features=428, hidden=(8,))
    flat = polyvae.VAEModel(config, vae.init_params(config, key=jax.random.PRNGKey(0)), pipe)
    with pytest.raises(ValueError, match="trained on 2D positions.*dim=3"):
        LatentCV(ag, flat)
    with pytest.raises(TypeError, match="model must be a VAEModel or a path"):
        LatentCV(ag, 42)
    with pytest.raises(TypeError, match="atomgroup must be an MDAnalysis AtomGroup"):
        LatentCV(ag.positions, model)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        LatentCV(ag, model, chunk_size=0)
    with pytest.raises(ValueError, match="unwrap=True but the trajectory has no periodic box"):
        LatentCV(ag, model, unwrap=True)
    with pytest.raises(ValueError, match="backend"):
        LatentCV(ag, model).run(backend="threads", n_workers=2)


def test_unwrap_makes_fragments_whole(mda):
    """A 6-atom chain split by the box edge is encoded as the whole chain."""
    from polyvae.mda import LatentCV

    u = mda.Universe.empty(6, trajectory=True)
    u.add_TopologyAttr("masses", np.full(6, 12.0))
    u.add_TopologyAttr("bonds", [(i, i + 1) for i in range(5)])
    whole = np.array([[7.0 + 1.5 * i, 5.0 + 0.3 * i**1.5, 5.0 - 0.2 * i] for i in range(6)])
    u.dimensions = [10.0, 10.0, 10.0, 90.0, 90.0, 90.0]
    u.atoms.positions = whole % 10.0
    rng = np.random.default_rng(3)
    for sel in (u.atoms, u.atoms[[0, 2, 3, 5]]):  # a subset unwraps via its whole fragment
        n = sel.n_atoms
        pipe = polyvae.Pipeline().fit(rng.normal(size=(16, n, 3)) + whole[sel.ix])
        config = vae.VAEConfig(n_features=3 * n, hidden=(8,))
        m = polyvae.VAEModel(config, vae.init_params(config, key=jax.random.PRNGKey(1)), pipe)
        cv = LatentCV(sel, m)
        assert cv.unwrap is True
        cv.run()
        expect = m.encode(whole[sel.ix][None].astype(np.float32))[0]
        np.testing.assert_allclose(cv.results.latent, expect, atol=1e-5)
        wrapped = LatentCV(sel, m, unwrap=False).run().results.latent
        assert not np.allclose(wrapped, expect, atol=1e-3)
    np.testing.assert_allclose(u.atoms.positions, whole % 10.0, atol=1e-5)  # not in place


def test_box_without_bonds_is_an_error_not_garbage(mda):
    """A periodic box and no bonds: split molecules cannot be made whole, so refuse."""
    from polyvae.mda import LatentCV

    u = mda.Universe.empty(6, trajectory=True)
    u.add_TopologyAttr("masses", np.full(6, 12.0))
    u.dimensions = [10.0, 10.0, 10.0, 90.0, 90.0, 90.0]
    u.atoms.positions = np.random.default_rng(0).uniform(0, 10, (6, 3))
    pipe = polyvae.Pipeline().fit(np.random.default_rng(1).normal(size=(16, 6, 3)))
    config = vae.VAEConfig(n_features=18, hidden=(8,))
    m = polyvae.VAEModel(config, vae.init_params(config, key=jax.random.PRNGKey(1)), pipe)
    with pytest.raises(ValueError, match="periodic box but the topology has no bonds"):
        LatentCV(u.atoms, m)
    assert LatentCV(u.atoms, m, unwrap=False).run().results.latent.shape == (1, 2)


# ---- transformations ----------------------------------------------------------------


def _transformed(mda, make):
    u, ag = adk_universe(mda)
    u.trajectory.add_transformations(make(ag))
    group = np.stack([ag.positions.copy() for _ in u.trajectory])
    return u, ag, group


def test_transformations_equal_kernels(mda, adk):
    from polyvae.mda import CenterOfMass, PrincipalAxesAlign, ReferenceAlign

    _, ag, positions = adk
    masses = ag.masses
    cases = [
        (CenterOfMass, transforms.center(positions, masses)),
        (PrincipalAxesAlign, transforms.align_principal(positions, masses)),
        (
            lambda g: ReferenceAlign(g, positions[5]),
            transforms.align_to_reference(positions, positions[5], masses),
        ),
    ]
    for make, expect in cases:
        u, _, got = _transformed(mda, make)
        np.testing.assert_allclose(got, expect, rtol=0, atol=2e-4)
        # every atom moves rigidly with the group: distances to the first CA are kept
        u.trajectory[3]
        moved = u.atoms.positions - u.atoms.positions[ag.ix[0]]
        orig, _ = adk_universe(mda)
        orig.trajectory[3]
        still = orig.atoms.positions - orig.atoms.positions[ag.ix[0]]
        np.testing.assert_allclose(
            np.linalg.norm(moved, axis=1), np.linalg.norm(still, axis=1), atol=2e-4
        )


def test_transformation_errors(mda, adk):
    from polyvae.mda import ReferenceAlign

    _, ag, positions = adk
    with pytest.raises(ValueError, match=r"reference must have shape \(214, 3\); got \(10, 3\)"):
        ReferenceAlign(ag, positions[0, :10])
    with pytest.raises(ValueError, match="masses must have shape"):
        ReferenceAlign(ag, positions[0], masses=np.ones(3))


def test_latent_cv_is_alignment_invariant(mda, model, serial):
    from polyvae.mda import LatentCV, PrincipalAxesAlign

    _, ag, _ = _transformed(mda, PrincipalAxesAlign)
    cv = LatentCV(ag, model).run()
    np.testing.assert_allclose(cv.results.latent, serial.results.latent, rtol=0, atol=1e-4)
    # transformations travel to the workers with the universe
    par = LatentCV(ag, model).run(backend="multiprocessing", n_workers=2)
    np.testing.assert_allclose(par.results.latent, cv.results.latent, rtol=0, atol=1e-6)


def test_atom_names_are_checked_against_the_model(mda, adk, model):
    import dataclasses

    from polyvae.io import atom_info
    from polyvae.mda import LatentCV

    u, ag, _ = adk
    named = dataclasses.replace(model, metadata={"atoms": atom_info(ag, "name CA")})
    assert LatentCV(ag, named).latent_dim == model.latent_dim  # the right atoms pass
    shifted = u.atoms[ag.indices + 1]  # as many atoms, the wrong ones
    with pytest.raises(
        ValueError,
        match=r"atom 0 of atomgroup is named 'HA' but the model was trained on 'CA' there "
        r"\(model atom index 4\)",
    ):
        LatentCV(shifted, named)
    reordered = ag[[1, 0, *range(2, ag.n_atoms)]]  # CA everywhere: the residues tell
    with pytest.raises(
        ValueError,
        match=r"atom 0 of atomgroup is in residue 'ARG' but the model was trained "
        r"on 'MET' there .*not in its order",
    ):
        LatentCV(reordered, named)
    # two MET Cα swapped: the same names and residue names; the residue numbers tell
    met = np.flatnonzero(ag.resnames == "MET")[:2]
    order = np.arange(ag.n_atoms)
    order[met] = order[met[::-1]]
    with pytest.raises(
        ValueError,
        match=rf"atom {met[0]} of atomgroup is in residue number '{ag.resids[met[1]]}' but the "
        rf"model was trained on '{ag.resids[met[0]]}' there",
    ):
        LatentCV(ag[order], named)
    LatentCV(shifted, model)  # a model without stored atoms checks only the count


def test_without_names_the_atoms_are_checked_by_reconstruction(adk, model, caplog):
    """A model trained on bare positions has no names to compare: LatentCV compares how
    well the model reconstructs a sample of the trajectory with the training frames."""
    from polyvae.mda import LatentCV

    u, ag, _ = adk
    caplog.set_level("WARNING", logger="polyvae")
    u.trajectory[5]
    LatentCV(ag, model)
    assert "reconstruct" not in caplog.text
    assert u.trajectory.frame == 5  # the sample leaves the trajectory where it was
    cv = LatentCV(ag[::-1], model)  # the chain backwards: same names, same count
    assert "frames reconstruct" in caplog.text and "model's atoms in its order" in caplog.text
    assert cv.run(stop=3).results.latent.shape == (3, model.latent_dim)
