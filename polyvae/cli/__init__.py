"""The ``polyvae`` command line. Argument parsing and reporting only: the work is
done by the library functions each subcommand calls."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import warnings
from pathlib import Path

import numpy as np

from polyvae import __version__, export, io, load_model, plotting, train
from polyvae._checks import ensure_pairs
from polyvae._outputs import check_output, savefig, savez
from polyvae.analysis.fes import free_energy_surface
from polyvae.analysis.optimize import optimize_latent
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
from polyvae.training.trainer import DEFAULT_PATIENCE, repeated_signal, training_summary

__all__ = ["main", "build_parser"]

_EPILOG = """examples:
  polyvae demo -o results/
  polyvae train traj.npz --latent-dim 2 --epochs 250 -o model.polyvae
  polyvae encode model.polyvae traj.npz -o cv.npz
  polyvae generate model.polyvae -n 2048 --seed 1 -o generated.npz
  polyvae marginals model.polyvae traj.npz -o marginals/
  polyvae optimize model.polyvae --objective rg -o compact.npz
  polyvae fes model.polyvae biased.dcd --top top.psf --weights COLVAR:metad.bias --temperature 300 -o fes/
  polyvae export plumed model.polyvae -o plumed/
  polyvae toy discrete --beta 0.2 -o toy/

Lengths are in Å unless the trajectory file states another unit; the model file
records the unit it was trained in."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden must be comma-separated layer widths like 256,256,256; got {text!r}"
        ) from None
    if not widths:
        raise argparse.ArgumentTypeError("--hidden needs at least one layer width")
    return widths


def _values(flag: str, kind: type, ranges: bool = False):
    """An argparse type: one number or a comma-separated list (and ``A-B`` ranges of
    integers where ``ranges``), as a list."""
    example = "0-7 or 0,2,5" if ranges else ("1,2,3" if kind is int else "0.5,1")

    def parse(text: str) -> list:
        values = []
        try:
            for part in (p.strip() for p in text.split(",")):
                if ranges and "-" in part[1:]:
                    lo, hi = (int(v) for v in part.split("-", 1))
                    if hi < lo:
                        raise ValueError
                    values.extend(range(lo, hi + 1))
                else:
                    values.append(kind(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a number or a list like {example}; got {text!r}"
            ) from None
        return values

    return parse


def _patience(value: int) -> int | None:
    """--patience: epochs (>= 1), or 0 for no early stopping (None)."""
    if value < 0:
        raise ValueError(
            f"--patience must be a number of epochs >= 1, or 0 to train all --epochs; got {value}"
        )
    return value or None


def _sigma(text: str) -> float | None:
    if text == "learned":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sigma must be 'learned' or a number; got {text!r}"
        ) from None


def _add_weight_options(p: argparse.ArgumentParser, temperature: bool = True) -> None:
    g = p.add_argument_group("frame weights (biased runs)")
    g.add_argument(
        "--weights",
        default=None,
        metavar="FILE|COLVAR:COLUMN",
        help="per-frame weights: a file with one number per frame (.npy or text), or a "
        "PLUMED COLVAR file and the column of its bias in kJ/mol (e.g. COLVAR:metad.bias), "
        "weighed exp(V/kT) with --temperature",
    )
    if temperature:
        g.add_argument(
            "--temperature",
            type=float,
            default=None,
            metavar="K",
            help="temperature of the biased run in kelvin (with --weights COLVAR:COLUMN)",
        )


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


def _add_model_and_trajectories(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "data", metavar="TRAJ", nargs="+", help="trajectories (atoms taken from the model)"
    )


def _add_data_options(p: argparse.ArgumentParser, select: bool) -> None:
    g = p.add_argument_group("trajectory input")
    g.add_argument(
        "--top",
        metavar="TOP",
        default=None,
        help="topology for MD trajectories (PSF, TPR, PDB, GRO, ...); not needed for .npz",
    )
    if select:
        g.add_argument(
            "--select",
            default="all",
            help="MDAnalysis atom selection, e.g. 'name CA' or 'protein' (default all)",
        )
    g.add_argument("--start", type=int, default=None, help="first frame to read")
    g.add_argument("--stop", type=int, default=None, help="frame to stop before")
    g.add_argument("--step", type=int, default=None, help="read every STEP-th frame")
    g.add_argument(
        "--unwrap",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="make molecules whole across periodic boundaries (default: when the "
        "trajectory has a box)",
    )
    g.add_argument(
        "--guess-bonds",
        action="store_true",
        help="guess bonds from distances when the topology has none, to make molecules "
        "whole across periodic boundaries (the model's bonds: train --bonds)",
    )
    g.add_argument(
        "--allow-truncated",
        action="store_true",
        help="if a file ends inside a frame, go on with the frames before it",
    )


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


def _positive_int(flag: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive integer; got {text!r}")
        return value

    return parse


def _atom_numbers(text: str) -> list[int]:
    """--atoms: 1-based engine atom numbers ("1-5,8,10-12" or a file of numbers), 0-based out."""
    path = Path(text)
    source = path.read_text() if path.is_file() else text
    words = source.replace(",", " ").split()
    numbers: list[int] = []
    try:
        for word in words:
            lo, _, hi = word.partition("-")
            first, last = int(lo), int(hi or lo)
            if first < 1 or last < first:
                raise ValueError
            numbers.extend(range(first, last + 1))
    except ValueError:
        what = f"file {text!r}" if path.is_file() else repr(text)
        raise argparse.ArgumentTypeError(
            f"--atoms must be 1-based atom numbers and ranges like 1-5,8,10-12 or a file of "
            f"them; got {what}"
        ) from None
    if not numbers:
        raise argparse.ArgumentTypeError(f"--atoms names no atoms; got {text!r}")
    return [n - 1 for n in numbers]


def _add_train_options(p: argparse.ArgumentParser, resume: bool = True) -> None:
    g = p.add_argument_group("model and training")
    several = " (a list like %s trains one model per value: see --seeds)"
    g.add_argument(
        "--latent-dim",
        type=_values("--latent-dim", int) if resume else int,
        default=[2] if resume else 2,
        help="number of latent CVs (default 2)" + (several % "1,2,3" if resume else ""),
    )
    g.add_argument("--epochs", type=int, default=250, help="passes over the data (default 250)")
    g.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed, same model (default 0)"
    )
    if resume:
        g.add_argument(
            "--seeds",
            type=_values("--seeds", int, ranges=True),
            default=None,
            metavar="LIST",
            help="train one model per seed (e.g. 0-7), and per --beta and --latent-dim value, "
            "together; -o is then a folder that gets each model, ranking.json and ranking.txt "
            "(ranked by importance-weighted log p(x) of the validation frames, which come "
            "from the first seed)",
        )
    g.add_argument(
        "--hidden",
        type=_hidden,
        default=(128, 128, 128),
        help="hidden layer widths of the encoder, mirrored in the decoder (default 128,128,128)",
    )
    g.add_argument(
        "--activation", default="relu", help="relu, tanh, elu or softplus (default relu)"
    )
    g.add_argument(
        "--batch-size", type=int, default=32, help="frames per optimizer step (default 32)"
    )
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    g.add_argument(
        "--beta",
        type=_values("--beta", float) if resume else float,
        default=[1.0] if resume else 1.0,
        help="weight of the KL term; <1 favours reconstruction (default 1)"
        + (several % "0.5,1" if resume else ""),
    )
    g.add_argument(
        "--sigma",
        type=_sigma,
        default=None,
        help="decoder noise: 'learned' (default) or a fixed value in units of each "
        "coordinate's standard deviation",
    )
    g.add_argument(
        "--align",
        default="principal",
        choices=["principal", "kabsch", "none"],
        help="remove rotations by principal axes (default), by superposition on the "
        "first frame (kabsch), or not at all (none)",
    )
    g.add_argument(
        "--decoder",
        default=None,
        choices=["internal", "cartesian"],
        help="what the decoder gives: internal coordinates (bond lengths, angles, "
        "dihedrals) with aligned Cartesian coordinates, so generated bonds, angles and "
        "chiral centres stay physical (default; cartesian for fewer than 4 atoms in 3D, "
        "3 in 2D), or aligned Cartesian coordinates alone",
    )
    g.add_argument(
        "--features",
        default="positions",
        choices=["positions", "distances", "torsions"],
        help="what the encoder reads: aligned coordinates (default), interatomic distances, "
        "or sin/cos of dihedrals (torsions: the backbone phi/psi of the topology, or "
        "--dihedrals); MD engines compute the last two (Colvars/PLUMED export)",
    )
    g.add_argument(
        "--angles",
        default=None,
        metavar="FILE",
        help="bond angles the encoder also reads (with --features distances or torsions): "
        "three columns of 0-based atom indices into the selection (.npy or text)",
    )
    g.add_argument(
        "--dihedrals",
        default=None,
        metavar="FILE",
        help="dihedrals the encoder reads as sin and cos: four columns of 0-based atom "
        "indices (with --features torsions instead of the backbone phi/psi, or added to "
        "--features distances)",
    )
    g.add_argument(
        "--pairs",
        default=None,
        metavar="FILE|K",
        help="with --features distances: a file of atom pairs (two columns of 0-based indices "
        "into the selection; .npy or text), or K for every K-th pair (default: all pairs)",
    )
    g.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="fraction of frames held out to monitor overfitting (default 0.1)",
    )
    g.add_argument(
        "--patience",
        type=int,
        default=DEFAULT_PATIENCE,
        metavar="N",
        help="early stopping: stop after N epochs without a better validation loss and keep "
        f"the best validation epoch (default {DEFAULT_PATIENCE}; 0: train all --epochs and "
        "keep the last)",
    )
    if not resume:  # the demo always trains anew
        return
    g.add_argument(
        "--resume",
        default=None,
        metavar="MODEL",
        help="continue the training run that wrote MODEL (its settings; the same trajectory "
        "and --weights) until --epochs epochs in total; Ctrl-C or SIGTERM during training "
        "saves such a model to -o",
    )


def _train_kwargs(a) -> dict:
    return dict(
        latent_dim=a.latent_dim,
        epochs=a.epochs,
        seed=a.seed,
        hidden=a.hidden,
        activation=a.activation,
        batch_size=a.batch_size,
        learning_rate=a.lr,
        beta=a.beta,
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``polyvae`` command."""

    parser = _Parser(
        prog="polyvae",
        description="Learn a variational autoencoder (VAE) of a molecule's conformations from a "
        "trajectory, then use it: low-dimensional collective variables (CVs), new "
        "conformations, distance distributions, and compact structures.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"polyvae {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "train",
        help="train a VAE on a trajectory and save the model file",
        description="Center, align and standardize the frames of DATA, train a VAE "
        "and save it (architecture, preprocessing, units) to one file.",
    )
    p.add_argument(
        "data",
        metavar="TRAJ",
        nargs="+",
        help="trajectories of one molecule: .npz (polyvae's, or key 'arr' (T, N, D)) or any "
        "format MDAnalysis reads (DCD, XTC, TRR, ...; several are concatenated)",
    )
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="model file to write")
    _add_data_options(p, select=True)
    p.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train from chunks of the data instead of holding it all on the device "
        "(default: automatic by size)",
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="PDB|FRAME",
        help="with --align kabsch: superpose on this structure file (same atoms) or frame "
        "number (default: the first frame)",
    )
    p.add_argument(
        "--bonds",
        default="auto",
        metavar="auto|topology|guess|FILE",
        help="the molecule's bonds: auto (default) takes the topology's where they join the "
        "selection, completes them from distances and covalent radii where they do not (a "
        "PDB with CONECT records for some residues only), guesses them for an all-atom "
        "molecule without any, else uses a chain in atom order (C-alpha, beads); topology: "
        "the topology's only; guess: from distances only; FILE: two 0-based atom indices "
        "of the selection per line (text) or a .npy array (B, 2)",
    )
    _add_train_options(p)
    _add_weight_options(p)

    p = sub.add_parser(
        "encode",
        help="latent CVs (encoder mean and std) of a trajectory",
        description="Write the latent collective variables of every frame of DATA: "
        "'latent' (T, L), the encoder mean, and 'latent_std' (T, L).",
    )
    _add_model_and_trajectories(p)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="OUT.npz (keys latent, latent_std, times) or a text table OUT.txt, OUT.dat, "
        "OUT.csv (columns time, z0..., z0_std...)",
    )
    _add_data_options(p, select=False)
    p.add_argument(
        "--chunk-size",
        type=_positive_int("--chunk-size"),
        default=4096,
        help="frames read at a time (default 4096)",
    )

    p = sub.add_parser(
        "generate",
        help="sample new conformations from the model",
        description="Draw latent points (from the codes of the training frames, or the "
        "prior) and decode them to conformations, in the aligned frame: key 'positions' "
        "(n, N, D).",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-n", type=int, default=2048, help="number of conformations (default 2048)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--mean-only", action="store_true", help="decoder mean only, without the decoder's noise"
    )
    p.add_argument(
        "--latent",
        choices=("training", "prior"),
        help="where latent points come from: training (default where the model keeps them), "
        "the encoder distributions of the training frames, so basins are populated as in the "
        "trajectory; prior, N(0, I)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="OUT.npz (key 'positions'), or OUT.pdb, OUT.dcd, OUT.xtc with the model's atoms",
    )
    p.add_argument(
        "--valid-only",
        action="store_true",
        help="keep only structures whose bonds and angles lie in their training ranges and "
        "whose atoms come no closer than in the training frames",
    )

    p = sub.add_parser(
        "marginals",
        help="compare pairwise-distance distributions, data vs model",
        description="Generate conformations and compare every pairwise distance's "
        "distribution with DATA (Wasserstein-1 in units of the data's "
        "standard deviation); writes marginals.json and PNGs to DIR.",
    )
    _add_model_and_trajectories(p)
    p.add_argument("-n", type=int, default=2048, help="conformations to generate (default 2048)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    _add_data_options(p, select=False)
    _add_weight_options(p)

    p = sub.add_parser(
        "fes",
        help="free-energy surface of the latent CVs of trajectories",
        description="Encode every frame of TRAJ, histogram the latent CVs (weighted with "
        "--weights for a biased run) and write F = -kT ln p on a 1D or 2D grid in kJ/mol "
        "(minimum 0) with its block-averaging error: fes.npz and fes.png in DIR.",
    )
    _add_model_and_trajectories(p)
    p.add_argument(
        "--temperature", type=float, required=True, metavar="K", help="temperature in kelvin"
    )
    p.add_argument(
        "--cvs",
        default=None,
        metavar="I[,J]",
        help="which latent CVs (0-based, one or two; default the first two, or the only one)",
    )
    p.add_argument(
        "--bins",
        type=int,
        default=None,
        help="bins per CV (default: about 10 frames per bin, 10-100 in 1D, 10-50 in 2D)",
    )
    p.add_argument("--blocks", type=int, default=5, help="blocks for the error (default 5)")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    _add_data_options(p, select=False)
    _add_weight_options(p, temperature=False)

    p = sub.add_parser(
        "optimize",
        help="find structures that minimize an objective in latent space",
        description="Minimize an objective of the decoded structure over the latent "
        "space from several starts; writes 'positions' (best first), "
        "'objective' and 'z' (and for the internal decoder 'noise': each structure is "
        "the model's sample at z with that decoder noise, of rms at most --noise-rms).",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "--objective",
        default="rg",
        choices=["rg"],
        help="rg: mass-weighted radius of gyration (default)",
    )
    p.add_argument("--starts", type=int, default=64, help="independent starts (default 64)")
    p.add_argument("--steps", type=int, default=1000, help="Adam steps per start (default 1000)")
    p.add_argument(
        "--prior-weight",
        type=float,
        default=0.0,
        help="penalty |z|^2/2 weight keeping z near the training data (default 0)",
    )
    p.add_argument(
        "--percentiles",
        type=float,
        nargs=2,
        default=(0.5, 99.5),
        metavar=("LOW", "HIGH"),
        help="keep every bond and angle inside this percentile band of its training values "
        "(a band stored in the model file: 0 100, 0.5 99.5, 1 99, 2.5 97.5; default 0.5 99.5), "
        "and no contact closer than the training minimum; only structures that pass are written",
    )
    p.add_argument(
        "--no-checks",
        action="store_true",
        help="optimize without the structure checks (structures may be invalid)",
    )
    p.add_argument(
        "--mean-only",
        action="store_true",
        help="search the decoder mean alone (internal decoder: leave out its noise)",
    )
    p.add_argument(
        "--noise-rms",
        type=float,
        default=1.0,
        help="internal decoder: bound on the rms of the decoder noise, in its standard "
        "deviations (default 1, a typical sample)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the starts (default 0)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz")

    p = sub.add_parser(
        "export",
        help="write the latent CV for an MD engine (Colvars, PLUMED, TorchScript) or a COLVAR file",
        description="Export the encoder mean as a collective variable: 'colvars' writes a "
        "Colvars configuration with a NeuralNetwork component (distance-feature models), "
        "'plumed' a PLUMED input with an ANN action (tanh models), 'torchscript' a module "
        "for PLUMED's PYTORCH_MODEL (needs torch), 'colvar' the CVs of a trajectory as a "
        "PLUMED-style COLVAR file. Lengths are in Å.",
    )
    p.add_argument("target", choices=["colvars", "plumed", "torchscript", "colvar"])
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="TRAJ", nargs="*", help="colvar: trajectories to encode")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="folder, FILE.pt or COLVAR file"
    )
    p.add_argument(
        "--atoms",
        type=_atom_numbers,
        default=None,
        metavar="LIST|FILE",
        help="colvars, plumed, torchscript: the engine's 1-based numbers of the model's atoms, "
        "e.g. 1-12 or 1-5,8,10-12, or a file of numbers (default: those stored with a model "
        "trained through a topology; needed for a model trained on .npz frames)",
    )
    _add_data_options(p, select=False)

    p = sub.add_parser(
        "toy",
        help="the method's validation cases: discrete classes, 1D regression",
        description="Train the VAE on a 1D two-Gaussian mixture, either binned into 32 one-hot "
        "classes (discrete) or as raw values (regression), and report how well it reproduces "
        "the data; with -o DIR, also figures and summary.json.",
    )
    p.add_argument("case", choices=["discrete", "regression"])
    p.add_argument(
        "--beta",
        type=float,
        default=1.0,
        help="KL weight: 1 gives the ELBO; smaller favours reconstruction (default 1)",
    )
    p.add_argument(
        "--learn-sigma",
        action="store_true",
        help="regression: learn the decoder's sigma instead of fixing it at 0.1",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "-o",
        "--output",
        "--out",
        dest="output",
        metavar="DIR",
        default=None,
        help="folder for figures and summary.json",
    )

    p = sub.add_parser(
        "demo",
        help="the whole job on the bundled 2D bead-spring polymer",
        description="Train on the bundled polymer trajectory and write the model, "
        "CVs, generated conformations, marginals, the Rg-minimized "
        "structure, plots and summary.json to DIR.",
    )
    p.add_argument("-o", "--output", default="results", metavar="DIR", help="(default results/)")
    p.add_argument("--data", default=None, help="trajectory to use instead of the bundled one")
    _add_train_options(p, resume=False)
    for name, func in _COMMANDS.items():
        sub.choices[name].set_defaults(func=func)
    return parser


#: Above this many atoms, training without --top warns that names, masses and bonds
#: come from the trajectory file alone (none for .npz, guessed for PDB/GRO).
MANY_ATOMS_WITHOUT_TOP = 300

#: Library wording of an argument -> what the user types on the command line. The
#: library's messages name Python arguments; every message printed here passes through
#: this table once.
_CLI_WORDS = (
    ("pass allow_truncated=True to go on", "add --allow-truncated to go on"),
    ("frames read are kept in this error's .frames", "frames read before it can be used"),
    (
        "of them are kept in this error's .frames (read_frames keeps all)",
        "frames read before it can be used",
    ),
    ("continue one with resume=", "continue one with --resume "),
    ("pass guess_bonds=True", "add --guess-bonds"),
    ('pass bonds="auto"', "use --bonds auto (the default)"),
    ('bonds="guess"', "--bonds guess"),
    (
        "pass bonds=[[i, j], ...] (0-based pairs)",
        "give --bonds FILE (two 0-based atom indices per line)",
    ),
    ("bonds=[[i, j], ...] (0-based pairs)", "--bonds FILE (two 0-based atom indices per line)"),
    ("pass bonds that join every atom", "give a --bonds FILE whose bonds join every atom"),
    ('latent="training" needs', "--latent training needs"),
    ('use latent="prior"', "use --latent prior"),
    ("guess_bonds=True", "--guess-bonds"),
    ("pass unwrap=False", "add --no-unwrap"),
    ("pass topology=...", "give it with --top FILE"),
    ("with topology=...", "with --top FILE"),
    ("topology=...", "--top FILE"),
    (
        "pass atoms=[...] with the 0-based topology indices of the model's",
        "give --atoms with the engine's 1-based atom numbers (e.g. --atoms 1-12) of the model's",
    ),
    ("atoms must give one index per model atom", "--atoms must give one number per model atom"),
    ("atoms must be distinct, non-negative 0-based atom indices", "--atoms must be distinct"),
    ("align='kabsch' (--align kabsch)", "--align kabsch"),
    (" (features='distances')", ""),
    ('activation="tanh" (--activation tanh)', "--activation tanh"),
    ("(write_colvars)", "(polyvae export colvars)"),
    ("chunk_size", "--chunk-size"),
    (
        "raise n_starts, steps or penalty_weight, or pass require_valid=False to see them",
        "raise --starts or --steps, or add --no-checks to optimize without the checks",
    ),
    ("percentiles must be a stored band", "--percentiles must be a stored band"),
    ("noise_rms must", "--noise-rms must"),
    ("batch_size=", "--batch-size "),
    ("use a smaller batch_size", "use a smaller --batch-size"),
    ("start=", "--start "),
    (", stop=", ", --stop "),
    (", step=", ", --step "),
    ("steps must be", "--steps must be"),
    ("patience must", "--patience must"),
    ("the number of structures n must", "-n must"),
    ("latent_dim must be at most the", "--latent-dim must be at most the"),
    ("continue the run with resume=", "continue it with --resume "),
    ("(continue training with resume=", "(continue training with --resume "),
    ("resume: ", "--resume: "),
    ("pass the same weights to continue", "give the same --weights to continue"),
    ("pass temperature (--temperature)", "add --temperature K"),
    ("temperature must", "--temperature must"),
    ("bins must", "--bins must"),
    ("pass dihedrals=[...] (0-based atom quads) instead", "give --dihedrals FILE instead"),
    ("n_blocks=", "--blocks "),
    ("n_blocks must", "--blocks must"),
    (
        "temperature is used only with weights from a COLVAR bias column (COLVAR:COLUMN)",
        "--temperature is used only with --weights COLVAR:COLUMN",
    ),
    ('decoder="internal"', "--decoder internal"),
    ('decoder="cartesian"', "--decoder cartesian"),
    (
        "pass checks=StructureChecks.from_training(frames), or checks=None to optimize "
        "without them",
        "add --no-checks to optimize without them",
    ),
)


_RESUMED_FLAGS = {
    "latent_dim": "--latent-dim",
    "hidden": "--hidden",
    "activation": "--activation",
    "beta": "--beta",
    "batch_size": "--batch-size",
    "learning_rate": "--lr",
    "seed": "--seed",
    "validation_fraction": "--validation-fraction",
    "patience": "--patience",
    "align": "--align",
    "features": "--features",
}
_CLI_WORDS += tuple(
    (f"{before}{key}{after}", f"{before}{flag}{after.replace('=', ' ')}")
    for key, flag in _RESUMED_FLAGS.items()
    for before, after in (("trained with ", "="), ("; got ", "="), ("leave ", " out"))
)


def cli_message(text: str) -> str:
    """A library message as one line, with argument names as command-line flags."""
    text = " ".join(str(text).split())
    for python, flag in _CLI_WORDS:
        # a name inside a longer word or flag stays (no "----patience", no "fractio-n")
        edge = r"(?<![\w-])" if python[:1].isalnum() or python[:1] == "_" else ""
        text = re.sub(edge + re.escape(python), lambda _m, flag=flag: flag, text)
    return text


_POSITIONAL = {"model": "MODEL", "data": "TRAJ"}


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


def _report(text: str) -> None:
    print(text)


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
    kwargs = _train_kwargs(a)
    if not several:
        kwargs.update(latent_dim=a.latent_dim[0], beta=a.beta[0])
    bonds = _bonds_option(a.bonds)  # a bad file fails before the trajectory is read
    frames = io.read_frames(a.data, select=a.select, **_read_kwargs(a))
    if not isinstance(bonds, str):
        bonds = ensure_pairs(bonds, frames.n_atoms, f"--bonds file {a.bonds!r}")
    kwargs["bonds"] = bonds
    if a.top is None and frames.n_atoms > MANY_ATOMS_WITHOUT_TOP:
        logging.getLogger("polyvae").warning(
            "%d atoms read without --top: their names, masses and bonds are unknown or only "
            "guessed from %s; give the topology with --top FILE (PSF, TPR, PRMTOP, ...)",
            frames.n_atoms,
            a.data[0],
        )
    if a.reference is not None:
        kwargs["reference"] = io.load_reference(a.reference, frames)
    if a.stream is not None:
        kwargs["stream"] = a.stream
    kwargs["weights"] = _frame_weights(a, frames.n_frames)
    if several:
        return _train_several(a, frames, kwargs)
    if a.resume is not None:
        kwargs["resume"] = a.resume
    model = train(frames, output=a.output, progress=not a.quiet, **kwargs)
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


def _train_several(a, frames, kwargs: dict) -> int:
    """polyvae train with --seeds or lists of --beta or --latent-dim: one model each."""

    seed = kwargs.pop("seed")
    ensemble = train_many(
        frames,
        seeds=a.seeds if a.seeds is not None else [seed],
        output_dir=a.output,
        progress=not a.quiet,
        **kwargs,
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
    import matplotlib.pyplot as plt

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
        raise ValueError("--atoms applies to export colvars, plumed and torchscript, not colvar")
    kind = "dir" if a.target in ("colvars", "plumed") else "file"
    out = _output(a, kind=kind, suffixes=(".pt", ".ptc") if a.target == "torchscript" else None)
    model = load_model(a.model)
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
    summary = run_job(frames, out, progress=not a.quiet, **_train_kwargs(a))
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

_CRASH_SIGNALS = ("SIGFPE", "SIGSEGV", "SIGBUS", "SIGILL", "SIGABRT")


def _error(text: str) -> int:
    print(f"polyvae: error: {cli_message(text)}", file=sys.stderr)
    return 2


def _execute(args) -> int:
    """Run one parsed command with the command's logging and warnings; restore both after."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("polyvae: %(message)s"))
    log, engine_log = logging.getLogger("polyvae"), logging.getLogger("MDAnalysis")
    levels = (log.level, engine_log.level)
    log.addHandler(handler)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    engine_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # the engines' own notices (file-format hints, deprecations) are not for this
            # command's user; MDAnalysis installs its own warning filter on import, so
            # filter at display time
            shown = warnings.showwarning

            def _show(message, category, filename, *rest):
                if not any(
                    f"{os.sep}{m}{os.sep}" in str(filename) for m in ("MDAnalysis", "mdtraj")
                ):
                    shown(message, category, filename, *rest)

            warnings.showwarning = _show
            import matplotlib

            matplotlib.use("Agg")
            return args.func(args)
    except KeyboardInterrupt as exc:  # a training run says where its state went
        print(f"polyvae: {cli_message(str(exc)) or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as exc:  # every error: one line, exit code 2
        return _error(str(exc) or type(exc).__name__)
    finally:
        log.removeHandler(handler)
        log.setLevel(levels[0])
        engine_log.setLevel(levels[1])


def _interrupt_once(signum, frame):
    """The child's SIGINT handler: KeyboardInterrupt, once for signals that arrive within
    :data:`polyvae.training.trainer.REPEAT_SIGNAL_S` of each other."""
    if not repeated_signal():
        raise KeyboardInterrupt


def _execute_in_child(args) -> int:
    """Run the command in a forked child, so that a crash in compiled reader code (a
    corrupt trajectory can make a C decoder divide by zero) is reported, not fatal."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's exit status is what is tested
        code = 2
        try:
            signal.signal(signal.SIGINT, _interrupt_once)
            code = _execute(args)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def forward(signum, _frame):  # kill PID, a scheduler's SIGTERM/SIGHUP stop the work too
        try:
            os.kill(pid, signum)
        except ProcessLookupError:  # the child has just ended
            pass

    # Ctrl-C reaches the child twice (the process group's signal and this one's): it takes
    # a repeat within REPEAT_SIGNAL_S as the same request
    handlers = {sig: forward for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    previous = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:  # pragma: no cover - retried by Python since 3.5
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not os.WIFSIGNALED(status):
        return os.WEXITSTATUS(status)
    name = signal.Signals(os.WTERMSIG(status)).name
    inputs = [*(getattr(args, "data", None) or []), getattr(args, "model", None)]
    named = ", ".join(str(p) for p in inputs if p)
    if name in _CRASH_SIGNALS:
        return _error(
            f"the command crashed with {name} in compiled code while working on {named or 'its'} "
            "input; a trajectory file is probably corrupt (e.g. a damaged XTC frame): check it "
            "(e.g. gmx check -f FILE) or leave it out"
        )
    why = " (out of memory?)" if name == "SIGKILL" else ""
    return _error(f"the command was stopped by {name}{why}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``polyvae`` command; returns the exit code.

    Errors are one line on stderr with exit code 2. Run as a program (``argv`` None),
    the command works in a child process where the platform forks, so that a crash of
    a compiled trajectory reader is reported like any other error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if argv is None:
        _keep_compiled_code()
        if hasattr(os, "fork"):
            return _execute_in_child(args)
    return _execute(args)


COMPILE_CACHE_ENV = "POLYVAE_COMPILE_CACHE"


def _keep_compiled_code() -> None:
    """Keep JAX's compiled code on disk between runs of the command.

    A model's training step and structure minimization take seconds to compile; kept
    in ``$XDG_CACHE_HOME/polyvae/jax`` (default ``~/.cache/polyvae/jax``), the next run
    on the same molecule and settings loads them instead. ``POLYVAE_COMPILE_CACHE=0``
    switches this off, another value names the folder; an explicit
    ``JAX_COMPILATION_CACHE_DIR`` wins.
    """
    choice = os.environ.get(COMPILE_CACHE_ENV, "")
    if choice == "0" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = Path(choice) if choice else base / "polyvae" / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only home: compile every run
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))


if __name__ == "__main__":
    sys.exit(main())
