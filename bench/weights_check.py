"""Does weighted training undo a bias? Frames drawn as a biased run visits them.

The bundled polymer's 4096 frames stand for the unbiased ensemble. A bias V with
``V/kT = -a (Rg - <Rg>) / std(Rg)`` favours extended chains: 2048 frames are drawn with
probability ``∝ exp(-V/kT)``, as a run under that bias would visit them, and carry the
weights ``exp(V/kT)``. A model is trained on them without and with the weights (same
seed), and its generated distance marginals are compared with the unbiased frames
(mean W1/σ over all pairs). Prints one line per model.

Usage::

    python bench/weights_check.py [--strength 0.8] [--epochs 100] [--seeds 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import polyvae
from polyvae import geometry
from polyvae.job import DEFAULT_DATA
from polyvae.measures.marginals import distance_marginals
from polyvae.measures.weights import effective_sample_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strength", type=float, default=0.8, help="a in V/kT (default 0.8)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    a = p.parse_args()
    x = polyvae.io.read_frames(DEFAULT_DATA).positions
    uniform = np.full(x.shape[1], 1.0 / x.shape[1])
    rg = geometry.radius_of_gyration(x.astype(np.float64), uniform)
    v_kt = -a.strength * (rg - rg.mean()) / rg.std()
    prob = np.exp(-v_kt) / np.exp(-v_kt).sum()
    idx = np.random.default_rng(0).choice(len(x), size=2048, p=prob)
    biased, w = x[idx], np.exp(v_kt[idx])
    print(
        f"# biased frames: mean Rg {rg[idx].mean():.3f} (unbiased {rg.mean():.3f}), "
        f"effective sample size {effective_sample_size(w):.0f} of {len(idx)}"
    )
    for seed in a.seeds:
        for name, weights in (("unweighted", None), ("weighted", w)):
            t0 = time.perf_counter()
            model = polyvae.train(
                biased, epochs=a.epochs, seed=seed, weights=weights, progress=False
            )
            gen = model.generate(2048, seed=1)
            marg = distance_marginals(model.pipeline.align_frames(x), gen)
            g_rg = geometry.radius_of_gyration(gen.astype(np.float64), uniform)
            print(
                f"seed {seed} {name:10s} W1/σ vs unbiased {marg.mean_w1_normalized:.3f}  "
                f"generated mean Rg {g_rg.mean():.3f}  ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
