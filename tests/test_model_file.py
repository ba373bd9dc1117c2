"""The model file's parts: written and read by one schema, errors naming the part."""

import io
import json
import zipfile

import jax
import numpy as np
import pytest

import polyvae
import polyvae.nn.checkpoint
from polyvae import model_file
from polyvae.model_file import ModelParts, read_model_file, write_model_file


def _edit(good, out, config=None, arrays=None):
    """A copy of ``good`` with its config.json passed through ``config`` and its arrays
    through ``arrays`` (each a function that edits in place)."""
    with zipfile.ZipFile(good) as zf:
        cfg = json.loads(zf.read("config.json"))
        with np.load(io.BytesIO(zf.read("params.npz"))) as data:
            arr = {k: data[k] for k in data.files}
    if config is not None:
        config(cfg)
    if arrays is not None:
        arrays(arr)
    buf = io.BytesIO()
    np.savez(buf, **arr)
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("config.json", json.dumps(cfg))
        zf.writestr("params.npz", buf.getvalue())
    return out


@pytest.fixture
def good(small_model, tmp_path):
    model, _ = small_model
    return model.save(tmp_path / "good.polyvae")


def test_parts_round_trip(small_model, tmp_path):
    model, x = small_model
    path = write_model_file(tmp_path / "m.polyvae", ModelParts(*(
        model.config, model.params, model.pipeline, model.train_config, model.history,
        model.metadata, model.train_state, model.latent_codes,
    )))  # fmt: skip
    parts = read_model_file(path)
    assert parts.config == model.config and parts.train_config == model.train_config
    assert parts.metadata == model.metadata and parts.history == model.history
    for a, b in zip(jax.tree.leaves(parts.params), jax.tree.leaves(model.params), strict=True):
        np.testing.assert_array_equal(a, b)
    loaded = polyvae.VAEModel(*parts)
    np.testing.assert_array_equal(loaded.encode(x[:16])[0], model.encode(x[:16])[0])


def test_a_parameter_of_the_wrong_shape_is_named(good, tmp_path):
    name = "params/encoder/0/w"

    def widen(arr):
        arr[name] = np.zeros((arr[name].shape[0], arr[name].shape[1] + 1), np.float32)

    bad = _edit(good, tmp_path / "bad.polyvae", arrays=widen)
    with pytest.raises(ValueError, match=rf"part 'params' .*'{name}' is \(\d+, \d+\), "
                       r"config.json 'model' gives \(\d+, \d+\)"):  # fmt: skip
        polyvae.load_model(bad)


@pytest.mark.parametrize(
    "edit, part",
    [
        (lambda c: c["pipeline"].update(align="sideways"), "pipeline"),
        (lambda c: c["model"].update(latent_dim="two"), "model"),
        (lambda c: c["train"].update(epochs=-3), "train"),
        (lambda c: c["metadata"].update(atoms=5), "metadata"),
        (lambda c: c.update(history=[1, 2]), "history"),
    ],
)
def test_an_error_names_the_part_of_config_json(good, tmp_path, edit, part):
    bad = _edit(good, tmp_path / "bad.polyvae", edit)
    with pytest.raises(ValueError, match=rf"^model file '.*bad.polyvae': part '{part}'"):
        polyvae.load_model(bad)


def test_a_missing_part_is_named(good, tmp_path):
    bad = _edit(good, tmp_path / "bad.polyvae", lambda c: c.pop("params_structure"))
    with pytest.raises(ValueError, match=r"lacks its part 'params' \(config.json "
                       r"'params_structure'\)"):  # fmt: skip
        polyvae.load_model(bad)


def test_each_format_version_has_its_reader():
    assert set(model_file._READERS) == set(range(1, polyvae.nn.checkpoint.FORMAT_VERSION + 1))
