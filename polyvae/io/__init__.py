"""Readers and writers. The only subpackage that touches trajectory file formats."""

from polyvae.io.npz import read_npz, write_npz
from polyvae.io.trajectories import (
    iter_trajectories,
    load_reference,
    model_atoms,
    read_for_model,
    read_trajectories,
    write_positions,
)

__all__ = [
    "read_npz",
    "write_npz",
    "read_frames",
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
        A ``.npz`` file (the chapter's format with key ``arr`` or polyvae's own).
    **kwargs
        Passed to the reader.

    Returns
    -------
    Frames
    """
    from pathlib import Path

    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return read_npz(path, **kwargs)
    raise ValueError(
        f"path {str(path)!r}: unsupported trajectory format {suffix!r}; expected a .npz file"
    )
