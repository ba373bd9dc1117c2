"""Trajectories through mdtraj, converted between its nm and polyvae's Å here.

:func:`read_mdtraj` reads an ``md.Trajectory`` or files into :class:`Frames`
(positions × 10: nm to Å); :func:`to_mdtraj` turns positions in Å and an atom
description (the :func:`polyvae.io.mda.atom_info` schema) back into an
``md.Trajectory`` (÷ 10: Å to nm). mdtraj is imported lazily.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from polyvae._checks import ensure_pairs
from polyvae.frames import Frames, as_positions

__all__ = ["read_mdtraj", "to_mdtraj", "mdtraj_atom_info"]

logger = logging.getLogger(__name__)

NM_TO_ANGSTROM = 10.0


def _paths(value: Any, name: str) -> list[str]:
    items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    if not items:
        raise ValueError(f"{name} must name at least one file; got an empty list")
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"{name} must be a path or a list of paths; got {type(item).__name__}")
        if not Path(item).is_file():
            raise FileNotFoundError(f"{name}: no such file {str(item)!r}")
    return [str(p) for p in items]


def _select(topology: Any, select: str | None) -> np.ndarray | None:
    if select is None:
        return None
    if not isinstance(select, str):
        raise TypeError(f"select must be an mdtraj selection string; got {select!r}")
    try:
        idx = topology.select(select)
    except ValueError as exc:
        raise ValueError(f"select {select!r} is not a valid mdtraj selection: {exc}") from exc
    if idx.size == 0:
        raise ValueError(
            f"select {select!r} matches no atoms (of {topology.n_atoms} in the topology)"
        )
    return idx


def mdtraj_atom_info(
    topology: Any,
    indices: Any,
    select: str | None,
    n_total: int,
    *,
    has_bonds: bool | None = None,
) -> dict:
    """The :func:`polyvae.io.mda.atom_info` schema for atoms of an ``md.Topology``.

    Parameters
    ----------
    topology : md.Topology
        Topology of the selected atoms (atom ``i`` is ``indices[i]`` of the original).
    indices : sequence of int (N,)
        0-based indices of the atoms in the original topology.
    select : str or None
        Selection string (None: all atoms).
    n_total : int
        Number of atoms in the original topology.
    has_bonds : bool, optional
        Whether the original topology has bonds (mdtraj adds the standard bonds of
        known residues to PDB files); default: whether ``topology`` has any. With
        bonds, ``bonds`` lists those of ``topology`` (sorted pairs ``i < j``; empty
        when no bond joins two selected atoms).
    """
    atoms = list(topology.atoms)
    pairs = sorted({tuple(sorted((b[0].index, b[1].index))) for b in topology.bonds})
    if has_bonds is None:
        has_bonds = bool(pairs)
    extra = {"bonds": [[int(i), int(j)] for i, j in pairs if i != j]} if has_bonds else {}
    return {
        "selection": "all" if select is None else select,
        "indices": [int(i) for i in indices],
        "names": [a.name for a in atoms],
        "resnames": [a.residue.name for a in atoms],
        "resids": [int(a.residue.resSeq) for a in atoms],
        "masses": [float(a.element.mass) if a.element is not None else 0.0 for a in atoms],
        "n_atoms_topology": int(n_total),
        **extra,
    }


def read_mdtraj(
    source: Any,
    *,
    topology: str | os.PathLike | None = None,
    select: str | None = None,
    stride: int | None = None,
) -> Frames:
    """Read a trajectory with mdtraj into :class:`Frames` in Å.

    Parameters
    ----------
    source : md.Trajectory, path or sequence of paths
        Files are loaded with ``md.load(paths, top=topology, stride=stride)``
        (concatenated in order); only the selected atoms are loaded.
    topology : path, optional
        Topology for files that carry none (DCD, XTC, ...).
    select : str, optional
        mdtraj selection (``topology.select``); default all atoms.
    stride : int, optional
        Read every ``stride``-th frame.

    Returns
    -------
    Frames
        positions (T, N, 3) float32 in Å (mdtraj's nm × 10), masses (N,) in u from the
        elements, times (T,) in ps, metadata ``{"atoms": ...}`` (atom_info schema);
        ``bonds`` from the topology's bonds within the selection, None if it has none.
    """
    # optional, the md extra
    import mdtraj as md

    if stride is not None and (isinstance(stride, bool) or int(stride) != stride or stride < 1):
        raise ValueError(f"stride must be a positive integer; got {stride!r}")
    if isinstance(source, md.Trajectory):
        idx = _select(source.topology, select)
        n_total = source.n_atoms
        has_bonds = source.topology.n_bonds > 0
        traj = source if idx is None else source.atom_slice(idx)
        traj = traj if stride is None else traj[::stride]
    else:
        paths = _paths(source, "source")
        top_path = paths[0] if topology is None else _paths(topology, "topology")[0]
        try:
            top = md.load_topology(top_path)
        except (OSError, ValueError, KeyError) as exc:
            hint = "" if topology is not None else " (pass topology=... for trajectory files)"
            raise ValueError(
                f"mdtraj could not read a topology from {top_path!r}{hint}: {exc}"
            ) from exc
        idx = _select(top, select)
        n_total = top.n_atoms
        has_bonds = top.n_bonds > 0
        try:
            traj = md.load(paths, top=top, stride=stride, atom_indices=idx)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"mdtraj could not read {paths} with topology {top_path!r}: {exc}"
            ) from exc
    indices = np.arange(n_total) if idx is None else idx
    info = mdtraj_atom_info(traj.topology, indices, select, n_total, has_bonds=has_bonds)
    masses = np.asarray(info["masses"])
    if np.any(masses <= 0):
        bad = int(np.flatnonzero(masses <= 0)[0])
        raise ValueError(
            f"select {select!r} includes atoms without a known element mass (e.g. atom "
            f"{info['indices'][bad]} {info['names'][bad]!r}); select them out"
        )
    return Frames(
        traj.xyz * NM_TO_ANGSTROM,
        masses,
        info["names"],
        np.asarray(traj.time, dtype=np.float64),
        "Å",
        {"atoms": info},
    )


def _element(name: str, mass: float | None):
    """Element guessed from an atom name, using the mass to choose 1 or 2 letters."""
    # optional, the md extra
    import mdtraj as md

    letters = re.sub(r"[^A-Za-z]", "", name)
    candidates = []
    for symbol in (letters[:1], letters[:2]):
        try:
            candidates.append(md.element.get_by_symbol(symbol.capitalize()))
        except KeyError:
            pass
    if not candidates:
        return md.element.virtual
    if mass is None or not np.isfinite(mass) or mass <= 0:
        return candidates[0]
    return min(candidates, key=lambda e: abs(e.mass - mass))


def _topology(atoms: dict, n_atoms: int):
    # optional, the md extra
    import mdtraj as md

    if not isinstance(atoms, dict):
        raise TypeError(
            f"atoms must be a dict (atom_info schema) or an md.Topology; got {type(atoms).__name__}"
        )
    names = list(atoms.get("names", [f"B{i}" for i in range(n_atoms)]))
    resnames = list(atoms.get("resnames", ["UNK"] * n_atoms))
    resids = list(atoms.get("resids", range(1, n_atoms + 1)))
    masses = list(atoms.get("masses", [None] * n_atoms))
    for key, values in (("names", names), ("resnames", resnames), ("resids", resids)):
        if len(values) != n_atoms:
            raise ValueError(
                f"atoms[{key!r}] must have one entry per atom ({n_atoms}); got {len(values)}"
            )
    if len(masses) != n_atoms:
        raise ValueError(
            f"atoms['masses'] must have one entry per atom ({n_atoms}); got {len(masses)}"
        )
    top = md.Topology()
    chain = top.add_chain()
    residue, previous = None, None
    for name, resname, resid, mass in zip(names, resnames, resids, masses, strict=True):
        if (resid, resname) != previous:
            residue = top.add_residue(str(resname), chain, resSeq=int(resid))
            previous = (resid, resname)
        top.add_atom(str(name), _element(str(name), mass), residue)
    bonds = atoms.get("bonds")
    if bonds is not None:
        atom_list = list(top.atoms)
        for i, j in ensure_pairs(np.asarray(bonds), n_atoms, "atoms['bonds']"):
            top.add_bond(atom_list[i], atom_list[j])
    return top


def to_mdtraj(positions: Any, atoms: Any, time: Any = None):
    """Build an ``md.Trajectory`` (nm) from positions in Å.

    Parameters
    ----------
    positions : array (T, N, 3) or (T, N, 2), Å
        2-D positions get z = 0.
    atoms : dict or md.Topology
        The :func:`polyvae.io.mda.atom_info` schema (``names``, ``resnames``,
        ``resids``, optional ``masses``) or a topology of N atoms. From a dict, one
        chain is built; a new residue starts where resid or resname changes; ``bonds``,
        if given, become the topology's bonds; elements are guessed from the names (1 or 2 letters, the one closest to the mass if
        given; unknown names become virtual sites).
    time : array (T,), ps, optional

    Returns
    -------
    md.Trajectory
        xyz = positions / 10 (nm).
    """
    # optional, the md extra
    import mdtraj as md

    x = as_positions(positions, "positions", min_atoms=1)
    if x.shape[2] == 2:
        x = np.concatenate([x, np.zeros(x.shape[:2] + (1,), np.float32)], axis=2)
    top = atoms if isinstance(atoms, md.Topology) else _topology(atoms, x.shape[1])
    if top.n_atoms != x.shape[1]:
        raise ValueError(f"atoms describes {top.n_atoms} atoms but positions have N={x.shape[1]}")
    if time is not None:
        time = np.asarray(time, dtype=np.float64)
        if time.shape != (x.shape[0],):
            raise ValueError(f"time must have shape (T,) = ({x.shape[0]},); got {time.shape}")
    return md.Trajectory(x / NM_TO_ANGSTROM, top, time=time)
