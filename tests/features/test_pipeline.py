"""Centering, alignment (principal axes with the sign rule, Kabsch) and the Pipeline."""

import numpy as np
import pytest
from helpers import random_chain
from scipy.spatial.transform import Rotation

from polyvae.features.pipeline import (
    Pipeline,
    align_principal,
    align_to_reference,
    center,
    center_of_mass,
    kabsch_rotation,
    principal_axes,
)


def _rotations(rng, t, dim):
    if dim == 3:
        return Rotation.random(t, random_state=int(rng.integers(1 << 31))).as_matrix()
    th = rng.uniform(0, 2 * np.pi, t)
    return np.stack([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]).transpose(2, 0, 1)


def _rigid(x, rot, shift):
    return (np.einsum("tnd,tkd->tnk", x, rot) + shift[:, None, :]).astype(np.float32)


def test_com_mass_weighted_by_hand():
    x = np.array([[[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]])
    m = np.array([1.0, 1.0, 2.0])
    np.testing.assert_allclose(center_of_mass(x, m), [[0.5, 2.0]])
    np.testing.assert_allclose(center_of_mass(x), [[2 / 3, 4 / 3]], rtol=1e-6)


def test_centering_idempotent_and_zero_com(rng):
    x = rng.normal(size=(20, 7, 3)) + 5
    m = rng.uniform(1, 16, 7)
    c = center(x, m)
    np.testing.assert_allclose(center_of_mass(c, m), 0, atol=1e-5)
    np.testing.assert_allclose(center(c, m), c, atol=1e-6)


@pytest.mark.parametrize("dim", [2, 3])
def test_principal_alignment_invariant_under_rigid_motion(rng, dim):
    x = random_chain(rng, 30, 9, dim)
    m = rng.uniform(1, 3, 9)
    moved = _rigid(x, _rotations(rng, 30, dim), rng.normal(size=(30, dim)) * 10)
    np.testing.assert_allclose(align_principal(moved, m), align_principal(x, m), atol=2e-4)


@pytest.mark.parametrize("dim", [2, 3])
def test_principal_axes_are_proper_and_sorted(rng, dim):
    x = random_chain(rng, 10, 9, dim)
    rot = principal_axes(x)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-6)
    a = align_principal(x).astype(np.float64)
    var = (a**2).mean(axis=1)
    assert np.all(np.diff(var, axis=1) <= 1e-6)  # largest spread along x first
    cov = np.einsum("tni,tnj->tij", a, a)
    off = cov - np.einsum("tii->ti", cov)[:, :, None] * np.eye(dim)
    np.testing.assert_allclose(off, 0, atol=1e-3)


def test_sign_rule_smoothly_rotated_trajectory_has_no_flips(rng):
    """A rigid structure turned smoothly through several full turns aligns to one frame."""
    base = random_chain(rng, 1, 12, 2)[0]
    angles = np.linspace(0, 6 * np.pi, 500)
    rot = np.stack([[np.cos(angles), -np.sin(angles)], [np.sin(angles), np.cos(angles)]])
    traj = _rigid(np.repeat(base[None], 500, 0), rot.transpose(2, 0, 1), np.zeros((500, 2)))
    aligned = align_principal(traj)
    steps = np.abs(np.diff(aligned, axis=0)).max()
    assert steps < 1e-4
    # without a sign rule the raw eigenvector's arbitrary sign flips the frame
    x = center(traj).astype(np.float64)
    _, v = np.linalg.eigh(np.einsum("tni,tnj->tij", x, x))
    e1 = v[:, :, -1]
    naive = np.einsum("tnd,td->tn", x, e1)
    assert np.abs(np.diff(naive, axis=0)).max() > 1.0  # it does flip: the rule matters


def test_sign_rule_in_3d_smooth_rotation(rng):
    base = random_chain(rng, 1, 10, 3)[0]
    rots = Rotation.from_rotvec(
        np.linspace(0, 4 * np.pi, 300)[:, None] * np.array([0.3, 0.5, 0.81])
    )
    traj = _rigid(np.repeat(base[None], 300, 0), rots.as_matrix(), np.zeros((300, 3)))
    assert np.abs(np.diff(align_principal(traj), axis=0)).max() < 1e-4


@pytest.mark.parametrize("dim", [2, 3])
def test_kabsch_recovers_rotation_and_is_invariant(rng, dim):
    ref = random_chain(rng, 1, 10, dim)[0]
    m = rng.uniform(1, 4, 10)
    rot = _rotations(rng, 15, dim)
    moved = _rigid(np.repeat(ref[None], 15, 0), rot, rng.normal(size=(15, dim)))
    aligned = align_to_reference(moved, ref, m)
    np.testing.assert_allclose(aligned, center(ref[None], m)[0][None].repeat(15, 0), atol=1e-4)
    r = kabsch_rotation(center(moved, m), center(ref[None], m)[0], m)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-6)


def test_kabsch_never_reflects(rng):
    ref = random_chain(rng, 1, 8, 3)[0]
    mirrored = ref * np.array([1, 1, -1])
    r = kabsch_rotation(center(mirrored[None]), center(ref[None])[0])
    assert np.linalg.det(r[0]) == pytest.approx(1.0)


def test_kabsch_reference_shape_error(rng):
    with pytest.raises(ValueError, match=r"reference must have shape \(N, D\) = \(5, 2\)"):
        kabsch_rotation(np.zeros((2, 5, 2)), np.zeros((4, 2)))


@pytest.mark.parametrize("align", ["principal", "kabsch", "none"])
def test_pipeline_fit_transform_inverse(rng, align):
    x = random_chain(rng, 50, 6, 3)
    p = Pipeline(align=align).fit(x)
    f = p.transform(x)
    assert f.shape == (50, 18) and f.dtype == np.float32
    np.testing.assert_allclose(f.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(f.std(0), 1, atol=1e-3)
    np.testing.assert_allclose(p.inverse_transform(f), p.align_frames(x), atol=1e-4)
    cfg, arrays = p.to_config()
    q = Pipeline.from_config(cfg, arrays)
    np.testing.assert_array_equal(q.transform(x), f)


def test_pipeline_inverse_is_differentiable(rng):
    import jax
    import jax.numpy as jnp

    x = random_chain(rng, 20, 5, 2)
    p = Pipeline().fit(x)
    g = jax.grad(lambda f: jnp.sum(p.inverse_transform(f) ** 2))(jnp.ones((1, 10)))
    assert np.all(np.isfinite(np.asarray(g)))


def test_pipeline_uses_frames_masses(rng):
    import polyvae

    m = np.arange(1.0, 6.0)
    f = polyvae.Frames(random_chain(rng, 10, 5, 2), masses=m)
    p = Pipeline().fit(f)
    np.testing.assert_array_equal(p.masses, m)
    np.testing.assert_allclose(center_of_mass(p.align_frames(f), m), 0, atol=1e-5)


def test_pipeline_errors(rng):
    with pytest.raises(ValueError, match="align must be one of .*got 'pca'"):
        Pipeline(align="pca")
    with pytest.raises(RuntimeError, match="not fitted yet"):
        Pipeline().transform(np.zeros((1, 3, 2)))
    p = Pipeline().fit(random_chain(rng, 10, 5, 2))
    with pytest.raises(
        ValueError, match="has 6 atoms in 2D but the model was trained on 5 atoms in 2D"
    ):
        p.transform(random_chain(rng, 3, 6, 2))
    with pytest.raises(ValueError, match="reference must have shape"):
        Pipeline(align="kabsch", reference=np.zeros((4, 2))).fit(random_chain(rng, 10, 5, 2))
