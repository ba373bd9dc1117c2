"""The internal-coordinate decoder: features, likelihood, refinement, training, files."""

import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_chain

import polyvae
from polyvae import geometry
from polyvae.features.layout import STIFF_TORSION, InternalLayout
from polyvae.io import read_frames
from polyvae.job import DEFAULT_DATA
from polyvae.nn.model import VAEConfig


def _floppy_chain(rng, n_frames=400, n_atoms=8, dim=3):
    """Chains with soft bonds (1 +- 0.05) and bond angles near 110 degrees."""
    x = np.zeros((n_frames, n_atoms, dim))
    for t in range(n_frames):
        pos = [np.zeros(dim)]
        direction = np.eye(dim)[0]
        for _ in range(n_atoms - 1):
            turn = rng.normal(size=dim)
            turn -= turn @ direction * direction
            turn /= np.linalg.norm(turn)
            angle = np.radians(70 + 10 * rng.standard_normal())
            direction = np.cos(angle) * direction + np.sin(angle) * turn
            pos.append(pos[-1] + (1.0 + 0.05 * rng.standard_normal()) * direction)
        x[t] = pos
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def polymer():
    return read_frames(DEFAULT_DATA)[:1200]


@pytest.fixture(scope="module")
def internal_model(polymer):
    return polyvae.train(polymer, decoder="internal", epochs=15, hidden=(64, 64), progress=False)


def test_layout_features_rebuild_the_frames(rng):
    x = _floppy_chain(rng, n_frames=20)
    layout = InternalLayout.fit(x)
    assert layout.n_features == 8 * 3 + 7 + 6 + 5
    rebuilt = np.asarray(layout.rebuild(layout.features(x)), np.float64)
    pairs = geometry.all_pairs(8)
    err = np.abs(geometry.pair_distances(rebuilt, pairs) - geometry.pair_distances(x, pairs))
    assert err.max() < 1e-4


def test_wrapped_normal_is_periodic_and_normalized():
    layout = InternalLayout.fit(
        random_chain(np.random.default_rng(0), 50, 5)
    )  # 2D: angles circular
    nc = layout.n_cartesian
    mean = jnp.zeros(layout.n_features)
    log_sigma = jnp.full(layout.n_features, np.log(0.7))
    x = jnp.zeros(layout.n_features).at[nc + 5].set(0.4)
    turned = x.at[nc + 5].add(2 * np.pi)
    assert np.isclose(
        layout.kinds.log_likelihood(x, mean, log_sigma),
        layout.kinds.log_likelihood(turned, mean, log_sigma),
    )
    # the density of one circular feature integrates to 1 over the circle
    grid = jnp.linspace(-np.pi, np.pi, 4001)
    rows = jnp.zeros((grid.size, layout.n_features)).at[:, nc + 5].set(grid)
    ll = layout.kinds.log_likelihood(rows, mean, log_sigma) - layout.kinds.log_likelihood(
        jnp.zeros_like(rows), mean, log_sigma
    )
    p0 = np.exp(-0.5 * 0 - np.log(0.7) - 0.5 * np.log(2 * np.pi))  # the central winding
    density = np.exp(np.asarray(ll)) * p0 * (1 + 2 * np.exp(-0.5 * (2 * np.pi / 0.7) ** 2))
    assert abs(np.trapezoid(density, np.asarray(grid)) - 1.0) < 1e-3


def test_refine_weighs_the_two_experts(rng):
    x = _floppy_chain(rng, n_frames=50)
    layout = InternalLayout.fit(x)
    feats = jnp.asarray(layout.features(x[:4]))
    anchor = jnp.asarray(x[4:8])  # other structures: the experts disagree
    sig_c = jnp.full(layout.n_cartesian, 0.1)
    sig_q = jnp.full(layout.n_internal, 0.01)
    internal_only = jax.jit(layout.refine)(anchor, feats, sig_c, sig_q)
    target = layout.measure(jnp.asarray(x[:4], jnp.float32))
    n = layout.n_atoms
    # weight 1 with tight internal scales: bonds and angles follow the internal expert
    got = layout.measure(internal_only)
    assert np.abs(np.asarray(got - target)[:, : 2 * n - 3]).max() < 0.05
    from dataclasses import replace

    stiff = replace(layout, cartesian_weight=1.0)
    cart = jax.jit(stiff.refine)(
        anchor, feats, jnp.full(layout.n_cartesian, 1e-3), jnp.full(layout.n_internal, 10.0)
    )
    assert np.abs(np.asarray(cart - anchor)).max() < 0.05  # tight Cartesian scales: the anchor


def test_refine_is_differentiable_and_jit_matches_eager(rng):
    x = _floppy_chain(rng, n_frames=30)
    layout = InternalLayout.fit(x)
    feats = jnp.asarray(layout.features(x[3:6]))  # other frames: the experts disagree
    sig_c = jnp.full(layout.n_cartesian, 0.3)
    sig_q = jnp.full(layout.n_internal, 0.1)

    def rg(f):
        pos = layout.refine(jnp.asarray(x[:3]), f, sig_c, sig_q, steps=20)
        return jnp.sum(geometry.radius_of_gyration(pos, jnp.ones(8) / 8))

    # no minimization: the better of the two starts, the same compiled or not
    eager = layout.refine(jnp.asarray(x[:3]), feats, sig_c, sig_q, steps=0)
    jitted = jax.jit(layout.refine, static_argnames="steps")(
        jnp.asarray(x[:3]), feats, sig_c, sig_q, steps=0
    )
    assert np.allclose(eager, jitted, atol=1e-4)
    grad = jax.jit(jax.grad(rg))(feats)  # compiled: one program, not one per operation
    assert np.all(np.isfinite(np.asarray(grad))) and np.abs(np.asarray(grad)).max() > 0


def test_internal_model_keeps_bonds_and_beats_cartesian(polymer, internal_model):
    cartesian = polyvae.train(
        polymer, decoder="cartesian", epochs=15, hidden=(64, 64), progress=False
    )
    train = internal_model.pipeline.align_frames(polymer).astype(np.float64)
    bonds = geometry.chain_bonds(polymer.n_atoms)
    ref = geometry.pair_distances(train, bonds)
    spread = {}
    for name, model in (("internal", internal_model), ("cartesian", cartesian)):
        gen = model.generate(1024, seed=3).astype(np.float64)
        spread[name] = geometry.pair_distances(gen, bonds).std() / ref.std()
    assert 0.8 <= spread["internal"] <= 1.25
    assert abs(spread["internal"] - 1) < abs(spread["cartesian"] - 1)
    gen = internal_model.generate(1024, seed=3)
    cart_gen = cartesian.generate(1024, seed=3)
    assert (
        internal_model.check_structures(gen).fraction_valid
        > cartesian.check_structures(cart_gen).fraction_valid
    )


def test_generate_lets_each_structure_go_once_the_checks_pass(polymer, internal_model):
    """The refinement's question to the model: structures that pass its checks are done,
    one with a stretched bond is not; and generated structures come out valid."""
    from polyvae.features import layout as layout_module

    done = internal_model._refined_enough()
    train = internal_model.pipeline.align_frames(polymer[:64])
    assert done(train).all()
    broken = train.copy()
    broken[:, -1] += 3.0 * (broken[:, -1] - broken[:, -2])  # the last bond four times as long
    assert not done(broken).any()
    asked = []
    real = layout_module.InternalLayout.refine_jit

    def spying(self, steps=None):
        refine = real(self, steps)

        def asking(*args):  # the pipeline passes done last, by position
            *head, done = args
            return refine(*head, lambda x: asked.append(len(x)) or done(x))

        return asking

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(layout_module.InternalLayout, "refine_jit", spying)
        gen = internal_model.generate(64, seed=1)
    assert asked and asked[0] == 64
    assert internal_model.check_structures(gen).fraction_valid >= 0.95


def test_internal_model_file_round_trip(internal_model, tmp_path):
    assert internal_model.config.decoder == "internal"
    scan = internal_model.metadata["cartesian_weight_scan"]
    assert set(scan) == {"0.0", "0.1", "0.3", "1.0"}
    assert internal_model.pipeline.layout.cartesian_weight == float(min(scan, key=scan.get))
    path = internal_model.save(tmp_path / "m.polyvae")
    loaded = polyvae.load_model(path)
    assert loaded.config.decoder == "internal"
    assert (
        loaded.pipeline.layout.cartesian_weight == internal_model.pipeline.layout.cartesian_weight
    )
    assert np.allclose(loaded.generate(16, seed=2), internal_model.generate(16, seed=2), atol=1e-5)
    z = np.zeros((1, 2), np.float32)
    structure = loaded.structure_fn()
    eager, jitted = np.asarray(structure(jnp.asarray(z))), np.asarray(jax.jit(structure)(z))
    assert eager.shape == (1, 12, 2) and np.allclose(eager, jitted, atol=1e-5)
    grad = jax.grad(lambda z: jnp.sum(structure(z) ** 2))(jnp.asarray(z))
    assert np.all(np.isfinite(np.asarray(grad))) and np.abs(np.asarray(grad)).max() > 0


def test_model_files_without_a_decoder_entry_load(tmp_path):
    x = random_chain(np.random.default_rng(5), 128, 6)
    model = polyvae.train(x, decoder="cartesian", hidden=(16,), epochs=2, progress=False)
    good = model.save(tmp_path / "new.polyvae")
    with zipfile.ZipFile(good) as zf:
        cfg = json.loads(zf.read("config.json"))
        params = zf.read("params.npz")
    del cfg["model"]["decoder"]
    del cfg["pipeline"]["decoder"]
    old = tmp_path / "old.polyvae"
    with zipfile.ZipFile(old, "w") as zf:
        zf.writestr("config.json", json.dumps(cfg))
        zf.writestr("params.npz", params)
    loaded = polyvae.load_model(old)
    assert loaded.config.decoder == "cartesian"
    assert np.allclose(loaded.generate(8, seed=1), model.generate(8, seed=1))


def test_decoder_errors():
    with pytest.raises(ValueError, match="decoder must be one of"):
        VAEConfig(n_features=4, decoder="zmatrix")
    with pytest.raises(ValueError, match='decoder="internal" needs a fitted layout'):
        VAEConfig(n_features=4, decoder="internal")
    with pytest.raises(ValueError, match='decoder="internal" needs the gaussian likelihood'):
        VAEConfig(n_features=4, decoder="internal", likelihood="categorical")
    with pytest.raises(ValueError, match='layout applies to decoder="internal" only'):
        VAEConfig(n_features=4, layout=object())
    with pytest.raises(ValueError, match="decoder must be one of"):
        polyvae.train(random_chain(np.random.default_rng(0), 64, 6), decoder="polar", epochs=1)
    x = random_chain(np.random.default_rng(0), 64, 6)
    with pytest.raises(ValueError, match="do not join all 6 atoms"):
        polyvae.train(x, decoder="internal", bonds=[[0, 1], [1, 2], [3, 4], [4, 5]], epochs=1)
    from polyvae.features.pipeline import Pipeline

    pipe = Pipeline(decoder="internal")
    pipe.fit_transform(x)
    with pytest.raises(ValueError, match="sigma .* is required"):
        pipe.inverse_transform(np.zeros((1, pipe.n_features), np.float32))


def test_peptide_keeps_its_chirality_methyls_and_constrained_bonds(peptide_md):
    """Alanine dipeptide with hydrogens (OpenMM, bonds to H constrained): generated
    structures keep the Cα handedness, every H-C-H angle of the three methyl groups in
    MD's range (± 10°), heavy-atom bonds spread as in MD and constrained bonds at their
    length, and nearly all pass the model's checks. Default settings: a model trained
    for a few epochs has not yet narrowed its decoder's spread of the angles."""
    model = polyvae.train(peptide_md, seed=0, progress=False)
    layout = model.pipeline.layout
    n_bonds = peptide_md.n_atoms - 1
    assert layout.rigid[:n_bonds].sum() == 12  # the bonds to hydrogen
    train = model.pipeline.align_frames(peptide_md).astype(np.float64)
    gen = model.generate(512, seed=0).astype(np.float64)
    names = list(peptide_md.names)
    centres = geometry.chiral_centres(peptide_md.n_atoms, model.bonds, names)
    assert len(centres) == 1
    sign = np.sign(geometry.chirality(train, centres).sum())
    assert (geometry.chirality(gen, centres) == sign).mean() >= 0.99
    heavy = np.array([not n.startswith("H") for n in names])
    hb = model.bonds[heavy[model.bonds].all(axis=1)]
    ratio = geometry.pair_distances(gen, hb).std() / geometry.pair_distances(train, hb).std()
    assert 0.7 <= ratio <= 1.4
    to_h = model.bonds[~heavy[model.bonds].all(axis=1)]
    ref = geometry.pair_distances(train, to_h).mean(axis=0)
    assert np.abs(geometry.pair_distances(gen, to_h) / ref - 1).max() < 2e-3
    hxh = geometry.angle_triples(peptide_md.n_atoms, model.bonds)
    hxh = hxh[~heavy[hxh[:, 0]] & ~heavy[hxh[:, 2]]]
    assert len(hxh) == 9  # three methyl groups
    a_md = np.degrees(geometry.bond_angles(train, hxh))
    a_gen = np.degrees(geometry.bond_angles(gen, hxh))
    assert np.all(a_gen.min(axis=0) >= a_md.min(axis=0) - 10)
    assert np.all(a_gen.max(axis=0) <= a_md.max(axis=0) + 10)
    # peptide bonds as planar as in MD: O-C-N-H, a stiff torsion the Z-matrix does not build
    stiff = layout.extra_torsions
    o_c_n_h = stiff[[[names[k] for k in q] == ["O", "C", "N", "H"] for q in stiff]]
    assert len(o_c_n_h) == 2
    flat_md = np.percentile(np.pi - np.abs(geometry.dihedrals(train, o_c_n_h)), 99)
    flat_gen = np.percentile(np.pi - np.abs(geometry.dihedrals(gen, o_c_n_h)), 99)
    assert flat_gen <= flat_md + np.radians(5)
    report = model.check_structures(gen.astype(np.float32))
    assert report.to_dict()["fraction_chirality_ok"] >= 0.99
    assert report.to_dict()["fraction_angles_ok"] >= 0.95
    assert report.fraction_valid >= 0.9


def test_stiff_torsions_are_the_planar_ones_the_zmatrix_does_not_build(peptide_md):
    """Alanine dipeptide: the redundant torsions are those of the two peptide bonds
    (about 180° or 0°, a few degrees wide), never phi, psi or a methyl rotor."""
    x = peptide_md.positions[::4].astype(np.float64)
    layout = InternalLayout.fit(x, peptide_md.bonds)
    names = list(peptide_md.names)
    stiff = layout.extra_torsions
    assert 1 <= len(stiff) <= 8
    labels = {tuple(names[k] for k in q) for q in stiff}
    assert ("O", "C", "N", "H") in labels or ("H", "N", "C", "O") in labels
    assert all(q[1:3] in (("C", "N"), ("N", "C")) for q in labels)  # peptide bonds only
    d = geometry.dihedrals(x, stiff)
    spread = np.sqrt(-2 * np.log(np.abs(np.exp(1j * d).mean(axis=0))))
    assert spread.max() < STIFF_TORSION
    flat = np.minimum(np.abs(d), np.pi - np.abs(d))  # from 0 or 180 degrees
    assert np.median(flat) < np.radians(15)
    n_internal = 3 * x.shape[1] - 6 + len(layout.extra_angles) + len(stiff)
    assert layout.n_internal == n_internal and layout.circular[-len(stiff) :].all()
    # and they survive the model file
    back = InternalLayout.from_arrays(layout.to_arrays(), 3)
    assert back.extra_torsions.tolist() == stiff.tolist()
    # MD frames keep them within STIFF_TORSION of their mean; a twisted N-H does not
    assert layout.stiff_in_range(x).mean() > 0.8  # all of them, in most frames
    quad = next(
        q if names[q[3]] == "H" else q[::-1] for q in stiff if "H" in (names[q[0]], names[q[3]])
    )
    _, c, n, h = quad
    axis = (x[:, n] - x[:, c]) / np.linalg.norm(x[:, n] - x[:, c], axis=1, keepdims=True)
    v = x[:, h] - x[:, n]  # the N-H bond turned 90 degrees about C-N (Rodrigues)
    turned = np.cross(axis, v) + axis * np.sum(axis * v, axis=1, keepdims=True)
    twisted = x.copy()
    twisted[:, h] = x[:, n] + turned
    assert not layout.stiff_in_range(twisted).any()


def test_ring_closing_bonds_are_redundant_lengths_of_the_layout():
    """A molecule with three rings (mol2 of MDAnalysisTests): the lengths of the bonds
    that close them are features of their own, measured as the other bonds are."""
    mda = pytest.importorskip("MDAnalysis")
    from MDAnalysisTests.datafiles import mol2_molecule

    u = mda.Universe(mol2_molecule)
    bonds = np.asarray(u.atoms.bonds.to_indices(), np.int64)
    rng = np.random.default_rng(0)
    x = u.atoms.positions[None].astype(np.float64) + rng.normal(0, 0.02, (40, u.atoms.n_atoms, 3))
    layout = InternalLayout.fit(x, bonds)
    rings = layout.zmatrix.ring_bonds
    assert len(rings) == 3 and layout.extra_bonds.tolist() == rings.tolist()
    values = layout.measure(x)
    np.testing.assert_allclose(values[:, -3:], geometry.pair_distances(x, rings), atol=1e-9)
    assert not layout.circular[-3:].any()
    back = InternalLayout.from_arrays(layout.to_arrays(), 3)
    assert back.extra_bonds.tolist() == rings.tolist() and back.n_internal == layout.n_internal


def test_default_decoder_is_internal_where_a_zmatrix_fits(caplog):
    x = random_chain(np.random.default_rng(0), 64, 6)
    assert polyvae.train(x, epochs=1, hidden=(8,), progress=False).config.decoder == "internal"
    three = random_chain(np.random.default_rng(0), 64, 3, dim=3)  # 3 atoms in 3D: no dihedral
    with caplog.at_level("INFO", logger="polyvae"):
        model = polyvae.train(three, epochs=1, hidden=(8,), progress=False)
    assert model.config.decoder == "cartesian" and "too few for internal" in caplog.text
    with pytest.raises(ValueError, match='decoder="internal" needs at least 4 atoms in 3D; got 3'):
        polyvae.train(three, decoder="internal", epochs=1, progress=False)


def test_models_of_one_molecule_share_compiled_code(polymer):
    from polyvae.features.layout import _jitted_round, _jitted_start
    from polyvae.nn.steps import make_steps

    a = InternalLayout.fit(polymer.positions[:300])
    b = InternalLayout.fit(polymer.positions[300:600])
    assert not np.allclose(a.center, b.center)  # fitted values differ ...
    config_a = VAEConfig(n_features=a.n_features, decoder="internal", layout=a)
    config_b = VAEConfig(n_features=b.n_features, decoder="internal", layout=b)
    assert config_a == config_b and hash(config_a) == hash(config_b)  # ... the kinds do not
    assert make_steps(config_a, 1e-3)[1] is make_steps(config_b, 1e-3)[1]
    _jitted_start.cache_clear()  # other tests of the module may have compiled this molecule
    _jitted_round.cache_clear()
    misses = _jitted_start.cache_info().misses, _jitted_round.cache_info().misses
    n = a.n_atoms * a.dim
    args = (np.zeros((3, a.n_internal), np.float32), np.ones(n), np.ones(a.n_internal))
    x_a = a.refine_jit(steps=5)(polymer.positions[:3], *args)
    x_b = b.refine_jit(steps=5)(polymer.positions[:3], *args)
    after = _jitted_start.cache_info().misses, _jitted_round.cache_info().misses
    assert after == (misses[0] + 1, misses[1] + 1)  # one start, one round length (5 steps)
    # the shared code still uses each layout's own values: here, its bond lengths
    bonds = geometry.chain_bonds(a.n_atoms)
    d_a, d_b = geometry.pair_distances(x_a, bonds), geometry.pair_distances(x_b, bonds)
    assert not np.allclose(d_a, d_b)
    np.testing.assert_allclose(x_a, a.refine(polymer.positions[:3], *args, steps=5), atol=1e-5)


def test_refine_jit_stops_the_structures_done_accepts(rng):
    """Structures that ``done`` accepts after the first round keep that round's result;
    the others go on as if nobody had asked."""
    from polyvae.features.layout import REFINE_ROUND

    x = _floppy_chain(rng, n_frames=40)
    layout = InternalLayout.fit(x)
    args = (
        x[6:12],  # other structures: the experts disagree
        layout.features(x[:6]),
        np.full(layout.n_cartesian, 0.3, np.float32),
        np.full(layout.n_internal, 0.1, np.float32),
    )
    every = layout.refine_jit(steps=4 * REFINE_ROUND)(*args)
    first = layout.refine_jit(steps=REFINE_ROUND)(*args)
    asked = []

    def done(s):
        asked.append(len(s))
        return np.arange(len(s)) % 2 == 0 if len(asked) == 1 else np.zeros(len(s), bool)

    got = layout.refine_jit(steps=4 * REFINE_ROUND)(*args, done=done)
    assert asked == [8, 4, 4]  # 6 structures padded to 8; then the odd ones (and a pad)
    np.testing.assert_allclose(got[0::2], first[0::2], atol=1e-5)
    np.testing.assert_allclose(got[1::2], every[1::2], atol=1e-5)
    assert not np.allclose(first[1::2], every[1::2], atol=1e-3)  # they did move on
    everything = layout.refine_jit(steps=4 * REFINE_ROUND)(
        *args, done=lambda s: np.ones(len(s), bool)
    )
    np.testing.assert_allclose(everything, first, atol=1e-5)


@pytest.mark.parametrize("spread", [3.0, 0.4])  # an open chain; a collapsed one (> K pairs)
def test_contact_pairs_of_all_pairs_equal_the_neighbour_lists(rng, spread):
    x = _floppy_chain(rng, n_frames=20, n_atoms=30)
    layout = InternalLayout.fit(x)
    y = (x[:6] - x[:6].mean(axis=1, keepdims=True)) * spread
    reach = layout._reach(np)
    dense = layout._near_pair_kinds(y, reach)
    layout.__dict__["_candidate_pairs"] = None  # the per-structure k-d trees instead
    tree = layout._near_pair_kinds(y, reach)
    k = layout.n_contacts
    for t in range(len(y)):
        got = {(tuple(p), int(c)) for p, c in zip(dense[0][t], dense[1][t], strict=True) if c < 2}
        want = {(tuple(p), int(c)) for p, c in zip(tree[0][t], tree[1][t], strict=True) if c < 2}
        assert got == want and len(got) <= k
    if spread < 1:
        assert (tree[1] < 2).sum(axis=1).min() == k  # more within reach than K: the closest K


def _mirrored_alanine(x, names, bonds):
    """Frame ``x`` with the Cα's HA and CB (and CB's hydrogens) exchanged: the Cα
    mirrored, the rest of the molecule where it was."""
    ca = names.index("CA")
    nb = bonds[(bonds == ca).any(axis=1)].ravel()
    ha = next(int(j) for j in nb if names[j] == "HA")
    cb = next(int(j) for j in nb if names[j] == "CB")
    methyl = [int(j) for j in bonds[(bonds == cb).any(axis=1)].ravel() if names[j].startswith("HB")]
    y = x.copy()
    shift = x[ha] - x[cb]
    y[cb], y[ha] = x[ha], x[cb]
    y[methyl] = x[methyl] + shift
    return y


def test_refine_brings_a_mirrored_start_back_to_the_internal_handedness(peptide_md):
    """A start (the decoder's Cartesian mean) whose Cα is mirrored ends with the
    handedness the internal coordinates give, and with bonds at their lengths."""
    x = np.asarray(peptide_md.positions[:200], np.float64)
    names = list(peptide_md.names)
    layout = InternalLayout.fit(x, peptide_md.bonds)
    centre = geometry.chiral_centres(len(names), layout.bonds, names)
    assert len(centre) == 1
    sign = np.sign(geometry.chirality(x[:4], centre))
    mirrored = np.stack([_mirrored_alanine(f, names, layout.bonds) for f in x[:4]])
    assert (np.sign(geometry.chirality(mirrored, centre)) == -sign).all()
    feats = jnp.asarray(layout.features(x[:4]))
    sig_c = jnp.full(layout.n_cartesian, 1.0)  # a loose Cartesian expert
    sig_q = jnp.full(layout.n_internal, 0.3)
    got = jax.jit(layout.refine)(jnp.asarray(x[:4]), feats, sig_c, sig_q, start=mirrored)
    got = np.asarray(got)
    assert (np.sign(geometry.chirality(got.astype(np.float64), centre)) == sign).all()
    lengths = geometry.pair_distances(got.astype(np.float64), layout.bonds)
    ref = geometry.pair_distances(x[:4], layout.bonds)
    assert np.abs(lengths - ref).max() < 0.1


def test_a_contact_class_without_pairs_survives_the_model_file(tmp_path):
    # four atoms in a chain: no pair lies more than three bonds apart
    x = random_chain(np.random.default_rng(5), 64, 4, dim=3)
    layout = InternalLayout.fit(x)
    assert np.isinf(layout.contact_min[1])
    assert np.isfinite(layout.to_arrays()["contact_classes"]).all()
    back = InternalLayout.from_arrays(layout.to_arrays(), 3)
    np.testing.assert_array_equal(back.contact_min, layout.contact_min)
    model = polyvae.train(x, epochs=1, hidden=(8,), progress=False, output=tmp_path / "m.polyvae")
    assert np.isinf(polyvae.load_model(tmp_path / "m.polyvae").pipeline.layout.contact_min[1])
    assert model.pipeline.layout is not None


def test_refine_leaves_a_centre_that_both_cartesian_structures_mirror_to_the_internal_expert(
    peptide_md,
):
    """Anchor and start both mirror the Cα, and the Cartesian expert is tight: the
    refined structure still has the internal handedness, and the bond angles at the Cα
    stay within MD's range (the neighbourhood is taken from the internal expert, not
    pushed through the plane and bent)."""
    x = np.asarray(peptide_md.positions[:200], np.float64)
    names = list(peptide_md.names)
    layout = InternalLayout.fit(x, peptide_md.bonds)
    centre = geometry.chiral_centres(len(names), layout.bonds, names)
    sign = np.sign(geometry.chirality(x[:4], centre))
    mirrored = np.stack([_mirrored_alanine(f, names, layout.bonds) for f in x[:4]])
    feats = jnp.asarray(layout.features(x[:4]))
    sig_c = jnp.full(layout.n_cartesian, 0.05)  # a tight Cartesian expert, mirrored
    sig_q = jnp.full(layout.n_internal, 0.3)
    got = jax.jit(layout.refine)(
        jnp.asarray(mirrored), feats, sig_c, sig_q, start=jnp.asarray(mirrored)
    )
    got = np.asarray(got, np.float64)
    assert (np.sign(geometry.chirality(got, centre)) == sign).all()
    ca = int(centre[0, 0])
    at_ca = np.asarray([t for t in geometry.angle_triples(len(names), layout.bonds) if t[1] == ca])
    md_angles = np.degrees(geometry.bond_angles(x, at_ca))
    angles = np.degrees(geometry.bond_angles(got, at_ca))
    assert (angles > md_angles.min(0) - 5).all() and (angles < md_angles.max(0) + 5).all()
