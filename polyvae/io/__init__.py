"""Readers and writers. The only subpackage that touches trajectory file formats.

MDAnalysis and mdtraj are imported only when a function that needs them is called,
so ``import polyvae`` works without them.
"""

from pathlib import Path

from polyvae.io.mda import (
    SELF_CONTAINED_SUFFIXES,
    TruncatedTrajectoryError,
    atom_info,
    iter_chunks,
    make_universe,
    read_universe,
    select_atoms,
)
from polyvae.io.mdtraj import read_mdtraj, to_mdtraj
from polyvae.io.npz import read_npz, write_npz
from polyvae.io.trajectories import (
    iter_trajectories,
    load_reference,
    model_atoms,
    read_for_model,
    read_trajectories,
    write_positions,
)
from polyvae.io.writers import write_structures

__all__ = [
    "read_npz",
    "write_npz",
    "read_frames",
    "make_universe",
    "select_atoms",
    "atom_info",
    "iter_chunks",
    "read_universe",
    "TruncatedTrajectoryError",
    "read_mdtraj",
    "to_mdtraj",
    "write_structures",
    "read_trajectories",
    "iter_trajectories",
    "read_for_model",
    "load_reference",
    "write_positions",
    "model_atoms",
]


def read_frames(path, **kwargs):
    """Read frames from ``path``, choosing the reader from the file suffix.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npz`` file (the chapter's format with key ``arr`` or polyvae's own), a
        self-contained structure file (.pdb, .gro, ...), or any trajectory that
        MDAnalysis reads when ``topology=`` is given.
    **kwargs
        Passed to the reader (:func:`read_npz` or :func:`read_universe`, e.g.
        ``topology``, ``select``, ``unwrap``).

    Returns
    -------
    Frames
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return read_npz(path, **kwargs)
    if kwargs.get("topology") is not None or suffix in SELF_CONTAINED_SUFFIXES:
        return read_universe(path, **kwargs)
    raise ValueError(
        f"path {str(path)!r}: unsupported trajectory format {suffix!r}; expected a .npz file, "
        f"a structure file ({', '.join(SELF_CONTAINED_SUFFIXES)}), or a trajectory with "
        "topology=... (e.g. .dcd or .xtc with a PSF, TPR or PDB topology)"
    )
