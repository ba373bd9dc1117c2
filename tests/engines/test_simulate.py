"""Tests for tools/bead_spring.py: potential, BAOAB Langevin integrator, shipped data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bead_spring import (
    PolymerModel,
    langevin_run,
    main,
    potential_energy,
    simulate_polymer,
)

import polyvae
from polyvae.job import DEFAULT_DATA

DATA = DEFAULT_DATA
MODEL = PolymerModel()


@pytest.fixture(scope="module")
def short_run() -> polyvae.Frames:
    """A short run of the default model: 200 frames, 100 steps apart."""
    return simulate_polymer(n_frames=200, stride=100, n_equil=1000, seed=3)


def _straight_chain(model: PolymerModel) -> np.ndarray:
    """Straight chain along x with bond length r0, shape (N, D)."""
    x = np.zeros((model.n_beads, model.dim), np.float32)
    x[:, 0] = model.r0 * np.arange(model.n_beads)
    return x


def _nonbonded_distances(positions: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(positions.shape[1], k=3)
    return np.linalg.norm(positions[:, i] - positions[:, j], axis=-1)


def test_energy_terms_match_hand_computed_values():
    # 3 beads, bonds at r0 and a right angle: only the angle term contributes
    model = PolymerModel(n_beads=3, k_bond=100.0, k_angle=2.0)
    x = jnp.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    assert float(potential_energy(x, model)) == pytest.approx((np.pi / 2) ** 2, rel=1e-5)
    # stretched bond: k/2 (r - r0)^2
    x = jnp.array([[0.0, 0.0], [1.2, 0.0], [2.2, 0.0]])
    assert float(potential_energy(x, model)) == pytest.approx(0.5 * 100.0 * 0.2**2, rel=1e-4)
    # 4 beads in a square of side 2^(1/6): beads 0 and 3 sit at the LJ minimum, shifted at rc
    model = PolymerModel(n_beads=4, k_angle=0.0, r0=2 ** (1 / 6))
    s = 2 ** (1 / 6)
    x = jnp.array([[0.0, 0.0], [0.0, s], [s, s], [s, 0.0]])
    shift = 4 * (2.5**-12 - 2.5**-6)
    assert float(potential_energy(x, model)) == pytest.approx(-1.0 - shift, rel=1e-5)
    # beyond the cutoff the LJ term vanishes exactly
    x = jnp.array([[0.0, 0.0], [0.0, 3.0], [3.0, 3.0], [3.0, 0.0]])
    assert float(potential_energy(x, PolymerModel(n_beads=4, k_angle=0.0, r0=3.0))) == 0.0


@pytest.mark.parametrize("dim", [2, 3])
def test_forces_finite_for_straight_and_bent_chains(dim):
    model = PolymerModel(dim=dim)
    grad = jax.jit(jax.grad(potential_energy), static_argnums=1)
    straight = jnp.asarray(_straight_chain(model))
    g = np.asarray(grad(straight, model))
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, 0.0, atol=1e-5)  # straight chain is a minimum of bonds+angles
    # a perturbed chain: finite forces that match a central finite difference
    rng = np.random.default_rng(0)
    x = np.asarray(straight, np.float64) + 0.1 * rng.normal(size=straight.shape)
    g = np.asarray(grad(jnp.asarray(x, jnp.float32), model))
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 1.0
    h = 1e-3
    for atom, axis in [(0, 0), (5, 1), (11, dim - 1)]:
        xp, xm = x.copy(), x.copy()
        xp[atom, axis] += h
        xm[atom, axis] -= h
        fd = (
            float(potential_energy(jnp.asarray(xp), model))
            - float(potential_energy(jnp.asarray(xm), model))
        ) / (2 * h)
        assert g[atom, axis] == pytest.approx(fd, rel=0.02, abs=0.05)


def test_angle_gradient_finite_at_pi_with_other_theta0():
    model = PolymerModel(n_beads=3, theta0=2.0, dim=3)
    g = jax.grad(potential_energy)(jnp.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]), model)
    assert np.all(np.isfinite(np.asarray(g)))


def test_equipartition_kinetic_temperature():
    model = PolymerModel(n_beads=32)
    x = jnp.asarray(_straight_chain(model))
    v = jnp.zeros_like(x)
    kT = 1.5
    _, vs = langevin_run(
        x, v, jax.random.PRNGKey(0), model, n_frames=1500, stride=20, dt=0.005, kT=kT, gamma=5.0
    )
    vs = np.asarray(vs[100:], np.float64)  # drop the warm-up from v = 0
    t_kin = (vs**2).sum(axis=(1, 2)) / (model.n_beads * model.dim)
    assert t_kin.mean() == pytest.approx(kT, rel=0.03)


def test_bonds_and_no_overlaps(short_run):
    pos = short_run.positions.astype(np.float64)
    bonds = np.linalg.norm(pos[:, 1:] - pos[:, :-1], axis=-1)
    thermal = np.sqrt(1.0 / MODEL.k_bond)  # sqrt(kT / k_bond) = 0.1 sigma
    assert abs(bonds.mean() - MODEL.r0) < 0.3 * thermal
    assert 0.7 * thermal < bonds.std() < 1.3 * thermal
    assert _nonbonded_distances(pos).min() > 0.7 * MODEL.sigma


def test_frames_metadata(short_run):
    assert short_run.positions.shape == (200, 12, 2)
    assert short_run.positions.dtype == np.float32
    assert short_run.unit == "sigma"
    assert short_run.names == tuple(f"B{i}" for i in range(12))
    np.testing.assert_array_equal(short_run.masses, 1.0)
    np.testing.assert_allclose(short_run.times, 0.005 * 100 * np.arange(200))


def test_three_dimensional_run():
    frames = simulate_polymer(PolymerModel(n_beads=6, dim=3), n_frames=20, stride=50, n_equil=200)
    assert frames.positions.shape == (20, 6, 3)
    assert np.ptp(frames.positions[..., 2]) > 0.1  # really moves out of the plane


def test_seed_reproducibility(short_run):
    kwargs = dict(n_frames=200, stride=100, n_equil=1000)
    again = simulate_polymer(seed=3, **kwargs)
    np.testing.assert_array_equal(again.positions, short_run.positions)
    keyed = simulate_polymer(key=jax.random.PRNGKey(3), seed=99, **kwargs)
    np.testing.assert_array_equal(keyed.positions, short_run.positions)
    other = simulate_polymer(seed=4, **kwargs)
    assert np.abs(other.positions - short_run.positions).max() > 0.5


def test_energy_conserved_without_friction(short_run):
    x0 = short_run.positions[-1]
    v0 = jax.random.normal(jax.random.PRNGKey(1), x0.shape)
    xs, vs = langevin_run(
        x0, v0, jax.random.PRNGKey(2), MODEL, n_frames=20, stride=100, dt=0.002, gamma=0.0
    )
    energy = jax.vmap(lambda x, v: potential_energy(x, MODEL) + 0.5 * jnp.sum(v * v))
    e0 = float(energy(x0[None], v0[None])[0])
    e = np.asarray(energy(xs, vs))
    assert np.abs(e - e0).max() < 1e-3 * abs(e0)
    assert np.abs(np.asarray(xs[-1]) - x0).max() > 0.1  # it did move


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_frames=0), r"n_frames must be an integer >= 1; got 0"),
        (dict(stride=0), r"stride must be an integer >= 1; got 0"),
        (dict(n_equil=-1), r"n_equil must be an integer >= 0; got -1"),
        (dict(dt=0.0), r"dt must be > 0; got 0.0"),
        (dict(kT=-1.0), r"kT must be > 0; got -1.0"),
        (dict(gamma=0.0), r"gamma must be > 0; got 0.0"),
        (dict(dt=float("nan")), r"dt must be > 0; got nan"),
    ],
)
def test_simulate_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_polymer(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_beads=2), r"n_beads must be an integer >= 3; got 2"),
        (dict(dim=4), r"dim must be 2 or 3; got 4"),
        (dict(sigma=0.0), r"sigma must be > 0; got 0.0"),
        (dict(k_angle=-1.0), r"k_angle must be >= 0; got -1.0"),
    ],
)
def test_model_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PolymerModel(**kwargs)


def test_langevin_run_validation():
    x = _straight_chain(MODEL)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"gamma must be >= 0; got -1.0"):
        langevin_run(x, x, key, MODEL, n_frames=1, stride=1, gamma=-1.0)
    with pytest.raises(
        ValueError, match=r"positions, velocities: expected shape \(12, 2\), got \(3, 2\), \(3, 2\)"
    ):
        langevin_run(x[:3], x[:3], key, MODEL, n_frames=1, stride=1)


def test_main_writes_npz(tmp_path):
    out = tmp_path / "poly.npz"
    main(["-o", str(out), "--frames", "3", "--seed", "0"])
    frames = polyvae.read_npz(out)
    assert frames.positions.shape == (3, 12, 2) and frames.unit == "sigma"


def _bond_lengths(x):
    return np.linalg.norm(np.diff(x, axis=1), axis=-1)


def _rg(x):
    centred = x - x.mean(axis=1, keepdims=True)
    return np.sqrt((centred**2).sum(-1).mean(-1))


def test_shipped_data_reproducible_from_script():
    shipped = polyvae.read_npz(DATA)
    assert shipped.positions.shape[0] >= 2048
    assert shipped.positions.shape[1:] == (12, 2)
    assert shipped.unit == "sigma"
    assert shipped.names == tuple(f"B{i}" for i in range(12))
    np.testing.assert_allclose(shipped.times[:3], [0.0, 5.0, 10.0])
    # Langevin dynamics is chaotic: another JAX build or CPU may round differently and the
    # trajectories then part ways, so the script is checked to reproduce the ensemble
    fresh = simulate_polymer(n_frames=200, seed=0)
    for name, fn in (("bond", _bond_lengths), ("rg", _rg)):
        a, b = fn(shipped.positions), fn(fresh.positions)
        assert abs(a.mean() - b.mean()) < 0.3 * a.std() + 0.01 * a.mean(), name
    # the data covers folded and extended chains
    rg = _rg(shipped.positions)
    assert rg.min() < 2.0 and rg.max() > 3.3
    assert _nonbonded_distances(shipped.positions).min() > 0.8
