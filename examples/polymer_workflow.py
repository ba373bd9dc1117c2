"""The polymer workflow step by step with the Python API.

Trains a VAE on the bundled 2D bead-spring polymer, then uses it: latent CVs, new
conformations and their distance marginals, the most compact structure, and a
custom objective (the most stretched chain). Run from the repository root::

    python examples/polymer_workflow.py --out polymer_results
"""

import argparse
from pathlib import Path

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import polyvae  # noqa: E402
from polyvae import plotting  # noqa: E402
from polyvae.analysis import (  # noqa: E402
    compare_structures,
    distance_marginals,
    optimize_latent,
    radius_of_gyration,
)
from polyvae.job import DEFAULT_DATA  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="polymer_results", type=Path)
    ap.add_argument("--epochs", type=int, default=250)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    frames = polyvae.read_npz(DEFAULT_DATA)  # the bundled polymer (package data)
    model = polyvae.train(frames, latent_dim=2, epochs=args.epochs, seed=0)
    model.save(args.out / "model.polyvae")

    # latent CVs: the encoder mean of every frame, coloured by radius of gyration
    cv, _ = model.encode(frames)
    aligned = model.pipeline.align_frames(frames)
    rg = radius_of_gyration(aligned)
    ax = plotting.plot_latent(cv, color_by=rg)
    ax.figure.savefig(args.out / "latent_rg.png", dpi=110)

    # new conformations and how well they reproduce the training distances
    generated = model.generate(2048, seed=1)
    marg = distance_marginals(aligned, generated, unit=frames.unit)
    report = compare_structures(aligned, generated)
    print(f"mean normalized W1 over {len(marg.pairs)} pairs: {marg.mean_w1_normalized:.3f}")
    print(f"worst pairs: {marg.worst(3).tolist()}")
    print(
        f"bond length, training {report.bond_mean_train:.3f} ± {report.bond_std_train:.3f}, "
        f"generated {report.bond_mean_generated:.3f} ± {report.bond_std_generated:.3f} {frames.unit}"
    )

    # the most compact structure the decoder can make without overlapping beads
    compact = optimize_latent(model, "rg")
    print(f"lowest Rg: optimized {compact.objective[0]:.3f}, training {rg.min():.3f} {frames.unit}")

    # any differentiable function of the structure works: here the most stretched chain
    def minus_end_to_end(x):
        return -jnp.linalg.norm(x[-1] - x[0])

    stretched = optimize_latent(model, minus_end_to_end, n_starts=16, steps=300)
    print(f"longest end-to-end distance: {-stretched.objective[0]:.3f} {frames.unit}")
    ax = plotting.plot_structures(
        {"most compact": compact.positions[0], "most stretched": stretched.positions[0]}
    )
    ax.figure.savefig(args.out / "extremes.png", dpi=110)
    plt.close("all")
    print(f"figures and model in {args.out}")


if __name__ == "__main__":
    main()
