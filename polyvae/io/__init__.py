"""Readers and writers. The only subpackage that touches trajectory file formats.

Paths go through two entry points: :func:`read_frames` (one :class:`~polyvae.Frames`)
and :func:`iter_frames` (chunks of Frames, for bounded memory). The backend functions
below them (:func:`read_npz`, :func:`read_universe` and :func:`iter_chunks` for
MDAnalysis Universes and AtomGroups, :func:`read_mdtraj` for mdtraj) stay available
for objects that are not paths.

MDAnalysis and mdtraj are imported only when a function that needs them is called,
so ``import polyvae`` works without them.
"""

from polyvae.io.colvar import read_colvar
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
    LATENT_SUFFIXES,
    POSITION_SUFFIXES,
    check_atom_names,
    iter_frames,
    load_reference,
    model_atoms,
    read_frames,
    write_latent,
    write_positions,
)
from polyvae.io.writers import write_structures
from polyvae.io.xtc import check_xtc

__all__ = [
    "read_colvar",
    "read_frames",
    "iter_frames",
    "read_npz",
    "write_npz",
    "make_universe",
    "select_atoms",
    "atom_info",
    "iter_chunks",
    "read_universe",
    "TruncatedTrajectoryError",
    "SELF_CONTAINED_SUFFIXES",
    "read_mdtraj",
    "to_mdtraj",
    "write_structures",
    "write_positions",
    "write_latent",
    "LATENT_SUFFIXES",
    "POSITION_SUFFIXES",
    "load_reference",
    "model_atoms",
    "check_atom_names",
    "check_xtc",
]
