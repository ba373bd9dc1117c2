"""What the ``polyvae`` command prints: library messages with their Python argument
names as command-line options (:func:`cli_message`), results on stdout, errors on stderr."""

from __future__ import annotations

import re
import sys

__all__ = ["cli_message"]

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
    (" (features='distances' or 'torsions')", ""),
    (" (features='distances')", ""),
    ("cv must be a latent index", "--cv must be a latent index"),
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


def _report(text: str) -> None:
    print(text)


def _error(text: str) -> int:
    print(f"polyvae: error: {cli_message(text)}", file=sys.stderr)
    return 2
