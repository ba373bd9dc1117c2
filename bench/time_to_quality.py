"""Time to a good model: wall seconds against generated-structure quality, per method.

Data: the chapter's polymer, ``../shared/data/dmol/long_paths.npz`` (2048 frames x 12
beads x 2D); when it is absent the script prints a JSON object saying so and exits 0.

Quality, the same for every method: the mean normalized W1 over the 66 pair-distance
marginals (``W1``) of 2048 generated frames against the training frames aligned by the
pipeline, as ``acceptance.py``'s ``chapter_w1`` computes it
(``distance_marginals(pipeline.align_frames(frames), generated).mean_w1_normalized``).
polyvae models generate with ``model.generate(2048, seed=1)``. The other methods draw
2048 z ~ N(0, I) through their decoder; the features are mapped back to positions
(n, 12, 2) by the same ``polyvae.Pipeline()`` (principal-axis alignment, standardization)
fitted on the frames. The target is W1 <= 0.10.

Measured, in one run:

1. ``polyvae_cli``: ``polyvae -q train long_paths.npz -o model.npz`` (the defaults: up to
   250 epochs, early stopping on the 10 % validation split keeping the best validation
   epoch, internal decoder; ``--patience`` sets the early stopping, 0 switches it off) as
   a subprocess, timed around the subprocess (interpreter start-up, imports, reading,
   compilation or loading it from the cache, training, saving). Three runs: with
   ``POLYVAE_COMPILE_CACHE`` naming an empty folder (fills the cache), again with the
   filled folder (the *warm* run, the headline), and with ``POLYVAE_COMPILE_CACHE=0``
   (no cache: the compilation cost). W1 of the warm run's model, the epochs it ran and
   the epoch it kept. Target: warm wall <= 4 s. For reference, ``startup_floor`` times
   an interpreter that only imports JAX and ``polyvae.cli`` and starts JAX's CPU backend.
2. ``polyvae_curve``: ``polyvae.train(frames, epochs=10, seed=0)`` and then
   ``polyvae.train(frames, epochs=E, resume=model)`` for E = 20, 30, ..., 250 (a resumed
   run is bit for bit the run of E epochs; checked against one call of the same length
   at the end). Only the train calls are timed (the first includes compilation); W1 is
   computed between them. Each point gives the epochs run, the epoch whose parameters
   the model holds (under early stopping the best validation epoch so far: what a run of
   that length returns), the cumulative seconds of the train calls and the cumulative
   seconds of the epoch loop alone (the sum of ``history["epoch_time_s"]``: each call
   also prepares its arrays and, for the internal decoder, scans the Cartesian weight,
   which a single run does once). The curve ends where early stopping ends the run.
3. ``chapter_loop``: the method's reference loop, ``epoch_time.chapter_loop_epoch``
   (24-256-256-256-2 encoder, mirrored decoder with a learned per-feature sigma, relu,
   batch 32, jit-compiled gradient, eager ``jax.example_libraries`` Adam, a jit-compiled
   loss on 100 frames per batch; every frame trained, no validation), 250 epochs timed
   as one wall (compilation included); W1 every 10 epochs outside the timed region,
   generated as the decoder mean plus its learned Gaussian noise
   (``polyvae.nn.model.sample``).
4. ``mlcolvar``: ``VariationalAutoEncoderCV`` with the same sizes, trained 250 epochs by
   one ``lightning.Trainer.fit`` as ``mlcolvar_compare.lightning_runner`` sets it up
   (batch 32, Adam 1e-3, no validation split), in a subprocess of ``--mlcolvar-python``
   (default: this interpreter). mlcolvar's decoder is deterministic (its ELBO is an MSE):
   the generated frames are its decoder output (with its input normalization undone).
   When that interpreter cannot import mlcolvar the JSON says why and the rest runs.

The ratios compare the chapter loop's and mlcolvar's training walls (in-process:
imports and start-up not counted, which favours them) with the warm CLI wall
(everything counted). Target for the chapter loop: >= 30x. The machine's speed drifts
and other processes share it: every section records the load average around it.

Run from the repository root: ``python bench/time_to_quality.py [--mlcolvar-python
PATH] [--skip-mlcolvar] [--skip-chapter-loop] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CHAPTER = ROOT.parent / "shared" / "data" / "dmol" / "long_paths.npz"
N_GENERATED = 2048
W1_TARGET = 0.10
CLI_WALL_TARGET_S = 4.0
RATIO_TARGET = 30


def _closure(fn) -> dict:
    """The variables a closure captured, by name (the state the bench runners keep)."""
    cells = (c.cell_contents for c in fn.__closure__)
    return dict(zip(fn.__code__.co_freevars, cells, strict=True))


def _load() -> tuple[float, float, float]:
    return tuple(round(v, 2) for v in os.getloadavg())


def _w1(aligned: np.ndarray, generated: np.ndarray) -> float:
    from polyvae.analysis import distance_marginals

    return round(float(distance_marginals(aligned, generated).mean_w1_normalized), 4)


def _model_w1(model, frames) -> float:
    """W1 of a polyvae model, as ``acceptance.chapter_w1`` computes it."""
    return _w1(model.pipeline.align_frames(frames), model.generate(N_GENERATED, seed=1))


def _first_ok(points: list, time_index: int) -> dict:
    """Where a curve [epoch, ..., w1] first reaches W1 <= the target, and from which point
    on it stays there (W1 of 2048 draws moves by ~0.01 between neighbouring points)."""
    first = next((p for p in points if p[-1] <= W1_TARGET), None)
    stays = None
    for p in reversed(points):
        if p[-1] > W1_TARGET:
            break
        stays = p
    return {
        "epoch": None if first is None else first[0],
        "seconds": None if first is None else first[time_index],
        "stays_from_epoch": None if stays is None else stays[0],
        "stays_from_seconds": None if stays is None else stays[time_index],
    }


def _epochs(model) -> tuple[int, int]:
    """Epochs a polyvae model ran, and the epoch whose parameters it holds (the best
    validation epoch under early stopping, otherwise the last)."""
    history, patience = model.history, model.train_config.patience
    run = len(history["train_elbo"])
    return run, (history.get("best_epoch") or run) if patience is not None else run


def _patience_kwargs(patience: int | None) -> dict:
    """``--patience``: None leaves the library's default, 0 trains all epochs."""
    return {} if patience is None else {"patience": patience or None}


# --- 1. the command line, warm and cold compilation cache -------------------------------


def _cli_command(data: Path, out: Path, epochs: int, patience: int | None) -> list[str]:
    exe = Path(sys.executable).parent / "polyvae"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "polyvae.cli"]
    cmd += ["-q", "train", str(data), "-o", str(out)]
    cmd += ["--epochs", str(epochs)] if epochs != 250 else []
    return cmd + (["--patience", str(patience)] if patience is not None else [])


def _timed_cli(cmd: list[str], cache: str) -> dict:
    env = dict(os.environ, POLYVAE_COMPILE_CACHE=cache)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # it would override POLYVAE_COMPILE_CACHE
    load = _load()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"wall_s": None, "returncode": None, "load_before": load, "timed_out_s": 900}
    wall = time.perf_counter() - t0
    run = {"wall_s": round(wall, 2), "returncode": proc.returncode, "load_before": load}
    if proc.returncode != 0:
        run["stderr_tail"] = proc.stderr[-2000:]
    return run


def polyvae_cli(frames, tmp: Path, epochs: int, patience: int | None) -> dict:
    import polyvae

    out, cache = tmp / "cli_model.npz", tmp / "compile_cache"
    cmd = _cli_command(CHAPTER, out, epochs, patience)
    runs = {
        "fill_cache": _timed_cli(cmd, str(cache)),
        "warm_cache": _timed_cli(cmd, str(cache)),
    }
    cache_bytes = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    w1 = epochs_run = kept = None
    if runs["warm_cache"]["returncode"] == 0:
        model = polyvae.load_model(out)
        w1, (epochs_run, kept) = _model_w1(model, frames), _epochs(model)
    runs["no_cache"] = _timed_cli(cmd, "0")
    # the floor under any command: start the interpreter, import polyvae's CLI and JAX,
    # start JAX's CPU backend
    floor = [
        sys.executable,
        "-c",
        "import jax, polyvae.cli; jax.numpy.zeros(1).block_until_ready()",
    ]
    runs["startup_floor"] = _timed_cli(floor, "0")
    warm, cold = runs["warm_cache"]["wall_s"], runs["no_cache"]["wall_s"]
    ok = runs["warm_cache"]["returncode"] == 0
    return {
        "command": " ".join(cmd),
        "settings": f"CLI defaults (--epochs {epochs}, early stopping as the library's default "
        "or --patience), hidden 128,128,128, internal decoder, batch 32, 10 % validation, seed 0",
        "epochs_run": epochs_run,
        "kept_epoch": kept,
        "runs": runs,
        "cache_bytes": cache_bytes,
        "compilation_cost_s": _difference(cold, warm),
        "warm_wall_s": warm if ok else None,
        "w1": w1,
        "w1_ok": None if w1 is None else w1 <= W1_TARGET,
        "warm_wall_ok": ok and warm <= CLI_WALL_TARGET_S,
    }


# --- 2. polyvae's time-to-quality curve, resuming every `step` epochs -------------------


def polyvae_curve(frames, epochs: int, step: int, patience: int | None) -> dict:
    import jax

    import polyvae

    load = _load()
    points, model, train_s, stopped = [], None, 0.0, None
    for total in [*range(step, epochs, step), epochs]:
        t0 = time.perf_counter()
        if model is None:
            kwargs = _patience_kwargs(patience)
            model = polyvae.train(frames, epochs=total, seed=0, progress=False, **kwargs)
        else:
            model = polyvae.train(frames, epochs=total, resume=model, progress=False)
        train_s += time.perf_counter() - t0
        loop_s = float(sum(model.history["epoch_time_s"]))
        run, kept = _epochs(model)
        w1 = _model_w1(model, frames)
        points.append([run, kept, round(train_s, 2), round(loop_s, 2), w1])
        if run < total:  # early stopping ended the run: a resumed call would stop again
            stopped = run
            break
    # one call of the same length: its time (compiled code already in this process) and
    # whether the resumed run gave the same parameters
    requested = total
    t0 = time.perf_counter()
    kwargs = _patience_kwargs(patience)
    single = polyvae.train(frames, epochs=requested, seed=0, progress=False, **kwargs)
    single_s = time.perf_counter() - t0
    same = all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(
            jax.tree_util.tree_leaves(model.params),
            jax.tree_util.tree_leaves(single.params),
            strict=True,
        )
    )
    return {
        "settings": "polyvae.train defaults (as the CLI, early stopping included), seed 0, "
        "progress off",
        "patience": model.train_config.patience,
        "step_epochs": step,
        "stopped_early_after_epoch": stopped,
        "columns": [
            "epochs_run",
            "kept_epoch",
            "cumulative_train_call_s",
            "cumulative_epoch_loop_s",
            "w1",
        ],
        "points": points,
        "first_w1_ok": {
            "by_train_calls": _first_ok(points, 2),
            "by_epoch_loop": _first_ok(points, 3),
        },
        "single_call": {
            "epochs_requested": requested,
            "epochs_run": _epochs(single)[0],
            "kept_epoch": _epochs(single)[1],
            "wall_s": round(single_s, 2),
            "epoch_loop_s": round(float(sum(single.history["epoch_time_s"])), 2),
            "w1": _model_w1(single, frames),
            "note": "after the curve, so its step is already compiled in this process",
            "resumed_params_bit_identical": same,
        },
        "load_before": load,
        "load_after": _load(),
    }


# --- 3. the method's reference loop -----------------------------------------------------


def chapter_loop(frames, pipeline, epochs: int, step: int) -> dict:
    import jax
    from epoch_time import chapter_loop_epoch, load_features

    from polyvae.nn.model import VAEConfig, sample

    x, _ = load_features(frames.n_frames)
    if not np.allclose(x, pipeline.transform(frames), atol=1e-5):
        raise RuntimeError("epoch_time.load_features no longer matches Pipeline().transform")
    aligned = pipeline.align_frames(frames)
    config = VAEConfig(n_features=x.shape[1], latent_dim=2, hidden=(256, 256, 256))

    def w1_now(run) -> float:
        c = _closure(run)
        params = c["get_params"](c["state"]["opt"])
        feats, _ = sample(params, N_GENERATED, config, key=jax.random.PRNGKey(1))
        return _w1(aligned, pipeline.inverse_transform(np.asarray(feats, np.float64)))

    load = _load()
    points, train_s = [], 0.0
    t0 = time.perf_counter()
    run = chapter_loop_epoch(x, config, 32)
    for epoch in range(1, epochs + 1):
        run()
        if epoch % step == 0 or epoch == epochs:
            train_s += time.perf_counter() - t0
            points.append([epoch, round(train_s, 2), w1_now(run)])
            t0 = time.perf_counter()
    return {
        "settings": f"epoch_time.chapter_loop_epoch: {x.shape[1]}-256-256-256-2, decoder "
        "mirrored, learned per-feature sigma, relu, batch 32, Adam 1e-3, all 2048 frames",
        "generated_as": "decoder mean + learned per-feature Gaussian noise (polyvae.nn.model.sample)",
        "epochs": epochs,
        "wall_s": points[-1][1],
        "w1": points[-1][2],
        "w1_ok": points[-1][2] <= W1_TARGET,
        "columns": ["epoch", "cumulative_wall_s", "w1"],
        "points": points,
        "first_w1_ok": _first_ok(points, 1),
        "load_before": load,
        "load_after": _load(),
    }


# --- 4. mlcolvar, in a subprocess of the interpreter that has it ------------------------


def mlcolvar_worker(workdir: Path, epochs: int, fallback: list[str]) -> None:
    """Runs in ``--mlcolvar-python``: train, decode 2048 prior draws, write them."""
    import logging

    info: dict = {}
    # its own packages first; this project's environment only for what it lacks (JAX,
    # polyvae: ``mlcolvar_compare`` imports them)
    sys.path.extend(p for p in fallback if p not in sys.path)
    sys.path.insert(0, str(BENCH))
    try:
        from mlcolvar_compare import _import_mlcolvar, lightning_runner
    except Exception as exc:
        m, why = None, f"importing mlcolvar_compare: {type(exc).__name__}: {exc}"
    else:
        m, why = _import_mlcolvar()
    if m is None:
        info["skipped"], info["reason"] = True, why
        (workdir / "mlcolvar.json").write_text(json.dumps(info))
        return
    torch = m["torch"]
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    x = np.load(workdir / "features.npz")["x"].astype(np.float32)
    load = _load()
    t0 = time.perf_counter()
    run = lightning_runner(m, x, 32, epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        epoch_s = run()
    wall = time.perf_counter() - t0
    model = _closure(run)["model"]
    model.eval()
    decoder = model.get_decoder(return_normalization=model.norm_in is not None)
    z = torch.randn(N_GENERATED, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = decoder(z).numpy()
    np.savez(workdir / "generated.npz", x=feats)
    info.update(
        wall_s=round(wall, 2),
        epoch_loop_s=round(sum(epoch_s), 2),
        epochs_run=len(epoch_s),
        load_before=load,
        load_after=_load(),
        torch=torch.__version__,
        torch_from=str(Path(torch.__file__).parent),
        torch_threads=torch.get_num_threads(),
        lightning=m["lightning"].__version__,
        mlcolvar=m["mlcolvar"].__version__,
    )
    (workdir / "mlcolvar.json").write_text(json.dumps(info))


def mlcolvar(frames, pipeline, tmp: Path, python: str, epochs: int, timeout: float) -> dict:
    workdir = tmp / "mlcolvar"
    workdir.mkdir()
    np.savez(workdir / "features.npz", x=pipeline.transform(frames).astype(np.float32))
    same_python = sys.version_info[:2] == tuple(
        int(v)
        for v in subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    paths = sysconfig.get_paths()
    fallback = [str(ROOT), *dict.fromkeys([paths["purelib"], paths["platlib"]])]
    fallback = fallback if same_python else fallback[:1]
    cmd = [python, str(Path(__file__).resolve()), "--mlcolvar-worker", str(workdir)]
    cmd += ["--epochs", str(epochs)] + [f"--fallback-path={p}" for p in fallback]
    result = {"python": python}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        result.update(
            skipped=True,
            reason=f"the mlcolvar worker did not finish within --mlcolvar-timeout {timeout:g} s",
            timed_out=True,
            load_after=_load(),
        )
        return result
    process_s = time.perf_counter() - t0
    info_file = workdir / "mlcolvar.json"
    if proc.returncode != 0 or not info_file.exists():
        result.update(skipped=True, reason=f"worker failed: {proc.stderr[-2000:]}")
        return result
    info = json.loads(info_file.read_text())
    result.update(info)
    if info.get("skipped"):
        return result
    feats = np.load(workdir / "generated.npz")["x"].astype(np.float64)
    w1 = _w1(pipeline.align_frames(frames), pipeline.inverse_transform(feats))
    result.update(
        settings="VariationalAutoEncoderCV(n_cvs=2, encoder_layers=[24, 256, 256, 256]), decoder "
        "mirrored, relu, its input normalization on, Adam 1e-3, batch 32, all 2048 frames, one "
        "lightning.Trainer.fit as mlcolvar_compare.lightning_runner sets it up",
        generated_as="decoder output (deterministic decoder: mlcolvar's ELBO is an MSE, no "
        "noise to sample), its input normalization undone",
        epochs=epochs,
        wall_s_note="model construction and Trainer.fit, timed inside the worker (imports "
        "not counted)",
        process_wall_s=round(process_s, 2),
        w1=w1,
        w1_ok=w1 <= W1_TARGET,
    )
    return result


# --- the run ----------------------------------------------------------------------------


def _machine() -> dict:
    import jax

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_device": str(jax.devices()[0]),
        "load_average_at_start": _load(),
    }


def _ratio(a, b):
    return None if a is None or b is None else round(a / b, 1)


def _difference(a, b):
    return None if a is None or b is None else round(a - b, 2)


def _section(result: dict, name: str, json_path: str | None, fn, *args) -> None:
    """Run one part; an error is recorded in the JSON and the other parts still run. With
    ``--json`` the object so far is written after every part."""
    try:
        result[name] = fn(*args)
    except Exception as exc:
        result[name] = {"error": f"{type(exc).__name__}: {exc}"}
    if json_path:
        Path(json_path).write_text(_compact(json.dumps(result, indent=2)) + "\n")


def _compact(text: str) -> str:
    """JSON with short lists of numbers on one line."""

    def one_line(m):
        return "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]"

    return re.sub(r"\[\s*((?:[-\w.\"]+\s*,\s*)*[-\w.\"]+)\s*\]", one_line, text)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=250, help="epochs of every method (250)")
    ap.add_argument("--step", type=int, default=10, help="epochs between W1 points (10)")
    ap.add_argument(
        "--patience",
        type=int,
        default=None,
        help="polyvae's early stopping (epochs; 0: train all epochs); default: polyvae's default",
    )
    ap.add_argument(
        "--mlcolvar-python",
        default=sys.executable,
        help="interpreter that has mlcolvar, lightning and torch (default: this one)",
    )
    ap.add_argument(
        "--mlcolvar-timeout",
        type=float,
        default=1800,
        help="seconds after which the mlcolvar part is given up (1800)",
    )
    ap.add_argument("--skip-mlcolvar", action="store_true")
    ap.add_argument("--skip-chapter-loop", action="store_true")
    ap.add_argument("--json", metavar="PATH", help="also write the JSON object here")
    ap.add_argument("--mlcolvar-worker", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--fallback-path", action="append", default=[], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.mlcolvar_worker:
        mlcolvar_worker(Path(a.mlcolvar_worker), a.epochs, a.fallback_path)
        return {}
    if not CHAPTER.exists():
        result = {"benchmark": "time_to_quality", "skipped": True, "reason": f"{CHAPTER} absent"}
        print(json.dumps(result, indent=2))
        return result
    sys.path.insert(0, str(BENCH))

    import polyvae

    t_start = time.perf_counter()
    frames = polyvae.read_npz(CHAPTER)
    pipeline = polyvae.Pipeline().fit(frames)
    result = {
        "benchmark": "time_to_quality",
        "data": f"{CHAPTER.name}: {frames.n_frames} frames x {frames.n_atoms} beads x "
        f"{frames.dim}D",
        "quality": f"mean normalized W1 over all pair-distance marginals, {N_GENERATED} "
        "generated frames against the aligned training frames",
        "targets": {
            "w1": W1_TARGET,
            "cli_warm_wall_s": CLI_WALL_TARGET_S,
            "chapter_loop_over_cli_warm": RATIO_TARGET,
        },
        "machine": _machine(),
    }
    with tempfile.TemporaryDirectory(prefix="polyvae_ttq_") as tmp:
        tmp = Path(tmp)
        _section(result, "polyvae_cli", a.json, polyvae_cli, frames, tmp, a.epochs, a.patience)
        _section(
            result, "polyvae_curve", a.json, polyvae_curve, frames, a.epochs, a.step, a.patience
        )
        if not a.skip_chapter_loop:
            _section(
                result, "chapter_loop", a.json, chapter_loop, frames, pipeline, a.epochs, a.step
            )
        if not a.skip_mlcolvar:
            mlc = (frames, pipeline, tmp, a.mlcolvar_python, a.epochs, a.mlcolvar_timeout)
            _section(result, "mlcolvar", a.json, mlcolvar, *mlc)
        shutil.rmtree(tmp / "compile_cache", ignore_errors=True)
    cli = result["polyvae_cli"]
    warm, cold = cli.get("warm_wall_s"), cli.get("runs", {}).get("no_cache", {}).get("wall_s")
    chapter_s = result.get("chapter_loop", {}).get("wall_s")
    mlc_s = result.get("mlcolvar", {}).get("wall_s")
    ratio = _ratio(chapter_s, warm)
    result["ratios"] = {
        "chapter_loop_over_polyvae_cli_warm": ratio,
        "mlcolvar_over_polyvae_cli_warm": _ratio(mlc_s, warm),
        "chapter_loop_over_polyvae_cli_no_cache": _ratio(chapter_s, cold),
        "chapter_loop_target_met": None if ratio is None else ratio >= RATIO_TARGET,
        "machine": {
            k: result["machine"][k] for k in ("cpu_count", "cpus_usable", "platform", "jax")
        },
    }
    return _finish(result, a.json, t_start)


def _finish(result: dict, json_path, t_start: float) -> dict:
    """Close ``result`` (load at the end, the script's wall), print it, and write it to
    ``json_path`` where given."""
    result["machine"]["load_average_at_end"] = _load()
    result["script_wall_s"] = round(time.perf_counter() - t_start, 1)
    text = _compact(json.dumps(result, indent=2))
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
