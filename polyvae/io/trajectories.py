"""The two entry points for trajectories given as paths, and the writers of CLI outputs.

:func:`read_frames` reads paths into one :class:`Frames`; :func:`iter_frames` streams
them in chunks, so memory does not grow with trajectory length. Both take ``.npz``
files (polyvae's or the chapter's format) or anything MDAnalysis reads, and, given a
model's atom description (:func:`model_atoms`), select and check the atoms the model
was trained on (:func:`check_atom_names`). :func:`write_positions` and
:func:`write_latent` write results in the format their path's suffix names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyvae._checks import ensure_frames_selected
from polyvae._outputs import atomic_output, check_suffix, savez
from polyvae.frames import Frames
from polyvae.io.mda import (
    SELF_CONTAINED_SUFFIXES,
    TruncatedTrajectoryError,
    iter_chunks,
    make_universe,
)
from polyvae.io.npz import read_npz
from polyvae.io.writers import write_structures

__all__ = [
    "read_frames",
    "iter_frames",
    "load_reference",
    "write_positions",
    "write_latent",
    "model_atoms",
    "check_atom_names",
    "LATENT_SUFFIXES",
    "POSITION_SUFFIXES",
]

logger = logging.getLogger(__name__)

_NPZ = ".npz"
#: Suffixes :func:`write_latent` writes: npz arrays or a text table.
LATENT_SUFFIXES = (".npz", ".txt", ".dat", ".csv")
#: Suffixes :func:`write_positions` writes.
POSITION_SUFFIXES = (".npz", ".pdb", ".dcd", ".xtc")


def _self_contained() -> tuple[str, ...]:
    return SELF_CONTAINED_SUFFIXES


def _as_paths(paths: Any, topology: Any) -> list[Path]:
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if not isinstance(paths, Sequence):
        raise TypeError(f"paths must be a path or a list of paths; got {type(paths).__name__}")
    out = []
    for p in paths:
        if not isinstance(p, str | os.PathLike):
            raise TypeError(f"paths must be a path or a list of paths; got {type(p).__name__}")
        out.append(Path(p))
    if not out:
        raise ValueError("paths must name at least one trajectory file; got none")
    for p in out:
        if p.is_dir():
            raise IsADirectoryError(f"trajectory {str(p)!r} is a directory; expected a file")
    npz = [p.suffix.lower() == _NPZ for p in out]
    if any(npz) and not all(npz):
        raise ValueError("paths mix .npz files with MD trajectories; give one kind at a time")
    if not all(npz):
        _check_md_formats(out, topology)
    for p in out:
        if not p.exists():
            raise FileNotFoundError(f"trajectory {str(p)!r}: no such file")
    return out


def _check_md_formats(paths: list[Path], topology: Any) -> None:
    """Refuse a suffix MDAnalysis does not read before handing the file over."""
    # optional, the md extra
    from MDAnalysis.coordinates.base import _READERS
    from MDAnalysis.lib.util import guess_format
    from MDAnalysis.topology.base import _PARSERS

    if topology is None:
        first = next((p for p in paths if p.suffix.lower() not in _self_contained()), None)
        if first is None:
            return
        raise ValueError(
            f"path {str(first)!r}: unsupported trajectory format {first.suffix.lower()!r} "
            f"without a topology; expected a .npz file, a structure file "
            f"({', '.join(_self_contained())}), or a trajectory with topology=... "
            "(e.g. .dcd or .xtc with a PSF, TPR or PDB topology)"
        )
    known = "DCD, XTC, TRR, NC, PDB, GRO, XYZ, LAMMPS DATA, ..."
    for p in paths:
        if guess_format(str(p)).upper() not in _READERS:
            raise ValueError(
                f"trajectory {str(p)!r}: unknown format {p.suffix.lower() or '(no suffix)'!r}; "
                f"polyvae reads .npz and what MDAnalysis reads ({known})"
            )
    top = Path(topology)
    if top.is_dir():
        raise IsADirectoryError(f"topology {str(top)!r} is a directory; expected a file")
    if guess_format(str(top)).upper() not in set(_PARSERS) | set(_READERS):
        raise ValueError(
            f"topology {str(top)!r}: unknown format {top.suffix.lower() or '(no suffix)'!r}; "
            "expected a topology MDAnalysis reads (PSF, TPR, PDB, GRO, PRMTOP, ...)"
        )


def model_atoms(model) -> dict | None:
    """The atoms of a model trained through a topology, as the readers take them (or None).

    The JSON form of :attr:`polyvae.VAEModel.atoms` (checked when the model loaded);
    None for a model trained on ``.npz`` frames, whose atoms have no topology indices.
    """
    atoms = model.atoms
    return None if atoms is None or atoms.indices is None else atoms.to_dict()


def check_atom_names(
    names: Sequence[str],
    atoms: dict | None,
    where: str,
    resnames: Sequence[str] | None = None,
    resids: Sequence[int] | None = None,
) -> None:
    """Check that atoms are those a model was trained on, in order, by name (and residue
    name and number).

    Parameters
    ----------
    names : sequence of str (N,)
        Names of the atoms about to be encoded, in order.
    atoms : dict or None
        The model's atom description (:func:`model_atoms`); None checks nothing.
    where : str
        What holds the atoms (e.g. ``"atomgroup"``, ``"topology 'x.psf'"``), for messages.
    resnames : sequence of str (N,), optional
        Their residue names, compared too when the model stores ``resnames``.
    resids : sequence of int (N,), optional
        Their residue numbers, compared too when the model stores ``resids`` (two Cα of
        one residue type swapped have the same names and residue names).

    Raises
    ------
    ValueError
        Another atom count, or the first atom whose name (or residue name) differs:
        its index, the expected and the given name.
    """
    if atoms is None:
        return
    expected = [str(s) for s in atoms["names"]]
    got = [str(s) for s in names]
    if len(got) != len(expected):
        raise ValueError(
            f"{where} has {len(got)} atoms but the model was trained on {len(expected)}"
        )
    fields = [("named", got, expected)]
    if resnames is not None and atoms.get("resnames") is not None:
        fields.append(("in residue", [str(s) for s in resnames], list(atoms["resnames"])))
    if resids is not None and atoms.get("resids") is not None:
        fields.append(("in residue number", [str(int(s)) for s in resids], list(atoms["resids"])))
    for i in range(len(got)):
        for what, have, want in fields:
            if have[i] != str(want[i]):
                raise ValueError(
                    f"atom {i} of {where} is {what} {have[i]!r} but the model was trained on "
                    f"{str(want[i])!r} there (model atom index {atoms['indices'][i]}): not the "
                    "atoms of the model, or not in its order"
                )


def _npz(paths: list[Path], start, stop, step) -> Frames:
    frames = Frames.concat([read_npz(p) for p in paths], labels=[repr(str(p)) for p in paths])
    ensure_frames_selected(frames.n_frames, start, stop, step)
    return frames[slice(start, stop, step)]


def _md_source(paths: list[Path], topology, select: str, atoms: dict | None):
    """The Universe and selection to read, or the model's atoms (checked) and "all"."""

    top = paths[0] if topology is None else topology
    universe = make_universe(top, paths)
    if atoms is None:
        return universe, select
    indices = np.asarray(atoms["indices"], dtype=np.int64)
    if indices.size and indices.max() >= len(universe.atoms):
        raise ValueError(
            f"the model's atom indices reach {int(indices.max())} but topology {str(top)!r} has "
            f"{len(universe.atoms)} atoms: is this the topology the model was trained with?"
        )
    group = universe.atoms[indices]
    if not hasattr(group, "names"):
        raise ValueError(
            f"topology {str(top)!r} has no atom names; give the topology the model was trained "
            "with (e.g. PSF, TPR, PDB, GRO)"
        )
    resnames = getattr(group, "resnames", None) if hasattr(group, "resnames") else None
    resids = getattr(group, "resids", None) if hasattr(group, "resids") else None
    where = f"topology {str(top)!r} (selected by the model)"
    check_atom_names(group.names, atoms, where, resnames, resids)
    return group, "all"


def iter_frames(
    paths: Any,
    *,
    topology: str | os.PathLike | None = None,
    select: str = "all",
    atoms: dict | None = None,
    start: int | None = None,
    stop: int | None = None,
    step: int | None = None,
    unwrap: bool | None = None,
    guess_bonds: bool = False,
    allow_truncated: bool = False,
    chunk_size: int = 4096,
) -> Iterator[Frames]:
    """Stream the frames of trajectory files chunk by chunk.

    Parameters
    ----------
    paths : path or sequence of paths
        ``.npz`` files (polyvae's or the chapter's format), or trajectories in any format
        MDAnalysis reads (DCD, XTC, TRR, ...; several are concatenated in order).
    topology : path, optional
        Topology for MD trajectories (PSF, TPR, PDB, GRO, ...); not needed for a single
        self-contained file (PDB, GRO, ...) or ``.npz``.
    select : str
        MDAnalysis selection of the atoms to keep (MD trajectories only).
    atoms : dict, optional
        A model's atom description (:func:`model_atoms`): its ``indices`` pick the atoms
        from the topology and its ``names`` are checked against them (MD trajectories).
    start, stop, step : int, optional
        Frame slice over the concatenated trajectory.
    unwrap : bool, optional
        Make molecules whole across periodic boundaries; default: when there is a box.
    guess_bonds : bool
        Guess bonds from distances when the topology has none (needed to unwrap).
    allow_truncated : bool
        When a file ends inside a frame, keep the frames read before it (with a logged
        warning) instead of raising :class:`polyvae.io.mda.TruncatedTrajectoryError`.
    chunk_size : int
        Most frames per chunk.

    Yields
    ------
    Frames
        Positions (T, N, D) float32 in Å for MD trajectories; ``metadata["atoms"]``
        describes the selected atoms.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
        raise TypeError(f"chunk_size must be an int; got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1; got {chunk_size}")
    files = _as_paths(paths, topology)
    if files[0].suffix.lower() == _NPZ:
        if topology is not None:
            raise ValueError(
                "topology applies to MD trajectories; .npz files carry their own atoms"
            )
        if select != "all":
            raise ValueError("select applies to MD trajectories; .npz files hold one molecule")
        frames = _npz(files, start, stop, step)
        for i in range(0, frames.n_frames, chunk_size):
            yield frames[i : i + chunk_size]
        return

    source, select = _md_source(files, topology, select, atoms)
    try:
        yield from iter_chunks(
            source,
            select=select,
            start=start,
            stop=stop,
            step=step,
            unwrap=unwrap,
            guess_bonds=guess_bonds,
            chunk_size=chunk_size,
        )
    except TruncatedTrajectoryError as err:
        if not allow_truncated:
            raise
        logger.warning("%s; going on with the %d frames read", err.short(), err.n_frames_read)
        if err.frames is not None:
            yield err.frames


def read_frames(paths: Any, **kwargs: Any) -> Frames:
    """Read trajectory files into one :class:`Frames` (all frames in memory).

    Takes the arguments of :func:`iter_frames` (``chunk_size`` only sets how the
    frames are read). A truncated file raises
    :class:`polyvae.io.mda.TruncatedTrajectoryError` whose ``.frames`` holds every
    frame read before the break, unless ``allow_truncated=True``.

    Returns
    -------
    Frames
        ``metadata["source"]`` names the files.
    """

    files = _as_paths(paths, kwargs.get("topology"))
    label = ", ".join(map(str, files))
    chunks: list[Frames] = []
    try:
        chunks.extend(iter_frames(files, **kwargs))
    except TruncatedTrajectoryError as err:
        if err.frames is not None:
            chunks.append(err.frames)
        frames = _join(chunks, label) if chunks else None
        raise TruncatedTrajectoryError(
            err.path, err.frame_index, err.n_frames_read, err.reason, frames
        ) from None
    if not chunks:
        raise ValueError(f"trajectories {label} hold no frames in the requested range")
    return _join(chunks, label)


def _join(chunks: list[Frames], label: str) -> Frames:
    frames = Frames.concat(chunks)
    if "frame_indices" in frames.metadata:
        frames.metadata["frame_indices"] = [i for c in chunks for i in c.metadata["frame_indices"]]
    frames.metadata["source"] = label
    return frames


def write_positions(
    path: str | os.PathLike,
    positions: np.ndarray,
    *,
    atoms: dict | None = None,
    unit: str = "Å",
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write positions (T, N, D) to ``path``; the suffix picks the format.

    ``.npz`` stores ``positions``, ``unit`` and the ``extra`` arrays; ``.pdb``, ``.dcd``
    and ``.xtc`` go through MDAnalysis with the stored atom description.
    """
    path = Path(path)
    if path.suffix.lower() == _NPZ:
        path.parent.mkdir(parents=True, exist_ok=True)
        return savez(path, positions=positions, unit=np.array(unit), **(extra or {}))

    return write_structures(path, positions, atoms=atoms, unit=unit)


def write_latent(
    path: str | os.PathLike, latent: np.ndarray, latent_std: np.ndarray, times: np.ndarray
) -> Path:
    """Write latent CVs to exactly ``path``; the suffix picks the format.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npz``: arrays ``latent`` (T, L), ``latent_std`` (T, L) and ``times`` (T,).
        ``.txt``, ``.dat`` (space-separated) or ``.csv`` (comma-separated): a table with
        a ``#`` header naming the columns ``time z0 ... z0_std ...``.
    latent, latent_std : ndarray (T, L)
        Encoder mean and standard deviation.
    times : ndarray (T,)
        Frame times (ps for MD trajectories).

    Returns
    -------
    Path
        ``path`` itself (its folder is created).
    """
    path = Path(path)
    suffix = check_suffix(path, LATENT_SUFFIXES)
    mean, std = np.asarray(latent), np.asarray(latent_std)
    t = np.asarray(times, dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == _NPZ:
        return savez(path, latent=mean, latent_std=std, times=t)
    dims = range(mean.shape[1])
    columns = ["time", *(f"z{i}" for i in dims), *(f"z{i}_std" for i in dims)]
    sep = "," if suffix == ".csv" else " "
    with atomic_output(path) as fh:
        np.savetxt(
            fh,
            np.column_stack([t, mean, std]),
            fmt="%.9g",
            delimiter=sep,
            header=sep.join(columns),
            comments="# ",
        )
    return path


def load_reference(spec: str | int, frames: Frames) -> np.ndarray:
    """A Kabsch reference (N, D) for ``frames``: a frame number or a structure file.

    A structure file is read with the same atom selection as ``frames`` (MD input) and
    must hold the same number of atoms.
    """
    text = str(spec)
    if text.lstrip("-").isdigit():
        index = int(text)
        if not -frames.n_frames <= index < frames.n_frames:
            raise ValueError(
                f"reference frame {index} is out of range for {frames.n_frames} frames"
            )
        return frames.positions[index]
    select = (frames.metadata.get("atoms") or {}).get("selection", "all")
    ref = read_frames(text, select=select, stop=1)
    if ref.positions.shape[1:] != frames.positions.shape[1:]:
        raise ValueError(
            f"reference {text!r} has {ref.n_atoms} atoms in {ref.dim}D after selecting "
            f"{select!r}; the training frames have {frames.n_atoms} atoms in {frames.dim}D"
        )
    return ref.positions[0]
