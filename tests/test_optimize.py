"""Latent-space optimization on a small model."""

import jax.numpy as jnp
import numpy as np
import pytest

from polyvae.analysis import min_nonbonded_distance, optimize_latent, radius_of_gyration


def test_rg_decreases_from_the_starts(small_model):
    model, _ = small_model
    res = optimize_latent(model, "rg", n_starts=8, steps=150, min_distance=None)
    start = res.trace[:, 0]
    assert (
        res.z.shape == (8, 2) and res.positions.shape == (8, 8, 2) and res.trace.shape == (8, 150)
    )
    assert np.all(res.objective <= start + 1e-6)
    np.testing.assert_allclose(res.objective, radius_of_gyration(res.positions), rtol=1e-4)
    assert np.all(np.diff(res.objective) >= 0)  # best first
    np.testing.assert_allclose(model.decode(res.z), res.positions, rtol=1e-4, atol=1e-5)


def test_custom_objective_end_to_end_distance(small_model):
    model, _ = small_model

    def end_to_end(x):
        return -jnp.linalg.norm(x[0] - x[-1])  # maximize the end-to-end distance

    res = optimize_latent(model, end_to_end, n_starts=4, steps=100, min_distance=None)
    d = np.linalg.norm(res.positions[:, 0] - res.positions[:, -1], axis=-1)
    np.testing.assert_allclose(-d, res.objective, rtol=1e-4)
    start = model.decode(np.random.default_rng(0).normal(size=(64, 2)))
    assert d[0] > np.linalg.norm(start[:, 0] - start[:, -1], axis=-1).mean()


def test_prior_penalty_keeps_z_closer_to_origin(small_model):
    model, _ = small_model
    free = optimize_latent(model, "rg", n_starts=8, steps=200, min_distance=None)
    held = optimize_latent(model, "rg", n_starts=8, steps=200, min_distance=None, prior_weight=5.0)
    assert np.linalg.norm(held.z, axis=1).mean() < np.linalg.norm(free.z, axis=1).mean()


def test_steric_guard_keeps_contacts(small_model):
    model, _ = small_model
    free = optimize_latent(model, "rg", n_starts=8, steps=200, min_distance=None)
    d_min = float(min_nonbonded_distance(free.positions[0])) * 1.5
    guarded = optimize_latent(model, "rg", n_starts=8, steps=200, min_distance=d_min, stiffness=1e3)
    assert min_nonbonded_distance(guarded.positions[0]) >= d_min
    assert guarded.objective[0] >= free.objective[0]
    # feasible structures are listed first, and the flag tells them apart
    closest = min_nonbonded_distance(guarded.positions)
    np.testing.assert_array_equal(guarded.feasible, closest >= d_min)
    assert np.all(np.diff(guarded.feasible.astype(int)) <= 0)


def test_min_distance_from_training_stats(small_model):
    model, _ = small_model
    assert model.metadata["train_stats"]["min_nonbonded_p01"] > 0
    res = optimize_latent(model, "rg", n_starts=4, steps=100)  # "train" is the default
    assert np.isfinite(res.objective).all()


def test_optimize_errors(small_model):
    model, _ = small_model
    with pytest.raises(
        ValueError, match="objective must be one of \\['rg'\\] or a callable; got 'volume'"
    ):
        optimize_latent(model, "volume")
    with pytest.raises(TypeError, match="objective must be a name or a callable; got int"):
        optimize_latent(model, 3)
    with pytest.raises(ValueError, match="n_starts must be >= 1"):
        optimize_latent(model, n_starts=0)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0; got -1.0"):
        optimize_latent(model, learning_rate=-1.0)
    with pytest.raises(ValueError, match="prior_weight must be a finite number >= 0; got -1.0"):
        optimize_latent(model, prior_weight=-1.0)
    with pytest.raises(ValueError, match='min_distance must be a number, "train" or None'):
        optimize_latent(model, min_distance="data")
    with pytest.raises(ValueError, match="min_distance must be a positive number"):
        optimize_latent(model, min_distance=-0.5)


def test_starts_are_screened_from_candidates(small_model):
    model, _ = small_model
    one = optimize_latent(model, "rg", n_starts=1, steps=1, n_candidates=1, min_distance=None)
    many = optimize_latent(model, "rg", n_starts=1, steps=1, n_candidates=4096, min_distance=None)
    assert many.trace[0, 0] <= one.trace[0, 0]  # the best of many draws starts lower
    with pytest.raises(ValueError, match="n_candidates must be >= 4 .at least n_starts."):
        optimize_latent(model, n_starts=4, n_candidates=2)
