"""The settings objects: defined once, checked when made, kept in the model file."""

import dataclasses
import re

import jax
import numpy as np
import pytest

import polyvae
from polyvae import config
from polyvae.features import pipeline as transforms
from polyvae.nn import model
from polyvae.training import trainer as training


def test_the_choices_are_defined_once():
    assert tuple(model.ACTIVATIONS) == config.ACTIVATION_NAMES
    for name in ("DECODERS", "LIKELIHOODS"):  # one definition, in config; others import it
        defined = getattr(config, name)
        for module in (model, transforms, training):
            assert getattr(module, name, defined) is defined
    assert training.TrainConfig is config.TrainConfig is polyvae.TrainConfig
    assert model.VAEConfig is config.VAEConfig is polyvae.VAEConfig


def test_configs_round_trip_and_name_the_bad_setting():
    vc = config.VAEConfig(n_features=6, hidden=[8, 4], activation="tanh")
    assert config.VAEConfig.from_dict(vc.to_dict()) == vc
    tc = config.TrainConfig(epochs=3, patience=None)
    assert config.TrainConfig(**tc.to_dict()) == tc
    with pytest.raises(ValueError, match="activation"):
        config.VAEConfig(n_features=6, activation="gelu")
    with pytest.raises(ValueError, match="decoder"):
        config.VAEConfig(n_features=6, decoder="spline")
    with pytest.raises(ValueError, match="learning_rate"):
        config.TrainConfig(learning_rate=0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(latent_dim=0), "latent_dim must be >= 1; got 0"),
        (dict(latent_dim=1.5), "latent_dim must be an integer; got 1.5 (float)"),
        (dict(hidden=(16, 0)), "hidden must be >= 1 (every hidden layer width); got 0"),
        (dict(hidden=None), "hidden must be a sequence of layer widths; got None"),
        (dict(activation="gelu"), "activation must be one of ('relu', 'tanh', 'elu', 'softplus')"),
        (dict(sigma=0), "sigma (None: learned) must be a finite number > 0; got 0"),
        (dict(beta=-1.0), "beta must be a finite number >= 0; got -1.0"),
        (dict(epochs=0), "epochs must be >= 1; got 0"),
        (dict(batch_size=True), "batch_size must be an integer; got True (bool)"),
        (dict(learning_rate=float("nan")), "learning_rate must be a finite number > 0; got nan"),
        (dict(seed=-1), "seed must be >= 0; got -1"),
        (dict(validation_fraction=1.0), "validation_fraction must be a finite number >= 0 and < 1"),
        (dict(patience=0), "patience must be >= 1; got 0"),
        (dict(align="rmsd"), "align must be one of ('principal', 'kabsch', 'none'); got 'rmsd'"),
        (dict(features="angles"), "features must be one of ('positions', 'distances', 'torsions')"),
        (dict(decoder="spline"), "decoder must be one of ('cartesian', 'internal'); got 'spline'"),
        (dict(bonds="ring"), "bonds must be one of ('auto', 'topology', 'guess'); got 'ring'"),
    ],
)
def test_settings_refuse_a_bad_value_in_one_line_naming_it(bad, message):
    with pytest.raises((ValueError, TypeError)) as info:
        config.TrainSettings(**bad)
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text
    assert text.startswith(next(iter(bad)))
    with pytest.raises(type(info.value), match=re.escape(message)):
        config.TrainSettings().replace(**bad)  # a copy is checked again


def test_settings_replace_gives_a_checked_copy():
    base = config.TrainSettings(hidden=[16, 16], epochs=3)
    assert base.hidden == (16, 16) and base == config.TrainSettings(hidden=(16, 16), epochs=3)
    other = base.replace(beta=2, seed=4)
    assert (other.beta, other.seed, other.epochs, other.hidden) == (2.0, 4, 3, (16, 16))
    assert (base.beta, base.seed) == (1.0, 0) and other != base
    assert base.replace() is base
    with pytest.raises(TypeError, match=r"^'output' is not a training setting; the settings are "):
        base.replace(output="m.polyvae")
    # arrays compare by content
    pairs = np.array([[0, 2], [1, 3]])
    assert base.replace(pairs=pairs) == base.replace(pairs=pairs.copy())
    assert base.replace(pairs=pairs) != base.replace(pairs=pairs[:1])
    assert base.replace(bonds=pairs) != base.replace(bonds="guess")


def test_settings_round_trip_to_the_network_and_optimizer_configs():
    settings = config.TrainSettings(
        latent_dim=3,
        hidden=(8, 4),
        activation="tanh",
        sigma=0.5,
        beta=0.2,
        epochs=7,
        batch_size=16,
        learning_rate=3e-3,
        seed=5,
        validation_fraction=0.2,
        patience=None,
        decoder="cartesian",
    )
    vc = settings.vae_config(12, n_inputs=6)
    assert vc == config.VAEConfig(
        n_features=12,
        latent_dim=3,
        hidden=(8, 4),
        activation="tanh",
        sigma=0.5,
        beta=0.2,
        n_inputs=6,
        decoder="cartesian",
    )
    tc = settings.train_config()
    assert tc == config.TrainConfig(
        epochs=7, batch_size=16, learning_rate=3e-3, seed=5, validation_fraction=0.2, patience=None
    )
    assert settings.train_config(split_seed=2).split_seed == 2
    assert config.TrainSettings.from_configs(vc, tc) == settings
    assert config.TrainSettings.from_configs(vc, tc, align="none").align == "none"
    # the defaults are train()'s
    default = config.TrainSettings()
    assert default.vae_config(6) == config.VAEConfig(n_features=6)
    assert default.train_config() == config.TrainConfig()


def test_train_takes_settings_and_keyword_overrides():
    from helpers import random_chain

    x = random_chain(np.random.default_rng(3), 48, 5, 2)
    small = config.TrainSettings(hidden=(8,), epochs=2, batch_size=16, decoder="cartesian")
    by_keywords = polyvae.train(x, hidden=(8,), epochs=2, batch_size=16, seed=1,
                                decoder="cartesian", progress=False)  # fmt: skip
    by_settings = polyvae.train(x, small, seed=1, progress=False)
    assert by_settings.train_config == by_keywords.train_config
    assert by_settings.config == by_keywords.config
    for a, b in zip(
        jax.tree.leaves(by_settings.params), jax.tree.leaves(by_keywords.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="^'outputs' is not a training setting"):
        polyvae.train(x, small, outputs="m.polyvae")
    with pytest.raises(TypeError, match="^settings must be a TrainSettings; got dict"):
        polyvae.train(x, {"epochs": 2})


def test_the_frame_choices_are_defined_in_config():
    from polyvae.features import topology

    assert transforms.ALIGN_METHODS is config.ALIGN_METHODS
    assert transforms.FEATURES is config.FEATURES
    assert topology.BOND_MODES is config.BOND_MODES


def test_train_many_shares_the_settings_but_what_members_vary():
    from polyvae.training import ensemble

    assert set(ensemble.SHARED_SETTINGS) | {"seed", "beta", "latent_dim"} == {
        f.name for f in dataclasses.fields(config.TrainSettings)
    }
    x = np.zeros((8, 4, 2))  # refused before the frames are looked at
    with pytest.raises(TypeError, match="^train_many got an unexpected argument 'seed'; the "):
        polyvae.train_many(x, seed=1)
    with pytest.raises(ValueError, match="^validation_fraction must be > 0 for train_many"):
        polyvae.train_many(x, config.TrainSettings(validation_fraction=0.0))
    with pytest.raises(ValueError, match="^seeds must not repeat a value; got 2 more than once"):
        polyvae.train_many(x, config.TrainSettings(seed=2), seeds=[2, 2])
