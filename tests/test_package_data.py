"""The bundled polymer is package data: found through importlib.resources, not the checkout."""

import configparser
import os
from importlib import resources
from pathlib import Path

import polyvae
from polyvae import io
from polyvae.job import DEFAULT_DATA

ROOT = Path(__file__).resolve().parents[1]


def test_default_data_is_package_data():
    ref = resources.files("polyvae").joinpath("data").joinpath("polymer2d.npz")
    assert ref.is_file()
    assert DEFAULT_DATA == ref
    # inside the package folder, so a wheel or an installed copy carries it
    package_dir = Path(polyvae.__file__).resolve().parent
    assert Path(os.fspath(DEFAULT_DATA)).resolve().parent == package_dir / "data"
    # declared as package data, so the build puts it into the wheel
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = cfg["options.package_data"]["polyvae"].split()
    assert any(Path("data/polymer2d.npz").match(p) for p in patterns), patterns


def test_default_data_holds_frames():
    with DEFAULT_DATA.open("rb") as fh:
        assert fh.read(4) == b"PK\x03\x04"  # an npz is a zip archive
    frames = io.read_frames(DEFAULT_DATA)
    assert frames.positions.shape == (4096, 12, 2)
    assert frames.unit == "sigma"
