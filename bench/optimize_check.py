"""Do latent-optimized structures stay valid and compact? Both polymer datasets, seeds 0-4.

For each dataset (the bundled 2D polymer and the chapter's long_paths.npz) and training
seed, trains a model with the CLI defaults, minimizes Rg with
``optimize_latent(model, "rg", percentiles=(0.5, 99.5), start_frames=frames)`` and
prints, for the best structure returned: its Rg against the most compact training
frame's (length units of the data), whether every bond lies inside the training
[0.5, 99.5] percentile range of that bond, and its closest non-excluded contact against
the training minimum for such pairs. ``ok`` needs all three.

Usage::

    python bench/optimize_check.py [--seeds 0 1 2 3 4] [--epochs 250] [--chapter PATH]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from polyvae import geometry
from polyvae.analysis.optimize import NoValidStructureError, optimize_latent
from polyvae.io import read_frames
from polyvae.job import DEFAULT_DATA
from polyvae.measures.validity import StructureChecks
from polyvae.training.trainer import train

CHAPTER = Path(__file__).resolve().parents[2] / "shared" / "data" / "dmol" / "long_paths.npz"
BAND = (0.5, 99.5)


def check_one(frames, seed: int, epochs: int) -> dict:
    t0 = time.perf_counter()
    model = train(frames, epochs=epochs, seed=seed, progress=False)
    return {"seed": seed, "train_s": time.perf_counter() - t0, **optimize_figures(model, frames)}


def optimize_figures(model, frames) -> dict:
    """Minimize Rg in the latent space of ``model`` and judge the structure it returns."""
    aligned = model.pipeline.align_frames(frames)
    w = geometry.mass_weights(model.pipeline.masses, model.n_atoms)
    rg_train = float(geometry.radius_of_gyration(aligned, w).min())
    # the acceptance criteria, computed here from the frames, not from the model file
    ref = StructureChecks.from_training(aligned, percentiles=BAND)
    t0 = time.perf_counter()
    try:
        res = optimize_latent(model, "rg", percentiles=BAND, start_frames=frames)
    except NoValidStructureError as exc:
        return {"error": str(exc)}
    t_opt = time.perf_counter() - t0
    x = res.positions[0]
    lengths = geometry.pair_distances(x, ref.bonds)
    bonds_in = bool(np.all((lengths >= ref.bond_range[:, 0]) & (lengths <= ref.bond_range[:, 1])))
    contact = float(geometry.pair_distances(x, ref.pairs).min())
    return {
        "rg": float(res.objective[0]),
        "rg_train_min": rg_train,
        "bonds_in": bonds_in,
        "contact": contact,
        "contact_train_min": ref.min_contact,
        "all_checks": bool(ref.check(x).valid[0]),
        "n_valid": len(res.objective),
        "noise_rms": None if res.noise is None else float(res.noise_rms[0]),
        "opt_s": t_opt,
        "unit": model.unit,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=250, help="CLI default 250")
    p.add_argument("--chapter", type=Path, default=CHAPTER)
    a = p.parse_args()
    sets = [("polymer2d (bundled)", DEFAULT_DATA)]
    if a.chapter.exists():
        sets.append(("long_paths (chapter)", a.chapter))
    else:
        print(f"# {a.chapter} not found: the chapter's data set is skipped")
    head = (
        f"{'data':22s} {'seed':>4s} {'Rg opt':>8s} {'Rg train min':>12s} {'bonds in':>8s} "
        f"{'min contact':>11s} {'train min':>9s} {'valid':>5s} {'ok':>3s} {'train s':>7s} {'opt s':>6s}"
    )
    print(head)
    n_ok = n = 0
    for name, path in sets:
        frames = read_frames(path)
        for seed in a.seeds:
            r = check_one(frames, seed, a.epochs)
            n += 1
            if "error" in r:
                print(f"{name:22s} {seed:4d}  no valid structure: {r['error']}")
                continue
            ok = (
                r["rg"] < r["rg_train_min"]
                and r["bonds_in"]
                and r["contact"] >= r["contact_train_min"]
            )
            n_ok += ok
            print(
                f"{name:22s} {seed:4d} {r['rg']:8.4f} {r['rg_train_min']:12.4f} "
                f"{str(r['bonds_in']):>8s} {r['contact']:11.4f} {r['contact_train_min']:9.4f} "
                f"{r['n_valid']:5d} {'yes' if ok else 'NO':>3s} {r['train_s']:7.1f} {r['opt_s']:6.1f}",
                flush=True,
            )
        print(f"# lengths in {r.get('unit', '?')} (the unit the data file states)")
    print(
        f"# {n_ok} of {n} pass: Rg below the most compact training frame, every bond in the "
        f"training [{BAND[0]}, {BAND[1]}] percentile range, no non-excluded contact below the "
        "training minimum"
    )


if __name__ == "__main__":
    main()
