"""Trajectories through MDAnalysis: any format it reads, in bounded-memory chunks.

:func:`iter_chunks` reads an atom selection of a trajectory as :class:`Frames` of at
most ``chunk_size`` frames each (positions in Å, times in ps); :func:`read_universe`
joins them. Molecules split across a periodic box are made whole (this needs bonds),
NaN coordinates are reported with their trajectory frame index, and a file cut off
inside a frame raises :class:`TruncatedTrajectoryError` that keeps the frames read.

How MDAnalysis 2.x meets a truncated file: a DCD reader computes its frame count from
the file size and silently drops a partial last frame; an XTC reader counts the
partial frame (its header is intact), but iteration silently stops one frame early and
random access to the broken frame raises ``OSError``. Both cases are detected here:
DCD by the bytes left over after the last whole frame, XTC by comparing the frames
delivered with the frames asked for. MDAnalysis is imported lazily.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyvae._checks import ensure_frames_selected
from polyvae.frames import Frames
from polyvae.io.pbc import Unwrapper, has_box, resolve_unwrap
from polyvae.io.xtc import check_xtc

__all__ = ["TruncatedTrajectoryError", "make_universe", "select_atoms", "atom_info"]
__all__ += ["selection_bonds"]
__all__ += ["iter_chunks", "read_universe", "SELF_CONTAINED_SUFFIXES"]

logger = logging.getLogger(__name__)

#: Coordinate formats that also carry a topology, so that they need no ``topology=``.
SELF_CONTAINED_SUFFIXES = (".pdb", ".ent", ".gro", ".pqr", ".pdbqt", ".mol2", ".crd")

_READ_ERRORS = (OSError, EOFError, ValueError, RuntimeError)


class TruncatedTrajectoryError(ValueError):
    """A trajectory file ends inside a frame; the frames read before it are kept.

    Attributes
    ----------
    frames : Frames or None
        Frames read before the break (:func:`read_universe`: all of them;
        :func:`iter_chunks`: those of the unfinished chunk), or None if none.
    n_frames_read : int
        Number of frames read before the break.
    frame_index : int
        Trajectory index of the frame that could not be read.
    path : str
        File that holds the broken frame.
    """

    def __init__(
        self, path: str, frame_index: int, n_frames_read: int, reason: str, frames: Frames | None
    ) -> None:
        self.path, self.frame_index, self.reason = path, frame_index, reason
        self.n_frames_read, self.frames = n_frames_read, frames
        n_kept = 0 if frames is None else frames.n_frames
        kept = (
            "no frames were read"
            if n_frames_read == 0
            else f"the {n_kept} frames read are kept in this error's .frames"
            if n_kept == n_frames_read
            else f"the last {n_kept} of them are kept in this error's .frames "
            "(read_frames keeps all)"
        )
        hint = "" if n_frames_read == 0 else "; pass allow_truncated=True to go on with them"
        super().__init__(f"{self.short()}; {kept}{hint}")

    def short(self) -> str:
        """The message without what is kept: which file, which frame, why."""
        return (
            f"trajectory {self.path!r} is truncated: read {self.n_frames_read} frames before "
            f"frame {self.frame_index} could not be read ({self.reason})"
        )


def _paths(value: Any, name: str) -> list[Path]:
    if value is None:
        return []
    items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    out = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"{name} must be a path or a list of paths; got {type(item).__name__}")
        path = Path(item)
        if path.is_dir():
            raise IsADirectoryError(f"{name} {str(path)!r} is a directory; expected a file")
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no such file {str(path)!r}")
        out.append(path)
    return out


@contextlib.contextmanager
def _quiet_collection():
    """A reader that fails half-built complains again when it is collected ("Exception
    ignored in ... __del__", with a traceback): collect such readers quietly here."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda *_: None
    try:
        yield
    finally:
        gc.collect()
        sys.unraisablehook = hook


def _n_atoms_in(path: Path, topology: bool) -> int | None:
    # optional, the md extra
    import MDAnalysis as mda
    from MDAnalysis.coordinates.core import get_reader_for

    with _quiet_collection():
        try:  # only used to explain another error
            if topology:
                return mda.Universe(str(path)).atoms.n_atoms
            return get_reader_for(str(path))(str(path)).n_atoms
        except Exception:
            return None


def make_universe(topology: str | os.PathLike, trajectories: Any = None, **kwargs: Any):
    """Build an ``MDAnalysis.Universe`` from a topology and zero or more trajectories.

    Parameters
    ----------
    topology : str or os.PathLike
        Topology file (PSF, TPR, PDB, GRO, ...); without trajectories its own
        coordinates are the trajectory.
    trajectories : path or sequence of paths, optional
        Trajectory files of this topology; several are concatenated in order.
    **kwargs
        Passed to ``MDAnalysis.Universe``.

    Returns
    -------
    MDAnalysis.Universe
    """
    # optional, the md extra
    import MDAnalysis as mda

    if not isinstance(topology, (str, os.PathLike)):
        raise TypeError(f"topology must be a path; got {type(topology).__name__}")
    (top,) = _paths(topology, "topology")
    trajs = _paths(trajectories, "trajectories")
    for traj in trajs:
        if traj.suffix.lower() == ".xtc":
            check_xtc(traj)
    args = [str(p) for p in trajs]
    try:
        with _quiet_collection():
            return mda.Universe(str(top), *([args] if len(args) > 1 else args), **kwargs)
    except (ValueError, IndexError, KeyError, TypeError, OSError, EOFError) as exc:
        error = exc
    # MDAnalysis names its parser class; the reason after "Error: " is the user's
    found = re.search(r"Failed to load from the topology file .*?Error: (.*)", str(error), re.S)
    reason = found.group(1).strip() if found else str(error)
    n_top = _n_atoms_in(top, topology=True)
    if n_top is None:
        if isinstance(error, IndexError | KeyError | TypeError):  # a parser tripped
            reason = f"no atoms could be parsed from it ({type(error).__name__}: {error})"
        raise ValueError(
            f"MDAnalysis could not read topology {str(top)!r}: {reason}; give a topology "
            "file with atoms (PSF, TPR, PDB, GRO, ...)"
        ) from error
    for traj in trajs:
        n_traj = _n_atoms_in(traj, topology=False)
        if n_traj is None:
            raise ValueError(
                f"MDAnalysis could not read trajectory {str(traj)!r}: {reason}"
            ) from error
        if n_top != n_traj:
            raise ValueError(
                f"topology {str(top)!r} has {n_top} atoms but trajectory {str(traj)!r} has "
                f"{n_traj} atoms: they do not belong together"
            ) from error
    raise ValueError(
        f"MDAnalysis could not read topology {str(top)!r} with trajectories "
        f"{[str(p) for p in trajs]}: {reason}"
    ) from error


def select_atoms(source: Any, select: str = "all"):
    """The atoms of ``source`` that match the MDAnalysis selection ``select``.

    Parameters
    ----------
    source : MDAnalysis.Universe or MDAnalysis.AtomGroup
        An AtomGroup is used as given (its order kept) when ``select == "all"``,
        otherwise ``select`` is applied within it.
    select : str
        MDAnalysis selection string.

    Returns
    -------
    MDAnalysis.AtomGroup
    """
    # optional, the md extra
    import MDAnalysis as mda

    if not isinstance(select, str):
        raise TypeError(f"select must be an MDAnalysis selection string; got {select!r}")
    if isinstance(source, mda.Universe):
        group = source.atoms
    elif isinstance(source, mda.AtomGroup):
        group = source
    else:
        raise TypeError(
            f"source must be an MDAnalysis Universe or AtomGroup; got {type(source).__name__}"
        )
    if select.strip() != "all":
        try:
            group = group.select_atoms(select)
        except (mda.exceptions.SelectionError, ValueError) as exc:
            raise ValueError(
                f"select {select!r} is not a valid MDAnalysis selection: {exc}"
            ) from exc
    if group.n_atoms == 0:
        raise ValueError(
            f"select {select!r} matches no atoms (of {source.atoms.n_atoms} in the source)"
        )
    return group


def _attr(group: Any, name: str, default: list) -> list:
    try:
        return list(getattr(group, name))
    except AttributeError:  # NoDataError is an AttributeError
        return default


def selection_bonds(atomgroup: Any) -> np.ndarray | None:
    """The topology's bonds between atoms of ``atomgroup``, as indices into the group.

    Returns
    -------
    ndarray (B, 2) of int64 or None
        Pairs ``i < j`` of positions in ``atomgroup`` (sorted), only bonds with both
        atoms in the group; None when the topology has no bonds at all.
    """
    try:
        pairs = atomgroup.universe.atoms.bonds.to_indices().astype(np.int64).reshape(-1, 2)
    except AttributeError:  # NoDataError: the topology has no bonds
        return None
    local = np.full(atomgroup.universe.atoms.n_atoms, -1, dtype=np.int64)
    local[atomgroup.ix] = np.arange(atomgroup.n_atoms)
    mapped = local[pairs]
    mapped = np.sort(mapped[(mapped >= 0).all(axis=1)], axis=1)
    mapped = mapped[mapped[:, 0] != mapped[:, 1]]
    return np.unique(mapped, axis=0).reshape(-1, 2)


def atom_info(atomgroup: Any, select: str = "all") -> dict:
    """JSON-ready description of the atoms in ``atomgroup``.

    Returns
    -------
    dict
        ``selection`` (str), ``indices`` (0-based topology indices), ``names``,
        ``resnames``, ``resids``, ``masses`` (u, from the topology or guessed by
        MDAnalysis), ``n_atoms_topology`` and, when the topology has bonds, ``bonds``
        (:func:`selection_bonds`, as a list of ``[i, j]``; empty when no bond joins
        two selected atoms, as for a Cα selection).
    """
    n = atomgroup.n_atoms
    bonds = selection_bonds(atomgroup)
    extra = {} if bonds is None else {"bonds": bonds.tolist()}
    return {
        "selection": str(select),
        "indices": [int(i) for i in atomgroup.indices],
        "names": [str(s) for s in _attr(atomgroup, "names", [f"B{i}" for i in range(n)])],
        "resnames": [str(s) for s in _attr(atomgroup, "resnames", ["UNK"] * n)],
        "resids": [int(i) for i in _attr(atomgroup, "resids", [1] * n)],
        "masses": [float(m) for m in _attr(atomgroup, "masses", [1.0] * n)],
        "n_atoms_topology": int(atomgroup.universe.atoms.n_atoms),
        **extra,
    }


def _readers(traj: Any) -> list:
    return list(getattr(traj, "readers", [traj]))


def _name(reader: Any) -> str:
    return str(getattr(reader, "filename", None) or "<in memory>")


def _dcd_partial(reader: Any) -> str | None:
    """Describe a partial frame at the end of a DCD file, or None if there is none."""
    f = getattr(reader, "_file", None)
    sizes = [getattr(f, a, None) for a in ("_header_size", "_firstframesize", "_framesize")]
    if type(reader).__name__ != "DCDReader" or None in sizes or not sizes[2]:
        return None
    header, first, size = sizes
    n = reader.n_frames
    extra = os.path.getsize(reader.filename) - header - (first + (n - 1) * size if n else 0)
    full = size if n else first
    return f"the file ends inside frame {n}: {extra} of {full} bytes present" if extra > 0 else None


def _plan(traj: Any, start, stop, step) -> tuple[range, int, str | None, str | None]:
    """Requested frame indices, the first index that cannot be read, why, and its file."""
    if step is not None and step <= 0:
        raise ValueError(f"step must be a positive integer; got {step!r}")
    n_total, limit, reason, path, offset = traj.n_frames, traj.n_frames, None, None, 0
    readers = _readers(traj)
    for k, reader in enumerate(readers):
        partial = _dcd_partial(reader)
        if partial is not None:
            limit, reason, path = offset + reader.n_frames, partial, _name(reader)
            if k == len(readers) - 1:  # the broken frame counts as requested
                n_total += 1
            break
        offset += reader.n_frames
    requested = ensure_frames_selected(n_total, start, stop, step)
    return requested, limit, reason, path


def _file_of(traj: Any, frame: int) -> str:
    ends = np.cumsum([r.n_frames for r in _readers(traj)])
    return _name(_readers(traj)[min(int(np.searchsorted(ends, frame, "right")), len(ends) - 1)])


def _source_group(source: Any, topology: Any, select: str):
    # optional, the md extra
    import MDAnalysis as mda

    if isinstance(source, (mda.Universe, mda.AtomGroup)):
        return select_atoms(source, select)
    paths = _paths(source, "source")
    if not paths:
        raise ValueError("source must name at least one trajectory file; got an empty list")
    if topology is None:
        if len(paths) == 1 and paths[0].suffix.lower() in SELF_CONTAINED_SUFFIXES:
            return select_atoms(make_universe(paths[0]), select)
        raise ValueError(
            f"topology is required when source is a trajectory file ({str(paths[0])!r}); "
            f"pass topology=... (PSF, TPR, PDB, GRO, ...)"
        )
    return select_atoms(make_universe(topology, paths), select)


def iter_chunks(
    source: Any,
    *,
    topology: str | os.PathLike | None = None,
    select: str = "all",
    start: int | None = None,
    stop: int | None = None,
    step: int | None = None,
    unwrap: bool | None = None,
    guess_bonds: bool = False,
    chunk_size: int = 1024,
) -> Iterator[Frames]:
    """Read a selection of a trajectory as Frames of at most ``chunk_size`` frames.

    Parameters
    ----------
    source : Universe, AtomGroup, path or sequence of paths
        Paths are trajectories of ``topology`` (concatenated in order); a single
        self-contained file (PDB, GRO, ...) needs no topology.
    topology : path, optional
        Topology for trajectory paths.
    select : str
        MDAnalysis selection, applied within ``source``.
    start, stop, step : int, optional
        Trajectory frames to read, as in ``trajectory[start:stop:step]``.
    unwrap : bool, optional
        Make every molecule (bonded fragment) holding selected atoms whole across
        the periodic box; each is placed around its first atom. None: unwrap if the
        first frame read has a box. Needs bonds (see ``guess_bonds``).
    guess_bonds : bool
        Guess bonds from distances, among the residues of the selection, if the
        topology has none (added to the Universe).
    chunk_size : int
        Most frames per chunk; memory does not grow with the trajectory length.

    Yields
    ------
    Frames
        positions (T, N, 3) float32 in Å, masses (N,) in u, times (T,) in ps,
        metadata ``{"atoms": atom_info(...), "frame_indices": [...], "unwrapped": bool}``;
        ``bonds`` from the topology (see :func:`selection_bonds`), or None.

    Raises
    ------
    TruncatedTrajectoryError
        The file ends inside a requested frame; ``.frames`` holds the unfinished chunk.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise TypeError(f"chunk_size must be an int; got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1; got {chunk_size}")
    group = _source_group(source, topology, select)
    traj = group.universe.trajectory
    label = ", ".join(repr(_name(r)) for r in _readers(traj))
    info = atom_info(group, select)
    masses = np.asarray(info["masses"])
    if np.any(masses <= 0):
        bad = int(np.flatnonzero(masses <= 0)[0])
        raise ValueError(
            f"select {select!r} includes atoms without mass (e.g. atom {info['indices'][bad]} "
            f"{info['names'][bad]!r}, mass {masses[bad]}), such as virtual sites; select them out"
        )
    requested, limit, reason, broken = _plan(traj, start, stop, step)
    readable = range(requested.start, min(requested.stop, limit), requested.step)
    try:
        traj[readable[0] if len(readable) else requested[0]]
    except _READ_ERRORS + (IndexError,) as exc:
        reason = reason or f"{type(exc).__name__}: {exc}"
        readable = range(0)
    if not len(readable):
        missing = requested[0]
        raise TruncatedTrajectoryError(broken or _file_of(traj, missing), missing, 0, reason, None)
    do_unwrap = resolve_unwrap(traj.ts.dimensions, unwrap, f"frame {readable[0]} of {label}")
    unwrapper = Unwrapper(group, guess_bonds, label) if do_unwrap else None
    whole = unwrapper.atoms if do_unwrap else group
    if do_unwrap and "bonds" not in info:  # guess_bonds may have added bonds
        bonds = selection_bonds(group)
        if bonds is not None:
            info["bonds"] = bonds.tolist()
    logger.debug("reading %d frames of %s (unwrap=%s)", len(requested), label, do_unwrap)

    def chunk(pos: np.ndarray, times: list, frames: list) -> Frames:
        meta = {"atoms": info, "frame_indices": frames, "unwrapped": do_unwrap}
        return Frames(pos, masses, info["names"], np.asarray(times), "Å", meta)

    size = min(chunk_size, len(requested))
    buf, times, indices, n_read = np.empty((size, group.n_atoms, 3), np.float32), [], [], 0
    it = iter(traj[readable.start : readable.stop : readable.step])
    while True:
        try:
            ts = next(it)
        except StopIteration:
            break
        except _READ_ERRORS as exc:
            reason, broken, limit = f"{type(exc).__name__}: {exc}", None, -1
            break
        raw = whole.positions
        if do_unwrap:
            _check_finite_frame(raw, ts.frame, label, whole)
            if not has_box(ts.dimensions):
                raise ValueError(
                    f"unwrap is on but trajectory frame {ts.frame} of {label} has no periodic box"
                )
            raw = unwrapper(raw, ts.dimensions)
        buf[len(indices)] = raw
        times.append(float(ts.time))
        indices.append(int(ts.frame))
        n_read += 1
        if len(indices) == size:
            _check_finite_chunk(buf, indices, label, group)
            yield chunk(buf, times, indices)
            size = min(chunk_size, len(requested) - n_read)
            buf, times, indices = np.empty((max(size, 1), group.n_atoms, 3), np.float32), [], []
    if n_read < len(requested):
        missing = requested[n_read]
        if limit >= 0 and n_read < len(readable):  # the reader stopped early, silently
            reason = (
                f"the reader stopped after {n_read} of {len(requested)} frames: the file ends early"
            )
            broken = None
        if indices:
            _check_finite_chunk(buf[: len(indices)], indices, label, group)
        partial = chunk(buf[: len(indices)], times, indices) if indices else None
        path = broken or _file_of(traj, missing)
        raise TruncatedTrajectoryError(path, missing, n_read, reason, partial)


def _check_finite_frame(raw: np.ndarray, frame: int, label: str, atoms: Any) -> None:
    """NaN/inf in one frame: name the trajectory frame and the first bad atom."""
    if not np.isfinite(raw).all():
        atom = int(np.flatnonzero(~np.isfinite(raw).all(axis=1))[0])
        raise ValueError(
            f"positions contains NaN or inf coordinates: first bad frame is {frame} "
            f"(trajectory frame index in {label}; atom index {int(atoms.indices[atom])})"
        )


def _check_finite_chunk(buf: np.ndarray, indices: list, label: str, atoms: Any) -> None:
    """The same check for a whole chunk at once (one vectorized pass)."""
    if not np.isfinite(buf).all():
        bad = int(np.flatnonzero(~np.isfinite(buf).all(axis=(1, 2)))[0])
        _check_finite_frame(buf[bad], indices[bad], label, atoms)


def _concat(chunks: Sequence[Frames]) -> Frames:
    frames = Frames.concat(chunks)
    frames.metadata["frame_indices"] = [i for c in chunks for i in c.metadata["frame_indices"]]
    return frames


def read_universe(source: Any, **kwargs: Any) -> Frames:
    """Read a whole trajectory selection into one :class:`Frames` (all frames in memory).

    Takes the arguments of :func:`iter_chunks`. A truncated file raises
    :class:`TruncatedTrajectoryError` whose ``.frames`` holds every frame read.

    Returns
    -------
    Frames
        positions (T, N, 3) float32 in Å, times (T,) in ps.
    """
    chunks: list[Frames] = []
    try:
        chunks.extend(iter_chunks(source, **kwargs))
    except TruncatedTrajectoryError as exc:
        if exc.frames is not None:
            chunks.append(exc.frames)
        frames = _concat(chunks) if chunks else None
        raise TruncatedTrajectoryError(
            exc.path, exc.frame_index, exc.n_frames_read, exc.reason, frames
        ) from None
    return _concat(chunks)
