"""The core pipeline's headline figures, as JSON: quality, not speed.

- ``chapter_w1``: mean normalized W1 over the 66 distance marginals of the chapter's
  polymer (``long_paths.npz``, default settings, 2048 generated frames, seeds 0-2);
- ``adk_heldout``: AdK CA atoms (MDAnalysisTests PSF), trained on the DIMS path
  ``adk_dims2.dcd`` (latent 2, 300 epochs), encoded on the held-out path
  ``adk_dims.dcd``, seeds 0-2: for each domain angle (NMP-CORE and LID-CORE, from the
  centroids of the backbone and CB atoms of the usual AdK domain residues), the largest
  |Spearman rho| between a latent coordinate and the angle over the held-out frames;
  and the largest |Pearson r| with the progress along the path (frame index).

Run: ``python bench/acceptance.py [--shared ../shared]``. Uses whichever ``polyvae``
is first on the path, so the same script measures two versions side by side.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def chapter_w1(shared: Path, seeds=(0, 1, 2)) -> dict:
    import polyvae
    from polyvae.analysis import distance_marginals

    frames = polyvae.read_npz(shared / "data" / "dmol" / "long_paths.npz")
    out = {}
    for seed in seeds:
        t0 = time.perf_counter()
        model = polyvae.train(frames, seed=seed, progress=False)
        aligned = model.pipeline.align_frames(frames)
        marg = distance_marginals(aligned, model.generate(2048, seed=1))
        out[str(seed)] = {
            "w1": round(float(marg.mean_w1_normalized), 4),
            "train_s": round(time.perf_counter() - t0, 1),
        }
    return out


def _angle(a, b, c) -> np.ndarray:
    ba, bc = a - b, c - b
    cos = np.sum(ba * bc, axis=-1) / (np.linalg.norm(ba, axis=-1) * np.linalg.norm(bc, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def adk_domain_angles(universe) -> dict:
    """NMP-CORE and LID-CORE angles (degrees) of every frame of an AdK universe."""
    sel = {
        "core_a": "resid 115:125",
        "core_b": "resid 90:100",
        "nmp": "resid 35:55",
        "lid_c": "resid 179:185",
        "lid_a": "resid 125:153",
    }
    groups = {k: universe.select_atoms(f"{v} and (backbone or name CB)") for k, v in sel.items()}
    c = {k: [] for k in groups}
    for _ in universe.trajectory:
        for k, g in groups.items():
            c[k].append(g.center_of_geometry())
    c = {k: np.asarray(v) for k, v in c.items()}
    return {
        "theta_nmp": _angle(c["nmp"], c["core_b"], c["core_a"]),
        "theta_lid": _angle(c["lid_a"], c["core_a"], c["lid_c"]),
    }


def adk_heldout(seeds=(0, 1, 2)) -> dict:
    import MDAnalysis as mda
    from MDAnalysisTests.datafiles import DCD, DCD2, PSF
    from scipy.stats import spearmanr

    import polyvae

    def ca_frames(universe):
        ca = universe.select_atoms("name CA")
        pos = np.stack([ca.positions.copy() for _ in universe.trajectory])
        return polyvae.Frames(pos, masses=ca.masses, names=ca.names)

    train = ca_frames(mda.Universe(PSF, DCD2))
    u = mda.Universe(PSF, DCD)
    heldout, angles = ca_frames(u), adk_domain_angles(u)
    progress = np.arange(heldout.n_frames, dtype=np.float64)
    out = {}
    for seed in seeds:
        model = polyvae.train(train, latent_dim=2, epochs=300, seed=seed, progress=False)
        z, _ = model.encode(heldout)
        dims = range(z.shape[1])
        res = {
            name: round(max(abs(spearmanr(z[:, k], a).statistic) for k in dims), 4)
            for name, a in angles.items()
        }
        res["path_progress_pearson"] = round(
            max(abs(np.corrcoef(z[:, k], progress)[0, 1]) for k in dims), 4
        )
        out[str(seed)] = res
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--shared", default=None, help="folder holding data/dmol (default: ../shared)"
    )
    args = parser.parse_args(argv)
    import polyvae

    result = {"polyvae": polyvae.__file__, "adk_heldout": adk_heldout()}
    shared = Path(args.shared or Path(__file__).resolve().parents[1].parent / "shared")
    if (shared / "data" / "dmol" / "long_paths.npz").exists():
        result["chapter_w1"] = chapter_w1(shared)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
