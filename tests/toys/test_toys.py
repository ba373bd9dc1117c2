"""The two toy validation cases: a discrete (categorical) and a 1D regression VAE.

Every test is seeded; each trains at most two small models (a few seconds each on a
CPU). The trained models are shared through module-scoped fixtures.
"""

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from polyvae.nn.model import VAEConfig  # noqa: E402
from polyvae.toys import (  # noqa: E402
    class_histogram_tv,
    discrete_toy,
    encoder_moments,
    mixture_samples,
    reconstruction_accuracy,
    regression_metrics,
    regression_toy,
    run_toy,
    train_discrete,
    train_regression,
)
from polyvae.training.trainer import TrainConfig, fit  # noqa: E402
from polyvae.vae import VAEModel  # noqa: E402

SEED = 0


@pytest.fixture(scope="module")
def onehot():
    return discrete_toy(seed=SEED)[0]


@pytest.fixture(scope="module")
def discrete_beta1(onehot):
    return train_discrete(1.0, SEED, onehot=onehot)


@pytest.fixture(scope="module")
def discrete_beta02(onehot):
    return train_discrete(0.2, SEED, onehot=onehot)


def _not_onehot(onehot, row=5):
    bad = onehot.copy()
    bad[row, (int(bad[row].argmax()) + 1) % bad.shape[1]] = 1.0  # a second 1: sum 2
    return bad


# ---- data ----------------------------------------------------------------------------------


def test_toy_data_are_seeded_mixture_samples_binned_into_one_hot_classes():
    """The data claim: 1024 seeded samples of the 1/2-1/2 mixture of N(-1, 0.5^2) and
    N(1, 0.25^2), binned into 32 equal-width classes over the sample range (one-hot),
    and the same samples as an (n, 1) matrix for the regression case."""
    x = mixture_samples(seed=SEED)
    np.testing.assert_array_equal(x, mixture_samples(seed=SEED))
    assert x.shape == (1024,) and not np.array_equal(x, mixture_samples(seed=SEED + 1))
    assert abs(x.mean()) < 0.1 and abs(x.std() - np.sqrt(1.15625)) < 0.05
    assert abs(np.mean(x > 0) - 0.5) < 0.05  # the two components carry equal weight
    onehot, edges = discrete_toy(seed=SEED)
    assert onehot.shape == (1024, 32) and onehot.dtype == np.float32
    np.testing.assert_array_equal(onehot.sum(axis=1), 1.0)
    assert set(np.unique(onehot)) == {0.0, 1.0}
    assert edges.shape == (33,) and edges[0] == x.min() and edges[-1] == x.max()
    np.testing.assert_allclose(np.diff(edges), (x.max() - x.min()) / 32)
    cls = onehot.argmax(axis=1)
    assert np.all((edges[cls] <= x) & (x <= edges[cls + 1]))
    np.testing.assert_array_equal(regression_toy(seed=SEED), x[:, None].astype(np.float32))


# ---- discrete case -------------------------------------------------------------------------


def test_discrete_beta_1_decoder_alone_reproduces_the_class_histogram(discrete_beta1, onehot):
    """Claim: at beta = 1 the KL term dominates, so the encoder ignores x (its average
    mean is ~0 and average std ~1, i.e. q(z|x) = p(z)) while the decoded class
    probabilities, summed over 1024 prior samples, still reproduce the training class
    histogram (total variation distance <= 0.10)."""
    tv = class_histogram_tv(discrete_beta1, onehot, n_samples=1024, seed=SEED)
    assert tv <= 0.10
    mean, std = encoder_moments(discrete_beta1, onehot)
    assert abs(mean) <= 0.15
    assert abs(std - 1.0) <= 0.15


def test_discrete_small_beta_latent_carries_the_class(discrete_beta1, discrete_beta02, onehot):
    """Claim: with a weaker KL term (beta = 0.2) storing x in the latent pays off: the
    encoder becomes narrow (average std < 0.5) and the class decoded at the encoder
    mean is right more often than at beta = 1, by at least 0.15 absolute."""
    _, std = encoder_moments(discrete_beta02, onehot)
    assert std < 0.5
    acc_02 = reconstruction_accuracy(discrete_beta02, onehot)
    acc_1 = reconstruction_accuracy(discrete_beta1, onehot)
    assert acc_02 - acc_1 >= 0.15


# ---- regression case -----------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.1, None], ids=["fixed-sigma-0.1", "learned-sigma"])
def test_regression_decodes_x_and_samples_follow_the_data(sigma):
    """Claim: on raw 1D mixture samples a Gaussian VAE (decoder sigma fixed at 0.1 in
    the units of x, or one learned global sigma) encodes x so that the decoded mean
    tracks it (Pearson r >= 0.95), and samples of the model with the decoder's noise
    follow the training distribution (W1 <= 0.1 training std)."""
    x = regression_toy(seed=SEED)
    model = train_regression(sigma, SEED, x=x)
    m = regression_metrics(model, x, seed=SEED)
    assert m["pearson_r"] >= 0.95
    assert m["w1"] <= 0.1 * x.std()
    assert m["w1_over_std"] <= 0.1
    if sigma is not None:
        assert m["decoder_sigma"] == sigma
    else:
        assert 0.0 < m["decoder_sigma"] < 0.5 and "log_sigma" in model.params


# ---- run_toy -------------------------------------------------------------------------------


def test_run_toy_writes_figures_and_summary(tmp_path):
    """Claim: one call trains a toy case, returns its metrics and writes the figures
    (class histograms, reconstruction, loss curves) and a summary.json holding them."""
    before = set(plt.get_fignums())
    m = run_toy("discrete", beta=1.0, out_dir=tmp_path / "d", seed=SEED)
    assert set(plt.get_fignums()) == before  # every figure was closed
    for name in ("class_histograms.png", "reconstruction.png", "loss.png"):
        assert (tmp_path / "d" / name).stat().st_size > 1000, name
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    for key in ("tv_distance", "encoder_mean", "encoder_std", "reconstruction_accuracy"):
        assert summary[key] == m[key]
    assert m["tv_distance"] <= 0.10 and summary["model"]["likelihood"] == "categorical"


# ---- bad input -----------------------------------------------------------------------------


def test_fit_rejects_rows_that_are_not_one_hot(onehot):
    """Claim: the categorical likelihood only makes sense for one-hot rows; fit names
    the first row that is not one-hot instead of training on it."""
    cfg = VAEConfig(n_features=32, hidden=(8,), likelihood="categorical")
    tc = TrainConfig(epochs=1)
    with pytest.raises(
        ValueError, match=r"one-hot rows for the categorical .*row 5 is not \(sum 2"
    ):
        fit(_not_onehot(onehot), cfg, tc, progress=False)
    soft = onehot.copy()
    soft[3] = 1.0 / 32  # sums to 1 but is not one-hot
    with pytest.raises(ValueError, match=r"row 3 is not \(entry 0.03125 in column 0\)"):
        fit(soft, cfg, tc, progress=False)
    empty = onehot.copy()
    empty[7] = 0.0
    with pytest.raises(ValueError, match=r"row 7 is not \(sum 0.0\)"):
        fit(empty, cfg, tc, progress=False)


def test_class_count_mismatch_is_reported_in_classes(discrete_beta1, onehot):
    """Claim: data with a different number of classes than the model are rejected with
    both counts, by fit, by the model's encoder and by the toy helpers."""
    cfg = VAEConfig(n_features=32, hidden=(8,), likelihood="categorical")
    with pytest.raises(ValueError, match="features have 30 classes but the model expects 32"):
        fit(onehot[:, :30], cfg, TrainConfig(epochs=1), progress=False)
    few, _ = discrete_toy(n_classes=30, seed=SEED)
    with pytest.raises(ValueError, match="data have 30 classes but the model expects 32"):
        discrete_beta1.encode(few)
    with pytest.raises(ValueError, match="onehot has 30 classes but the model expects 32"):
        class_histogram_tv(discrete_beta1, few)
    with pytest.raises(ValueError, match="onehot has 30 classes but the model expects 32"):
        reconstruction_accuracy(discrete_beta1, few)
    with pytest.raises(ValueError, match="onehot has 30 classes but the model expects 32"):
        train_discrete(onehot=few, n_classes=32)


def test_model_and_toy_helpers_reject_rows_that_are_not_one_hot(discrete_beta1, onehot):
    """Claim: a trained categorical model and the toy helpers refuse non-one-hot rows,
    naming the first bad row."""
    bad = _not_onehot(onehot, row=9)
    with pytest.raises(ValueError, match=r"data must be one-hot rows .*row 9 is not \(sum 2"):
        discrete_beta1.encode(bad)
    with pytest.raises(ValueError, match=r"onehot must be one-hot rows .*row 9 is not"):
        reconstruction_accuracy(discrete_beta1, bad)
    with pytest.raises(ValueError, match=r"onehot must be one-hot rows .*row 9 is not"):
        train_discrete(onehot=bad)


def test_negative_beta_and_other_bad_arguments_are_rejected(discrete_beta1, onehot):
    """Claim: beta weights the KL term and must be >= 0; a negative value, an unknown
    toy or a setting that does not apply is refused before any training."""
    with pytest.raises(ValueError, match="beta must be a finite number >= 0; got -1"):
        train_discrete(beta=-1.0)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0; got -0.5"):
        train_regression(beta=-0.5)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0; got -0.2"):
        run_toy("discrete", beta=-0.2)
    with pytest.raises(ValueError, match=r"name must be one of \('discrete', 'regression'\)"):
        run_toy("continuous")
    with pytest.raises(ValueError, match="learn_sigma applies to the regression toy only"):
        run_toy("discrete", learn_sigma=True)
    with pytest.raises(ValueError, match="model must have a gaussian likelihood"):
        regression_metrics(discrete_beta1, regression_toy(seed=SEED))
    with pytest.raises(TypeError, match="model must be a VAEModel; got str"):
        encoder_moments("model", onehot)
    with pytest.raises(ValueError, match=r"x must have shape \(n,\) or \(n, 1\)"):
        train_regression(x=np.zeros((10, 2)))
    assert isinstance(discrete_beta1, VAEModel)
