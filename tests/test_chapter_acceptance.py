"""The core pipeline's acceptance figures on the chapter's polymer data.

These train full-size models with the default settings (about 10 s each on two
CPU cores) and skip where ../shared/data/dmol is absent.
"""

import numpy as np
import pytest

import polyvae
from polyvae.analysis import distance_marginals, min_nonbonded_distance, optimize_latent
from polyvae.analysis.structure import radius_of_gyration
from polyvae.transforms import align_principal, kabsch_rotation


@pytest.fixture(scope="module")
def chapter_model(chapter_dir):
    frames = polyvae.read_npz(chapter_dir / "long_paths.npz")
    return polyvae.train(frames, progress=False), frames


def test_marginals_of_generated_frames_match_training(chapter_model):
    """Mean normalized W1 over all 66 distance marginals, 2048 generated frames: <= 0.15."""
    model, frames = chapter_model
    marg = distance_marginals(model.pipeline.align_frames(frames), model.generate(2048, seed=1))
    assert len(marg.pairs) == 66
    assert marg.mean_w1_normalized <= 0.15


def test_rg_optimized_structure_is_compact_and_free_of_overlaps(chapter_model, chapter_dir):
    """Lower Rg than the most compact training frame, no closer contact than the data's p1.

    Whether a trained decoder reaches below the most compact training frame depends on
    the training run (seeds 0-9 give 0.38-0.47 against the data's 0.456, below it in 8
    of 10), so this takes the median over three seeds; every result must keep the
    contact guard.
    """
    model, frames = chapter_model
    aligned = model.pipeline.align_frames(frames)
    models = [model] + [polyvae.train(frames, seed=s, progress=False) for s in (1, 2)]
    best_rg = []
    for m in models:
        result = optimize_latent(m, "rg")
        best = result.positions[0]
        assert min_nonbonded_distance(best) >= np.percentile(min_nonbonded_distance(aligned), 1)
        # the objective reported is the Rg of the structure returned
        assert result.objective[0] == pytest.approx(radius_of_gyration(best), rel=1e-4)
        assert result.feasible[0]
        feasible = result.objective[result.feasible]
        assert np.all(np.diff(feasible) >= 0)  # feasible structures first, best first
        best_rg.append(result.objective[0])
    assert np.median(best_rg) < radius_of_gyration(aligned).min()


def test_latent_trajectory_jumps_only_where_the_alignment_changes(chapter_model, chapter_dir):
    """Encoding the short trajectory: big latent jumps coincide with alignment changes."""
    model, _ = chapter_model
    frames = polyvae.read_npz(chapter_dir / "paths.npz")
    z, _ = model.encode(frames)
    jumps = np.linalg.norm(np.diff(z, axis=0), axis=1)
    aligned = align_principal(frames.positions)
    # rotation needed to superimpose consecutive aligned frames: ~0 unless the frame changed
    rot = kabsch_rotation(aligned[1:], aligned[:-1])
    angle = np.degrees(np.abs(np.arctan2(rot[:, 1, 0], rot[:, 0, 0])))
    changed = angle > 30
    spread = z.std(axis=0).mean()
    assert changed.sum() <= 5  # alignment changes are rare events on this trajectory
    assert jumps[~changed].max() < 0.6 * spread
    assert np.all(jumps[changed] > jumps[~changed].max())
