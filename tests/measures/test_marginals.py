import json

import numpy as np
import pytest

from polyvae.analysis import STD_REL_TOL, Marginals, distance_marginals, pairwise_distances


def random_frames(seed=0, t=300, n=6, d=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(t, n, d)) + 3.0 * np.arange(n)[:, None]


def test_identical_sets_give_zero_w1():
    x = random_frames()
    m = distance_marginals(x, x.copy(), bins=20)
    assert isinstance(m, Marginals)
    assert m.pairs.shape == (15, 2)
    assert m.bin_edges.shape == (15, 21)
    assert m.train_hist.shape == m.generated_hist.shape == (15, 20)
    np.testing.assert_array_equal(m.w1, 0.0)
    np.testing.assert_array_equal(m.w1_normalized, 0.0)
    assert m.mean_w1_normalized == 0.0
    np.testing.assert_array_equal(m.train_hist, m.generated_hist)


def test_scaled_distances_match_analytic_w1():
    # scaling every frame by c scales every distance by c; for positive X,
    # W1(X, cX) = (c - 1) E[X] exactly (also for the empirical distributions)
    x = random_frames(1)
    a = 0.05
    m = distance_marginals(x, (1 + a) * x, unit="nm")
    d = pairwise_distances(x)
    want = a * d.mean(axis=0)
    np.testing.assert_allclose(m.w1, want, rtol=1e-9)
    np.testing.assert_allclose(m.train_std, d.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m.w1_normalized, want / d.std(axis=0), rtol=1e-9)
    assert m.mean_w1_normalized == pytest.approx(np.mean(want / d.std(axis=0)), rel=1e-9)
    assert m.unit == "nm"


def test_histograms_are_densities_on_common_edges():
    x = random_frames(2)
    y = random_frames(3, t=120) * 1.3
    m = distance_marginals(x, y, bins=17)
    widths = np.diff(m.bin_edges, axis=1)
    np.testing.assert_allclose((m.train_hist * widths).sum(axis=1), 1.0)
    np.testing.assert_allclose((m.generated_hist * widths).sum(axis=1), 1.0)
    dx, dy = pairwise_distances(x), pairwise_distances(y)
    np.testing.assert_allclose(m.bin_edges[:, 0], np.minimum(dx.min(0), dy.min(0)))
    np.testing.assert_allclose(m.bin_edges[:, -1], np.maximum(dx.max(0), dy.max(0)))


def test_custom_pairs():
    x = random_frames(4)
    m = distance_marginals(x, x * 1.1, pairs=[(0, 5), (2, 1)])
    assert m.pairs.tolist() == [[0, 5], [2, 1]]
    assert m.w1.shape == (2,)
    assert m.index(1, 2) == 1


def test_to_dict_is_json_ready():
    x = random_frames(5)
    m = distance_marginals(x, x * 1.1)
    out = m.to_dict()
    text = json.dumps(out)
    back = json.loads(text)
    assert back["unit"] == "Å"
    assert back["pairs"][0] == [0, 1]
    assert len(back["w1"]) == len(back["w1_normalized"]) == 15
    assert back["mean_w1_normalized"] == pytest.approx(m.mean_w1_normalized)


def test_worst_returns_largest():
    x = random_frames(6)
    y = x.copy()
    y[:, 4] *= 1.5  # distorts the pairs that involve atom 4
    m = distance_marginals(x, y)
    worst = m.worst(3)
    assert worst.shape == (3, 2)
    order = np.argsort(m.w1_normalized)[::-1][:3]
    assert worst.tolist() == m.pairs[order].tolist()
    assert all(4 in p for p in worst.tolist())
    assert m.worst().shape == (5, 2)
    assert m.worst(100).shape == (15, 2)
    with pytest.raises(ValueError, match="k must be >= 1; got 0"):
        m.worst(0)
    with pytest.raises(TypeError, match=r"k must be an integer; got .* \(float\)"):
        m.worst(2.0)


def test_rigid_training_distance_is_flagged_and_left_out(caplog):
    x = random_frames(7)
    x[:, 3] = x[:, 2] + [1.0, 0.0, 0.0]  # rigid pair (2, 3)
    m = distance_marginals(x, x)
    k = m.index(2, 3)
    assert np.isnan(m.w1_normalized[k]) and m.rigid[k] and m.rigid.sum() == 1
    assert m.mean_w1_normalized == 0.0
    assert m.to_dict()["rigid_pairs"] == [[2, 3]]
    assert "rigid training distance, first (2, 3)" in caplog.text
    # float32 round-off on a rigid distance also counts as rigid, even far from the origin
    for offset in (0.0, 100.0, 1000.0):
        assert distance_marginals((x + offset).astype(np.float32), x).rigid[k]
    # ... but a small genuine fluctuation does not
    y = x.copy()
    y[:, 3, 0] += 1e-2 * np.random.default_rng(0).normal(size=len(x))
    m = distance_marginals(y + 1000.0, y + 1000.0)
    assert not m.rigid.any()
    assert m.train_std[m.index(2, 3)] > 5 * STD_REL_TOL * 1000.0
    # all rigid: nothing can be normalized
    with pytest.raises(ValueError, match="no pair's training distance varies"):
        distance_marginals(np.repeat(x[:1], 5, axis=0), x)
    # leaving the pair out works
    pairs = [(0, 1), (2, 4)]
    assert distance_marginals(x, x, pairs=pairs).mean_w1_normalized == 0.0


def test_index_unknown_pair():
    x = random_frames(8)
    m = distance_marginals(x, x, pairs=[(0, 1)])
    with pytest.raises(KeyError, match=r"pair \(0, 2\) is not among the 1 pairs"):
        m.index(0, 2)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"bins": 0}, ValueError, "bins must be >= 1; got 0"),
        ({"bins": 2.5}, TypeError, r"bins must be an integer; got 2.5 \(float\)"),
        ({"unit": 3}, TypeError, "unit must be a string or None; got int"),
        (
            {"pairs": [(0, 9)]},
            ValueError,
            r"pairs must index atoms 0 \.\. 5; got indices from 0 to 9",
        ),
        ({"pairs": np.zeros((0, 2), int)}, ValueError, "pairs must hold at least one pair"),
    ],
)
def test_argument_validation(kwargs, exc, match):
    x = random_frames(9, t=20)
    with pytest.raises(exc, match=match):
        distance_marginals(x, x, **kwargs)


def test_position_validation():
    x = random_frames(10, t=20)
    with pytest.raises(
        ValueError,
        match=r"same number of atoms; got 6 \(train_positions\) and 5 \(generated_positions\)",
    ):
        distance_marginals(x, x[:, :5])
    with pytest.raises(ValueError, match=r"generated_positions must have shape \(T, N, D\)"):
        distance_marginals(x, x[0])
    with pytest.raises(ValueError, match="train_positions must have D = 2 or 3.*got D=4"):
        distance_marginals(np.zeros((3, 6, 4)), x)


@pytest.mark.parametrize("weighted", [False, True])
def test_vectorized_w1_and_histograms_equal_the_per_pair_reference(weighted):
    from scipy.stats import wasserstein_distance

    from polyvae.measures.marginals import _histograms, wasserstein_columns

    rng = np.random.default_rng(3)
    # unequal sizes, ties inside and across the sets, a block boundary inside the columns
    u = np.round(rng.normal(size=(57, 40)), 1)
    v = np.round(rng.normal(0.4, 1.3, size=(83, 40)), 1)
    w = rng.random(57) if weighted else None
    ref = [wasserstein_distance(u[:, k], v[:, k], u_weights=w) for k in range(40)]
    import polyvae.measures.marginals as marginals

    block = marginals._BLOCK_ELEMENTS
    try:
        marginals._BLOCK_ELEMENTS = 7 * (57 + 83)
        np.testing.assert_allclose(wasserstein_columns(u, v, w), ref, rtol=1e-12, atol=1e-14)
    finally:
        marginals._BLOCK_ELEMENTS = block
    edges = np.linspace(u.min(0) - 0.05, u.max(0), 13, axis=1)  # maxima on the last edge
    expected = [np.histogram(u[:, k], edges[k], density=True, weights=w)[0] for k in range(40)]
    np.testing.assert_allclose(_histograms(u, edges, w), expected, rtol=1e-12)
