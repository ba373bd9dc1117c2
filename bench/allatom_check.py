"""All-atom structures from the default model: the chemist's checks, per seed.

For a trajectory of an all-atom peptide (alanine dipeptide from ``tools/peptide.py``, or
any file polyvae reads with a topology), trains the default model for each seed,
generates structures and compares them with the MD frames:

- the fraction that passes the model's own structure checks, and per check;
- every angle H-X-H (methyl, ammonium, methylene): generated range against MD's;
- peptide planarity: the dihedrals CA-C-N-CA (omega) and O-C-N-H, deviation from MD;
- chirality of every CA;
- spread of heavy-atom bond lengths, generated over MD (target 0.8-1.25);
- Ramachandran basin populations (phi < 0 against phi > 0; C7eq/C5 against alpha_R)
  of the alanine, generated against MD.

Run: ``python bench/allatom_check.py TRAJ [--top TOP] --seeds 0-4 --n 2000``.
Prints one table row per seed and the median and worst of each figure.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import polyvae
from polyvae import geometry
from polyvae.features.topology import backbone_dihedrals


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def _hydrogen(name: str) -> bool:
    return geometry.element_symbol(name) == "H"


def angle_sets(names, bonds):
    """Atom triples of H-X-H angles, and the heavy-atom bonds."""
    n = len(names)
    triples = geometry.angle_triples(n, bonds)
    hxh = np.asarray(
        [t for t in triples if _hydrogen(names[t[0]]) and _hydrogen(names[t[2]])], np.int64
    ).reshape(-1, 3)
    heavy = np.asarray(
        [b for b in bonds if not (_hydrogen(names[b[0]]) or _hydrogen(names[b[1]]))], np.int64
    ).reshape(-1, 2)
    return hxh, heavy


def peptide_quads(names, bonds):
    """omega (CA-C-N-CA or CH3-C-N-CA/CA-C-N-CH3) and O-C-N-H quads of every peptide bond."""
    nb = geometry.neighbours(len(names), bonds)
    omega, o_h = [], []
    for c in (i for i, s in enumerate(names) if s == "C"):
        for nn in (k for k in nb[c] if names[k] == "N"):
            a = [k for k in nb[c] if names[k] in ("CA", "CH3")]
            b = [k for k in nb[nn] if names[k] in ("CA", "CH3")]
            o = [k for k in nb[c] if names[k] == "O"]
            h = [k for k in nb[nn] if names[k] == "H"]
            if a and b:
                omega.append((a[0], c, nn, b[0]))
            if o and h:
                o_h.append((o[0], c, nn, h[0]))
    return np.asarray(omega, np.int64).reshape(-1, 4), np.asarray(o_h, np.int64).reshape(-1, 4)


def _deviation_from_180(d):
    return np.degrees(np.pi - np.abs(d))


def figures(model, md: np.ndarray, gen: np.ndarray, names, bonds, recon=None) -> dict:
    """The figures of one model: generated ``gen`` against MD ``md`` (both (T, N, 3));
    ``recon``, optional, the MD frames reconstructed (encoder mean, decoder)."""
    md, gen = md.astype(np.float64), gen.astype(np.float64)
    report = model.check_structures(gen)
    out = {k: round(v, 4) for k, v in report.to_dict().items() if k.startswith("fraction")}
    hxh, heavy = angle_sets(names, bonds)
    a_md = np.degrees(geometry.bond_angles(md, hxh))
    a_gen = np.degrees(geometry.bond_angles(gen, hxh))
    # how far outside MD's range each H-X-H angle goes, worst angle, degrees
    below = (a_md.min(0) - a_gen.min(0)).max()
    above = (a_gen.max(0) - a_md.max(0)).max()
    out["hxh_md_range"] = [round(float(a_md.min()), 1), round(float(a_md.max()), 1)]
    out["hxh_gen_range"] = [round(float(a_gen.min()), 1), round(float(a_gen.max()), 1)]
    out["hxh_beyond_md_deg"] = round(float(max(below, above, 0.0)), 2)
    omega, o_h = peptide_quads(names, bonds)
    for label, quads in (("omega", omega), ("OCNH", o_h)):
        if len(quads):
            dev_md = _deviation_from_180(geometry.dihedrals(md, quads))
            dev_gen = _deviation_from_180(geometry.dihedrals(gen, quads))
            out[f"{label}_dev_md_p99"] = round(float(np.percentile(dev_md, 99)), 2)
            out[f"{label}_dev_gen_p99"] = round(float(np.percentile(dev_gen, 99)), 2)
            out[f"{label}_trans_gen"] = round(float((dev_gen < 90).mean()), 5)
    chiral = geometry.chiral_centres(len(names), bonds, names)
    ca = np.asarray([q for q in chiral if names[q[0]] == "CA"], np.int64).reshape(-1, 4)
    if len(ca):
        sign_md = np.sign(geometry.chirality(md, ca).sum(0))
        out["ca_chirality_ok"] = round(float((geometry.chirality(gen, ca) == sign_md).mean()), 5)
    l_md = geometry.pair_distances(md, heavy)
    l_gen = geometry.pair_distances(gen, heavy)
    ratio = l_gen.std(0) / np.maximum(l_md.std(0), 1e-9)
    out["heavy_bond_spread"] = [round(float(ratio.min()), 3), round(float(ratio.max()), 3)]
    quads = backbone_dihedrals(names, bonds)
    if len(quads) >= 2:
        phi_md = geometry.dihedrals(md, quads[:1])[:, 0]
        phi_gen = geometry.dihedrals(gen, quads[:1])[:, 0]
        psi_md = geometry.dihedrals(md, quads[1:2])[:, 0]
        psi_gen = geometry.dihedrals(gen, quads[1:2])[:, 0]

        def basins(phi, psi):
            left = phi < 0
            alpha = left & (psi > -2.3) & (psi < 0.9)  # alpha_R: -130 < psi < 50 deg
            return np.asarray([left.mean(), alpha.mean(), (left & ~alpha).mean()])

        pop_md, pop_gen = basins(phi_md, psi_md), basins(phi_gen, psi_gen)
        out["basins_md"] = np.round(pop_md, 3).tolist()
        out["basins_gen"] = np.round(pop_gen, 3).tolist()
        out["basin_error"] = round(float(np.abs(pop_md - pop_gen).max()), 4)
        if recon is not None:  # the decoder at the encoder means of the MD frames
            phi_rec = geometry.dihedrals(recon, quads[:1])[:, 0]
            psi_rec = geometry.dihedrals(recon, quads[1:2])[:, 0]
            out["basins_recon"] = np.round(basins(phi_rec, psi_rec), 3).tolist()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traj", nargs="+")
    parser.add_argument("--top")
    parser.add_argument("--select", default="all")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, help="default: polyvae's (early stopping)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.top:
        frames = polyvae.read_frames(args.traj, topology=args.top, select=args.select)
    else:
        frames = polyvae.read_npz(args.traj[0])
    rows = {}
    for seed in _seeds(args.seeds):
        start = time.perf_counter()
        options = {} if args.epochs is None else {"epochs": args.epochs}
        model = polyvae.train(frames, seed=seed, progress=False, **options)
        trained = time.perf_counter() - start
        start = time.perf_counter()
        gen = model.generate(args.n, seed=seed)
        generated = time.perf_counter() - start
        names = list(model.metadata["names"])
        bonds = np.asarray(model.metadata["atoms"]["bonds"], np.int64)
        md = model.pipeline.align_frames(frames)
        every = max(1, len(md) // args.n)
        recon = model.reconstruct(frames.positions[::every]).astype(np.float64)
        row = figures(model, md, gen, names, bonds, recon)
        row["epochs"] = len(model.history["train_elbo"])
        row["train_s"] = round(trained, 1)
        row["generate_per_s"] = round(args.n / generated, 1)
        rows[seed] = row
        print(f"seed {seed}: {json.dumps(row)}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
