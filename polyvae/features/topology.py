"""Which bonds a model uses: given ones, the topology's, guessed from distances, or a chain.

A model needs the bonds of its molecule for the structure checks, the training
statistics and the internal coordinates. :func:`model_bonds` decides them once, by
``bonds``:

- an array (B, 2): these bonds, 0-based in the selection's atom order;
- ``"topology"``: the topology's bonds within the selection (:attr:`polyvae.Frames.bonds`,
  :attr:`polyvae.AtomInfo.bonds`) and nothing else;
- ``"guess"``: bonds from distances and covalent radii alone (:func:`guess_bonds`);
- ``"auto"`` (the default):

  1. the topology's bonds, where they join the selection;
  2. where the topology has bonds that do not join it (a PDB written by OpenMM has
     ``CONECT`` records for nonstandard residues and caps only), those bonds and the
     bonds guessed from distances;
  3. where the selection has no bonds at all (``.npz`` frames or arrays, a topology
     without bonds, a Cα selection): guessed bonds for an all-atom molecule, a chain in
     atom order ``(i, i + 1)`` otherwise. A selection counts as all-atom when its atoms
     are in 3D, every element (:func:`atom_elements`) has a covalent radius, and they are
     not all of one element: hydrogens with heavy atoms, or several heavy elements (a
     backbone N, CA, C, O). A Cα trace (all carbon), beads (``B0``, ``B1``, ... of equal
     mass) or coarse-grained sites (masses no element has) stay on the chain.

Whenever bonds are completed or guessed, one INFO line says how many and how. The
bonds must join every atom into one molecule; bonds that do not are refused with a
message that names the atoms left apart and what to do, never silently replaced.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from polyvae import geometry
from polyvae._checks import ensure_choice, ensure_int, ensure_pairs
from polyvae.config import BOND_MODES
from polyvae.features.elements import COVALENT_RADII, atom_elements, guess_bonds
from polyvae.frames import Frames
from polyvae.metadata import AtomInfo

__all__ = [
    "BOND_MODES",
    "backbone_dihedrals",
    "model_bonds",
    "unjoined_atom",
]

logger = logging.getLogger(__name__)

_SHOWN = 5  # atoms named in a message about atoms left apart


def unjoined_atom(n_atoms: int, bonds: np.ndarray) -> int | None:
    """The first atom that no path of ``bonds`` joins to atom 0, or None if all are joined.

    From the connected components of the sparse bond graph: memory linear in N.
    """
    label = _groups(int(n_atoms), bonds)
    far = np.flatnonzero(label != label[0]) if label.size else label
    return int(far[0]) if far.size else None


def _describe(source: Any):
    """Atom count, names, masses, stored bonds, positions and whether a topology
    described the atoms."""

    if source is None:
        return None, None, None, None, None, False
    if isinstance(source, Frames):
        atoms = source.metadata.get("atoms")
        from_topology = isinstance(atoms, dict) and atoms.get("indices") is not None
        return (
            source.n_atoms,
            source.names,
            source.masses,
            source.bonds,
            source.positions,
            from_topology,
        )
    if isinstance(source, dict):
        source = AtomInfo.from_dict(source, "source")
    if isinstance(source, AtomInfo):
        return (
            source.n_atoms,
            source.names,
            source.masses,
            source.bonds,
            None,
            source.indices is not None,
        )
    raise TypeError(
        f"source must be a polyvae Frames, an AtomInfo, an atom_info dict or None; "
        f"got {type(source).__name__}"
    )


def _groups(n: int, bonds: np.ndarray) -> np.ndarray:
    """The bonded group (connected component of the bond graph) of each atom: (N,) int."""

    b = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _apart(n: int, bonds: np.ndarray) -> tuple[np.ndarray, int]:
    """The atoms that ``bonds`` leave apart from the largest bonded group, and its size."""
    label = _groups(n, bonds)
    sizes = np.bincount(label)
    largest = int(np.argmax(sizes))
    return np.flatnonzero(label != largest), int(sizes[largest])


def _refuse_apart(
    what: str, n: int, bonds: np.ndarray, names, hint: str, atoms: str = "selected atoms"
) -> None:
    """Raise ValueError naming the atoms ``bonds`` leave apart, if any."""
    apart, size = _apart(n, bonds)
    if apart.size == 0:
        return
    shown = ", ".join(f"{i} {names[i]!r}" for i in apart[:_SHOWN])
    more = f" and {apart.size - _SHOWN} more" if apart.size > _SHOWN else ""
    k = apart.size
    left = f"{k} atom is" if k == 1 else f"{k} atoms are"
    raise ValueError(
        f"{what} do not join all {n} {atoms} into one molecule: {left} left apart from the "
        f"largest bonded group ({size} atom{'s' * (size > 1)}), by index and name {shown}"
        f"{more}; {hint}"
    )


def model_bonds(
    source: Any = None,
    *,
    n_atoms: int | None = None,
    bonds: Any = None,
    positions: Any = None,
) -> np.ndarray:
    """The bonds a model of ``source``'s atoms uses.

    Parameters
    ----------
    source : Frames, AtomInfo, dict or None
        The atoms (a dict is read as :meth:`polyvae.AtomInfo.from_dict`); None for
        bare coordinates.
    n_atoms : int, optional
        Number of atoms; required when ``source`` is None, else it must match.
    bonds : array (B, 2) of int, or {"auto", "topology", "guess"}, optional
        Bonds chosen by the caller (0-based), or how to find them (default ``"auto"``):
        ``"topology"``, the topology's bonds within the selection; ``"guess"``, bonds
        from distances and covalent radii (:func:`guess_bonds`); ``"auto"``, the
        topology's where they join the selection, else completed or guessed from
        distances, else a chain in atom order (see the module's text).
    positions : array_like (T, N, 3) or (N, 3), optional
        Coordinates in Å for guessing; default the positions of a :class:`Frames`
        ``source``.

    Returns
    -------
    ndarray (B, 2) of int64
        Topology bonds first (in their order), then added ones (sorted).

    Raises
    ------
    ValueError
        The bonds do not join every atom into one molecule (the message names the
        atoms left apart and what to do); guessing without positions in 3D or for an
        element without a covalent radius; ``n_atoms`` does not match ``source``;
        ``bonds`` is a string other than the modes.
    """
    n, names, masses, stored, own_positions, from_topology = _describe(source)
    if n_atoms is not None:
        n_atoms = ensure_int(n_atoms, "n_atoms", 2)
        if n is not None and n != n_atoms:
            raise ValueError(f"n_atoms must match the {n} atoms of source; got {n_atoms}")
        n = n_atoms
    if n is None:
        raise ValueError("n_atoms is required when source is None (bare coordinates)")
    names = names or tuple(f"B{i}" for i in range(n))
    if positions is None:
        positions = own_positions
    else:
        positions = np.asarray(positions, dtype=np.float64)
        positions = positions[None] if positions.ndim == 2 else positions
        if positions.ndim != 3 or positions.shape[1] != n:
            raise ValueError(
                f"positions must have shape (T, {n}, 3) or ({n}, 3); got {np.shape(positions)}"
            )
    mode = "auto" if bonds is None else bonds
    if not isinstance(mode, str):
        chosen = ensure_pairs(bonds, n, "bonds")
        _refuse_apart("bonds", n, chosen, names, "pass bonds that join every atom", "atoms")
        return chosen
    mode = ensure_choice(mode, "bonds", BOND_MODES)
    own = np.zeros((0, 2), np.int64) if stored is None else np.asarray(stored, np.int64)
    by_hand = "select one molecule, or pass bonds=[[i, j], ...] (0-based pairs) that join all atoms"
    if mode == "topology":
        what = "bonds from the topology" + ("" if len(own) else " (it has none)")
        hint = (
            'pass bonds="auto" to complete them from distances (covalent radii), bonds="guess" '
            "to take every bond from distances, or bonds=[[i, j], ...] (0-based pairs) that "
            "join all atoms; or select one molecule"
        )
        _refuse_apart(what, n, own, names, hint)
        return own.reshape(-1, 2)
    elements = atom_elements(names, masses)
    if mode == "auto" and len(own):
        if _apart(n, own)[0].size == 0:
            return own
        if not _guessable(elements, positions):
            _refuse_apart("bonds from the topology", n, own, names, by_hand)
    elif mode == "auto" and not _all_atom(elements, positions):
        return _chain(n, stored, from_topology)
    elif mode == "guess":
        own = own[:0]
        _check_guessable(elements, positions, names)

    guessed = guess_bonds(positions, elements)
    hydrogen = np.array([e == "H" for e in elements])
    taken = np.zeros(n, dtype=bool)
    taken[own.ravel()] = True
    known = {tuple(sorted(p)) for p in own.tolist()}
    added = np.array(
        [p for p in guessed.tolist() if tuple(p) not in known and not (hydrogen & taken)[p].any()],
        dtype=np.int64,
    ).reshape(-1, 2)
    merged = np.concatenate([own, added])
    what = "bonds from the topology and from distances (covalent radii)"
    if mode == "guess":
        what, how = "bonds from distances (covalent radii)", f"{len(added)} from distances"
    elif len(own):
        how = f"{len(own)} from the topology, {len(added)} added from distances"
    elif stored is not None:
        how = f"0 from the topology, {len(added)} guessed from distances"
    else:
        what = "bonds from distances (covalent radii)"
        no = "the topology has none" if from_topology else "none known"
        how = f"{no}, {len(added)} guessed from distances"
    _refuse_apart(what, n, merged, names, by_hand)
    logger.info("bonds: %s (covalent radii) to join the %d selected atoms", how, n)
    return merged


def _guessable(elements, positions) -> bool:
    """Whether bonds can be guessed: positions in 3D, every element with a radius."""
    if positions is None or positions.shape[-1] != 3:
        return False
    return all(e in COVALENT_RADII for e in elements)


def _all_atom(elements, positions) -> bool:
    """Whether the atoms look like an all-atom molecule: guessable, not all one element."""
    return _guessable(elements, positions) and len(set(elements)) > 1


def _check_guessable(elements, positions, names) -> None:
    """Raise what ``bonds="guess"`` lacks: positions in 3D, elements with a radius."""
    if positions is None:
        raise ValueError(
            'bonds="guess" needs positions to guess bonds from distances: pass positions '
            "(T, N, 3) in Å, or frames"
        )
    if positions.shape[-1] != 3:
        raise ValueError(
            f'bonds="guess" needs positions in 3D; got {positions.shape[-1]}D positions'
        )
    unknown = [k for k, e in enumerate(elements) if e not in COVALENT_RADII]
    if unknown:
        k = unknown[0]
        raise ValueError(
            f'bonds="guess" needs atoms of elements with a covalent radius '
            f"({', '.join(COVALENT_RADII)}); {len(unknown)} atoms have none, the first atom "
            f"{k} {names[k]!r} (element {elements[k]!r} by its name and mass)"
        )


def _chain(n: int, topology: np.ndarray | None, from_topology: bool) -> np.ndarray:
    """A chain in atom order, with the INFO line of why."""
    if topology is not None:
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
