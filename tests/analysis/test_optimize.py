"""Latent-space optimization on a small model: descent, constraints, validity, errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polyvae.analysis import optimize_latent, radius_of_gyration
from polyvae.analysis.optimize import NoValidStructureError
from polyvae.measures.validity import StructureChecks

FAST = dict(n_starts=8, steps=200, n_candidates=2048)


def _floppy_chains(rng, n_frames=256, n_atoms=8):
    """2D chains with bonds of 0.7-1.3 and turns of at most 120 degrees: every bond, angle
    and contact has a range to keep (random_chain's unit bonds leave none), wide enough
    for a briefly trained decoder to meet."""
    turns = rng.uniform(-2 * np.pi / 3, 2 * np.pi / 3, size=(n_frames, n_atoms - 1))
    heading = np.cumsum(turns, axis=1)
    length = rng.uniform(0.7, 1.3, size=(n_frames, n_atoms - 1, 1))
    steps = length * np.stack([np.cos(heading), np.sin(heading)], axis=-1)
    x = np.concatenate([np.zeros((n_frames, 1, 2)), np.cumsum(steps, axis=1)], axis=1)
    return x.astype(np.float32)


def _structures(model, z, noise=None):
    """The structures latent optimization works on: the decoder mean at z (for the
    internal decoder, its Cartesian part) or, with noise, the internal decoder's sample."""
    z = jnp.asarray(z, jnp.float32)
    if noise is None:
        return np.asarray(model.structure_fn()(z))
    return np.asarray(jax.vmap(model.sample_structure_fn())(z, jnp.asarray(noise, jnp.float32)))


@pytest.fixture(scope="module")
def small_model():
    """A small model trained for a few epochs on floppy chains (fast)."""
    import polyvae

    x = _floppy_chains(np.random.default_rng(7))
    return polyvae.train(x, hidden=(32, 32), epochs=60, progress=False), x


def test_rg_decreases_from_the_starts(small_model):
    model, _ = small_model
    res = optimize_latent(model, "rg", n_starts=8, steps=150, checks=None)
    start = res.trace[:, 0]
    assert (
        res.z.shape == (8, 2) and res.positions.shape == (8, 8, 2) and res.trace.shape == (8, 150)
    )
    assert np.all(res.objective <= start + 1e-6)
    np.testing.assert_allclose(res.objective, radius_of_gyration(res.positions), rtol=1e-4)
    assert np.all(np.diff(res.objective) >= 0)  # best first
    assert res.noise.shape == (8, model.n_noise)  # the internal decoder: z and its noise
    np.testing.assert_allclose(
        _structures(model, res.z, res.noise), res.positions, rtol=1e-4, atol=1e-5
    )
    assert res.valid is None and res.penalty is None  # no checks, no flags


def test_custom_objective_end_to_end_distance(small_model):
    model, _ = small_model

    def end_to_end(x):
        return -jnp.linalg.norm(x[0] - x[-1])  # maximize the end-to-end distance

    res = optimize_latent(model, end_to_end, n_starts=4, steps=100, checks=None)
    d = np.linalg.norm(res.positions[:, 0] - res.positions[:, -1], axis=-1)
    np.testing.assert_allclose(-d, res.objective, rtol=1e-4)
    z = np.random.default_rng(0).normal(size=(64, 2))
    start = _structures(model, z, np.zeros((64, model.n_noise)))
    assert d[0] > np.linalg.norm(start[:, 0] - start[:, -1], axis=-1).mean()


def test_prior_penalty_keeps_z_closer_to_origin(small_model):
    model, _ = small_model
    free = optimize_latent(model, "rg", n_starts=8, steps=200, checks=None)
    held = optimize_latent(model, "rg", n_starts=8, steps=200, checks=None, prior_weight=5.0)
    assert np.linalg.norm(held.z, axis=1).mean() < np.linalg.norm(free.z, axis=1).mean()


def test_returned_structures_pass_every_check_of_the_model(small_model):
    model, _ = small_model
    res = optimize_latent(model, "rg", **FAST)
    assert len(res.objective) >= 1 and res.valid.all()
    assert model.check_structures(res.positions).valid.all()  # the structures themselves
    np.testing.assert_allclose(res.objective, radius_of_gyration(res.positions), rtol=1e-4)
    assert np.all(np.diff(res.objective) >= 0)
    assert res.report.valid.all() and len(res.report.valid) == len(res.objective)
    assert res.trace.shape == res.penalty_trace.shape == (len(res.objective), 200)
    np.testing.assert_array_equal(res.round_starts, [0, 50, 100, 150])
    np.testing.assert_allclose(res.weights, [10, 100, 1000, 10000])


def test_constraints_turn_an_invalid_optimum_into_a_valid_one(small_model):
    model, x = small_model
    free = optimize_latent(model, "rg", checks=None, **FAST)
    # checks under which the unconstrained optimum fails: closest contact and shortest
    # bond of the training frames, both above what the free optimum keeps
    checks = StructureChecks.from_training(model.pipeline.align_frames(x))
    closest = float(np.sort(np.linalg.norm(free.positions[0][:, None] - free.positions[0], axis=-1)
                            + np.eye(8) * 1e9, axis=None)[0])  # fmt: skip
    strict = dataclasses.replace(checks, min_contact=max(checks.min_contact, 1.2 * closest))
    assert not strict.check(free.positions[0]).valid[0]
    held = optimize_latent(model, "rg", checks=strict, **FAST)
    assert held.valid.all() and strict.check(held.positions).valid.all()
    assert held.objective[0] > free.objective[0]  # validity costs some compactness


def test_no_valid_structure_is_an_error_or_flagged(small_model):
    model, _ = small_model
    impossible = dataclasses.replace(model.structure_checks, min_contact=100.0)
    with pytest.raises(NoValidStructureError, match="none of the 8 optimized structures passes"):
        optimize_latent(model, "rg", checks=impossible, **FAST)
    res = optimize_latent(model, "rg", checks=impossible, require_valid=False, **FAST)
    assert len(res.valid) == 8 and not res.valid.any() and not res.report.contacts_ok.any()


def test_percentile_band_is_enforced(small_model):
    model, _ = small_model
    res = optimize_latent(model, "rg", percentiles=(0.5, 99.5), **FAST)
    band = model.structure_checks.band((0.5, 99.5))
    assert res.checks.percentiles == (0.5, 99.5) and band.check(res.positions).valid.all()
    lengths = np.linalg.norm(np.diff(res.positions, axis=1), axis=-1)
    assert np.all((lengths >= band.bond_range[:, 0]) & (lengths <= band.bond_range[:, 1]))
    with pytest.raises(ValueError, match=r"percentiles must be a stored band .*got \[2.0, 98.0\]"):
        optimize_latent(model, "rg", percentiles=(2, 98))


def test_start_frames_seed_starts_at_the_most_compact_valid_frames(small_model):
    model, x = small_model
    aligned = model.pipeline.align_frames(x)
    rg = radius_of_gyration(aligned)
    ok = model.check_structures(aligned).valid
    best = np.flatnonzero(ok)[np.argmin(rg[ok])]
    z_best, _ = model.encode(x[best : best + 1])
    want = radius_of_gyration(_structures(model, z_best, np.zeros((1, model.n_noise))))[0]
    res = optimize_latent(
        model, "rg", n_starts=4, steps=4, learning_rate=1e-6, start_frames=x, require_valid=False
    )
    assert np.isclose(res.trace[:, 0], want, rtol=1e-3).any()


def test_a_valid_start_lower_than_its_optimized_end_is_kept(small_model):
    """Steps far too large throw every start out of its basin; the starts that pass the
    checks and were lower come back."""
    model, x = small_model
    common = dict(n_starts=8, steps=4, rounds=1, start_frames=x, require_valid=False)
    tame = optimize_latent(model, "rg", learning_rate=1e-6, **common)  # ends at the starts
    wild = optimize_latent(model, "rg", learning_rate=50.0, **common)
    assert tame.valid.any() and wild.valid.any()
    assert wild.valid[0] and wild.objective[0] <= tame.objective[0] + 1e-5
    kept = wild.kept_start
    assert kept.any() and wild.valid[kept].all()
    np.testing.assert_allclose(
        _structures(model, wild.z[kept], wild.noise[kept]), wild.positions[kept], atol=1e-5
    )
    # the plot says which results are their start
    import matplotlib

    matplotlib.use("Agg")
    from polyvae.plotting import plot_optimization

    ax = plot_optimization(wild.trace, kept=np.where(kept, wild.objective, np.nan))
    labels = [line.get_label() for line in ax.get_lines()]
    assert sum("kept: valid, lower than its path" in t for t in labels) == kept.sum()


def test_decoder_noise_is_held_to_the_typical_set_and_reaches_lower(small_model):
    """Over z and the decoder noise, Rg goes lower than over z alone, every returned
    structure is the model's sample with noise of rms at most noise_rms, and valid."""
    model, _ = small_model
    mean = optimize_latent(model, "rg", decoder_noise=False, **FAST)
    assert mean.noise is None and mean.noise_rms is None
    np.testing.assert_allclose(_structures(model, mean.z), mean.positions, rtol=1e-4, atol=1e-5)
    for bound in (1.0, 0.25):
        res = optimize_latent(model, "rg", noise_rms=bound, **FAST)
        assert res.valid.all() and model.check_structures(res.positions).valid.all()
        assert np.all(res.noise_rms <= bound * (1 + 1e-5)) and res.noise_rms.max() > 0.5 * bound
        np.testing.assert_allclose(
            _structures(model, res.z, res.noise), res.positions, rtol=1e-4, atol=1e-5
        )
        if bound == 1.0:
            assert res.objective[0] < mean.objective[0]


def test_sample_structure_is_the_internal_decoders_draw(small_model):
    """The rebuilt structure has exactly the internal coordinates of the decoder's draw
    (mean + sigma * eps, angles wrapped) and sits on the Cartesian part's mean."""
    model, _ = small_model
    rng = np.random.default_rng(3)
    z = jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)
    eps = jnp.asarray(rng.normal(size=(5, model.n_noise)), jnp.float32)
    x = jax.vmap(model.sample_structure_fn())(z, eps)
    layout, kinds = model.pipeline.layout, model.config.kinds
    nc = layout.n_cartesian
    from polyvae.nn import model as vae

    mean = vae.decode(model.params, z, model.config)["mean"]
    full = jnp.concatenate([jnp.zeros((5, nc)), eps], axis=1)
    draw = kinds.sample(mean, jnp.log(jnp.asarray(model.decoder_sigma)), full)[:, nc:]
    got, want = np.asarray(layout.measure(x)), np.asarray(layout.values(draw))
    diff = np.where(layout.circular, np.angle(np.exp(1j * (got - want))), got - want)
    np.testing.assert_allclose(diff, 0.0, atol=2e-4)
    anchor = np.asarray(model.structure_fn()(z))
    np.testing.assert_allclose(np.asarray(x).mean(1), anchor.mean(1), atol=1e-4)
    # superposed: the best rotation of x onto the anchor is the identity
    from polyvae import geometry

    xc = np.asarray(x, np.float64) - np.asarray(x).mean(1, keepdims=True)
    ac = anchor - anchor.mean(1, keepdims=True)
    rot = geometry.kabsch_rotation(xc, ac, np.full(xc.shape[1], 1.0 / xc.shape[1]))
    np.testing.assert_allclose(rot, np.broadcast_to(np.eye(2), rot.shape), atol=1e-4)


def test_optimize_errors(small_model):
    model, x = small_model
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
    with pytest.raises(
        ValueError, match=r"steps must be >= 4 \(at least one per penalty round\); got 2"
    ):
        optimize_latent(model, steps=2)
    with pytest.raises(ValueError, match="penalty_growth must be a finite number >= 1; got 0.5"):
        optimize_latent(model, penalty_growth=0.5)
    with pytest.raises(ValueError, match="margin must be a finite number >= 0 and < 0.5"):
        optimize_latent(model, margin=0.5)
    with pytest.raises(ValueError, match='checks must be "model", a StructureChecks or None'):
        optimize_latent(model, checks="data")
    with pytest.raises(TypeError, match="checks must be .* got int"):
        optimize_latent(model, checks=3)
    with pytest.raises(ValueError, match="percentiles needs structure checks; got checks=None"):
        optimize_latent(model, checks=None, percentiles=(0.5, 99.5))
    with pytest.raises(ValueError, match="noise_rms must be a finite number > 0; got 0.0"):
        optimize_latent(model, noise_rms=0.0)
    import polyvae

    cart = polyvae.train(x, decoder="cartesian", hidden=(8,), epochs=1, progress=False)
    with pytest.raises(ValueError, match="decoder_noise needs a model trained with decoder="):
        optimize_latent(cart, decoder_noise=True)
    old = dataclasses.replace(
        model, metadata={k: v for k, v in model.metadata.items() if k != "structure_checks"}
    )
    with pytest.raises(ValueError, match="checks: the model file holds no structure checks"):
        optimize_latent(old)


def test_starts_are_screened_from_candidates(small_model):
    model, _ = small_model
    kw = dict(n_starts=1, steps=1, rounds=1, checks=None)
    one = optimize_latent(model, "rg", n_candidates=1, **kw)
    many = optimize_latent(model, "rg", n_candidates=4096, **kw)
    assert many.trace[0, 0] <= one.trace[0, 0]  # the best of many draws starts lower
    with pytest.raises(ValueError, match="n_candidates must be >= 4 .at least n_starts."):
        optimize_latent(model, n_starts=4, n_candidates=2)


def test_neighbour_list_penalty_equals_the_all_pairs_penalty(small_model):
    from polyvae.analysis.optimize import _neighbour_lists, _penalty_fn

    model, x = small_model
    checks = model.structure_checks
    aligned = model.pipeline.align_frames(x)[:16]
    # squeezed structures: many pairs closer than the contact bound
    squeezed = np.concatenate([aligned, aligned * 0.5]).astype(np.float32)
    full = jax.vmap(_penalty_fn(checks, 0.005))(jnp.asarray(squeezed))
    pairs, mask = _neighbour_lists(checks, squeezed, 0.005)
    assert pairs.shape[:2] == mask.shape and mask.sum(axis=1).min() < pairs.shape[1]
    near = jax.vmap(_penalty_fn(checks, 0.005))(jnp.asarray(squeezed), (pairs, mask))
    assert float(full[16:].min()) > 0  # the contacts count
    np.testing.assert_allclose(np.asarray(near), np.asarray(full), rtol=1e-5)


def test_large_molecules_never_form_all_pairs(small_model, monkeypatch):
    from polyvae.measures import validity

    model, _ = small_model
    monkeypatch.setattr(validity, "ALL_PAIRS_LIMIT", 0)  # this molecule counts as large

    def refused(self):
        raise AssertionError("all pairs formed")

    monkeypatch.setattr(StructureChecks, "pairs", property(refused))
    res = optimize_latent(model, "rg", **FAST)
    assert len(res.objective) >= 1 and res.valid.all()
    assert model.check_structures(res.positions).valid.all()
    assert res.trace.shape == (len(res.objective), 200)
    np.testing.assert_allclose(res.objective, radius_of_gyration(res.positions), rtol=1e-4)
