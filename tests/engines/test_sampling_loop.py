"""The enhanced-sampling loop example (examples/sampling_loop.py) in a real LAMMPS with
Colvars, shortened; and the harness' dihedral term it relies on."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lammps_harness import run_polymer, zigzag_chain

from polyvae.geometry import dihedrals

ROOT = Path(__file__).resolve().parents[2]


def test_dihedral_term_energy_is_the_double_well(lammps_ok, tmp_path):
    """LAMMPS' dihedral energy at the start equals K [1 - cos 2 phi] of the positions."""
    x = zigzag_chain(4, jitter=0.4, seed=5)
    k = 2.5
    run = run_polymer(
        tmp_path,
        x,
        n_steps=0,
        dump_every=1,
        seed=1,
        dihedrals=[(0, 1, 2, 3)],
        dihedral_k=k,
        extra_commands=["thermo_style custom step edihed"],
    )
    log = run["log_file"].read_text()
    row = re.search(r"^\s*Step\s+E_dihed\s*\n\s*0\s+(\S+)", log, re.MULTILINE)
    assert row is not None, log[-2000:]
    phi = float(dihedrals(x, np.array([[0, 1, 2, 3]]))[0])
    assert abs(phi) > 0.05  # the jitter makes the chain non-planar
    np.testing.assert_allclose(float(row.group(1)), k * (1 - np.cos(2 * phi)), rtol=1e-6)


def test_sampling_loop_runs_and_reweights(lammps_ok, tmp_path):
    out = tmp_path / "loop"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "sampling_loop.py"),
            "--out",
            str(out),
            "--steps",
            "40000",
            "--rounds",
            "1",
            "--reference-steps",
            "400000",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "loop.png").stat().st_size > 0
    assert (out / "round1" / "cv.polyvae").exists()
    labels = [r["round"] for r in summary["rounds"]]
    assert len(labels) == 2 and "plain" in labels[0] and "metadynamics" in labels[1]
    for r in summary["rounds"]:
        assert r["transitions"] >= 0
        assert np.isfinite(r["w1_mean_over_reference_std"])
    plain, biased = summary["rounds"]
    # the plain round is unweighted; the biased one carries metadynamics weights over the
    # frames after the transient (the first tenth), one frame per 100 steps
    assert plain["effective_sample_size"] == pytest.approx(2 * (40000 // 2 // 100 + 1))
    assert 1 <= biased["effective_sample_size"] < 0.9 * (40000 // 100 + 1) + 1
    check = summary["engine_checks"]["round1"]
    # Colvars computed polyvae's CV, and the hills rebuilt from the CV are Colvars' bias
    assert check["cv_max_abs_diff"] <= 1e-4 * check["cv_range"]
    assert check["final_bias_max_kcal"] > 1.0
    assert check["rebuilt_bias_max_diff_kcal"] <= 0.02 * check["final_bias_max_kcal"]
