"""The model file's container: a zip of config.json and params.npz, checked on reading."""

import io
import json
import zipfile

import numpy as np
import pytest

from polyvae.nn.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    flatten_tree,
    load_archive,
    save_archive,
    tree_structure,
    unflatten_tree,
)

TREE = {"encoder": [{"w": np.ones((2, 3)), "b": np.zeros(3)}], "log_sigma": np.arange(4.0)}


def test_a_tree_flattens_and_comes_back_from_its_structure():
    flat = flatten_tree(TREE)
    assert sorted(flat) == ["encoder/0/b", "encoder/0/w", "log_sigma"]
    structure = tree_structure(TREE)
    assert json.loads(json.dumps(structure)) == structure  # JSON-ready
    back = unflatten_tree(flat, structure)
    np.testing.assert_array_equal(back["encoder"][0]["w"], TREE["encoder"][0]["w"])
    np.testing.assert_array_equal(back["log_sigma"], TREE["log_sigma"])
    with pytest.raises(ValueError, match="parameter names may not contain '/': 'a/b'"):
        flatten_tree({"a/b": np.zeros(1)})
    with pytest.raises(ValueError, match="array 'log_sigma' is missing from params.npz"):
        unflatten_tree({k: v for k, v in flat.items() if k != "log_sigma"}, structure)


def test_an_archive_round_trips_with_its_header(tmp_path):
    path = save_archive(tmp_path / "sub" / "m.polyvae", {"model": {"x": 1}}, flatten_tree(TREE))
    config, arrays = load_archive(path)
    assert config["format"] == FORMAT and config["format_version"] == FORMAT_VERSION
    assert config["model"] == {"x": 1}
    np.testing.assert_array_equal(arrays["encoder/0/w"], TREE["encoder"][0]["w"])
    assert [p.name for p in path.parent.iterdir()] == ["m.polyvae"]  # no temporary left


def _archive(path, config, arrays=b""):
    buf = io.BytesIO()
    if arrays == b"":
        np.savez(buf, a=np.zeros(2))
        arrays = buf.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", config if isinstance(config, str) else json.dumps(config))
        zf.writestr("params.npz", arrays)
    return path


def _object_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=np.array([{"x": 1}], dtype=object))
    return buf.getvalue()


@pytest.mark.parametrize(
    "config, arrays, message",
    [
        ("{not json", b"", "config.json is not valid JSON"),
        ({"format": "other"}, b"", "is not a polyvae model file \\(format 'other', expected"),
        ({"format": FORMAT, "format_version": "1"}, b"", "format_version must be an integer"),
        ({"format": FORMAT, "format_version": FORMAT_VERSION + 1}, b"", "upgrade polyvae"),
        ({"format": FORMAT, "format_version": 1}, b"garbage", "params.npz is corrupt"),
        ({"format": FORMAT, "format_version": 1}, _object_npz(), "pickle|object"),
    ],
    ids=["json", "format", "version-type", "version-newer", "npz", "pickle"],
)
def test_a_damaged_archive_says_which_part(tmp_path, config, arrays, message):
    path = _archive(tmp_path / "m.polyvae", config, arrays)
    with pytest.raises(ValueError, match=message):
        load_archive(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_archive(tmp_path / "none.polyvae")
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(ValueError, match="is corrupt, truncated or not a polyvae model file"):
        load_archive(tmp_path / "plain.txt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "x")
    with pytest.raises(ValueError, match="it lacks config.json and params.npz"):
        load_archive(tmp_path / "other.zip")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="must hold config.json and params.npz"):
        load_archive(tmp_path / "folder")
