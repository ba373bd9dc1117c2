"""Write positions as structure and trajectory files: PDB, DCD, XTC (MDAnalysis) or npz.

PDB, DCD and XTC files hold lengths in Å (PDB, DCD) or nm (XTC, converted by
MDAnalysis from Å), by definition of the formats. Positions in another unit (e.g.
reduced units "sigma") are written as they are, with a logged warning, so that a
toy model can still be viewed in VMD or PyMOL at its own scale. File precision:
PDB 0.001 Å; XTC 0.001 nm (GROMACS' default, i.e. within 0.005 Å); DCD float32.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from polyvae._outputs import atomic_path, check_suffix
from polyvae.frames import Frames, as_positions
from polyvae.io.npz import write_npz

__all__ = ["write_structures", "WRITER_SUFFIXES"]

logger = logging.getLogger(__name__)

WRITER_SUFFIXES = (".pdb", ".dcd", ".xtc", ".npz")

_QUIET = (  # MDAnalysis warnings about attributes a bead model does not have
    "Found no information for attr",
    "Found missing chainIDs",
    "Unit cell dimensions not found",
    "Element information is missing",
)


def _atom_fields(atoms: dict | None, n: int) -> dict[str, list]:
    if atoms is not None and not isinstance(atoms, dict):
        raise TypeError(
            f"atoms must be a dict (atom_info schema) or None; got {type(atoms).__name__}"
        )
    atoms = atoms or {}
    fields = {
        "names": [str(s) for s in atoms.get("names", [f"B{i}" for i in range(n)])],
        "resnames": [str(s) for s in atoms.get("resnames", ["UNK"] * n)],
        "resids": [int(i) for i in atoms.get("resids", range(1, n + 1))],
    }
    if atoms.get("masses") is not None:
        fields["masses"] = [float(m) for m in atoms["masses"]]
    for key, values in fields.items():
        if len(values) != n:
            raise ValueError(
                f"atoms[{key!r}] must have one entry per atom (N={n}); got {len(values)}"
            )
    return fields


def _universe(fields: dict[str, list], n: int):
    # optional, the md extra
    import MDAnalysis as mda

    resindex, previous, residues = np.empty(n, dtype=np.int64), None, []
    for i, key in enumerate(zip(fields["resids"], fields["resnames"], strict=True)):
        if key != previous:
            residues.append(key)
            previous = key
        resindex[i] = len(residues) - 1
    u = mda.Universe.empty(n, n_residues=len(residues), atom_resindex=resindex, trajectory=True)
    u.add_TopologyAttr("names", fields["names"])
    u.add_TopologyAttr("resids", [r for r, _ in residues])
    u.add_TopologyAttr("resnames", [name for _, name in residues])
    if "masses" in fields:
        u.add_TopologyAttr("masses", fields["masses"])
    return u


def write_structures(
    path: str | os.PathLike,
    positions: Any,
    *,
    atoms: dict | None = None,
    unit: str | None = None,
    times: Any = None,
) -> Path:
    """Write positions to a PDB, DCD, XTC or polyvae npz file (chosen by the suffix).

    Parameters
    ----------
    path : str or os.PathLike
        Output file; its folder is created. Suffix ``.pdb`` (one MODEL per frame),
        ``.dcd``, ``.xtc`` or ``.npz``.
    positions : array (T, N, 3) or (T, N, 2), or Frames, length in ``unit``
        2-D positions are written with z = 0. A Frames supplies defaults for
        ``atoms`` (its metadata["atoms"], or its names and masses), ``unit`` and
        ``times``.
    atoms : dict, optional
        The :func:`polyvae.io.mda.atom_info` schema: ``names``, ``resnames``,
        ``resids`` and optionally ``masses``, one entry per atom; a new residue starts
        where resid or resname changes. Default: names "B0".."B{N-1}", one residue
        "UNK" per atom (resids 1..N).
    unit : str, optional
        Length unit of ``positions``; default "Å" (or the Frames' unit). PDB, DCD and
        XTC assume Å: other units are written unchanged with a logged warning.
    times : array (T,), ps, optional
        Stored per frame in XTC and npz; DCD stores the time step only.

    Returns
    -------
    Path of the written file.
    """
    path = Path(path)
    suffix = check_suffix(path, WRITER_SUFFIXES)
    if isinstance(positions, Frames):
        frames = positions
        if atoms is None:
            atoms = frames.metadata.get("atoms") or {
                "names": list(frames.names),
                "masses": frames.masses.tolist(),
            }
        unit = frames.unit if unit is None else unit
        times = frames.times if times is None else times
        positions = frames.positions
    unit = "Å" if unit is None else unit
    x = as_positions(positions, "positions", min_atoms=1)
    t, n, d = x.shape
    if times is not None:
        times = np.asarray(times, dtype=np.float64)
        if times.shape != (t,):
            raise ValueError(f"times must have shape (T,) = ({t},); got {times.shape}")
    fields = _atom_fields(atoms, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npz":
        return write_npz(path, Frames(x, fields.get("masses"), fields["names"], times, unit))
    if unit != "Å":
        logger.warning(
            "writing positions in unit %r to %s, a format that assumes Å: the numbers are "
            "written unchanged",
            unit,
            path.name,
        )
    if d == 2:
        x = np.concatenate([x, np.zeros((t, n, 1), np.float32)], axis=2)
    _write_mda(path, suffix, x, fields, times)
    logger.debug("wrote %d frames of %d atoms to %s", t, n, path)
    return path


def _write_mda(path: Path, suffix: str, x: np.ndarray, fields: dict, times: Any) -> None:
    # optional, the md extra
    import MDAnalysis as mda

    u = _universe(fields, x.shape[1])
    kwargs: dict[str, Any] = {}
    if suffix == ".pdb":
        kwargs["multiframe"] = x.shape[0] > 1
    elif suffix == ".dcd" and times is not None and times.size > 1:
        steps = np.diff(times)
        if not np.allclose(steps, steps[0], rtol=1e-5, atol=1e-6):
            logger.warning("DCD stores one time step; the times given are not evenly spaced")
        if steps[0] > 0:
            kwargs["dt"] = float(steps[0])
    many_models = suffix == ".pdb" and 2 < len(x) <= _PDB_MODELS and _pdb_columns_hold(x)
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        with atomic_path(path) as tmp:
            with mda.Writer(str(tmp), x.shape[1], **kwargs) as writer:
                for i, frame in enumerate(x[:1] if many_models else x):
                    u.atoms.positions = frame
                    if times is not None:
                        u.trajectory.ts.time = float(times[i])
                    writer.write(u.atoms)
            if many_models and not _pdb_models_like_first(tmp, x):
                with mda.Writer(str(tmp), x.shape[1], **kwargs) as writer:
                    for frame in x:
                        u.atoms.positions = frame
                        writer.write(u.atoms)


_PDB_MODELS = 9999  # MODEL serials MDAnalysis writes in its usual format


def _pdb_columns_hold(x: np.ndarray) -> bool:
    """Whether every coordinate fits PDB's 8-character %8.3f columns."""
    return bool(np.all(np.isfinite(x)) and x.min() > -999.9995 and x.max() < 9999.9995)


def _pdb_models_like_first(path: Path, x: np.ndarray) -> bool:
    """Rewrite the one-model PDB at ``path`` (MDAnalysis' output for ``x[0]``) with a
    MODEL for every frame of ``x`` (T, N, 3), each formatted as MDAnalysis formats the
    first: its atom records with the coordinates of the frame. MDAnalysis formats
    every atom of every frame in Python (seconds for thousands of models); here one
    format string per frame does it. False, leaving the file as it is, where the
    first model is not made of one ATOM or HETATM record per atom, or the template
    does not give back MDAnalysis' own text."""

    from MDAnalysis.coordinates.PDB import PDBWriter

    x = np.asarray(x, np.float32)  # as MDAnalysis keeps positions
    lines = path.read_text().splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.startswith("MODEL")), None)
    if first is None or "ENDMDL\n" not in lines[first:]:
        return False
    last = lines.index("ENDMDL\n", first)
    atoms = lines[first + 1 : last]
    if len(atoms) != x.shape[1] or not all(
        line.startswith(("ATOM  ", "HETATM")) and len(line) > 54 for line in atoms
    ):
        return False
    template = "".join(
        line[:30].replace("%", "%%") + "%8.3f%8.3f%8.3f" + line[54:].replace("%", "%%")
        for line in atoms
    )
    model = PDBWriter.fmt["MODEL"]
    if lines[first] != model.format(1) or template % tuple(x[0].ravel().tolist()) != "".join(atoms):
        return False
    with open(path, "w") as fh:
        fh.writelines(lines[:first])
        for k, frame in enumerate(x):
            fh.write(model.format(k + 1))
            fh.write(template % tuple(frame.ravel().tolist()))
            fh.write("ENDMDL\n")
        fh.writelines(lines[last + 1 :])
    return True
