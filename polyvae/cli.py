"""The ``polyvae`` command line. Argument parsing and reporting only: the work is
done by the library functions each subcommand calls."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser"]

_EPILOG = """examples:
  polyvae demo -o results/
  polyvae train traj.npz --latent-dim 2 --epochs 250 -o model.polyvae
  polyvae encode model.polyvae traj.npz -o cv.npz
  polyvae generate model.polyvae -n 2048 --seed 1 -o generated.npz
  polyvae marginals model.polyvae traj.npz -o marginals/
  polyvae optimize model.polyvae --objective rg -o compact.npz
  polyvae export plumed model.polyvae -o plumed/
  polyvae toy discrete --beta 0.2 --out toy/

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


def _sigma(text: str) -> float | None:
    if text == "learned":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sigma must be 'learned' or a number; got {text!r}"
        ) from None


def _min_distance(text: str):
    if text in ("train", "none"):
        return None if text == "none" else "train"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--min-distance must be 'train', 'none' or a distance; got {text!r}"
        ) from None


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
        "--allow-truncated",
        action="store_true",
        help="if a file ends inside a frame, go on with the frames before it",
    )


def _slice(a) -> dict:
    return dict(
        start=a.start, stop=a.stop, step=a.step, unwrap=a.unwrap, allow_truncated=a.allow_truncated
    )


def _add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and training")
    g.add_argument("--latent-dim", type=int, default=2, help="number of latent CVs (default 2)")
    g.add_argument("--epochs", type=int, default=250, help="passes over the data (default 250)")
    g.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed, same model (default 0)"
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
        type=float,
        default=1.0,
        help="weight of the KL term; <1 favours reconstruction (default 1)",
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
        "--features",
        default="positions",
        choices=["positions", "distances"],
        help="what the encoder reads: aligned coordinates (default) or interatomic distances, "
        "which MD engines can compute (needed for the Colvars/PLUMED distance export)",
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
        features=a.features,
        pairs=_pairs(a.pairs),
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``polyvae`` command."""
    from polyvae import __version__

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
        "--reference",
        default=None,
        metavar="PDB|FRAME",
        help="with --align kabsch: superpose on this structure file (same atoms) or frame "
        "number (default: the first frame)",
    )
    _add_train_options(p)

    p = sub.add_parser(
        "encode",
        help="latent CVs (encoder mean and std) of a trajectory",
        description="Write the latent collective variables of every frame of DATA: "
        "'latent' (T, L), the encoder mean, and 'latent_std' (T, L).",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "data", metavar="TRAJ", nargs="+", help="trajectories (atoms taken from the model)"
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    _add_data_options(p, select=False)
    p.add_argument(
        "--chunk-size", type=int, default=4096, help="frames read at a time (default 4096)"
    )

    p = sub.add_parser(
        "generate",
        help="sample new conformations from the model",
        description="Draw latent points from the prior and decode them to "
        "conformations, in the aligned frame: key 'positions' (n, N, D).",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-n", type=int, default=2048, help="number of conformations (default 2048)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--mean-only", action="store_true", help="decoder mean only, without the decoder's noise"
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="OUT.npz (key 'positions'), or OUT.pdb, OUT.dcd, OUT.xtc with the model's atoms",
    )

    p = sub.add_parser(
        "marginals",
        help="compare pairwise-distance distributions, data vs model",
        description="Generate conformations and compare every pairwise distance's "
        "distribution with DATA (Wasserstein-1 in units of the data's "
        "standard deviation); writes marginals.json and PNGs to DIR.",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "data", metavar="TRAJ", nargs="+", help="trajectories (atoms taken from the model)"
    )
    p.add_argument("-n", type=int, default=2048, help="conformations to generate (default 2048)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    _add_data_options(p, select=False)

    p = sub.add_parser(
        "optimize",
        help="find structures that minimize an objective in latent space",
        description="Minimize an objective of the decoded structure over the latent "
        "space from several starts; writes 'positions' (best first), "
        "'objective' and 'z'.",
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
        "--min-distance",
        type=_min_distance,
        default="train",
        help="closest non-bonded contact allowed: 'train' (training 1st percentile, "
        "default), 'none', or a distance",
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
    _add_data_options(p, select=False)

    p = sub.add_parser(
        "toy",
        help="the method's validation cases: discrete classes, 1D regression",
        description="Train the VAE on a 1D two-Gaussian mixture, either binned into 32 one-hot "
        "classes (discrete) or as raw values (regression), and report how well it reproduces "
        "the data; with --out, also figures and summary.json.",
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
    p.add_argument("--out", metavar="DIR", default=None, help="folder for figures and summary.json")

    p = sub.add_parser(
        "demo",
        help="the whole job on the bundled 2D bead-spring polymer",
        description="Train on the bundled polymer trajectory and write the model, "
        "CVs, generated conformations, marginals, the Rg-minimized "
        "structure, plots and summary.json to DIR.",
    )
    p.add_argument("-o", "--output", default="results", metavar="DIR", help="(default results/)")
    p.add_argument("--data", default=None, help="trajectory to use instead of the bundled one")
    _add_train_options(p)
    return parser


def _run(a) -> int:
    from polyvae import io, load_model, train

    progress = not a.quiet
    if a.command == "train":
        frames = io.read_trajectories(a.data, topology=a.top, select=a.select, **_slice(a))
        kwargs = _train_kwargs(a)
        if a.reference is not None:
            kwargs["reference"] = io.load_reference(a.reference, frames)
        model = train(frames, output=a.output, progress=progress, **kwargs)
        print(
            f"model written to {a.output} ({model.config.latent_dim} latent CVs, "
            f"final validation ELBO {model.history.get('val_elbo', [float('nan')])[-1]:.3f})"
        )
    elif a.command == "encode":
        model = load_model(a.model)
        chunks = io.iter_trajectories(
            a.data,
            topology=a.top,
            atoms=io.model_atoms(model),
            chunk_size=a.chunk_size,
            **_slice(a),
        )
        mean, std, times = model.encode_chunks(chunks)
        np.savez(a.output, latent=mean, latent_std=std, times=times)
        print(f"latent CVs of {len(mean)} frames written to {a.output}")
    elif a.command == "generate":
        model = load_model(a.model)
        pos = model.generate(a.n, seed=a.seed, mean_only=a.mean_only)
        io.write_positions(a.output, pos, atoms=io.model_atoms(model), unit=model.unit)
        print(f"{len(pos)} conformations written to {a.output}")
    elif a.command == "marginals":
        from polyvae.job import write_marginals

        model = load_model(a.model)
        frames = io.read_for_model(a.data, model, topology=a.top, **_slice(a))
        res = write_marginals(model, frames, a.output, n=a.n, seed=a.seed)
        print(
            f"mean normalized W1 over {len(res['pairs'])} distance pairs: "
            f"{res['mean_w1_normalized']:.3f}; results in {a.output}"
        )
    elif a.command == "optimize":
        from polyvae.analysis.optimize import optimize_latent

        model = load_model(a.model)
        res = optimize_latent(
            model,
            a.objective,
            n_starts=a.starts,
            steps=a.steps,
            prior_weight=a.prior_weight,
            min_distance=a.min_distance,
            seed=a.seed,
        )
        io.write_positions(
            a.output,
            res.positions,
            atoms=io.model_atoms(model),
            unit=model.unit,
            extra={"objective": res.objective, "z": res.z},
        )
        print(f"best {a.objective} = {res.objective[0]:.4f} {model.unit}; written to {a.output}")
    elif a.command == "export":
        from polyvae import export

        model = load_model(a.model)
        if a.target == "colvar":
            if not a.data:
                raise ValueError("export colvar needs the trajectories to encode (TRAJ ...)")
            chunks = io.iter_trajectories(
                a.data, topology=a.top, atoms=io.model_atoms(model), **_slice(a)
            )
            mean, _, times = model.encode_chunks(chunks)
            path = export.write_colvar(a.output, times, mean)
        elif a.data:
            raise ValueError(f"export {a.target} takes no trajectories; got {len(a.data)}")
        elif a.target == "colvars":
            path = export.write_colvars(model, a.output)
        elif a.target == "plumed":
            path = export.write_plumed(model, a.output)
        else:
            path = export.write_torchscript(model, a.output)
        print(f"{a.target} export written to {path}")
    elif a.command == "toy":
        from polyvae.toys import run_toy

        metrics = run_toy(
            a.case,
            beta=a.beta,
            learn_sigma=a.learn_sigma,
            out_dir=a.out,
            seed=a.seed,
            progress=progress,
        )
        print(json.dumps(metrics, indent=2))
    elif a.command == "demo":
        from polyvae.job import DEFAULT_DATA, run_job

        path = Path(a.data) if a.data else DEFAULT_DATA
        frames = io.read_frames(path)
        frames.metadata["source"] = str(path)
        summary = run_job(frames, a.output, progress=progress, **_train_kwargs(a))
        print(
            json.dumps(
                {k: v for k, v in summary.items() if k not in ("model", "train", "files")}, indent=2
            )
        )
        print(f"results written to {Path(a.output).resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``polyvae`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("polyvae: %(message)s"))
    log = logging.getLogger("polyvae")
    log.addHandler(handler)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    # the engines' own notices (file-format hints, deprecations) are not for this command's
    # user; MDAnalysis installs its own warning filter on import, so filter at display time
    shown = warnings.showwarning

    def _show(message, category, filename, *rest):
        if not any(f"{os.sep}{m}{os.sep}" in str(filename) for m in ("MDAnalysis", "mdtraj")):
            shown(message, category, filename, *rest)

    warnings.showwarning = _show
    logging.getLogger("MDAnalysis").setLevel(logging.ERROR)
    import matplotlib

    matplotlib.use("Agg")
    try:
        return _run(args)
    except (ValueError, TypeError, ImportError, FloatingPointError, OSError) as exc:
        hint = ""
        if type(exc).__name__ == "TruncatedTrajectoryError":
            hint = " (pass --allow-truncated to go on with them)"
        print(f"polyvae: error: {exc}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("polyvae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
