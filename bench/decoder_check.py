"""Generated-structure quality of the two decoders, on the bundled polymer, the chapter's
polymer, AdK Cα and alanine dipeptide; prints one JSON line per model.

    python bench/decoder_check.py polymer --seeds 0 1 2 3 4
    python bench/decoder_check.py chapter --seeds 0 1 2 3 4
    python bench/decoder_check.py adk --seeds 0 1 2 3 4
    python bench/decoder_check.py peptide --seeds 0 1 2 3 4

Figures per model: mean W1/σ over all pair-distance marginals and over bonded pairs
(generated vs training frames, 2048 generated), the generated bond-length spread over
the training spread (pooled over bonds), the fraction of generated structures passing
the model's structure checks; AdK: the fraction of Cα–Cα bonds in [3.6, 4.0] Å (and
the MD frames' own fraction: the cis Phe86-Pro87 bond lies near 3 Å in every frame), of
structures with a Cα pair |i - j| >= 3 closer than 3.5 Å, the Cα angle spread (pooled
and the median over angles), and the held-out CV (train on DCD2, encode DCD): |Spearman|
with the NMP and LID domain angles; peptide: heavy-atom bond spread and the fraction of
generated structures whose Cα keeps its MD handedness.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tools")]

import polyvae  # noqa: E402
from polyvae import geometry  # noqa: E402
from polyvae.measures.marginals import distance_marginals  # noqa: E402

CA_BOND_RANGE = (3.6, 4.0)  # Å, consecutive Cα–Cα distances counted as physical
CLASH_DISTANCE = 3.5  # Å, a Cα pair closer than this is a clash
CLASH_EXCLUDE = 2  # pairs more than 2 bonds apart: |i - j| >= 3 along a Cα chain


def ca_bond_fraction(positions: np.ndarray) -> float:
    """Fraction of consecutive Cα–Cα distances inside ``CA_BOND_RANGE``.

    Parameters
    ----------
    positions : ndarray (T, N, 3)
        Cα traces in Å, atoms in chain order.

    Returns
    -------
    float
        Over all bonds of all structures.
    """
    lengths = geometry.pair_distances(positions, geometry.chain_bonds(positions.shape[1]))
    low, high = CA_BOND_RANGE
    return float(((lengths >= low) & (lengths <= high)).mean())


def ca_clash_fraction(positions: np.ndarray) -> float:
    """Fraction of structures with a Cα pair ``|i - j| >= 3`` closer than ``CLASH_DISTANCE``.

    Parameters
    ----------
    positions : ndarray (T, N, 3)
        Cα traces in Å, atoms in chain order.

    Returns
    -------
    float
    """
    n = positions.shape[1]
    pairs = geometry.nonbonded_pairs(n, geometry.chain_bonds(n), CLASH_EXCLUDE)
    closest = geometry.pair_distances(positions, pairs).min(axis=1)
    return float((closest < CLASH_DISTANCE).mean())


def _figures(model, frames, n=2048, seed=1) -> dict:
    train = model.pipeline.align_frames(frames).astype(np.float64)
    gen = model.generate(n, seed=seed).astype(np.float64)
    bonds = model.bonds
    marg = distance_marginals(train, gen)
    w1 = np.asarray(marg.w1_normalized)
    pairs = np.sort(np.asarray(marg.pairs), axis=1)
    bonded = np.isin(pairs[:, 0] * 100000 + pairs[:, 1], np.sort(bonds, 1) @ [100000, 1])
    lt, lg = geometry.pair_distances(train, bonds), geometry.pair_distances(gen, bonds)
    return (
        {
            "w1": round(float(np.nanmean(w1)), 4),
            "w1_bonded": round(float(np.nanmean(w1[bonded])), 4),
            "bond_spread": round(float(lg.std() / lt.std()), 3),
            "valid": round(model.check_structures(gen.astype(np.float32)).fraction_valid, 4),
            "cartesian_weight": None
            if model.pipeline.layout is None
            else model.pipeline.layout.cartesian_weight,
        },
        train,
        gen,
    )


def polymer(decoder, seed, data=None):
    from polyvae.job import DEFAULT_DATA

    frames = polyvae.io.read_frames(data or DEFAULT_DATA)
    t = time.perf_counter()
    model = polyvae.train(frames, decoder=decoder, seed=seed, progress=False)
    out, _, _ = _figures(model, frames)
    out["train_s"] = round(time.perf_counter() - t, 1)
    from optimize_check import optimize_figures

    opt = optimize_figures(model, frames)
    out["rg_opt"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in opt.items()}
    return out


def chapter(decoder, seed):
    return polymer(decoder, seed, ROOT.parent / "shared" / "data" / "dmol" / "long_paths.npz")


def adk(decoder, seed):
    import MDAnalysis as mda
    from acceptance import adk_domain_angles
    from MDAnalysisTests.datafiles import DCD, DCD2, PSF
    from scipy.stats import spearmanr

    def ca(u):
        g = u.select_atoms("name CA")
        pos = np.stack([g.positions.copy() for _ in u.trajectory])
        return polyvae.Frames(pos, masses=g.masses, names=g.names)

    u = mda.Universe(PSF, DCD)
    f2, f1 = ca(mda.Universe(PSF, DCD2)), ca(u)
    both = polyvae.Frames.concat([f2, f1])
    t = time.perf_counter()
    model = polyvae.train(
        both, latent_dim=2, epochs=300, seed=seed, decoder=decoder, progress=False
    )
    out, train, gen = _figures(model, both)
    out["train_s"] = round(time.perf_counter() - t, 1)
    n = train.shape[1]
    bonds = geometry.chain_bonds(n)
    out["bonds_in_3.6_4.0"] = round(ca_bond_fraction(gen), 4)
    # the MD frames' own figure (cis Phe86-Pro87)
    out["md_bonds_in_3.6_4.0"] = round(ca_bond_fraction(train), 4)
    out["clash_frac_3.5"] = round(ca_clash_fraction(gen), 4)
    tri = geometry.angle_triples(n, bonds)
    at, ag = geometry.bond_angles(train, tri), geometry.bond_angles(gen, tri)
    out["angle_spread_pooled"] = round(float(ag.std() / at.std()), 3)
    out["angle_spread_median"] = round(float(np.median(ag.std(0) / at.std(0))), 3)
    held = polyvae.train(f2, latent_dim=2, epochs=300, seed=seed, decoder=decoder, progress=False)
    z, _ = held.encode(f1)
    for name, a in adk_domain_angles(u).items():
        out[name] = round(max(abs(spearmanr(z[:, k], a).statistic) for k in range(2)), 4)
    return out


def peptide(decoder, seed):
    import tempfile

    from peptide import simulate_alanine_dipeptide

    path = Path(tempfile.gettempdir()) / "polyvae-ala2-seed0.npz"
    frames = polyvae.io.read_frames(simulate_alanine_dipeptide(path))
    t = time.perf_counter()
    model = polyvae.train(frames, decoder=decoder, seed=seed, epochs=250, progress=False)
    out, train, gen = _figures(model, frames)
    out["train_s"] = round(time.perf_counter() - t, 1)
    heavy = np.array([not str(s).startswith("H") for s in frames.names])
    hb = np.array([heavy[i] and heavy[j] for i, j in model.bonds])
    b = model.bonds[hb]
    out["heavy_bond_spread"] = round(
        float(geometry.pair_distances(gen, b).std() / geometry.pair_distances(train, b).std()), 3
    )
    centres = geometry.chiral_centres(frames.n_atoms, model.bonds, list(frames.names))
    ref = np.sign(geometry.chirality(train, centres).sum(axis=0))
    out["chirality_kept"] = round(float((geometry.chirality(gen, centres) == ref).all(1).mean()), 4)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("system", choices=["polymer", "chapter", "adk", "peptide"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--decoders", nargs="+", default=["internal", "cartesian"])
    a = p.parse_args(argv)
    fn = globals()[a.system]
    for seed in a.seeds:
        for decoder in a.decoders:
            res = {"system": a.system, "decoder": decoder, "seed": seed, **fn(decoder, seed)}
            print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
