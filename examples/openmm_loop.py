"""The enhanced-sampling loop on alanine dipeptide in OpenMM: learn, bias, reweight, learn again.

Alanine dipeptide in vacuum (Amber ff14SB, bonds to hydrogen constrained, Langevin at
300 K, 2 fs) on OpenMM's CPU platform. Round 0 is a plain run from the C7eq structure of
``tools/peptide.py`` (φ < 0). Each later round trains polyvae on the heavy atoms' frames
of every earlier round (their distances, or with ``--features torsions`` the sine and
cosine of φ and ψ; 2D latent; each frame weighted as below),
exports the latent CVs as OpenMM forces (:func:`polyvae.export.openmm_force`), and runs
well-tempered metadynamics on them (``openmm.app.metadynamics``) from where the last
round ended. A biased round's frames are weighted by the bias that round ended with
(``exp(V(s_t) / kT)``, the final bias at each frame's CV). Side by side, with the same
steps: metadynamics on φ and ψ (the best hand-made CVs of this molecule) and plain MD.

Per round and run the summary gives the transitions between the φ < 0 and φ > 0 basins
(committed crossings: φ < -30° to 30° < φ < 120° and back), F(φ) against a reference
(mean |F - F_ref| in kT over the bins where F_ref <= 4 kT, offsets matched), the
effective sample size of the weights, and a figure of φ, ψ and F(φ). The reference is a
plain run (``--reference-ns``), or the φ of an earlier run in ``--reference FILE.npz``
(key ``phi``, radians).

Needs ``openmm`` (polyvae's test extra). Run from the repository root::

    python examples/openmm_loop.py --out openmm_loop --rounds 4 --ns 2 --reference-ns 20
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import polyvae  # noqa: E402
from polyvae.export import openmm_force  # noqa: E402
from polyvae.geometry import dihedrals  # noqa: E402
from polyvae.measures.weights import effective_sample_size  # noqa: E402

# the peptide's start structure is a tool of the repository, not part of the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from peptide import START_PDB  # noqa: E402

TEMPERATURE = 300.0  # K
KT = 0.0083144626 * TEMPERATURE  # kJ/mol
DT_PS = 0.002
PHI, PSI = (4, 6, 8, 14), (6, 8, 14, 16)  # C-N-CA-C, N-CA-C-N (0-based, Amber order)
BIAS_FACTOR, HEIGHT, EVERY = 6.0, 1.2, 250  # well-tempered metadynamics: γ, kJ/mol, steps
FRAME_EVERY = 250  # steps between saved frames (0.5 ps)


def _openmm():
    import openmm
    from openmm import app, unit

    return openmm, app, unit


def peptide_system():
    """The topology, System and start positions (nm) of alanine dipeptide in vacuum."""
    openmm, app, unit = _openmm()
    pdb = app.PDBFile(io.StringIO(START_PDB))
    system = app.ForceField("amber14-all.xml").createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds
    )
    return pdb.topology, system, pdb.positions


def phi_psi(positions: np.ndarray) -> np.ndarray:
    """φ and ψ (T, 2), radians, of positions (T, 22, 3)."""
    return dihedrals(np.asarray(positions, np.float64), np.array([PHI, PSI]))


def run(kind: str, steps: int, start, seed: int, model=None, heavy=None, cv_range=None) -> dict:
    """Run ``steps`` steps of ``kind`` ("plain", "phipsi" or "polyvae") from ``start``
    (positions, nm); "polyvae" biases the model's latent CVs within ``cv_range`` (lo, hi).
    Returns frames (Å), φ/ψ, weights and the end positions."""
    openmm, app, unit = _openmm()
    from openmm.app.metadynamics import BiasVariable, Metadynamics

    topology, system, _ = peptide_system()
    variables = []
    if kind == "phipsi":
        for quad in (PHI, PSI):
            force = openmm.CustomTorsionForce("theta")
            force.addTorsion(*quad, [])
            variables.append(BiasVariable(force, -np.pi, np.pi, 0.35, True))
    elif kind == "polyvae":
        lo, hi = cv_range
        for k in range(model.latent_dim):
            width = 0.05 * (hi[k] - lo[k])
            force = openmm_force(model, k, atoms=heavy)
            variables.append(BiasVariable(force, lo[k], hi[k], width))
    meta = None
    if variables:
        meta = Metadynamics(system, variables, TEMPERATURE, BIAS_FACTOR, HEIGHT, EVERY)
    integrator = openmm.LangevinMiddleIntegrator(
        TEMPERATURE * unit.kelvin, 1 / unit.picosecond, DT_PS * unit.picoseconds
    )
    integrator.setRandomNumberSeed(seed + 1)
    platform = openmm.Platform.getPlatformByName("CPU")
    sim = app.Simulation(topology, system, integrator, platform, {"Threads": "1"})
    sim.context.setPositions(start)
    sim.context.setVelocitiesToTemperature(TEMPERATURE * unit.kelvin, seed + 1)
    frames, cvs = [], []
    for _ in range(steps // FRAME_EVERY):
        if meta is None:
            sim.step(FRAME_EVERY)
        else:
            meta.step(sim, FRAME_EVERY)
            cvs.append(meta.getCollectiveVariables(sim))
        state = sim.context.getState(getPositions=True)
        frames.append(state.getPositions(asNumpy=True).value_in_unit(unit.angstrom))
    frames = np.array(frames)
    weights = np.ones(len(frames))
    if meta is not None:  # the bias the round ended with, at each frame's CV
        bias = -meta.getFreeEnergy()._value * (BIAS_FACTOR - 1) / BIAS_FACTOR
        weights = np.exp(_on_grid(bias, np.array(cvs), variables) / KT)
    end = sim.context.getState(getPositions=True).getPositions(asNumpy=True)
    return {"positions": frames, "angles": phi_psi(frames), "weights": weights, "end": end}


def _on_grid(grid: np.ndarray, cvs: np.ndarray, variables) -> np.ndarray:
    """Values of an OpenMM metadynamics grid (axes reversed: the last CV first) at CVs."""
    from scipy.interpolate import RegularGridInterpolator

    axes = [np.linspace(v.minValue, v.maxValue, v.gridWidth) for v in variables]
    table = np.transpose(grid, tuple(range(grid.ndim))[::-1])
    points = np.clip(cvs, [a[0] for a in axes], [a[-1] for a in axes])
    return RegularGridInterpolator(axes, table)(points)


def transitions(phi: np.ndarray) -> int:
    """Committed crossings between φ < -30° and 30° < φ < 120°."""
    deg = np.degrees(phi)
    state = np.where(deg < -30, 0, np.where((deg > 30) & (deg < 120), 1, -1))
    seen = state[state >= 0]
    return int(np.count_nonzero(np.diff(seen)))


def reached_positive_phi(phi: np.ndarray) -> bool:
    """Whether a frame lies in the φ > 0 basin (30° < φ < 120°; β reaches φ = ±180°)."""
    deg = np.degrees(phi)
    return bool(np.any((deg > 30) & (deg < 120)))


def free_energy(phi: np.ndarray, weights: np.ndarray, bins: int = 36) -> np.ndarray:
    """F(φ) in kT (minimum 0; inf where no weight) on ``bins`` bins over (-π, π]."""
    hist, _ = np.histogram(phi, bins=bins, range=(-np.pi, np.pi), weights=weights)
    with np.errstate(divide="ignore"):
        f = -np.log(hist / hist.sum())
    return f - f[np.isfinite(f)].min()


def fes_error(f: np.ndarray, ref: np.ndarray) -> float:
    """Mean |F - F_ref| (kT) over bins where F_ref <= 4 kT, offsets matched; inf if F
    misses one of them."""
    mask = ref <= 4.0
    if not np.all(np.isfinite(f[mask])):
        return float("inf")
    diff = f[mask] - ref[mask]
    return float(np.mean(np.abs(diff - diff.mean())))


def trained_model(positions, weights, heavy, names, seed: int, epochs: int, features: str):
    """polyvae on the heavy atoms: their distances, or the sine and cosine of φ and ψ."""
    frames = polyvae.Frames(positions[:, heavy].astype(np.float32), names=tuple(names))
    extra = {}
    if features == "torsions":  # φ, ψ as indices among the heavy atoms
        extra["dihedrals"] = np.searchsorted(heavy, np.array([PHI, PSI]))
    model = polyvae.train(
        frames, features=features, decoder="cartesian", weights=weights,
        epochs=epochs, seed=seed, progress=False, **extra,
    )  # fmt: skip
    z, _ = model.encode(frames)
    span = z.max(axis=0) - z.min(axis=0)
    return model, (z.min(axis=0) - span, z.max(axis=0) + span)


def figure(path: Path, rows: dict, ref: np.ndarray) -> None:
    fig, axes = plt.subplots(1, len(rows) + 1, figsize=(4 * (len(rows) + 1), 3.6))
    centres = np.degrees(np.linspace(-np.pi, np.pi, len(ref) + 1)[:-1] + np.pi / len(ref))
    for ax, (name, r) in zip(axes[:-1], rows.items(), strict=True):
        deg = np.degrees(r["angles"])
        ax.scatter(deg[:, 0], deg[:, 1], s=2, alpha=0.4)
        title = {"polyvae": "metadynamics on polyvae z", "phipsi": "metadynamics on φ, ψ"}
        ax.set(xlim=(-180, 180), ylim=(-180, 180), xlabel="φ (°)", ylabel="ψ (°)")
        ax.set_title(title.get(name, "plain MD"))
        axes[-1].plot(centres, r["F"], label=name)
    axes[-1].plot(centres, ref, "k--", label="reference")
    axes[-1].set(xlabel="φ (°)", ylabel="F (kT)", xlim=(-180, 180), ylim=(0, 12), title="F(φ)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for figures and JSON")
    parser.add_argument("--rounds", type=int, default=4, help="biased rounds after round 0")
    parser.add_argument("--ns", type=float, default=2.0, help="ns per round and run")
    parser.add_argument("--reference-ns", type=float, default=20.0, help="plain reference run")
    parser.add_argument("--reference", type=Path, default=None, help="NPZ with 'phi' instead")
    parser.add_argument("--epochs", type=int, default=200, help="training epochs per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--features",
        choices=["distances", "torsions"],
        default="distances",
        help="the CV's inputs: heavy-atom distances (default) or sin/cos of phi and psi",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    steps = int(round(args.ns * 1000 / DT_PS))
    topology, _, start = peptide_system()
    names = [a.name for a in topology.atoms()]
    heavy = [a.index for a in topology.atoms() if a.element.symbol != "H"]

    if args.reference is not None:
        ref_phi = np.load(args.reference)["phi"]
    else:
        steps_ref = int(round(args.reference_ns * 1000 / DT_PS))
        ref_phi = run("plain", steps_ref, start, args.seed + 1000)["angles"][:, 0]
        np.savez(args.out / "reference.npz", phi=ref_phi)
    ref = free_energy(ref_phi, np.ones(len(ref_phi)))

    first = run("plain", steps, start, args.seed)
    pooled = {"positions": [first["positions"]], "weights": [first["weights"]]}
    state = {k: first for k in ("polyvae", "phipsi", "plain")}
    summary = {"ns_per_round": args.ns, "seed": args.seed, "features": args.features}
    summary["rounds"] = []
    for r in range(1, args.rounds + 1):
        positions = np.concatenate(pooled["positions"])
        weights = np.concatenate(pooled["weights"])
        heavy_names = [names[i] for i in heavy]
        model, cv_range = trained_model(
            positions, weights, heavy, heavy_names, args.seed, args.epochs, args.features
        )
        model.save(args.out / f"round{r}.polyvae")
        rows = {}
        for kind in ("polyvae", "phipsi", "plain"):
            out = run(kind, steps, state[kind]["end"], args.seed + 10 * r, model, heavy, cv_range)
            state[kind] = out
            out["F"] = free_energy(out["angles"][:, 0], out["weights"])
            rows[kind] = out
        pooled["positions"].append(rows["polyvae"]["positions"])
        pooled["weights"].append(rows["polyvae"]["weights"])
        entry = {"round": r}
        for kind, out in rows.items():
            entry[kind] = {
                "transitions": transitions(out["angles"][:, 0]),
                "reached_phi_positive": reached_positive_phi(out["angles"][:, 0]),
                "fes_error_kT": fes_error(out["F"], ref),
                "ess_fraction": effective_sample_size(out["weights"]) / len(out["weights"]),
            }
        summary["rounds"].append(entry)
        figure(args.out / f"round{r}.png", rows, ref)
        print(json.dumps(entry), flush=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
