"""The latent CV as a PLUMED input (ANN module).

PLUMED facts used here (read in PLUMED's sources; no code taken):

* ``ANN`` (module annfunc, built only with ``./configure --enable-modules=annfunc``):
  ``ARG``, ``NUM_LAYERS`` (input layer included), ``NUM_NODES``, ``ACTIVATIONS`` (one
  per non-input layer: ``Linear``, ``Tanh``, ``Circular``), numbered ``WEIGHTS0``,
  ``WEIGHTS1``, ... and ``BIASES0``, ... . ``WEIGHTSk`` is the matrix from layer k to
  k+1 flattened row by row with one row per *output* node (``coeff[j / n_in][j % n_in]``),
  i.e. ``W.T.ravel()`` for polyvae's ``W`` (n_in, n_out). Outputs are the components
  ``<label>.node-0``, ``<label>.node-1``, ... (no PERIODIC, as in regtest/annfunc).
  https://github.com/plumed/plumed2/blob/master/src/annfunc/ANN.cpp
* ``FIT_TO_TEMPLATE REFERENCE=ref.pdb TYPE=OPTIMAL``: PDB occupancy = alignment weights,
  beta = displacement weights (both normalized to sum 1; displacement only enters the
  RMSD value it reports, but must not sum to 0). The reference is centred on its
  occupancy-weighted centre ``c``; every atom is moved to ``R (x - com) + c`` with
  ``com`` the occupancy-weighted centre of the current positions and ``R`` the optimal
  (weighted, proper) rotation. Molecules are made whole along the PDB's atom order
  before the fit (PLUMED >= 2.5) but the stored positions are only roto-translated.
  https://github.com/plumed/plumed2/blob/master/src/generic/FitToTemplate.cpp
* PDB files are read in fixed columns (x 31-38, y 39-46, z 47-54, occupancy 55-60, beta
  61-66, serial 7-11 hybrid-36), in Å whatever the ``UNITS``.
  https://github.com/plumed/plumed2/blob/master/src/tools/PDB.cpp
* ``POSITION ATOM=k`` gives components ``.x .y .z``; by default the minimal image of
  the atom from the origin, which puts atoms split over the box back next to the
  aligned (origin-centred) molecule. ``DISTANCE ATOMS=i,j`` (minimal image). Atom
  numbers are 1-based. ``UNITS LENGTH=A`` (also ``nm`` default, ``um``).
  https://github.com/plumed/plumed2/blob/master/src/colvar/Position.cpp
* ``PRINT ARG=... STRIDE=n FILE=COLVAR FMT=fmt`` (a blank is put before ``fmt``);
  multi-line actions: ``ACTION ...`` / keyword lines / ``... ACTION``.
  https://github.com/plumed/plumed2/blob/master/src/generic/Print.cpp
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from polyvae._outputs import write_text
from polyvae.export.spec import EncoderSpec, ExportError, encoder_spec

__all__ = ["write_plumed"]

logger = logging.getLogger(__name__)

_ANGSTROM = ("Å", "A", "Angstrom", "angstrom", "Ang")
_HY36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# ---- shared with the Colvars writer --------------------------------------------------
def as_spec(spec_or_model: Any, target: str, atoms: Any = None) -> EncoderSpec:
    """The :class:`EncoderSpec` of a model (or the spec itself), with lengths in Å.

    ``atoms`` (0-based topology indices) is passed to :func:`encoder_spec`.
    """
    if isinstance(spec_or_model, EncoderSpec):
        spec = spec_or_model
    else:
        spec = encoder_spec(spec_or_model, atoms=atoms)
    if spec.unit not in _ANGSTROM:
        raise ExportError(
            f"the {target} export writes lengths in Å but the model's unit is {spec.unit!r}; "
            "retrain on coordinates in Å (MD trajectories read by polyvae are in Å)"
        )
    for w, b in spec.layers:
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ExportError("the encoder has non-finite weights or biases; nothing to export")
    return spec


def num(x: float) -> str:
    """Shortest text that reads back as the same float64."""
    return repr(float(x))


def atom_numbers(spec: EncoderSpec) -> list[int]:
    """1-based engine atom numbers of the model's atoms."""
    return [int(i) + 1 for i in spec.atom_indices]


def label_width(n: int) -> int:
    """Digits of zero-padded labels for n items (at least 2), so names sort in order."""
    return max(2, len(str(n - 1)))


# ---- PDB -------------------------------------------------------------------------------
def _hy36_encode(value: int, width: int = 5) -> str:
    if value < 10**width:
        return f"{value:{width}d}"
    v, span = value - 10**width, 26 * 36 ** (width - 1)  # A0000... then a0000...
    if v >= 2 * span:
        raise ExportError(f"atom number {value} is too large for a PDB file (hybrid-36)")
    text = np.base_repr(v % span + 10 * 36 ** (width - 1), 36)
    return text if v < span else text.lower()


def _fixed(value: float, width: int, what: str) -> str:
    """``value`` right-aligned in ``width`` columns with as many decimals as fit."""
    for decimals in range(width - 2, -1, -1):
        text = f"{value:.{decimals}f}"
        if len(text) <= width:
            return text.rjust(width)
    raise ExportError(f"{what} {value!r} does not fit the {width} columns of a PDB field")


def _write_pdb(path: Path, spec: EncoderSpec) -> tuple[np.ndarray, np.ndarray]:
    lines, coords, occupancy = [], [], []
    for k, number in enumerate(atom_numbers(spec)):
        xyz = [_fixed(v, 8, "coordinate") for v in spec.reference[k]]
        occ = _fixed(spec.masses[k], 6, "mass")
        name = spec.atom_names[k][:4] if k < len(spec.atom_names) else f"A{k}"
        name = name if len(name) == 4 else f" {name:<3}"
        lines.append(f"ATOM  {_hy36_encode(number)} {name} UNK X   1    {''.join(xyz)}{occ}{occ}\n")
        coords.append([float(v) for v in xyz])
        occupancy.append(float(occ))
    write_text(path, "".join(lines) + "END\n", encoding="ascii")
    coords, occupancy = np.asarray(coords), np.asarray(occupancy)
    err = np.max(np.abs(occupancy / spec.masses - 1.0))
    if err > 1e-6:
        msg = "PDB occupancy (6 columns) rounds the masses (fit weights) by up to %.2g relative"
        logger.warning(msg, err)
    return coords, occupancy


# ---- writing ---------------------------------------------------------------------------
def write_plumed(
    spec_or_model: Any,
    out_dir: str | os.PathLike,
    *,
    stride: int = 1,
    colvar: str = "COLVAR",
    atoms: Any = None,
) -> Path:
    """Write ``plumed.dat`` (and ``reference.pdb`` for position inputs) computing the CV.

    The CV components are ``ann.node-0``, ``ann.node-1``, ... (the encoder mean), printed
    every ``stride`` steps to ``colvar``. The input standardization is folded into the
    first layer, so the network reads raw features in Å.

    Parameters
    ----------
    spec_or_model : EncoderSpec or VAEModel
        With tanh hidden layers (PLUMED's ANN has no relu, elu or softplus).
    out_dir : str or path-like
        Folder for the files (created). File names inside are relative: run the engine
        from this folder or adjust the paths.
    stride : int
        PRINT stride in MD steps.
    colvar : str
        Output file name for PRINT.
    atoms : sequence of int, optional
        0-based topology indices of the model's atoms (see :func:`encoder_spec`).

    Returns
    -------
    Path
        ``out_dir / "plumed.dat"``.

    Raises
    ------
    ExportError
        Unit not Å, activation not tanh, positions not 3D, or the model not exportable.

    Notes
    -----
    The PDB's fixed columns hold the reference to 5e-7 to 5e-5 Å (more digits for
    small, positive coordinates), which PLUMED's rotation inherits: its CV agrees with
    the model's to about 1e-6 relative (exactly where the reference has <= 4 decimals).
    """
    spec = as_spec(spec_or_model, "PLUMED", atoms)
    if len(spec.layers) > 1 and spec.activation != "tanh":
        raise ExportError(
            f"PLUMED's ANN action supports only the Tanh and Linear activations; this model "
            f'uses activation={spec.activation!r}. Retrain with activation="tanh" '
            "(--activation tanh), or use the Colvars export (write_colvars) or the "
            "TorchScript export (PLUMED's PYTORCH_MODEL), which support it"
        )
    if isinstance(stride, bool) or not isinstance(stride, int | np.integer) or stride < 1:
        raise ValueError(f"stride must be a positive integer (MD steps); got {stride!r}")
    if not colvar or any(c.isspace() for c in str(colvar)):
        raise ValueError(f"colvar must be a file name without whitespace; got {colvar!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    numbers = atom_numbers(spec)
    layers = [(np.array(w), np.array(b)) for w, b in spec.folded_layers()]
    head = [
        "# PLUMED input: latent CV (encoder mean) of a polyvae model.",
        "# Needs PLUMED built with the ANN module: ./configure --enable-modules=annfunc",
        "# Lengths in Å (UNITS LENGTH=A); the input standardization is folded into layer 1.",
        "UNITS LENGTH=A",
        "polyvae_atoms: GROUP ATOMS=" + ",".join(map(str, numbers)),
    ]
    width = label_width(len(spec.features) if spec.kind == "distances" else len(numbers))
    if spec.kind == "positions":
        if spec.reference is None or spec.reference.shape != (len(numbers), 3):
            raise ExportError(
                "PLUMED needs a 3D Cartesian reference (N, 3) for position inputs; got "
                f"{None if spec.reference is None else spec.reference.shape}"
            )
        ref, occ = _write_pdb(out / "reference.pdb", spec)
        centre = (occ / occ.sum()) @ ref  # FIT_TO_TEMPLATE puts atoms at R (x - com) + centre
        offset = np.array(["xyz".index(f[2]) for f in spec.features])
        w1, b1 = layers[0]
        layers[0] = (w1, b1 - centre[offset] @ w1)
        head.append("# mass-weighted fit as in polyvae: occupancy (weights) = beta = masses")
        head.append("FIT_TO_TEMPLATE REFERENCE=reference.pdb TYPE=OPTIMAL")
        head += [f"p{k:0{width}d}: POSITION ATOM={n}" for k, n in enumerate(numbers)]
        args = [f"p{f[1]:0{width}d}.{f[2]}" for f in spec.features]
    elif spec.kind in ("distances", "internal"):
        width = label_width(len(spec.features))
        args, torsions = [], {}  # one TORSION per dihedral, its sin and cos from it
        for k, (what, *atoms) in enumerate(spec.features):
            prefix = {"distance": "d", "angle": "a", "sin_dihedral": "s", "cos_dihedral": "c"}
            label = f"{prefix.get(what, 'x')}{k:0{width}d}"
            ids = ",".join(str(numbers[a]) for a in atoms)
            if what == "distance":
                head.append(f"{label}: DISTANCE ATOMS={ids}")
            elif what == "angle":
                head.append(f"{label}: ANGLE ATOMS={ids}")
            elif what in ("sin_dihedral", "cos_dihedral"):
                if ids not in torsions:
                    torsions[ids] = f"t{len(torsions):0{width}d}"
                    head.append(f"{torsions[ids]}: TORSION ATOMS={ids}")
                func = what[:3]
                head.append(f"{label}: CUSTOM ARG={torsions[ids]} FUNC={func}(x) PERIODIC=NO")
            else:
                raise ExportError(f"unknown input feature {what!r}")
            args.append(label)
    else:
        raise ExportError(
            f"unknown input kind {spec.kind!r}; expected 'positions', 'distances' or 'internal'"
        )
    sizes = [layers[0][0].shape[0]] + [w.shape[1] for w, _ in layers]
    acts = ["Tanh"] * (len(layers) - 1) + ["Linear"]
    ann = ["ANN ...", "LABEL=ann", "ARG=" + ",".join(args), f"NUM_LAYERS={len(sizes)}"]
    ann += ["NUM_NODES=" + ",".join(map(str, sizes)), "ACTIVATIONS=" + ",".join(acts)]
    ann += [f"WEIGHTS{k}=" + ",".join(map(num, w.T.ravel())) for k, (w, _) in enumerate(layers)]
    ann += [f"BIASES{k}=" + ",".join(map(num, b)) for k, (_, b) in enumerate(layers)]
    ann.append("... ANN")
    nodes = ",".join(f"ann.node-{k}" for k in range(spec.latent_dim))
    tail = [f"PRINT ARG={nodes} STRIDE={int(stride)} FILE={colvar} FMT=%.10g"]
    path = out / "plumed.dat"
    write_text(path, "\n".join(head + ann + tail) + "\n")
    return path
