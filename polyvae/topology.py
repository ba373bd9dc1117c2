"""Which bonds a model uses: given ones, the topology's, or a chain in atom order.

A model needs the bonds of its molecule for the structure checks, the training
statistics and the internal coordinates. :func:`model_bonds` decides them once:

1. ``bonds`` passed by the caller win;
2. else the topology's bonds within the selection (:attr:`polyvae.Frames.bonds`,
   :attr:`polyvae.AtomInfo.bonds`);
3. else, when the selection has no bonds at all (``.npz`` frames or arrays, a
   topology without bonds, a Cα selection), a chain in atom order ``(i, i + 1)``.

The bonds must join every atom into one molecule. Some bonds that do not (a
selection of two molecules; Cα and Cβ atoms, bonded in pairs but not to each other)
are refused with a message that says what to do, rather than silently replaced.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from polyvae import geometry
from polyvae._checks import ensure_int, ensure_pairs

__all__ = ["backbone_dihedrals", "model_bonds", "unjoined_atom"]

logger = logging.getLogger(__name__)


def unjoined_atom(n_atoms: int, bonds: np.ndarray) -> int | None:
    """The first atom that no path of ``bonds`` joins to atom 0, or None if all are joined."""
    hops = geometry.bond_graph_distances(n_atoms, bonds)[0]
    far = np.flatnonzero(~np.isfinite(hops))
    return int(far[0]) if far.size else None


def _describe(source: Any) -> tuple[int | None, tuple[str, ...] | None, Any, bool]:
    """Atom count, names, stored bonds and whether a topology described the atoms."""
    from polyvae.frames import Frames
    from polyvae.metadata import AtomInfo

    if source is None:
        return None, None, None, False
    if isinstance(source, Frames):
        atoms = source.metadata.get("atoms")
        from_topology = isinstance(atoms, dict) and atoms.get("indices") is not None
        return source.n_atoms, source.names, source.bonds, from_topology
    if isinstance(source, dict):
        source = AtomInfo.from_dict(source, "source")
    if isinstance(source, AtomInfo):
        return source.n_atoms, source.names, source.bonds, source.indices is not None
    raise TypeError(
        f"source must be a polyvae Frames, an AtomInfo, an atom_info dict or None; "
        f"got {type(source).__name__}"
    )


def model_bonds(source: Any = None, *, n_atoms: int | None = None, bonds: Any = None) -> np.ndarray:
    """The bonds a model of ``source``'s atoms uses.

    Parameters
    ----------
    source : Frames, AtomInfo, dict or None
        The atoms (a dict is read as :meth:`polyvae.AtomInfo.from_dict`); None for
        bare coordinates.
    n_atoms : int, optional
        Number of atoms; required when ``source`` is None, else it must match.
    bonds : array (B, 2) of int, optional
        Bonds chosen by the caller; they win over the topology's.

    Returns
    -------
    ndarray (B, 2) of int64
        ``bonds`` if given; else the topology's bonds within the selection; else, when
        the selection has no bonds at all, a chain in atom order (logged at INFO when a
        topology described the atoms).

    Raises
    ------
    ValueError
        The bonds do not join every atom into one molecule (the message names the
        first atom left out and what to do), or ``n_atoms`` does not match ``source``.
    """
    n, names, stored, from_topology = _describe(source)
    if n_atoms is not None:
        n_atoms = ensure_int(n_atoms, "n_atoms", 2)
        if n is not None and n != n_atoms:
            raise ValueError(f"n_atoms must match the {n} atoms of source; got {n_atoms}")
        n = n_atoms
    if n is None:
        raise ValueError("n_atoms is required when source is None (bare coordinates)")
    names = names or tuple(f"B{i}" for i in range(n))

    def atom(i: int) -> str:
        return f"atom {i} {names[i]!r}"

    if bonds is not None:
        chosen = ensure_pairs(bonds, n, "bonds")
        k = unjoined_atom(n, chosen)
        if k is not None:
            raise ValueError(
                f"bonds do not join all {n} atoms into one molecule ({atom(k)} is not bonded "
                f"to {atom(0)}, directly or through other atoms): pass bonds that join every atom"
            )
        return chosen
    if stored is not None and len(stored):
        k = unjoined_atom(n, stored)
        if k is not None:
            raise ValueError(
                f"bonds from the topology do not join all {n} selected atoms into one molecule "
                f"({atom(k)} is not bonded to {atom(0)}, directly or through other atoms): "
                "select one molecule, pass bonds=..., or use a topology with bonds"
            )
        return np.asarray(stored, dtype=np.int64)
    if stored is not None:
        logger.info(
            "no bond of the topology joins two of the %d selected atoms (as for a C-alpha "
            "selection): the model uses a chain in atom order (i, i + 1)",
            n,
        )
    elif from_topology:
        logger.info(
            "the topology has no bonds: the model of its %d selected atoms uses a chain in "
            "atom order (i, i + 1)",
            n,
        )
    else:
        logger.debug("no bonds known: a chain in atom order (i, i + 1) for %d atoms", n)
    return geometry.chain_bonds(n)


def backbone_dihedrals(names, bonds) -> np.ndarray:
    """Backbone φ and ψ of a peptide as atom quads (Q, 4), 0-based, from names and bonds.

    For every atom named ``CA`` bonded to an ``N`` and a ``C``: φ = C'-N-CA-C, where C' is
    the ``C`` bonded to that N on the other side (the previous residue, or an acetyl
    cap), and ψ = N-CA-C-N', where N' is the ``N`` bonded to that C (the next residue, or
    an N-methyl cap). Quads whose outer atom is not in the selection are left out. Order:
    residue by residue along the chain, φ before ψ.
    """
    names = [str(n).strip().upper() for n in names]
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    neighbours: dict[int, list[int]] = {i: [] for i in range(len(names))}
    for i, j in bonds:
        neighbours[int(i)].append(int(j))
        neighbours[int(j)].append(int(i))

    def bonded(atom, name, exclude=()):
        return [k for k in neighbours[atom] if names[k] == name and k not in exclude]

    quads = []
    for ca in (i for i, n in enumerate(names) if n == "CA"):
        for n in bonded(ca, "N"):
            for c in bonded(ca, "C"):
                quads += [(cp, n, ca, c) for cp in bonded(n, "C", (ca,))][:1]
                quads += [(n, ca, c, nn) for nn in bonded(c, "N", (ca,))][:1]
    return np.asarray(quads, dtype=np.int64).reshape(-1, 4)
