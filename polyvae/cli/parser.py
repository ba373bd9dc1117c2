"""The argument parser of the ``polyvae`` command: its subcommands, option groups and
the types that check option values as they are parsed."""

from __future__ import annotations

import argparse
from pathlib import Path

from polyvae import __version__
from polyvae.config import DEFAULT_PATIENCE

__all__ = ["build_parser"]

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


def _sigma(text: str) -> float | None:
    if text == "learned":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sigma must be 'learned' or a number; got {text!r}"
        ) from None


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
        help="write the latent CV for an MD engine (Colvars, PLUMED, TorchScript, OpenMM) or "
        "a COLVAR file",
        description="Export the encoder mean as a collective variable: 'colvars' writes a "
        "Colvars configuration with a NeuralNetwork component (distance-feature models), "
        "'plumed' a PLUMED input with an ANN action (tanh models), 'torchscript' a module "
        "for PLUMED's PYTORCH_MODEL (needs torch), 'openmm' an OpenMM force whose energy is "
        "the CV (XmlSerializer; distance and torsion models; needs openmm), 'colvar' the CVs "
        "of a trajectory as a PLUMED-style COLVAR file. Lengths are in Å.",
    )
    p.add_argument("target", choices=["colvars", "plumed", "torchscript", "openmm", "colvar"])
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="TRAJ", nargs="*", help="colvar: trajectories to encode")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="folder, FILE.pt, FILE.xml (openmm: FILE_z0.xml, FILE_z1.xml, ... for several "
        "CVs) or COLVAR file",
    )
    p.add_argument(
        "--cv",
        type=int,
        default=None,
        metavar="I",
        help="openmm: only latent CV I (0-based; default every CV, a file each)",
    )
    p.add_argument(
        "--periodic",
        action="store_true",
        help="openmm: the System is periodic (positions come wrapped into the box)",
    )
    p.add_argument(
        "--atoms",
        type=_atom_numbers,
        default=None,
        metavar="LIST|FILE",
        help="colvars, plumed, torchscript, openmm: the engine's 1-based numbers of the model's atoms, "
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
    return parser
