"""The core pipeline's headline figures, as JSON: quality, not speed.

- ``chapter_w1``: mean normalized W1 over the 66 distance marginals of the chapter's
  polymer (``long_paths.npz``, default settings, 2048 generated frames, seeds 0-2);
- ``adk_heldout_corr``: AdK CA atoms (MDAnalysisTests PSF), trained on the DIMS path
  ``adk_dims2.dcd`` (latent 2, 300 epochs), encoded on the held-out path
  ``adk_dims.dcd``: the largest |Pearson r| between a latent coordinate and the
  progress along the held-out path (frame index), seeds 0-2.

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


def adk_heldout(seeds=(0, 1, 2)) -> dict:
    import MDAnalysis as mda
    from MDAnalysisTests.datafiles import DCD, DCD2, PSF

    import polyvae

    def ca_frames(path):
        u = mda.Universe(PSF, path)
        ca = u.select_atoms("name CA")
        pos = np.stack([ca.positions.copy() for _ in u.trajectory])
        return polyvae.Frames(pos, masses=ca.masses, names=ca.names)

    train, heldout = ca_frames(DCD2), ca_frames(DCD)
    progress = np.arange(heldout.n_frames, dtype=np.float64)
    out = {}
    for seed in seeds:
        model = polyvae.train(train, latent_dim=2, epochs=300, seed=seed, progress=False)
        z, _ = model.encode(heldout)
        r = [abs(np.corrcoef(z[:, k], progress)[0, 1]) for k in range(z.shape[1])]
        out[str(seed)] = round(float(max(r)), 4)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--shared", default=None, help="folder holding data/dmol (default: ../shared)"
    )
    args = parser.parse_args(argv)
    import polyvae

    result = {"polyvae": polyvae.__file__, "adk_heldout_corr": adk_heldout()}
    shared = Path(args.shared or Path(__file__).resolve().parents[1].parent / "shared")
    if (shared / "data" / "dmol" / "long_paths.npz").exists():
        result["chapter_w1"] = chapter_w1(shared)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
