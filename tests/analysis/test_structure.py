import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.spatial.transform import Rotation

from polyvae.analysis import (
    StructureReport,
    all_pairs,
    bond_lengths,
    chain_bonds,
    compare_structures,
    min_nonbonded_distance,
    nonbonded_pairs,
    pairwise_distances,
    radius_of_gyration,
)
from polyvae.frames import Frames


def random_walk(rng, t, n, d=3, bond=1.0):
    steps = rng.normal(size=(t, n - 1, d))
    steps *= bond / np.linalg.norm(steps, axis=-1, keepdims=True)
    return np.concatenate([np.zeros((t, 1, d)), np.cumsum(steps, axis=1)], axis=1)


# --- pairs and distances -------------------------------------------------------------


def test_all_pairs_count_and_order():
    p = all_pairs(12)
    assert p.shape == (66, 2)
    assert np.issubdtype(p.dtype, np.integer)
    assert np.all(p[:, 0] < p[:, 1])
    assert p[:3].tolist() == [[0, 1], [0, 2], [0, 3]]
    assert p[11].tolist() == [1, 2]


def test_chain_bonds():
    assert chain_bonds(4).tolist() == [[0, 1], [1, 2], [2, 3]]
    assert chain_bonds(12).shape == (11, 2)


@pytest.mark.parametrize("d", [2, 3])
def test_pairwise_distances_match_pdist(d):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 12, d))
    dist = pairwise_distances(x)
    assert dist.shape == (7, 66)
    assert dist.dtype == np.float64
    for t in range(7):
        np.testing.assert_allclose(dist[t], pdist(x[t]), rtol=1e-12)
    # single frame drops the frame axis
    np.testing.assert_allclose(pairwise_distances(x[3]), pdist(x[3]), rtol=1e-12)


def test_pairwise_distances_custom_pairs_and_frames():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6, 3)).astype(np.float32)
    pairs = [(5, 0), (2, 3)]
    d = pairwise_distances(Frames(x), pairs)
    want = np.linalg.norm(x[:, [5, 2]].astype(np.float64) - x[:, [0, 3]], axis=-1)
    np.testing.assert_allclose(d, want, rtol=1e-12)


def test_bond_lengths_default_chain():
    rng = np.random.default_rng(2)
    x = random_walk(rng, 4, 8, bond=1.5)
    b = bond_lengths(x)
    assert b.shape == (4, 7)
    np.testing.assert_allclose(b, 1.5)


@pytest.mark.parametrize(
    "pairs, exc, match",
    [
        (np.array([0, 1]), ValueError, r"pairs must have shape \(P, 2\); got shape \(2,\)"),
        (
            np.array([[0.0, 1.0]]),
            TypeError,
            "pairs must hold integer atom indices; got dtype float64",
        ),
        (
            np.array([[0, 4]]),
            ValueError,
            r"pairs must index atoms 0 \.\. 3; got indices from 0 to 4",
        ),
        (np.array([[-1, 2]]), ValueError, r"pairs must index atoms 0 \.\. 3"),
        (np.array([[0, 1], [2, 2]]), ValueError, r"i != j\); row 1 is \[2, 2\]"),
    ],
)
def test_pairs_validation(pairs, exc, match):
    x = np.zeros((2, 4, 3))
    with pytest.raises(exc, match=match):
        pairwise_distances(x, pairs)


@pytest.mark.parametrize(
    "positions, exc, match",
    [
        (np.zeros((2, 4, 4)), ValueError, "D = 2 or 3 spatial dimensions.*got D=4"),
        (np.zeros(5), ValueError, r"shape \(T, N, D\) or \(N, D\) .*got shape \(5,\)"),
        (np.array([["a", "b"]]), TypeError, "numeric array"),
        (np.zeros((2, 1, 3)), ValueError, "at least 2 atoms per frame; got N=1"),
        (np.full((2, 3, 3), np.nan), ValueError, "NaN or inf.*first bad frame is 0"),
    ],
)
def test_positions_validation(positions, exc, match):
    with pytest.raises(exc, match=match):
        pairwise_distances(positions)


def test_bonds_validation_names_bonds():
    with pytest.raises(ValueError, match="bonds must index atoms 0 .. 2"):
        bond_lengths(np.zeros((1, 3, 2)), [(0, 3)])


# --- non-bonded contacts ---------------------------------------------------------------


def test_nonbonded_pairs_exclude_bonds_either_order():
    nb = nonbonded_pairs(4)
    assert nb.tolist() == [[0, 2], [0, 3], [1, 3]]
    nb = nonbonded_pairs(4, bonds=[(1, 0), (3, 2)])
    assert nb.tolist() == [[0, 2], [0, 3], [1, 2], [1, 3]]


def test_min_nonbonded_distance_handmade():
    # a U-shaped 2D chain: bonds 0-1, 1-2, 2-3 long; atoms 0 and 3 are close (0.3),
    # while the bonded pair 1-2 is even closer (0.2) and must be ignored
    frame = np.array([[0.0, 0.0], [0.0, 2.0], [0.2, 2.0], [0.3, 0.0]])
    assert min_nonbonded_distance(frame) == pytest.approx(0.3)
    # with bond 0-3 added, the closest non-bonded pair is 0-2 or 1-3
    want = min(np.hypot(0.2, 2.0), np.hypot(0.3, 2.0))
    bonds = [(0, 1), (1, 2), (2, 3), (0, 3)]
    assert min_nonbonded_distance(frame, bonds) == pytest.approx(want)
    both = min_nonbonded_distance(np.stack([frame, 2 * frame]))
    np.testing.assert_allclose(both, [0.3, 0.6])


def test_min_nonbonded_distance_needs_nonbonded_pairs():
    with pytest.raises(ValueError, match="no non-bonded pairs among the N=2 atoms"):
        min_nonbonded_distance(np.zeros((1, 2, 3)) + [[0, 0, 0], [1, 0, 0]])


# --- radius of gyration ----------------------------------------------------------------


def test_rg_hand_computation_unequal_masses():
    x = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    m = np.array([1.0, 2.0, 3.0])
    com = np.array([8.0, 9.0]) / 6.0
    want = np.sqrt(np.sum(m * np.sum((x - com) ** 2, axis=1)) / 6.0)
    got = radius_of_gyration(x, m)
    assert np.ndim(got) == 0
    assert got == pytest.approx(want, rel=1e-12)
    # equal masses differ from the weighted value
    assert radius_of_gyration(x) != pytest.approx(want)
    assert radius_of_gyration(x[None], m).shape == (1,)


@pytest.mark.parametrize("d", [2, 3])
def test_rg_rigid_motion_invariance(d):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 10, d))
    m = rng.uniform(0.5, 3.0, size=10)
    if d == 3:
        rot = Rotation.random(random_state=4).as_matrix()
    else:
        a = 0.7
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = x @ rot.T + rng.normal(size=d) * 10
    np.testing.assert_allclose(radius_of_gyration(moved, m), radius_of_gyration(x, m), rtol=1e-10)


def test_rg_numpy_and_jax_agree():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 8, 3)).astype(np.float32)
    m = rng.uniform(1.0, 2.0, size=8).astype(np.float32)
    r_np = radius_of_gyration(x, m)
    r_jax = radius_of_gyration(jnp.asarray(x), jnp.asarray(m))
    assert isinstance(r_np, np.ndarray) and r_np.dtype == np.float64
    assert isinstance(r_jax, jax.Array)
    np.testing.assert_allclose(np.asarray(r_jax), r_np, rtol=1e-5)
    # numpy masses with jax positions
    np.testing.assert_allclose(np.asarray(radius_of_gyration(jnp.asarray(x), m)), r_np, rtol=1e-5)


def test_rg_jit_and_grad():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(8, 3)), dtype=jnp.float32)
    m = jnp.asarray(rng.uniform(1.0, 2.0, size=8), dtype=jnp.float32)
    jitted = jax.jit(radius_of_gyration)
    np.testing.assert_allclose(float(jitted(x, m)), float(radius_of_gyration(x, m)), rtol=1e-6)
    g = jax.grad(radius_of_gyration)(x, m)
    assert g.shape == (8, 3)
    assert bool(jnp.all(jnp.isfinite(g)))
    # translation invariance: the mass-weighted gradient sums to zero
    np.testing.assert_allclose(np.asarray(g.sum(axis=0)), 0.0, atol=1e-5)
    # analytic gradient: m_i (r_i - com) / (M Rg)
    w = m / m.sum()
    com = (w[:, None] * x).sum(0)
    want = w[:, None] * (x - com) / radius_of_gyration(x, m)
    np.testing.assert_allclose(np.asarray(g), np.asarray(want), rtol=1e-4, atol=1e-6)
    # jit of grad over a batch, and finite (zero) gradient when all atoms coincide
    gb = jax.jit(jax.grad(lambda p: radius_of_gyration(p).sum()))(jnp.stack([x, x * 0]))
    assert bool(jnp.all(jnp.isfinite(gb)))
    np.testing.assert_allclose(np.asarray(gb[1]), 0.0)


def test_rg_validation():
    with pytest.raises(ValueError, match=r"masses must have shape \(3,\); got \(2,\)"):
        radius_of_gyration(np.zeros((3, 2)), [1.0, 2.0])
    with pytest.raises(ValueError, match="masses must be positive; got min=-2"):
        radius_of_gyration(np.zeros((3, 2)), [1.0, -2.0, 1.0])
    with pytest.raises(ValueError, match="D = 2 or 3"):
        radius_of_gyration(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"positions must have shape .*got \(3, 4\)"):
        radius_of_gyration(jnp.zeros((3, 4)))


# --- compare_structures ----------------------------------------------------------------


def _chain_set(rng, t=1000, n=10, d=3):
    # bond lengths vary around 1.0 so that their distribution is not a single point
    x = random_walk(rng, t, n, d)
    scale = rng.uniform(0.9, 1.1, size=(t, n - 1, 1))
    steps = np.diff(x, axis=1) * scale
    return np.concatenate([np.zeros((t, 1, d)), np.cumsum(steps, axis=1)], axis=1)


def test_compare_identical_sets():
    rng = np.random.default_rng(7)
    train = _chain_set(rng)
    rep = compare_structures(train, train.copy())
    assert isinstance(rep, StructureReport)
    assert rep.bond_w1 == 0.0
    assert rep.bond_mean_train == rep.bond_mean_generated
    assert rep.bond_std_train == pytest.approx(rep.bond_std_generated)
    mn = rep.min_nonbonded_train
    assert mn.shape == (1000,) and rep.min_nonbonded_generated.shape == (1000,)
    assert rep.overlap_fraction_generated == pytest.approx(np.mean(mn < np.percentile(mn, 1)))
    assert rep.overlap_fraction_generated == pytest.approx(0.01, abs=0.002)


def test_compare_scaled_bonds_increase_w1():
    rng = np.random.default_rng(8)
    train = _chain_set(rng, t=400)
    c = 1.2
    rep = compare_structures(train, c * train)
    bonds = bond_lengths(train).ravel()
    assert rep.bond_w1 == pytest.approx((c - 1) * bonds.mean(), rel=1e-9)
    assert rep.bond_mean_generated == pytest.approx(c * rep.bond_mean_train)
    # min non-bonded distances scale too: fewer frames fall below the training threshold
    mn = rep.min_nonbonded_train
    np.testing.assert_allclose(rep.min_nonbonded_generated, c * mn)
    threshold = np.percentile(mn, 1)
    assert rep.overlap_fraction_generated == pytest.approx(np.mean(c * mn < threshold))
    assert rep.overlap_fraction_generated < np.mean(mn < threshold)
    shrunk = compare_structures(train, 0.5 * train).overlap_fraction_generated
    assert shrunk == pytest.approx(np.mean(0.5 * mn < threshold))
    assert shrunk > np.mean(mn < threshold)


def test_report_to_dict_is_json_ready():
    import json

    rng = np.random.default_rng(9)
    train = _chain_set(rng, t=200, d=2)
    rep = compare_structures(train, train[:50])
    out = rep.to_dict()
    json.dumps(out)
    assert out["min_nonbonded_generated"]["n_frames"] == 50
    assert set(out["min_nonbonded_train"]) >= {"p01", "p50", "p99"}
    assert out["overlap_threshold"] == pytest.approx(np.percentile(rep.min_nonbonded_train, 1))


def test_compare_validation():
    rng = np.random.default_rng(10)
    a = _chain_set(rng, t=10, n=6)
    b = _chain_set(rng, t=10, n=7)
    with pytest.raises(
        ValueError,
        match=r"same number of atoms; got 6 \(train_positions\) and 7 \(generated_positions\)",
    ):
        compare_structures(a, b)
    with pytest.raises(
        ValueError,
        match=r"same dimension D; got 3 \(train_positions\) and 2 \(generated_positions\)",
    ):
        compare_structures(a, a[..., :2])
    with pytest.raises(
        ValueError, match=r"train_positions must have shape \(T, N, D\) .*got shape"
    ):
        compare_structures(a[0], a)
    with pytest.raises(ValueError, match="bonds must hold at least one bond"):
        compare_structures(a, a, bonds=np.zeros((0, 2), dtype=int))
