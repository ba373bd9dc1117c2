"""What the polyvae CV costs inside OpenMM: ns/day of alanine dipeptide, one CPU thread.

Alanine dipeptide in vacuum (Amber ff14SB, no cutoff, bonds to hydrogen constrained,
``LangevinMiddleIntegrator`` at 300 K, 2 fs), started from ``tools/peptide.py``'s
structure, on OpenMM's CPU platform with one thread. In one run, the same number of
steps (after 200 steps of warm-up) of

* plain MD,
* well-tempered metadynamics (``openmm.app.metadynamics``: bias factor 6, hills of
  1.2 kJ/mol every 250 steps) on φ and ψ (``CustomTorsionForce``),
* the same metadynamics on the two latent CVs of a polyvae model
  (:func:`polyvae.export.openmm_force`), trained on the OpenMM run of
  ``tools/peptide.py`` (1 ns, 2000 frames) with ``--features torsions`` and the
  default encoder (3 x 128, relu), 30 epochs, and the same with ``--hidden 32 32``;

and the microseconds one CV evaluation takes outside OpenMM
(:meth:`polyvae.export.EncoderCV.value_and_gradient`). Prints JSON::

    python bench/openmm_cv.py [--steps 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

PHI_PSI = [(4, 6, 8, 14), (6, 8, 14, 16)]  # C-N-CA-C and N-CA-C-N, 0-based


def _simulation(forces_for, steps: int) -> float:
    """ns/day of ``steps`` steps with the biases ``forces_for(system)`` returns."""
    import openmm
    from openmm import app, unit
    from openmm.app.metadynamics import BiasVariable, Metadynamics
    from peptide import START_PDB

    pdb = app.PDBFile(io.StringIO(START_PDB))
    system = app.ForceField("amber14-all.xml").createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds
    )
    variables = forces_for()
    meta = None
    if variables:
        bias = [
            BiasVariable(f, lo, hi, width, periodic) for f, lo, hi, width, periodic in variables
        ]
        meta = Metadynamics(system, bias, 300 * unit.kelvin, 6.0, 1.2, 250)
    integrator = openmm.LangevinMiddleIntegrator(
        300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds
    )
    platform = openmm.Platform.getPlatformByName("CPU")
    sim = app.Simulation(pdb.topology, system, integrator, platform, {"Threads": "1"})
    sim.context.setPositions(pdb.positions)
    step = sim.step if meta is None else (lambda n: meta.step(sim, n))
    step(200)
    t = time.perf_counter()
    step(steps)
    return steps * 2e-6 / (time.perf_counter() - t) * 86400


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import openmm
    from peptide import simulate_alanine_dipeptide

    import polyvae
    from polyvae.export import EncoderCV, encoder_spec, openmm_force

    with tempfile.TemporaryDirectory() as tmp:
        frames = polyvae.io.read_npz(simulate_alanine_dipeptide(Path(tmp) / "ala2.npz"))
    models = {
        hidden: polyvae.train(
            frames, features="torsions", hidden=hidden, epochs=30, progress=False, seed=0
        )
        for hidden in [(128, 128, 128), (32, 32)]
    }

    def torsions():
        out = []
        for q in PHI_PSI:
            f = openmm.CustomTorsionForce("theta")
            f.addTorsion(*q, [])
            out.append((f, -np.pi, np.pi, 0.35, True))
        return out

    def latent(model):
        z, _ = model.encode(frames)
        lo, hi = z.min(axis=0) - 2.0, z.max(axis=0) + 2.0
        return lambda: [
            (openmm_force(model, k, atoms=range(22)), lo[k], hi[k], 0.05 * (hi[k] - lo[k]), False)
            for k in range(2)
        ]

    result = {"steps": args.steps, "ns_per_day": {}, "cv_microseconds": {}}
    runs = {"plain": lambda: [], "metadynamics phi, psi": torsions}
    for hidden, model in models.items():
        runs[f"metadynamics polyvae {'x'.join(map(str, hidden))}"] = latent(model)
        cv = EncoderCV(encoder_spec(model, atoms=range(22)), 0)
        x = frames.positions[0].astype(np.float64)
        for _ in range(50):
            cv.value_and_gradient(x)
        t = time.perf_counter()
        for _ in range(1000):
            cv.value_and_gradient(x)
        result["cv_microseconds"]["x".join(map(str, hidden))] = (time.perf_counter() - t) * 1e3
    for name, forces_for in runs.items():
        result["ns_per_day"][name] = round(_simulation(forces_for, args.steps), 1)
    plain = result["ns_per_day"]["plain"]
    result["fraction_of_plain"] = {k: round(v / plain, 3) for k, v in result["ns_per_day"].items()}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
