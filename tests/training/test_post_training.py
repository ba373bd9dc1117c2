"""After the fit: the model is saved before any later step can fail, and nothing after
training forms all atom pairs of a large molecule."""

import tracemalloc

import jax
import numpy as np
import pytest
from helpers import random_chain

import polyvae
import polyvae.training.finishing
from polyvae import geometry
from polyvae.analysis.structure import compare_structures
from polyvae.cli import main
from polyvae.features.topology import unjoined_atom
from polyvae.measures.marginals import MAX_ALL_PAIRS, SAMPLED_PAIRS, distance_marginals
from polyvae.training.trainer import PostTrainingError, training_stats

FAST = ["--epochs", "2", "--hidden", "16", "--batch-size", "16"]
OOM = "RESOURCE_EXHAUSTED: Out of memory allocating 40158220264 bytes."


def _old_min_nonbonded_p01(x, bonds):
    """training_stats' closest-contact figure as it was: over all non-bonded pairs."""
    pairs = geometry.nonbonded_pairs(x.shape[1], bonds)
    closest = geometry.pair_distances(x, pairs).min(axis=1) if len(pairs) else np.full(1, np.inf)
    return float(np.percentile(closest, 1.0))


@pytest.mark.parametrize("n_atoms, ring", [(3, False), (7, False), (12, True), (40, True)])
def test_training_stats_closest_contact_equals_all_pairs(n_atoms, ring):
    x = random_chain(np.random.default_rng(n_atoms), 30, n_atoms, 3).astype(np.float64)
    bonds = geometry.chain_bonds(n_atoms)
    if ring:  # a ring closure and a branch, given in either order
        bonds = np.concatenate([bonds, [[n_atoms - 1, 0], [5, 2]]])
    new = training_stats(x, None, bonds).min_nonbonded_p01
    assert new == pytest.approx(_old_min_nonbonded_p01(x, bonds), rel=1e-12)
    for exclude in (1, 2, 3):
        pairs = geometry.nonbonded_pairs(n_atoms, bonds, exclude)
        old = geometry.pair_distances(x, pairs).min(axis=1) if len(pairs) else np.inf
        np.testing.assert_allclose(geometry.closest_contact(x, bonds, exclude), old, rtol=1e-12)


def test_unjoined_atom_from_connected_components():
    assert unjoined_atom(5, geometry.chain_bonds(5)) is None
    assert unjoined_atom(5, [[0, 1], [1, 2], [3, 4]]) == 3
    assert unjoined_atom(5, [[3, 4], [0, 2], [2, 1]]) == 3
    assert unjoined_atom(4, [[1, 2], [2, 3]]) == 1  # atom 0 alone: the first other one


def _peak_mb(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_post_training_kernels_do_not_scale_with_all_pairs():
    """20 000 atoms: all pairs would be 2e8, 3.2 GB as float64; each step stays far below."""
    n = 20_000
    rng = np.random.default_rng(0)
    train = random_chain(rng, 3, n, 3)
    gen = random_chain(rng, 4, n, 3)
    bonds = geometry.chain_bonds(n)
    stats, peak = _peak_mb(lambda: training_stats(train, None, bonds))
    assert peak < 200 and 0 < stats.min_nonbonded_p01 < 1.0
    marg, peak = _peak_mb(lambda: distance_marginals(train, gen, bins=10))
    assert peak < 200
    assert marg.n_pairs == SAMPLED_PAIRS and marg.n_pairs_total == n * (n - 1) // 2
    report, peak = _peak_mb(lambda: compare_structures(train, gen))
    assert peak < 200 and report.min_nonbonded_generated.shape == (4,)
    joined, peak = _peak_mb(lambda: unjoined_atom(n, bonds))
    assert joined is None and peak < 50
    closest, peak = _peak_mb(lambda: geometry.closest_contact(gen, bonds, 3))
    assert closest.shape == (4,) and peak < 200


def test_marginal_map_of_a_large_molecule_is_shown_in_blocks():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polyvae.plotting import MAP_ATOMS, plot_marginal_map

    x = random_chain(np.random.default_rng(1), 6, 600, 3)
    m = distance_marginals(x, 1.05 * x, bins=5)
    ax = plot_marginal_map(m)
    grid = ax.images[0].get_array()
    assert grid.shape[0] <= MAP_ATOMS and "sampled of 179700 pairs" in ax.get_title()
    assert "blocks of 3" in ax.get_xlabel()
    plt.close(ax.figure)
    assert MAX_ALL_PAIRS == 214 * 213 // 2


@pytest.fixture
def failing_weight(monkeypatch):
    """choose_cartesian_weight runs out of memory, as it did on 3341 atoms."""

    def fail(model, aligned, **kwargs):
        raise MemoryError("out of memory in the Cartesian weight scan")

    monkeypatch.setattr(polyvae.training.finishing, "choose_cartesian_weight", fail)


def test_cli_train_keeps_the_model_when_a_step_after_training_fails(
    tmp_path, capsys, failing_weight
):
    x = random_chain(np.random.default_rng(3), 64, 6, 3)
    np.savez(tmp_path / "traj.npz", arr=x)
    out = tmp_path / "m.polyvae"
    code = main(["-q", "train", str(tmp_path / "traj.npz"), "-o", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "polyvae: error: choosing the Cartesian weight failed after training (MemoryError: out "
        f"of memory in the Cartesian weight scan); the trained model is saved in {out} "
        "without it\n"
    )
    model = polyvae.load_model(out)
    assert model.config.decoder == "internal" and len(model.history["train_elbo"]) == 2
    assert "cartesian_weight_scan" not in model.metadata
    assert model.generate(3, seed=0).shape == (3, 6, 3)


def test_api_train_error_carries_the_model(tmp_path, monkeypatch):
    def fail(model, aligned, **kwargs):
        raise jax.errors.JaxRuntimeError(OOM + "\n\nsome more lines of XLA detail")

    monkeypatch.setattr(polyvae.training.finishing, "choose_cartesian_weight", fail)
    x = random_chain(np.random.default_rng(4), 64, 5, 2)
    with pytest.raises(PostTrainingError) as info:
        polyvae.train(x, hidden=(16,), epochs=2, progress=False)
    err = info.value
    assert str(err) == (
        f"choosing the Cartesian weight failed after training (JaxRuntimeError: {OOM} some "
        "more lines of XLA detail); the trained model, without it, is this error's .model"
    )
    assert err.saved_to is None and err.step == "choosing the Cartesian weight"
    assert isinstance(err.model, polyvae.VAEModel) and err.model.train_state is not None
    assert err.model.generate(2, seed=0).shape == (2, 5, 2)
    out = tmp_path / "m.polyvae"
    with pytest.raises(PostTrainingError, match=f"saved in {out} without it") as info:
        polyvae.train(x, hidden=(16,), epochs=2, progress=False, output=out)
    assert info.value.saved_to == out
    np.testing.assert_array_equal(
        polyvae.load_model(out).encode(x)[0], info.value.model.encode(x)[0]
    )


def test_model_is_saved_before_and_after_the_weight_is_chosen(tmp_path, monkeypatch):
    out = tmp_path / "m.polyvae"
    seen = {}
    chosen = polyvae.training.finishing.choose_cartesian_weight

    def spy(model, aligned, **kwargs):
        seen["before"] = polyvae.load_model(out).metadata
        return chosen(model, aligned, **kwargs)

    monkeypatch.setattr(polyvae.training.finishing, "choose_cartesian_weight", spy)
    x = random_chain(np.random.default_rng(5), 64, 5, 2)
    model = polyvae.train(x, hidden=(16,), epochs=2, progress=False, output=out)
    assert "cartesian_weight_scan" not in seen["before"]
    saved = polyvae.load_model(out)
    assert saved.metadata["cartesian_weight_scan"] == model.metadata["cartesian_weight_scan"]
    assert saved.pipeline.layout.cartesian_weight == model.pipeline.layout.cartesian_weight
    assert saved.train_state is not None


def test_job_warns_when_most_generated_structures_fail(caplog):
    """The job's generated structures: a log warning names the check that fails most."""
    import logging

    from polyvae.io import read_npz
    from polyvae.job import DEFAULT_DATA, _validity

    frames = read_npz(DEFAULT_DATA)[:256]
    model = polyvae.train(frames, epochs=2, hidden=(16,), progress=False)
    good = model.pipeline.align_frames(frames)[:10]
    with caplog.at_level(logging.WARNING, logger="polyvae.job"):
        assert _validity(model, good, "generated structures")["fraction_valid"] == 1.0
        assert caplog.text == ""
        stretched = good * 3.0  # every bond three times too long
        result = _validity(model, stretched, "generated structures")
    assert result["fraction_valid"] == 0.0
    (record,) = caplog.records
    assert record.getMessage().startswith("only 0 of 10 generated structures (0")
    assert "pass the model's checks; most failures: bond B" in record.getMessage()
