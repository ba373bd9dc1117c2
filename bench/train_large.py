"""Training on a million frames streamed from a memory-mapped file.

Writes ``--frames`` frames (default 1,000,000) of a synthetic 12-bead 3D chain (36
features: centered coordinates driven by two latent angles drawn from a three-state
Gaussian mixture, plus noise, standardized per feature) to a float32 ``np.memmap``
in a temporary folder, chunk by chunk, so that the host never holds the array in
anonymous memory. Then, each in a fresh process (so that each peak is its own):

- ``polyvae.training.trainer.fit(..., stream=True)`` on the memmap (blocks of ``--block-frames``);
- unless ``--no-fit``: ``polyvae.training.trainer.fit`` on the same memmap (the whole training
  array copied to the host heap and to the device), for comparison.

Both train encoder 36-256-256-256-2 (decoder mirrored), batch ``--batch-size``,
``--epochs`` epochs, seed 0, 10 % validation. Reported per run: seconds per epoch
(the first includes compilation), peak resident memory (VmHWM) with the resident
anonymous/file-backed split at the end (file-backed: the memmap's pages, reclaimable
page cache, and the shared libraries), and the device's peak bytes in use where the device reports it (GPUs). On a
CPU the device's memory is the host's, and glibc keeps freed blocks in its heaps:
``--mmap-threshold 1048576`` (``MALLOC_MMAP_THRESHOLD_`` for the training processes)
shows the memory actually in use, at some cost in speed. Prints one JSON object.
Run from the repository root: ``python bench/train_large.py`` (about 1.5 minutes on
2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_BEADS = 12
CHUNK = 65536


def _chain_chunk(rng: np.random.Generator, n: int, bond: np.ndarray) -> np.ndarray:
    """``n`` chain conformations (n, 36): bond angles driven by two latent angles."""
    means = np.array([[-1.5, -1.0], [0.0, 1.2], [1.5, -0.3]])
    u = means[rng.integers(0, 3, size=n)] + 0.35 * rng.normal(size=(n, 2))
    theta = bond[0] * np.cos(u[:, :1]) + bond[1] + 0.15 * rng.normal(size=(n, N_BEADS - 1))
    phi = bond[2] * np.sin(u[:, 1:]) + bond[3] + 0.15 * rng.normal(size=(n, N_BEADS - 1))
    steps = 3.8 * np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=-1
    )
    pos = np.concatenate([np.zeros((n, 1, 3)), np.cumsum(steps, axis=1)], axis=1)
    pos -= pos.mean(axis=1, keepdims=True)
    return pos.reshape(n, 3 * N_BEADS)


def write_features(path: Path, n_frames: int, seed: int = 0) -> np.memmap:
    """Standardized chain features (n_frames, 36) in a float32 memmap at ``path``."""
    rng = np.random.default_rng(seed)
    bond = rng.uniform(0.3, 1.2, size=(4, N_BEADS - 1))
    out = np.memmap(path, dtype=np.float32, mode="w+", shape=(n_frames, 3 * N_BEADS))
    total = np.zeros(3 * N_BEADS)
    total_sq = np.zeros(3 * N_BEADS)
    for start in range(0, n_frames, CHUNK):
        x = _chain_chunk(rng, min(CHUNK, n_frames - start), bond)
        out[start : start + x.shape[0]] = x
        total += x.sum(axis=0)
        total_sq += (x * x).sum(axis=0)
    mean = total / n_frames
    std = np.sqrt(np.maximum(total_sq / n_frames - mean**2, 1e-12))
    for start in range(0, n_frames, CHUNK):
        out[start : start + CHUNK] = (out[start : start + CHUNK] - mean) / std
    out.flush()
    return out


def _status_mb(*fields: str) -> dict:
    """Fields of /proc/self/status (VmHWM, RssAnon, ...) in MB."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name = line.split(":")[0]
        if name in fields:
            found[name] = round(int(line.split()[1]) / 1024.0, 1)
    return found


def train_once(mode: str, path: Path, n_frames: int, args) -> dict:
    """Train once on the memmap at ``path`` in this process; figures as a dict."""
    import jax

    from polyvae.nn.model import VAEConfig
    from polyvae.training.trainer import TrainConfig, fit

    x = np.memmap(path, dtype=np.float32, mode="r", shape=(n_frames, 3 * N_BEADS))
    config = VAEConfig(n_features=x.shape[1], hidden=tuple(args.hidden))
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=0)
    t0 = time.perf_counter()
    if mode == "stream":
        _, history = fit(x, config, tc, stream=True, block_frames=args.block_frames, progress=False)
    else:
        _, history = fit(x, config, tc, progress=False)
    wall = time.perf_counter() - t0
    stats = jax.devices()[0].memory_stats() or {}
    result = {
        "epoch_time_s": [round(t, 2) for t in history["epoch_time_s"]],
        "wall_s": round(wall, 1),
        "train_loss": [round(v, 4) for v in history["train_loss"]],
        "val_loss": [round(v, 4) for v in history["val_loss"]],
        **_status_mb("VmHWM", "RssAnon", "RssFile"),
    }
    if "peak_bytes_in_use" in stats:
        result["device_peak_mb"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
    return result


def _child(mode: str, path: Path, argv: list[str], env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--data", str(path), *argv],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--block-frames", type=int, default=65536)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256, 256])
    ap.add_argument("--no-fit", action="store_true", help="skip the in-memory fit comparison")
    ap.add_argument(
        "--mmap-threshold",
        type=int,
        help="MALLOC_MMAP_THRESHOLD_ (bytes) for the training processes: glibc then maps and "
        "unmaps every allocation this large instead of keeping freed blocks in its heaps",
    )
    ap.add_argument("--child", choices=["stream", "fit"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    if args.child:
        result = train_once(args.child, args.data, args.frames, args)
        print(json.dumps(result))
        return result
    import jax

    passed = [
        *("--frames", str(args.frames), "--epochs", str(args.epochs)),
        *("--batch-size", str(args.batch_size), "--block-frames", str(args.block_frames)),
        *("--hidden", *map(str, args.hidden)),
    ]
    with tempfile.TemporaryDirectory(prefix="polyvae_train_large_") as tmp:
        path = Path(tmp) / "features.f32"
        t0 = time.perf_counter()
        write_features(path, args.frames)  # the returned memmap is dropped: flushed, unmapped
        write_s = time.perf_counter() - t0
        env = (
            {}
            if args.mmap_threshold is None
            else {"MALLOC_MMAP_THRESHOLD_": str(args.mmap_threshold)}
        )
        runs = {"fit_streaming": _child("stream", path, passed, env)}
        if not args.no_fit:
            runs["fit_in_memory"] = _child("fit", path, passed, env)
    result = {
        "benchmark": "train_large",
        "frames": args.frames,
        "features": 3 * N_BEADS,
        "data_mb": round(args.frames * 3 * N_BEADS * 4 / 2**20, 1),
        "hidden": args.hidden,
        "batch_size": args.batch_size,
        "block_frames": args.block_frames,
        "epochs": args.epochs,
        "write_memmap_s": round(write_s, 1),
        "malloc_mmap_threshold": args.mmap_threshold,
        **runs,
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
