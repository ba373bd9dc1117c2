"""Encoding throughput and memory on a long trajectory, next to MDAnalysis' raw reading.

Writes a DCD of ``--frames`` frames (default 100,000) of the 214 CA atoms of
adenylate kinase (the MDAnalysisTests AdK trajectory, cycled, with thermal-size noise
so that no two frames are equal), trains a small model on its first frames, then in
the same run:

- reads the whole file with MDAnalysis, copying the CA positions of every frame
  (the raw rate);
- encodes the whole file with polyvae's streaming reader (read, center, align,
  standardize, encode, chunk by chunk);
- measures the peak memory (max RSS) of encoding 10,000 and of encoding all frames,
  each in a fresh process.

Prints one JSON object. Run from the repository root:
``python bench/encode_throughput.py [--frames 100000] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_long_dcd(workdir: Path, n_frames: int) -> tuple[Path, Path]:
    """A CA-only PDB and a DCD of ``n_frames`` frames; reused when already there."""
    import MDAnalysis as mda
    from MDAnalysisTests.datafiles import DCD, PSF

    pdb, dcd = workdir / "adk_ca.pdb", workdir / f"adk_ca_{n_frames}.dcd"
    if dcd.exists() and pdb.exists():
        return pdb, dcd
    u = mda.Universe(PSF, DCD)
    ca = u.select_atoms("name CA")
    ca.write(pdb)
    frames = np.array([ca.positions.copy() for _ in u.trajectory])
    rng = np.random.default_rng(0)
    out = mda.Universe(pdb)
    with mda.Writer(str(dcd), n_atoms=len(ca)) as w:
        for i in range(n_frames):
            out.atoms.positions = frames[i % len(frames)] + rng.normal(0, 0.3, frames.shape[1:])
            w.write(out.atoms)
    return pdb, dcd


def raw_read(pdb: Path, dcd: Path) -> tuple[int, float]:
    import MDAnalysis as mda

    u = mda.Universe(pdb, dcd)
    ag = u.atoms
    t0 = time.perf_counter()
    n = 0
    for _ in u.trajectory:
        ag.positions.copy()
        n += 1
    return n, time.perf_counter() - t0


def polyvae_encode(model_path: Path, pdb: Path, dcd: Path, stop: int | None = None):
    import polyvae
    from polyvae import io

    model = polyvae.load_model(model_path)
    model.encode(np.zeros((1, model.n_atoms, 3), np.float32))  # compile outside the clock
    t0 = time.perf_counter()
    chunks = io.iter_frames(dcd, topology=pdb, atoms=io.model_atoms(model), stop=stop)
    mean, _, _ = model.encode_chunks(chunks)
    return len(mean), time.perf_counter() - t0


def _vm_hwm_kb() -> int:
    """Peak resident memory of this process (VmHWM; reset by exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_memory_mb(model_path: Path, pdb: Path, dcd: Path, stop: int, env=None) -> float:
    """Peak resident memory of a fresh process that encodes the first ``stop`` frames."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from encode_throughput import polyvae_encode, _vm_hwm_kb; from pathlib import Path;"
        "polyvae_encode(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]));"
        "print(_vm_hwm_kb())"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(ROOT / "bench"),
            str(model_path),
            str(pdb),
            str(dcd),
            str(stop),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "polyvae_bench")
    a = ap.parse_args(argv)
    a.workdir.mkdir(parents=True, exist_ok=True)
    import polyvae

    t0 = time.perf_counter()
    pdb, dcd = write_long_dcd(a.workdir, a.frames)
    t_write = time.perf_counter() - t0
    model_path = a.workdir / "adk_ca.polyvae"
    if not model_path.exists():
        frames = polyvae.io.read_frames(dcd, topology=pdb, stop=2000)
        polyvae.train(frames, epochs=20, progress=False, output=model_path)

    # each twice, taking turns, best of two: disk caching and machine load favour neither
    n_raw, t_raw = raw_read(pdb, dcd)
    n_enc, t_enc = polyvae_encode(model_path, pdb, dcd)
    t_raw = min(t_raw, raw_read(pdb, dcd)[1])
    t_enc = min(t_enc, polyvae_encode(model_path, pdb, dcd)[1])
    small = min(10_000, a.frames)
    mem_small = peak_memory_mb(model_path, pdb, dcd, small)
    mem_all = peak_memory_mb(model_path, pdb, dcd, a.frames)
    # glibc keeps freed heap pages unless told to trim them; with trimming on, what the
    # process really holds shows (no growth = no leak)
    trim = {"MALLOC_TRIM_THRESHOLD_": "0"}
    trim_small = peak_memory_mb(model_path, pdb, dcd, small, trim)
    trim_all = peak_memory_mb(model_path, pdb, dcd, a.frames, trim)
    result = {
        "benchmark": "encode_throughput",
        "frames": n_enc,
        "atoms": 214,
        "dcd_mb": round(dcd.stat().st_size / 2**20, 1),
        "write_seconds": round(t_write, 1),
        "cpu_count": os.cpu_count(),
        "mdanalysis_raw_frames_per_s": round(n_raw / t_raw),
        "polyvae_encode_frames_per_s": round(n_enc / t_enc),
        "encode_over_raw": round((n_enc / t_enc) / (n_raw / t_raw), 2),
        "target_encode_over_raw": 0.8,
        f"peak_rss_mb_encode_{small}": round(mem_small, 1),
        f"peak_rss_mb_encode_{a.frames}": round(mem_all, 1),
        "peak_rss_ratio": round(mem_all / mem_small, 2),
        f"peak_rss_mb_encode_{small}_malloc_trim": round(trim_small, 1),
        f"peak_rss_mb_encode_{a.frames}_malloc_trim": round(trim_all, 1),
        "peak_rss_ratio_malloc_trim": round(trim_all / trim_small, 2),
        "latent_dim": 2,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
