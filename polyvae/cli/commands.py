"""The subcommands of ``polyvae``: one function each, from parsed arguments to the
library call and a report, and the options' values they turn into library arguments."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from polyvae import export, io, load_model, plotting, train
from polyvae._checks import ensure_pairs
from polyvae._outputs import check_output, savefig, savez
from polyvae.analysis.fes import free_energy_surface
from polyvae.analysis.optimize import optimize_latent
from polyvae.cli.messages import _report
from polyvae.config import TrainSettings
from polyvae.features.topology import BOND_MODES
from polyvae.job import DEFAULT_DATA, run_job, write_marginals
from polyvae.measures.weights import (
    check_temperature,
    effective_sample_size,
    read_weights,
    split_weights_spec,
)
from polyvae.toys import run_toy
from polyvae.training.ensemble import train_many
from polyvae.training.history import training_summary

__all__ = ["MANY_ATOMS_WITHOUT_TOP"]

#: Above this many atoms, training without --top warns that names, masses and bonds
#: come from the trajectory file alone (none for .npz, guessed for PDB/GRO).
MANY_ATOMS_WITHOUT_TOP = 300

_POSITIONAL = {"model": "MODEL", "data": "TRAJ"}


def _read_kwargs(a) -> dict:
    return dict(
        topology=a.top,
        start=a.start,
        stop=a.stop,
        step=a.step,
        unwrap=a.unwrap,
        guess_bonds=a.guess_bonds,
        allow_truncated=a.allow_truncated,
    )


def _train_settings(a) -> TrainSettings:
    """The train and demo options as one checked :class:`TrainSettings` (of a list of
    --latent-dim or --beta values, the first; several models take the lists)."""
    return TrainSettings(
        latent_dim=a.latent_dim[0] if isinstance(a.latent_dim, list) else a.latent_dim,
        beta=a.beta[0] if isinstance(a.beta, list) else a.beta,
        epochs=a.epochs,
        seed=a.seed,
        hidden=a.hidden,
        activation=a.activation,
        batch_size=a.batch_size,
        learning_rate=a.lr,
        sigma=a.sigma,
        align=a.align,
        validation_fraction=a.validation_fraction,
        patience=_patience(a.patience),
        features=a.features,
        pairs=_pairs(a.pairs),
        angles=_index_file(a.angles, "--angles", 3),
        dihedrals=_index_file(a.dihedrals, "--dihedrals", 4),
        decoder=a.decoder,
    )


def _patience(value: int) -> int | None:
    """--patience: epochs (>= 1), or 0 for no early stopping (None)."""
    if value < 0:
        raise ValueError(
            f"--patience must be a number of epochs >= 1, or 0 to train all --epochs; got {value}"
        )
    return value or None


def _pairs(text: str | None):
    """--pairs: None, a stride K, or a file of index pairs."""
    if text is None or text.isdigit():
        return None if text is None else int(text)
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"--pairs file {text!r}: no such file")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    try:
        return np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise ValueError(
            f"--pairs file {text!r} must hold two columns of integers ({exc})"
        ) from None


def _index_file(text: str | None, flag: str, k: int):
    """A file of atom-index rows (k columns), or None."""
    if text is None:
        return None
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"{flag} file {text!r}: no such file")
    try:
        rows = (
            np.load(path, allow_pickle=False)
            if path.suffix == ".npy"
            else np.loadtxt(path, dtype=np.int64, ndmin=2)
        )
    except ValueError as exc:
        raise ValueError(
            f"{flag} file {text!r} must hold {k} columns of integers ({exc})"
        ) from None
    return rows


def _bonds_option(text: str):
    """--bonds: a mode (auto, topology, guess), or the (B, 2) array of a file of bonds."""

    if text in BOND_MODES:
        return text
    path = Path(text)
    expected = "two 0-based atom indices of the selection per line, or a .npy array (B, 2)"
    if not path.is_file():
        raise ValueError(
            f"--bonds must be auto, topology, guess or a file of bonds; {text!r} is none "
            "of them (no such file)"
        )
    if path.suffix == ".npy":
        try:
            rows = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--bonds file {text!r} is not a readable .npy file ({exc})") from None
        if rows.ndim != 2 or rows.shape[1] != 2 or not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(
                f"--bonds file {text!r} must hold {expected}; got an array of shape "
                f"{rows.shape} and dtype {rows.dtype}"
            )
        return rows
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        words = line.split("#", 1)[0].replace(",", " ").split()
        if not words:
            continue
        if len(words) != 2 or not all(w.isdigit() for w in words):
            raise ValueError(
                f"--bonds file {text!r} must hold {expected}; line {number} is {line.strip()!r}"
            )
        rows.append([int(w) for w in words])
    if not rows:
        raise ValueError(f"--bonds file {text!r} holds no bonds; it must hold {expected}")
    return np.asarray(rows, dtype=np.int64)


def _frame_weights(a, n_frames: int, temperature_given: bool = False):
    """The weights --weights names, checked against the frames (None without it).
    ``temperature_given``: --temperature is the command's own (not only the weights')."""
    if a.weights is None:
        if a.temperature is not None and not temperature_given:
            raise ValueError("--temperature is used only with --weights COLVAR:COLUMN")
        return None

    colvar = bool(split_weights_spec(a.weights)[1])
    t = a.temperature if (colvar or not temperature_given) else None
    w = read_weights(a.weights, n_frames, t)
    _report(f"frame weights: effective sample size {effective_sample_size(w):.1f} of {n_frames}")
    return w


def _output(a, kind: str = "file", suffixes=None) -> Path:

    out = check_output(a.output, name="-o", kind=kind, suffixes=suffixes)
    if kind == "file" and out.exists():
        _refuse_an_input(a, out)
    return out


def _refuse_an_input(a, out: Path) -> None:
    """ValueError when the output file ``out`` is one of the command's input files (a
    positional argument or an option's file, ``FILE:COLUMN`` included): writing it
    would replace what the command reads. ``--resume MODEL -o MODEL`` continues a run in
    place: the model is read whole before training and saved atomically after it."""
    for dest, value in vars(a).items():
        if dest in ("output", "resume"):
            continue
        for v in value if isinstance(value, list | tuple) else [value]:
            if not isinstance(v, str | os.PathLike):
                continue
            for candidate in {str(v), str(v).split(":", 1)[0]}:
                try:
                    same = os.path.samefile(candidate, out)
                except (OSError, ValueError):
                    continue
                if same:
                    flag = _POSITIONAL.get(dest, "--" + dest.replace("_", "-"))
                    raise ValueError(
                        f"-o {str(out)!r} is the command's own input ({flag} {str(v)!r}), "
                        "which writing it would replace; choose another output path"
                    )


def _cmd_train(a) -> int:

    several = a.seeds is not None or len(a.latent_dim) > 1 or len(a.beta) > 1
    if several:
        for flag, given in (("--resume", a.resume), ("--stream", a.stream)):
            if given:
                raise ValueError(
                    f"{flag} works on one model; with --seeds or lists of --beta or "
                    "--latent-dim, train without it"
                )
    _output(a, kind="dir" if several else "file")
    settings = _train_settings(a)
    bonds = _bonds_option(a.bonds)  # a bad file fails before the trajectory is read
    frames = io.read_frames(a.data, select=a.select, **_read_kwargs(a))
    if not isinstance(bonds, str):
        bonds = ensure_pairs(bonds, frames.n_atoms, f"--bonds file {a.bonds!r}")
    if a.top is None and frames.n_atoms > MANY_ATOMS_WITHOUT_TOP:
        logging.getLogger("polyvae").warning(
            "%d atoms read without --top: their names, masses and bonds are unknown or only "
            "guessed from %s; give the topology with --top FILE (PSF, TPR, PRMTOP, ...)",
            frames.n_atoms,
            a.data[0],
        )
    reference = None if a.reference is None else io.load_reference(a.reference, frames)
    settings = settings.replace(bonds=bonds, reference=reference)
    weights = _frame_weights(a, frames.n_frames)
    if several:
        return _train_several(a, frames, settings, weights)
    model = train(
        frames,
        settings,
        stream=a.stream,
        weights=weights,
        resume=a.resume,
        output=a.output,
        progress=not a.quiet,
    )
    run = training_summary(model.history, model.train_config.patience)
    n, kept = run["epochs_run"], run["kept_epoch"]
    if "best_epoch" not in run:
        how = f"no validation split, epoch {n} kept"
    else:
        how = (
            f"validation -ELBO {-run['val_elbo']:.3f} in epoch {kept} of {n}, kept; best "
            f"{-run['best_val_elbo']:.3f} in epoch {run['best_epoch']}; train/validation gap "
            f"{run['train_val_gap']:.3f} nats"
        )
    _report(f"model written to {a.output} ({model.config.latent_dim} latent CVs, {how})")
    return 0


def _train_several(a, frames, settings: TrainSettings, weights) -> int:
    """polyvae train with --seeds or lists of --beta or --latent-dim: one model each."""
    ensemble = train_many(
        frames,
        settings,
        seeds=a.seeds if a.seeds is not None else [settings.seed],
        beta=a.beta,
        latent_dim=a.latent_dim,
        weights=weights,
        output_dir=a.output,
        progress=not a.quiet,
    )
    _report(ensemble.table())
    _report(
        f"{len(ensemble)} models, ranking.json and ranking.txt written to {a.output}; "
        f"best: {ensemble.best.path.name}"
    )
    return 0


def _cmd_encode(a) -> int:

    out = _output(a, suffixes=io.LATENT_SUFFIXES)
    model = load_model(a.model)
    chunks = io.iter_frames(
        a.data, atoms=io.model_atoms(model), chunk_size=a.chunk_size, **_read_kwargs(a)
    )
    mean, std, times = model.encode_chunks(chunks)
    path = io.write_latent(out, mean, std, times)
    _report(f"latent CVs of {len(mean)} frames written to {path}")
    return 0


def _pass_rates(report) -> str:
    """``"pass rate per check: bonds 100.0 %, angles 38.0 %, contacts 90.0 %"``."""
    rates = (f"{check} {100 * ok.mean():.1f} %" for check, ok in report.checks_ok.items())
    return f"pass rate per check: {', '.join(rates)}"


def _cmd_generate(a) -> int:

    out = _output(a, suffixes=io.POSITION_SUFFIXES)
    model = load_model(a.model)
    if a.valid_only and model.structure_checks is None:  # before any work
        raise ValueError(
            f"--valid-only needs the structure checks that newer model files keep; "
            f"{a.model} has none: retrain it"
        )
    pos = model.generate(a.n, seed=a.seed, mean_only=a.mean_only, latent=a.latent)
    report = model.check_structures(pos)
    if report is None:
        validity = "validity not checked: the model file keeps no structure checks"
    else:
        warning = report.warning("generated structures", "the model's checks")
        if warning is not None:  # one line on stderr, like errors; -q keeps it
            print(f"polyvae: warning: {warning}", file=sys.stderr)
        validity = f"{report.valid.sum()} of {len(pos)} valid ({100 * report.fraction_valid:.1f} %)"
        if a.valid_only:
            pos = pos[report.valid]
            if len(pos) == 0:
                raise ValueError(f"none of the {a.n} conformations drawn is valid; nothing written")
            validity = f"kept the {len(pos)} valid of {a.n} drawn"
        validity += f"; {_pass_rates(report)}"
    path = io.write_positions(out, pos, atoms=io.model_atoms(model), unit=model.unit)
    _report(f"{len(pos)} conformations written to {path}; {validity}")
    return 0


def _cmd_marginals(a) -> int:

    out = _output(a, kind="dir")
    model = load_model(a.model)
    frames = io.read_frames(a.data, atoms=io.model_atoms(model), **_read_kwargs(a))
    weights = _frame_weights(a, frames.n_frames)
    res = write_marginals(model, frames, out, n=a.n, seed=a.seed, weights=weights)
    _report(
        f"mean normalized W1 over {len(res['pairs'])} distance pairs: "
        f"{res['mean_w1_normalized']:.3f}; results in {out}"
    )
    return 0


def _cmd_fes(a) -> int:

    check_temperature(a.temperature)  # before any reading
    out = _output(a, kind="dir")
    model = load_model(a.model)
    cvs = _cv_columns(a.cvs, model.latent_dim)
    frames = io.read_frames(a.data, atoms=io.model_atoms(model), **_read_kwargs(a))
    weights = _frame_weights(a, frames.n_frames, temperature_given=True)
    z, _ = model.encode(frames)
    fes = free_energy_surface(
        z[:, cvs], temperature=a.temperature, weights=weights, bins=a.bins, n_blocks=a.blocks
    )
    out.mkdir(parents=True, exist_ok=True)
    savez(out / "fes.npz", cvs=np.asarray(cvs), **fes.to_npz_dict())
    ax = plotting.plot_fes(fes)
    labels = [f"z{k}" for k in cvs]
    ax.set_xlabel(labels[0])
    if len(cvs) == 2:
        ax.set_ylabel(labels[1])
    savefig(ax.figure, out / "fes.png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt  # heavy: loaded by the one command that plots

    plt.close(ax.figure)
    finite = np.isfinite(fes.free_energy)
    _report(
        f"free energy of {', '.join(labels)} over {frames.n_frames} frames (effective "
        f"{fes.effective_sample_size:.0f}): {int(finite.sum())} of {finite.size} bins sampled, "
        f"kT = {fes.kt:.3f} kJ/mol; fes.npz and fes.png in {out}"
    )
    return 0


def _cv_columns(text: str | None, latent_dim: int) -> list[int]:
    """--cvs: one or two 0-based latent indices."""
    if text is None:
        return list(range(min(2, latent_dim)))
    try:
        cols = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--cvs must be one or two 0-based CV numbers, e.g. 0,1; got {text!r}"
        ) from None
    if not 1 <= len(cols) <= 2 or len(set(cols)) != len(cols):
        raise ValueError(f"--cvs must name one or two different CVs; got {text!r}")
    bad = [c for c in cols if not 0 <= c < latent_dim]
    if bad:
        raise ValueError(f"--cvs: the model has CVs 0 to {latent_dim - 1}; got {bad[0]}")
    return cols


def _cmd_optimize(a) -> int:

    out = _output(a, suffixes=io.POSITION_SUFFIXES)
    model = load_model(a.model)
    res = optimize_latent(
        model,
        a.objective,
        n_starts=a.starts,
        steps=a.steps,
        prior_weight=a.prior_weight,
        checks=None if a.no_checks else "model",
        percentiles=None if a.no_checks else tuple(a.percentiles),
        decoder_noise=False if a.mean_only else None,
        noise_rms=a.noise_rms,
        seed=a.seed,
    )
    extra = {"objective": res.objective, "z": res.z}
    if res.noise is not None:
        extra["noise"] = res.noise
    path = io.write_positions(
        out, res.positions, atoms=io.model_atoms(model), unit=model.unit, extra=extra
    )
    checked = (
        "without structure checks"
        if res.valid is None
        else f"{len(res.valid)} structure(s) pass the checks "
        f"(bonds and angles in percentiles {a.percentiles[0]:g}-{a.percentiles[1]:g})"
    )
    _report(
        f"best {a.objective} = {res.objective[0]:.4f} {model.unit}, {checked}; written to {path}"
    )
    return 0


def _cmd_export(a) -> int:

    if a.target == "colvar" and not a.data:
        raise ValueError("export colvar needs the trajectories to encode (TRAJ ...)")
    if a.target != "colvar" and a.data:
        raise ValueError(f"export {a.target} takes no trajectories; got {len(a.data)}")
    if a.atoms is not None and a.target == "colvar":
        raise ValueError(
            "--atoms applies to export colvars, plumed, torchscript and openmm, not colvar"
        )
    if a.target != "openmm" and (a.cv is not None or a.periodic):
        flag = "--cv" if a.cv is not None else "--periodic"
        raise ValueError(f"{flag} applies to export openmm only, not {a.target}")
    kind = "dir" if a.target in ("colvars", "plumed") else "file"
    suffixes = {"torchscript": (".pt", ".ptc"), "openmm": (".xml",)}.get(a.target)
    out = _output(a, kind=kind, suffixes=suffixes)
    model = load_model(a.model)
    if a.target == "openmm":
        files = export.write_openmm(model, out, cv=a.cv, atoms=a.atoms, periodic=a.periodic)
        _report("openmm export written to " + ", ".join(map(str, files)))
        return 0
    if a.target == "colvar":
        chunks = io.iter_frames(a.data, atoms=io.model_atoms(model), **_read_kwargs(a))
        path = export.colvar_for_model(model, chunks, out)
    elif a.target == "colvars":
        path = export.write_colvars(model, out, atoms=a.atoms)
    elif a.target == "plumed":
        path = export.write_plumed(model, out, atoms=a.atoms)
    else:
        spec = model if a.atoms is None else export.encoder_spec(model, atoms=a.atoms)
        path = export.write_torchscript(spec, out)
    _report(f"{a.target} export written to {path}")
    return 0


def _cmd_toy(a) -> int:

    if a.output is not None:
        _output(a, kind="dir")
    metrics = run_toy(
        a.case,
        beta=a.beta,
        learn_sigma=a.learn_sigma,
        out_dir=a.output,
        seed=a.seed,
        progress=not a.quiet,
    )
    _report(json.dumps(metrics, indent=2))
    return 0


def _cmd_demo(a) -> int:

    out = _output(a, kind="dir")
    path = Path(a.data) if a.data else DEFAULT_DATA
    frames = io.read_frames(path)
    frames.metadata["source"] = str(path)
    summary = run_job(frames, out, _train_settings(a), progress=not a.quiet)
    _report(
        json.dumps(
            {k: v for k, v in summary.items() if k not in ("model", "train", "files")}, indent=2
        )
    )
    return 0


_COMMANDS = {
    "train": _cmd_train,
    "encode": _cmd_encode,
    "generate": _cmd_generate,
    "marginals": _cmd_marginals,
    "optimize": _cmd_optimize,
    "fes": _cmd_fes,
    "export": _cmd_export,
    "toy": _cmd_toy,
    "demo": _cmd_demo,
}
