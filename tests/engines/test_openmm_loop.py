"""The OpenMM loop example (examples/openmm_loop.py), shortened, and its measures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import polyvae

pytest.importorskip("openmm")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loop():
    spec = importlib.util.spec_from_file_location("openmm_loop", ROOT / "examples/openmm_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_short_loop_runs_biases_and_reweights(loop, tmp_path):
    args = ["--out", str(tmp_path), "--rounds", "1", "--ns", "0.02", "--reference-ns", "0.01"]
    summary = loop.main([*args, "--epochs", "3"])
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    (entry,) = summary["rounds"]
    assert set(entry) == {"round", "polyvae", "phipsi", "plain"}
    assert entry["plain"]["ess_fraction"] == 1.0
    for kind in ("polyvae", "phipsi"):  # the bias grew, so the weights differ
        assert 0.0 < entry[kind]["ess_fraction"] < 1.0
    for kind in entry.keys() - {"round"}:
        assert entry[kind]["transitions"] >= 0
    model = polyvae.load_model(tmp_path / "round1.polyvae")
    assert model.pipeline.n_atoms == 10 and model.pipeline.features == "distances"
    assert (tmp_path / "round1.png").stat().st_size > 10_000
    assert np.load(tmp_path / "reference.npz")["phi"].shape == (20,)


def test_transitions_count_committed_crossings(loop):
    deg = np.array([-70, -10, 20, 60, 10, -60, -70, 70, 170, -150])
    assert loop.transitions(np.radians(deg)) == 4  # A B A A B A
    assert loop.reached_positive_phi(np.radians(deg))
    assert not loop.reached_positive_phi(np.radians([-70, -150, 170, 150, 20]))


def test_free_energy_and_its_error(loop):
    rng = np.random.default_rng(0)
    phi = rng.normal(-1.3, 0.3, 20000)
    f = loop.free_energy(phi, np.ones_like(phi))
    assert f.min() == 0 and np.isinf(f).any()
    assert loop.fes_error(f, f + 3.0) == 0.0  # offsets are matched
    biased = loop.free_energy(phi, np.exp(-0.5 * (phi + 1.3)))  # a tilt of 0.5 kT/rad
    err = loop.fes_error(biased, f)
    assert 0.05 < err < 0.5
    ref = f.copy()
    ref[0] = 1.0  # a bin the run never saw lies below 4 kT in the reference
    assert loop.fes_error(f, ref) == float("inf")


def test_the_final_bias_is_read_at_each_frames_cv(loop):
    class Var:
        def __init__(self, lo, hi, n):
            self.minValue, self.maxValue, self.gridWidth = lo, hi, n

    variables = [Var(-1.0, 1.0, 21), Var(0.0, 4.0, 41)]
    a, b = np.meshgrid(*(np.linspace(v.minValue, v.maxValue, v.gridWidth) for v in variables))
    grid = 2.0 * a + 3.0 * b  # OpenMM's layout: axis 0 is the last CV
    cvs = np.array([[0.5, 1.0], [-1.0, 4.0], [5.0, 2.0]])
    np.testing.assert_allclose(loop._on_grid(grid, cvs, variables), [4.0, 10.0, 8.0])
