import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from polyvae.analysis import distance_marginals  # noqa: E402
from polyvae.plotting import (  # noqa: E402
    plot_conformations,
    plot_history,
    plot_latent,
    plot_marginal_map,
    plot_marginals,
    plot_marginals_overview,
    plot_optimization,
    plot_overlay,
    plot_structures,
)


@pytest.fixture(autouse=True)
def close_figures():
    before = set(plt.get_fignums())
    yield
    for num in set(plt.get_fignums()) - before:
        plt.close(num)


def test_one_figure_per_call_and_none_on_bad_input():
    before = len(plt.get_fignums())
    plot_optimization(np.arange(5.0))
    assert len(plt.get_fignums()) == before + 1
    fig, ax = plt.subplots()
    plot_structures({"a": np.zeros((3, 2))}, ax=ax)  # draws on the given Axes
    assert len(plt.get_fignums()) == before + 2
    bad_calls = [
        lambda: plot_history({"train_recon": [1.0], "train_kl": [1.0], "train_elbo": [[1.0]]}),
        lambda: plot_latent(np.zeros((4, 2)), color_by=np.zeros(3)),
        lambda: plot_conformations(np.zeros((2, 3, 4))),
        lambda: plot_overlay(chains(t=2), chains(t=2, n=5)),
        lambda: plot_optimization(np.zeros((1, 1, 1))),
        lambda: plot_structures({"a": np.zeros(3)}),
    ]
    for call in bad_calls:
        with pytest.raises((ValueError, TypeError)):
            call()
    assert len(plt.get_fignums()) == before + 2


def chains(seed=0, t=30, n=8, d=2):
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(t, n - 1, d))
    steps *= rng.uniform(0.9, 1.1, size=(t, n - 1, 1)) / np.linalg.norm(
        steps, axis=-1, keepdims=True
    )
    return np.concatenate([np.zeros((t, 1, d)), np.cumsum(steps, axis=1)], axis=1)


def history(val=True, epochs=5):
    recon = list(np.linspace(10, 5, epochs))
    kl = list(np.linspace(1, 2, epochs))
    h = {
        "train_recon": recon,
        "train_kl": kl,
        "train_elbo": [-(r + k) for r, k in zip(recon, kl, strict=True)],
    }
    if val:
        h.update(
            val_recon=[r + 0.5 for r in recon],
            val_kl=kl,
            val_elbo=[-(r + 0.5 + k) for r, k in zip(recon, kl, strict=True)],
        )
    return h


def test_plot_history_lines_and_styles(tmp_path):
    ax = plot_history(history(val=True))
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 6
    by_label = {line.get_label(): line for line in ax.lines}
    neg_elbo = by_label["train -ELBO"]
    np.testing.assert_allclose(
        neg_elbo.get_ydata(), np.array(history()["train_recon"]) + history()["train_kl"]
    )
    np.testing.assert_array_equal(neg_elbo.get_xdata(), np.arange(1, 6))
    val = by_label["val -ELBO"]
    assert val.get_linestyle() == "--" and neg_elbo.get_linestyle() == "-"
    assert val.get_color() == neg_elbo.get_color()
    ax.figure.savefig(tmp_path / "history.png")
    assert (tmp_path / "history.png").stat().st_size > 0


@pytest.mark.parametrize(
    "kept, label",
    [(3, "best validation epoch 3, kept"), (5, "best validation epoch 3; epoch 5 kept")],
)
def test_plot_history_marks_the_best_and_the_kept_epoch(kept, label):
    ax = plot_history({**history(), "best_epoch": 3, "kept_epoch": kept})
    marker = next(line for line in ax.lines if line.get_label().startswith("best"))
    assert marker.get_label() == label and list(marker.get_xdata()) == [3, 3]


def test_plot_history_train_only_and_given_ax():
    fig, ax = plt.subplots()
    out = plot_history(history(val=False), ax=ax)
    assert out is ax
    assert len(ax.lines) == 3


def test_plot_history_missing_key():
    with pytest.raises(ValueError, match=r"history is missing key\(s\) \['train_elbo'\]"):
        plot_history({"train_recon": [1.0], "train_kl": [1.0]})
    with pytest.raises(TypeError, match="history must be a dict of lists; got list"):
        plot_history([1, 2])
    bad = history(val=False) | {"val_kl": [[1.0, 2.0]]}
    with pytest.raises(ValueError, match=r"history\['val_kl'\] must be a list; got shape \(1, 2\)"):
        plot_history(bad)


def test_plot_latent_variants(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(100, 3))
    ax = plot_latent(z)
    assert isinstance(ax, Axes)
    assert len(ax.collections) == 1
    np.testing.assert_allclose(ax.collections[0].get_offsets(), z[:, :2])

    ax = plot_latent(z, color_by=np.arange(100.0))
    assert len(ax.figure.axes) == 2  # plot and colorbar

    ax = plot_latent(z, density=True)
    assert isinstance(ax.collections[0], PolyCollection)

    ax = plot_latent(z[:, :1])  # k = 1: latent against frame index
    assert len(ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), np.arange(100))
    ax.figure.savefig(tmp_path / "latent.png")

    with pytest.raises(
        ValueError, match=r"color_by must have shape \(T,\) = \(100,\) to match latent; got \(5,\)"
    ):
        plot_latent(z, color_by=np.zeros(5))
    with pytest.raises(ValueError, match=r"latent must have shape \(T, k\)"):
        plot_latent(np.zeros((2, 2, 2)))


def test_plot_conformations_subsamples():
    x = chains(t=50)
    ax = plot_conformations(x, max_frames=10)
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 10
    assert ax.get_aspect() == 1.0
    ax = plot_conformations(chains(t=5, d=3))
    assert len(ax.lines) == 5
    np.testing.assert_allclose(ax.lines[0].get_ydata(), chains(t=5, d=3)[0, :, 1])
    with pytest.raises(ValueError, match="max_frames must be >= 1; got 0"):
        plot_conformations(x, max_frames=0)


def test_plot_overlay_same_limits(tmp_path):
    train = chains(0, t=20)
    gen = 2.0 * chains(1, t=10)
    axes = plot_overlay(train, gen)
    assert len(axes) == 2 and all(isinstance(a, Axes) for a in axes)
    assert len(axes[0].lines) == 20 and len(axes[1].lines) == 10
    assert axes[0].get_xlim() == axes[1].get_xlim()
    assert axes[0].get_ylim() == axes[1].get_ylim()
    lo = min(train[..., 0].min(), gen[..., 0].min())
    assert axes[0].get_xlim()[0] <= lo
    axes[0].figure.savefig(tmp_path / "overlay.png")
    with pytest.raises(
        ValueError, match=r"got 8 \(train_positions\) and 7 \(generated_positions\)"
    ):
        plot_overlay(train, gen[:, :7])


def test_plot_marginals_default_and_custom(tmp_path):
    train = chains(0, t=200, n=9)
    m = distance_marginals(train, 1.1 * train, bins=15)
    axes = plot_marginals(m)
    assert len(axes) == 8  # the 4 worst pairs by W1/sigma, then the 4 worst bonds
    assert all(len(ax.lines) == 2 for ax in axes)
    worst = m.worst(4)
    for ax, (i, j) in zip(axes[:4], worst, strict=True):
        assert f"({i}, {j})" in ax.get_title()
    k = m.index(*worst[0])
    assert f"{m.w1_normalized[k]:.3g}" in axes[0].get_title()
    bond_titles = [ax.get_title() for ax in axes[4:]]
    assert all(t.startswith("bond (") for t in bond_titles)
    assert all(
        int(t[6:].split(",")[0]) + 1 == int(t.split(", ")[1].split(")")[0]) for t in bond_titles
    )
    axes[0].figure.savefig(tmp_path / "marginals.png")

    axes = plot_marginals(m, pairs=[(1, 2), (4, 2)])
    assert len(axes) == 2
    assert axes[1].get_title().startswith("(2, 4)")
    assert axes[0].get_title().startswith("bond (1, 2)")  # a chain bond is labelled

    fig, given = plt.subplots(1, 3)
    out = plot_marginals(m, axes=given, pairs=[(1, 2)])
    assert out[0] is given[0]

    # a subset of pairs: at most max_panels of them
    m2 = distance_marginals(train, train, pairs=[(1, 2), (2, 3), (3, 4), (4, 5)])
    assert len(plot_marginals(m2, max_panels=3)) == 3

    with pytest.raises(ValueError, match=r"pairs: pair \(0, 9\) is not among the 36 pairs"):
        plot_marginals(m, pairs=[(0, 9)])
    with pytest.raises(ValueError, match="axes must hold at least 8 Axes; got 3"):
        plot_marginals(m, axes=given)


def test_marginals_overview_map_and_bonds(tmp_path):
    train = chains(0, t=200, n=9)
    gen = train.copy()
    gen[:, 8] += 0.3  # the last atom displaced: its pairs are the worst
    m = distance_marginals(train, gen, bins=15)
    fig = plot_marginals_overview(m)
    titles = [ax.get_title() for ax in fig.axes]
    assert f"all 36 pairs: mean W1/σ = {m.mean_w1_normalized:.3f}" in titles
    assert "bonded pairs (8)" in titles
    assert any(t.startswith("#1 bond (7, 8)") or t.startswith("#1 (") and "8)" in t for t in titles)
    heat = plot_marginal_map(m)
    grid = heat.images[0].get_array()
    k = m.index(2, 5)
    assert grid[2, 5] == grid[5, 2] == pytest.approx(m.w1_normalized[k])
    fig.savefig(tmp_path / "overview.png")
    with pytest.raises(ValueError, match="bonds must have shape \\(B, 2\\); got shape \\(3,\\)"):
        plot_marginals(m, bonds=[0, 1, 2])


def test_plot_optimization_with_penalty_and_rounds():
    trace = np.concatenate([np.linspace(3, 1, 10), np.linspace(1.5, 1.2, 10)])[None]
    penalty = np.abs(np.random.default_rng(0).normal(size=(1, 20))) * 1e-3
    fig, (a, b) = plt.subplots(1, 2)
    plot_optimization(trace, ax=a, penalty=penalty, round_starts=[0, 10], weights=[10, 100],
                      unit="nm", label="Rg", penalty_ax=b)  # fmt: skip
    assert a.get_ylabel() == "Rg (nm)" and b.get_yscale() == "log"
    assert any(t.get_text() == "w=1e+02" for t in a.texts)
    assert "rounds" in a.get_title()
    with pytest.raises(ValueError, match="penalty must have the shape of trace"):
        plot_optimization(trace, penalty=penalty[:, :5])
    ax = plot_structures({"x": trace.reshape(-1, 2)[:5]}, note="bonds ok")
    assert any(t.get_text() == "bonds ok" for t in ax.texts)


def test_plot_optimization():
    ax = plot_optimization(np.linspace(3, 1, 20))
    assert isinstance(ax, Axes) and len(ax.lines) == 1
    ax = plot_optimization(np.random.default_rng(0).normal(size=(4, 20)))
    assert len(ax.lines) == 4
    with pytest.raises(ValueError, match=r"trace must have shape \(S,\) or \(n_starts, S\)"):
        plot_optimization(np.zeros((2, 2, 2)))


def test_plot_structures(tmp_path):
    x = chains(t=2)
    ax = plot_structures({"optimized": x[0], "most compact training frame": x[1]})
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 2
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["optimized", "most compact training frame"]
    assert ax.lines[0].get_marker() == "o"
    ax.figure.savefig(tmp_path / "structures.png")
    with pytest.raises(ValueError, match=r"structures\['bad'\] must have shape \(N, D\)"):
        plot_structures({"bad": x})
    with pytest.raises(ValueError, match="at least one structure"):
        plot_structures({})
    with pytest.raises(TypeError, match="structures must be a dict of name to .* got list"):
        plot_structures([x[0]])
