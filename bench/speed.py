"""The default model's four speed figures, each as a ratio or verdict measured in one run.

Prints one JSON object (``--json PATH`` also writes it), one section per figure, each
with its raw times, the ratio and whether it meets its target. The machine's load
average is recorded around every section: compare figures only from a quiet machine.

1. ``epoch``: seconds per epoch of ``polyvae.train`` on the bundled polymer
   (``polyvae/data/polymer2d.npz``, defaults otherwise) with the internal decoder (the
   default) against the Cartesian one. Per decoder, one process trains 10 and 40
   epochs (``patience=None``, so every epoch runs; checked); the epoch time is the
   difference of the two walls over the 30 epochs between them, which leaves out each
   call's fixed costs (preparing the arrays, the internal decoder's Cartesian-weight
   scan, generating and checking after training). A warm-up training of each kind
   compiles the steps first; the two decoders take turns for ``--repeats`` rounds and
   the minimum is kept. Target: internal <= 1.5x Cartesian.
2. ``first_train``: the wall of a new Python process that imports polyvae, reads the
   bundled polymer and runs ``polyvae.train(frames, epochs=1, progress=False)``, with
   ``POLYVAE_COMPILE_CACHE`` (and nothing else) naming a fresh temporary folder: one
   run fills the folder (whether it then holds files is reported), three more are
   timed; the minimum is the figure. Timed from before the process starts to its end;
   the child also reports its start-up, import, reading and training seconds. Target:
   <= 3 s.
3. ``cli_chapter``: ``polyvae -q train long_paths.npz -o MODEL`` (the defaults) on the
   chapter's polymer (``../shared/data/dmol/long_paths.npz``) as a subprocess: a first
   run fills an empty ``POLYVAE_COMPILE_CACHE`` folder, the second is timed. W1/σ of the
   timed run's model as ``time_to_quality.py`` measures it (mean over the 66
   pair-distance marginals of W1 divided by the training frames' standard deviation of
   that distance; 2048 frames from ``model.generate(2048, seed=1)`` against the aligned
   training frames). In the same run, the method's reference loop for 250 epochs
   (``time_to_quality.chapter_loop``); ``--skip-chapter-loop --chapter-seconds X``
   reuses an earlier wall instead (flagged ``reused``). Targets: W1/σ <= 0.10 and
   reference loop wall / CLI wall >= 30.
4. ``adk_generate``: a model trained by the CLI on the Cα atoms of adenylate kinase
   (MDAnalysisTests' ``adk.psf`` with ``adk_dims2.dcd`` then ``adk_dims.dcd``, 200
   frames; ``--epochs 100``, defaults otherwise, so early stopping with patience 50 may
   end it sooner: the epochs run are reported), or ``--model PATH``; then
   ``polyvae -q generate MODEL -n 2048 --seed 0 -o OUT.pdb`` as a subprocess, once to
   fill the compile cache and once timed. Quality of the 2048 written structures: the
   fraction of consecutive Cα-Cα distances in [3.6, 4.0] Å over the MD frames' own
   fraction (target >= 0.99), and the fraction of structures with a Cα pair
   |i - j| >= 3 closer than 3.5 Å (``decoder_check.py``'s definitions; target <= 1 %).
   Previous wall 23.4 s; target >= 3x faster (<= 7.8 s). ``--save-model PATH`` keeps
   the trained model for a later ``--model``; ``--format`` writes another format;
   ``-n`` other than 2048 gives no speed-up (the previous wall is for 2048).

Run from the repository root: ``python bench/speed.py [--only epoch first_train
cli_chapter adk_generate] [--repeats 3] [--skip-chapter-loop --chapter-seconds X]
[--model PATH | --save-model PATH] [--format pdb] [-n 2048] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from time_to_quality import (  # noqa: E402
    CHAPTER,
    _cli_command,
    _compact,
    _epochs,
    _finish,
    _load,
    _machine,
    _model_w1,
    _timed_cli,
    chapter_loop,
)

POLYMER = ROOT / "polyvae" / "data" / "polymer2d.npz"
SECTIONS = ("epoch", "first_train", "cli_chapter", "adk_generate")
EPOCH_RATIO_TARGET = 1.5
FIRST_TRAIN_TARGET_S = 3.0
W1_TARGET = 0.10
CHAPTER_RATIO_TARGET = 30
BOND_RATIO_TARGET = 0.99
CLASH_TARGET = 0.01
GENERATE_PREVIOUS_S = 23.4
GENERATE_SPEEDUP_TARGET = 3.0


def _children_import_this_checkout() -> None:
    """Put the repository root first on the subprocesses' ``PYTHONPATH``, so that every
    process measures the same polyvae as this one."""
    rest = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([rest] if rest else [])])


def _polyvae_exe() -> list[str]:
    """The ``polyvae`` command of this interpreter's environment."""
    exe = Path(sys.executable).parent / "polyvae"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "polyvae.cli"]


def _cache_files(folder: Path) -> dict:
    """Number and total size of the files in a compile-cache folder."""
    files = [f for f in folder.rglob("*") if f.is_file()] if folder.exists() else []
    return {"files": len(files), "bytes": sum(f.stat().st_size for f in files)}


def _verdict(value, target, at_most: bool) -> bool | None:
    if value is None:
        return None
    return value <= target if at_most else value >= target


# --- 1. seconds per epoch, internal against Cartesian decoder ---------------------------


def _timed_train(frames, decoder: str, epochs: int) -> dict:
    """One ``polyvae.train`` call of exactly ``epochs`` epochs: its wall and epoch loop.

    Returns
    -------
    dict
        ``wall_s`` of the call and ``loop_s``, the sum of its ``epoch_time_s``.
    """
    import polyvae

    t0 = time.perf_counter()
    model = polyvae.train(frames, decoder=decoder, epochs=epochs, patience=None, progress=False)
    wall = time.perf_counter() - t0
    ran = len(model.history["train_loss"])
    if ran != epochs:  # early stopping or divergence would shorten the difference
        raise RuntimeError(f"{decoder} decoder: {ran} epochs run of {epochs}")
    return {"wall_s": wall, "loop_s": float(sum(model.history["epoch_time_s"]))}


def epoch(repeats: int, short: int = 10, long: int = 40) -> dict:
    """Seconds per epoch of both decoders, from the difference of a long and a short run.

    Parameters
    ----------
    repeats : int
        Rounds; in each the decoders take turns, each training ``short`` then ``long``
        epochs. The minimum over the rounds is kept.
    short, long : int
        Epochs of the two runs whose difference gives the epoch time.

    Returns
    -------
    dict
        Per decoder the walls of every round and the per-epoch figure; the ratio
        internal / Cartesian and its verdict.
    """
    import polyvae

    frames = polyvae.read_npz(POLYMER)
    decoders = ("internal", "cartesian")
    load = _load()
    warmup = {d: round(_timed_train(frames, d, short)["wall_s"], 2) for d in decoders}
    runs = {
        d: {"short_wall_s": [], "long_wall_s": [], "per_epoch_s": [], "loop_per_epoch_s": []}
        for d in decoders
    }
    for _ in range(repeats):
        for d in decoders:
            a, b = _timed_train(frames, d, short), _timed_train(frames, d, long)
            r = runs[d]
            r["short_wall_s"].append(round(a["wall_s"], 3))
            r["long_wall_s"].append(round(b["wall_s"], 3))
            r["per_epoch_s"].append(round((b["wall_s"] - a["wall_s"]) / (long - short), 5))
            # the same from the epoch loop's own clock, for reference
            r["loop_per_epoch_s"].append(round((b["loop_s"] - a["loop_s"]) / (long - short), 5))
    best = {d: min(runs[d]["per_epoch_s"]) for d in decoders}
    ratio = round(best["internal"] / best["cartesian"], 3)
    return {
        "data": f"{POLYMER.name}: {frames.n_frames} frames x {frames.n_atoms} beads x "
        f"{frames.dim}D",
        "settings": "polyvae.train defaults (hidden 128,128,128, batch 32, 10 % validation, "
        f"seed 0), patience=None, progress=False; per epoch = (wall of {long} epochs - wall "
        f"of {short}) / {long - short}, min over {repeats} rounds",
        "warmup_wall_s": warmup,
        "runs": runs,
        "seconds_per_epoch": {d: best[d] for d in decoders},
        "internal_over_cartesian": ratio,
        "target": f"<= {EPOCH_RATIO_TARGET}",
        "target_met": _verdict(ratio, EPOCH_RATIO_TARGET, at_most=True),
        "load_before": load,
        "load_after": _load(),
    }


# --- 2. a new process's first training, compile cache filled ----------------------------

_FIRST_TRAIN_CHILD = """
import json, sys, time
t_start, wall_start = time.perf_counter(), time.time()
import polyvae
t_import = time.perf_counter()
frames = polyvae.read_npz(sys.argv[1])
t_read = time.perf_counter()
polyvae.train(frames, epochs=1, progress=False)
t_train = time.perf_counter()
print(json.dumps({"wall_start": wall_start, "import_s": t_import - t_start,
                  "read_s": t_read - t_import, "train_s": t_train - t_read}))
"""


def _first_train_run(cache: Path) -> dict:
    """One child process timed around its whole life, with its own figures."""
    env = dict(os.environ, POLYVAE_COMPILE_CACHE=str(cache))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # it would override POLYVAE_COMPILE_CACHE
    cmd = [sys.executable, "-c", _FIRST_TRAIN_CHILD, str(POLYMER)]
    load = _load()
    wall_start = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    run = {"wall_s": round(wall, 3), "returncode": proc.returncode, "load_before": load}
    if proc.returncode != 0:
        run["stderr_tail"] = proc.stderr[-2000:]
        return run
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    run["startup_s"] = round(child.pop("wall_start") - wall_start, 3)
    run.update({k: round(v, 3) for k, v in child.items()})
    return run


def first_train(tmp: Path, timed_runs: int = 3) -> dict:
    """A new process's ``import polyvae`` and one-epoch training, compile cache filled.

    Parameters
    ----------
    tmp : Path
        Scratch folder; the compile cache is a fresh folder inside it.
    timed_runs : int
        Runs after the one that fills the cache.

    Returns
    -------
    dict
        Every run, the cache's content after the first, the minimum and its verdict.
    """
    cache = tmp / "cache_first_train"
    fill = _first_train_run(cache)
    after_fill = _cache_files(cache)
    runs = [_first_train_run(cache) for _ in range(timed_runs)]
    walls = [r["wall_s"] for r in runs if r["returncode"] == 0]
    best = min(walls) if walls else None
    return {
        "command": "python -c 'import polyvae; frames = polyvae.read_npz(polymer2d.npz); "
        "polyvae.train(frames, epochs=1, progress=False)'",
        "environment": "POLYVAE_COMPILE_CACHE=<fresh temporary folder> (JAX_COMPILATION_CACHE_DIR "
        "unset)",
        "fill_cache_run": fill,
        "cache_after_fill": after_fill,
        "cache_holds_files_after_fill": after_fill["files"] > 0,
        "timed_runs": runs,
        "wall_s_min": best,
        "target": f"<= {FIRST_TRAIN_TARGET_S} s",
        "target_met": _verdict(best, FIRST_TRAIN_TARGET_S, at_most=True),
        "cache_after_all": _cache_files(cache),
    }


# --- 3. the command line on the chapter's polymer against the reference loop ------------


def _reference_loop(frames, skip: bool, seconds: float | None, epochs: int, step: int) -> dict:
    """The method's reference loop, run here or an earlier wall reused."""
    if skip:
        return {
            "reused": True,
            "wall_s": seconds,
            "epochs": epochs,
            "note": "--skip-chapter-loop: wall given by --chapter-seconds, not measured",
        }
    import polyvae

    pipeline = polyvae.Pipeline().fit(frames)
    return {"reused": False, **chapter_loop(frames, pipeline, epochs, step)}


def cli_chapter(tmp: Path, skip_loop: bool, loop_seconds: float | None, step: int) -> dict:
    """``polyvae train`` with its defaults on the chapter's data, against the reference loop.

    Parameters
    ----------
    tmp : Path
        Scratch folder for the model and the compile cache.
    skip_loop : bool
        Reuse ``loop_seconds`` instead of running the reference loop.
    loop_seconds : float or None
        Wall of an earlier reference-loop run (with ``skip_loop``).
    step : int
        Epochs between the reference loop's W1 points.

    Returns
    -------
    dict
        The cache-filling and timed CLI runs, W1/σ of the timed run's model, the
        reference loop, the ratio and the verdicts.
    """
    if not CHAPTER.exists():
        return {"skipped": True, "reason": f"{CHAPTER} absent"}
    import polyvae

    frames = polyvae.read_npz(CHAPTER)
    out, cache = tmp / "chapter_model.npz", tmp / "cache_chapter"
    cmd = _cli_command(CHAPTER, out, 250, None)
    fill = _timed_cli(cmd, str(cache))
    timed = _timed_cli(cmd, str(cache))
    ok = timed["returncode"] == 0
    w1 = epochs_run = kept = None
    if ok:
        model = polyvae.load_model(out)
        w1, (epochs_run, kept) = _model_w1(model, frames), _epochs(model)
    loop = _reference_loop(frames, skip_loop, loop_seconds, 250, step)
    wall = timed["wall_s"] if ok else None
    ratio = None if wall is None or loop["wall_s"] is None else round(loop["wall_s"] / wall, 1)
    return {
        "command": " ".join(cmd),
        "data": f"{CHAPTER.name}: {frames.n_frames} frames x {frames.n_atoms} beads x "
        f"{frames.dim}D",
        "fill_cache_run": fill,
        "timed_run": timed,
        "cache_after": _cache_files(cache),
        "cli_wall_s": wall,
        "epochs_run": epochs_run,
        "kept_epoch": kept,
        "w1_over_sigma": w1,
        "w1_target": f"<= {W1_TARGET}",
        "w1_target_met": _verdict(w1, W1_TARGET, at_most=True),
        "chapter_loop": loop,
        "chapter_loop_over_cli": ratio,
        "ratio_target": f">= {CHAPTER_RATIO_TARGET}",
        "ratio_target_met": _verdict(ratio, CHAPTER_RATIO_TARGET, at_most=False),
    }


# --- 4. generating 2048 AdK Cα structures ------------------------------------------------


def _adk_files() -> tuple[str, list[str]]:
    """MDAnalysisTests' AdK topology and its two trajectories (DCD2 first)."""
    from MDAnalysisTests.datafiles import DCD, DCD2, PSF

    return PSF, [DCD2, DCD]


def _train_adk(tmp: Path, cache: Path, epochs: int) -> tuple[Path, dict]:
    """Train the AdK Cα model with the CLI; return its path and the timed run."""
    top, trajs = _adk_files()
    model = tmp / "adk_model.npz"
    cmd = [*_polyvae_exe(), "-q", "train", *trajs, "--top", top, "--select", "name CA"]
    cmd += ["--epochs", str(epochs), "-o", str(model)]
    run = _timed_cli(cmd, str(cache))
    run["command"] = " ".join(cmd)
    return model, run


def _adk_quality(generated: Path) -> dict:
    """Bond and clash figures of the written structures, against the MD frames'."""
    from decoder_check import CLASH_DISTANCE, ca_bond_fraction, ca_clash_fraction

    import polyvae

    top, trajs = _adk_files()
    md = polyvae.io.read_frames(trajs, topology=top, select="name CA").positions
    gen = polyvae.io.read_frames(generated).positions
    bonds, md_bonds = ca_bond_fraction(gen), ca_bond_fraction(md)
    ratio = round(bonds / md_bonds, 4)
    clash = ca_clash_fraction(gen)
    return {
        "structures": int(gen.shape[0]),
        "atoms": int(gen.shape[1]),
        "bonds_in_3.6_4.0": round(bonds, 4),
        "md_bonds_in_3.6_4.0": round(md_bonds, 4),
        "bond_ratio": ratio,
        "bond_ratio_target": f">= {BOND_RATIO_TARGET}",
        "bond_ratio_target_met": _verdict(ratio, BOND_RATIO_TARGET, at_most=False),
        f"clash_fraction_{CLASH_DISTANCE:g}": round(clash, 4),
        "clash_target": f"<= {CLASH_TARGET}",
        "clash_target_met": _verdict(clash, CLASH_TARGET, at_most=True),
    }


def adk_generate(
    tmp: Path, model_path: str | None, save_model: str | None, epochs: int, n: int, suffix: str
) -> dict:
    """``polyvae generate`` of ``n`` AdK Cα structures: wall and quality.

    Parameters
    ----------
    tmp : Path
        Scratch folder for the model, the structures and the compile cache.
    model_path : str or None
        A trained model to reuse; None trains one with the CLI.
    save_model : str or None
        Where to copy the model trained here (for a later ``--model``).
    epochs : int
        ``--epochs`` of that training.
    n : int
        Structures to generate.
    suffix : str
        Output format of ``generate`` (``.pdb``, ``.npz``, ``.dcd`` or ``.xtc``).

    Returns
    -------
    dict
        The training (or the reused model), both generate runs, the speed-up over the
        previous wall, the quality figures and the verdicts.
    """
    import polyvae

    cache = tmp / "cache_adk"
    result: dict = {}
    if model_path is None:
        model, result["train_run"] = _train_adk(tmp, cache, epochs)
        if result["train_run"]["returncode"] != 0:
            return result
        if save_model:
            shutil.copyfile(model, save_model)
            result["model_saved"] = save_model
    else:
        model = Path(model_path)
        result["model_reused"] = str(model)
    m = polyvae.load_model(model)
    result["epochs_run"], result["kept_epoch"] = _epochs(m)
    result["patience"] = m.train_config.patience
    out = tmp / f"adk_generated{suffix}"
    cmd = [*_polyvae_exe(), "-q", "generate", str(model), "-n", str(n), "--seed", "0"]
    cmd += ["-o", str(out)]
    result["command"] = " ".join(cmd)
    result["fill_cache_run"] = _timed_cli(cmd, str(cache))
    out.unlink(missing_ok=True)
    timed = result["timed_run"] = _timed_cli(cmd, str(cache))
    result["cache_after"] = _cache_files(cache)
    if timed["returncode"] != 0:
        return result
    wall = timed["wall_s"]
    # the previous wall is that of 2048 structures: other counts get no speed-up
    speedup = round(GENERATE_PREVIOUS_S / wall, 2) if n == 2048 else None
    result.update(
        wall_s=wall,
        previous_wall_s=GENERATE_PREVIOUS_S,
        speedup=speedup,
        speedup_target=f">= {GENERATE_SPEEDUP_TARGET} (wall <= "
        f"{GENERATE_PREVIOUS_S / GENERATE_SPEEDUP_TARGET:.1f} s)",
        speedup_target_met=_verdict(speedup, GENERATE_SPEEDUP_TARGET, at_most=False),
        quality=_adk_quality(out),
    )
    return result


# --- the run ----------------------------------------------------------------------------


def _section(result: dict, name: str, json_path: str | None, fn, *args) -> None:
    """Run one figure; an error is recorded in the JSON and the other figures still run.
    With ``--json`` the object so far is written after every figure."""
    load = _load()
    t0 = time.perf_counter()
    try:
        result[name] = fn(*args)
    except Exception as exc:
        result[name] = {"error": f"{type(exc).__name__}: {exc}"}
    result[name]["section_wall_s"] = round(time.perf_counter() - t0, 1)
    result[name]["section_load"] = {"before": load, "after": _load()}
    if json_path:
        Path(json_path).write_text(_compact(json.dumps(result, indent=2)) + "\n")


def _summary(result: dict) -> dict:
    """The figures and their verdicts in one place."""
    pick = {
        "epoch": ("internal_over_cartesian", "target_met"),
        "first_train": ("wall_s_min", "target_met"),
        "cli_chapter": (
            "cli_wall_s",
            "w1_over_sigma",
            "w1_target_met",
            "chapter_loop_over_cli",
            "ratio_target_met",
        ),
        "adk_generate": ("wall_s", "speedup", "speedup_target_met"),
    }
    out = {}
    for name, keys in pick.items():
        if name in result:
            out[name] = {k: result[name].get(k) for k in keys}
    quality = result.get("adk_generate", {}).get("quality")
    if quality:
        keys = ("bond_ratio", "bond_ratio_target_met", "clash_target_met")
        out["adk_generate"].update({k: quality[k] for k in keys})
        out["adk_generate"].update({k: v for k, v in quality.items() if k.startswith("clash_f")})
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="figures to measure (default: all four)",
    )
    ap.add_argument("--repeats", type=int, default=3, help="epoch: rounds, min kept (3)")
    ap.add_argument(
        "--skip-chapter-loop",
        action="store_true",
        help="cli_chapter: reuse --chapter-seconds instead of running the loop",
    )
    ap.add_argument(
        "--chapter-seconds",
        type=float,
        help="cli_chapter: wall of an earlier 250-epoch reference-loop run",
    )
    ap.add_argument(
        "--chapter-step",
        type=int,
        default=50,
        help="cli_chapter: epochs between the reference loop's W1 points (50)",
    )
    ap.add_argument("--model", metavar="PATH", help="adk_generate: reuse this trained model")
    ap.add_argument(
        "--save-model", metavar="PATH", help="adk_generate: keep the model it trains here"
    )
    ap.add_argument("--adk-epochs", type=int, default=100, help="adk_generate: --epochs (100)")
    ap.add_argument("-n", type=int, default=2048, help="adk_generate: structures (2048)")
    ap.add_argument(
        "--format",
        default="pdb",
        choices=["pdb", "npz", "dcd", "xtc"],
        help="adk_generate: output format of polyvae generate (pdb)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write the JSON object here")
    return ap


def main(argv=None) -> dict:
    ap = _parser()
    a = ap.parse_args(argv)
    if a.skip_chapter_loop and a.chapter_seconds is None:
        ap.error("--skip-chapter-loop needs --chapter-seconds")
    _children_import_this_checkout()
    t_start = time.perf_counter()
    result = {"benchmark": "speed", "machine": _machine()}
    with tempfile.TemporaryDirectory(prefix="polyvae_speed_") as tmp:
        tmp = Path(tmp)
        jobs = {
            "epoch": (epoch, a.repeats),
            "first_train": (first_train, tmp),
            "cli_chapter": (
                cli_chapter,
                tmp,
                a.skip_chapter_loop,
                a.chapter_seconds,
                a.chapter_step,
            ),
            "adk_generate": (
                adk_generate,
                tmp,
                a.model,
                a.save_model,
                a.adk_epochs,
                a.n,
                "." + a.format,
            ),
        }
        for name in SECTIONS:
            if name in a.only:
                _section(result, name, a.json, *jobs[name])
    result["summary"] = _summary(result)
    return _finish(result, a.json, t_start)


if __name__ == "__main__":
    main()
