"""The settings objects: defined once, checked when made, kept in the model file."""

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
