"""One entry point for trajectories given as paths: npz files or anything MDAnalysis reads.

:func:`read_trajectories` loads frames for training; :func:`iter_trajectories` streams
them in chunks for encoding, so memory does not grow with trajectory length;
:func:`write_positions` writes positions in the format the suffix names. The model's
stored atom indices select the same atoms again at encoding time
(:func:`model_atoms`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from polyvae.frames import Frames

__all__ = [
    "read_trajectories",
    "iter_trajectories",
    "read_for_model",
    "load_reference",
    "write_positions",
    "model_atoms",
]

logger = logging.getLogger(__name__)

_NPZ = ".npz"


def _as_paths(paths: Any) -> list[Path]:
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out = [Path(p) for p in paths]
    if not out:
        raise ValueError("paths must name at least one trajectory file; got none")
    for p in out:
        if not p.exists():
            raise FileNotFoundError(f"trajectory {str(p)!r}: no such file")
    return out


def _npz_frames(paths: list[Path], start, stop, step) -> Frames:
    from polyvae.io.npz import read_npz

    parts = [read_npz(p) for p in paths]
    first = parts[0]
    for p, f in zip(paths[1:], parts[1:], strict=True):
        if f.positions.shape[1:] != first.positions.shape[1:]:
            raise ValueError(
                f"trajectory {str(p)!r} has {f.n_atoms} atoms in {f.dim}D but {str(paths[0])!r} "
                f"has {first.n_atoms} atoms in {first.dim}D; they cannot be concatenated"
            )
    positions = np.concatenate([f.positions for f in parts])
    times = np.concatenate([f.times for f in parts])
    sl = slice(start, stop, step)
    frames = Frames(positions[sl], first.masses, first.names, times[sl], first.unit)
    frames.metadata["source"] = ", ".join(map(str, paths))
    return frames


def _is_npz(paths: list[Path], topology) -> bool:
    kinds = {p.suffix.lower() == _NPZ for p in paths}
    if kinds == {True}:
        if topology is not None:
            raise ValueError(
                "topology applies to MD trajectories; .npz files carry their own atoms"
            )
        return True
    if True in kinds:
        raise ValueError("paths mix .npz files with MD trajectories; give one kind at a time")
    return False


def read_trajectories(
    paths: Any,
    *,
    topology: str | os.PathLike | None = None,
    select: str = "all",
    start: int | None = None,
    stop: int | None = None,
    step: int | None = None,
    unwrap: bool | None = None,
    allow_truncated: bool = False,
) -> Frames:
    """Read and concatenate trajectories of one molecule.

    Parameters
    ----------
    paths : path or sequence of paths
        ``.npz`` files (polyvae's or the chapter's format), or trajectories in any
        format MDAnalysis reads (DCD, XTC, TRR, PDB, GRO, ...).
    topology : path, optional
        Topology for MD trajectories (PSF, TPR, PDB, GRO, ...); default: the first path,
        for formats that carry their own atoms.
    select : str
        MDAnalysis selection of the atoms to keep (MD trajectories only).
    start, stop, step : int, optional
        Frame slice over the concatenated trajectory.
    unwrap : bool, optional
        Make molecules whole across periodic boundaries; default: when there is a box.
    allow_truncated : bool
        When a file ends inside a frame, keep the frames read before it (with a
        warning) instead of raising :class:`polyvae.io.mda.TruncatedTrajectoryError`.

    Returns
    -------
    Frames
        Positions in Å for MD trajectories; ``metadata["atoms"]`` describes the
        selected atoms (indices, names, residues, masses, selection).
    """
    files = _as_paths(paths)
    if _is_npz(files, topology):
        if select != "all":
            raise ValueError("select applies to MD trajectories; .npz files hold one molecule")
        return _npz_frames(files, start, stop, step)
    from polyvae.io.mda import TruncatedTrajectoryError, read_universe

    top = files[0] if topology is None else topology
    try:
        frames = read_universe(
            files, topology=top, select=select, start=start, stop=stop, step=step, unwrap=unwrap
        )
    except TruncatedTrajectoryError as err:
        if not allow_truncated or err.frames is None:
            raise
        logger.warning("%s; going on with those %d frames", err, err.frames.n_frames)
        frames = err.frames
    frames.metadata["source"] = ", ".join(map(str, files))
    return frames


def model_atoms(model) -> dict | None:
    """The atom description stored with a model trained on an MD trajectory (or None)."""
    return model.metadata.get("atoms")


def iter_trajectories(
    paths: Any,
    *,
    topology: str | os.PathLike | None = None,
    atoms: dict | None = None,
    start: int | None = None,
    stop: int | None = None,
    step: int | None = None,
    unwrap: bool | None = None,
    chunk_size: int = 4096,
    allow_truncated: bool = False,
) -> Iterator[Frames]:
    """Stream frames chunk by chunk, selecting the atoms a model was trained on.

    Parameters
    ----------
    paths, topology, start, stop, step, unwrap
        As in :func:`read_trajectories`.
    atoms : dict, optional
        A model's atom description (``model.metadata["atoms"]``): its ``indices`` pick
        the atoms from the topology and its ``names`` are checked against them.
    chunk_size : int
        Frames per chunk.
    allow_truncated : bool
        As in :func:`read_trajectories`.

    Yields
    ------
    Frames
    """
    files = _as_paths(paths)
    if _is_npz(files, topology):
        frames = _npz_frames(files, start, stop, step)
        for i in range(0, frames.n_frames, chunk_size):
            yield frames[i : i + chunk_size]
        return
    from polyvae.io.mda import iter_chunks, make_universe

    universe = make_universe(files[0] if topology is None else topology, files)
    group = universe.atoms
    if atoms is not None:
        indices = np.asarray(atoms["indices"], dtype=np.int64)
        if indices.size and indices.max() >= len(universe.atoms):
            raise ValueError(
                f"the model's atom indices reach {int(indices.max())} but the topology has "
                f"{len(universe.atoms)} atoms: is this the topology the model was trained with?"
            )
        group = universe.atoms[indices]
        if not hasattr(group, "names"):
            raise ValueError(
                f"topology {str(topology or files[0])!r} has no atom names; give the topology the "
                "model was trained with (e.g. PSF, TPR, PDB, GRO)"
            )
        names = [str(n) for n in group.names]
        if names != list(atoms["names"]):
            bad = next(
                i for i, (a, b) in enumerate(zip(names, atoms["names"], strict=True)) if a != b
            )
            raise ValueError(
                f"atom {int(indices[bad])} of this topology is named {names[bad]!r} but the model "
                f"was trained on {atoms['names'][bad]!r} there: different topology"
            )
    from polyvae.io.mda import TruncatedTrajectoryError

    try:
        yield from iter_chunks(
            group, start=start, stop=stop, step=step, unwrap=unwrap, chunk_size=chunk_size
        )
    except TruncatedTrajectoryError as err:
        if not allow_truncated:
            raise
        logger.warning("%s; going on with the %d frames read", err, err.n_frames_read)
        if err.frames is not None:
            yield err.frames


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
        np.savez(path, positions=positions, unit=np.array(unit), **(extra or {}))
        return path
    from polyvae.io.writers import write_structures

    return write_structures(path, positions, atoms=atoms, unit=unit)


def read_for_model(paths: Any, model, *, topology=None, **kwargs: Any) -> Frames:
    """All frames of ``paths`` for the atoms ``model`` was trained on, in one Frames."""
    chunks = list(iter_trajectories(paths, topology=topology, atoms=model_atoms(model), **kwargs))
    if not chunks:
        raise ValueError("the trajectories hold no frames in the requested range")
    first = chunks[0]
    return Frames(
        np.concatenate([c.positions for c in chunks]),
        first.masses,
        first.names,
        np.concatenate([c.times for c in chunks]),
        first.unit,
    )


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
    ref = read_trajectories(text, select=select)
    if ref.positions.shape[1:] != frames.positions.shape[1:]:
        raise ValueError(
            f"reference {text!r} has {ref.n_atoms} atoms in {ref.dim}D after selecting "
            f"{select!r}; the training frames have {frames.n_atoms} atoms in {frames.dim}D"
        )
    return ref.positions[0]
