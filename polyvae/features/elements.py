"""Elements of atoms and bonds guessed from distances with covalent radii.

:func:`atom_elements` reads each atom's element from its mass and name;
:func:`guess_bonds` finds the bonds of a molecule from its coordinates alone.
:func:`polyvae.features.topology.model_bonds` uses both where a topology lacks bonds.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from polyvae import geometry
from polyvae._checks import ensure_number

__all__ = ["COVALENT_RADII", "GUESS_TOLERANCE", "atom_elements", "guess_bonds"]

GUESS_TOLERANCE = 1.25
"""Two atoms are bonded when their distance is below this times the sum of their
covalent radii: C-C 1.90 Å, C-H 1.34 Å, O-H 1.21 Å (a hydrogen bond's H···O is 1.7 Å
or more), S-S 2.63 Å."""

#: Standard atomic mass (u) and single-bond covalent radius (Å; Cordero et al., Dalton
#: Trans. 2008, 2832) of the elements of biomolecules and their ligands. Ions that do
#: not bond covalently (Na, K, Mg, Ca) are left out on purpose.
_ELEMENTS = {
    "H": (1.008, 0.31),
    "C": (12.011, 0.76),
    "N": (14.007, 0.71),
    "O": (15.999, 0.66),
    "F": (18.998, 0.57),
    "Si": (28.085, 1.11),
    "P": (30.974, 1.07),
    "S": (32.06, 1.05),
    "Cl": (35.45, 1.02),
    "Fe": (55.845, 1.32),
    "Cu": (63.546, 1.32),
    "Zn": (65.38, 1.22),
    "Se": (78.971, 1.20),
    "Br": (79.904, 1.20),
    "I": (126.904, 1.39),
}
_MASS_TOLERANCE = 0.5  # u: a mass this close to a standard atomic mass names the element
_GUESS_FRAMES = 10  # frames (spread through the trajectory) whose median distance decides

COVALENT_RADII = {e: r for e, (_, r) in _ELEMENTS.items()}
"""Covalent radius (Å) of each element bonds are guessed for."""


def atom_elements(names, masses=None) -> tuple[str, ...]:
    """The element of each atom, from its mass where that is telling, else from its name.

    An atom's name gives an element (:func:`polyvae.geometry.element_symbol`: ``"CA"``
    -> C). Where masses are known (not all 1, the default of :class:`polyvae.Frames`),
    a mass within 0.5 u of a standard atomic mass decides: the name's element if its
    mass is that close, else the element of that mass (``"CL"`` of mass 35.45 is Cl,
    not C). Masses near no standard mass (coarse-grained beads, heavy hydrogens of
    hydrogen mass repartitioning) leave the name's element.

    Parameters
    ----------
    names : sequence of str (N,)
    masses : array_like (N,), optional
        Atomic masses in u.

    Returns
    -------
    tuple of str (N,)
    """
    from_names = tuple(geometry.element_symbol(n) for n in names)
    if masses is None:
        return from_names
    masses = np.asarray(masses, dtype=np.float64)
    if np.all(masses == 1.0):
        return from_names
    symbols = list(_ELEMENTS)
    table = np.array([_ELEMENTS[e][0] for e in symbols])
    out = []
    for named, m in zip(from_names, masses, strict=True):
        if named in _ELEMENTS and abs(_ELEMENTS[named][0] - m) <= _MASS_TOLERANCE:
            out.append(named)
            continue
        k = int(np.argmin(np.abs(table - m)))
        out.append(symbols[k] if abs(table[k] - m) <= _MASS_TOLERANCE else named)
    return tuple(out)


def guess_bonds(positions, elements, tolerance: float = GUESS_TOLERANCE) -> np.ndarray:
    """Bonds from interatomic distances and covalent radii.

    Atoms ``i`` and ``j`` are bonded when their median distance over up to 10 frames
    spread through the trajectory is below ``tolerance * (r_i + r_j)``, so that one odd
    frame does not decide. A hydrogen keeps one bond: to the nearest heavy atom within
    reach (another hydrogen only where no heavy atom is, as in H2). Neighbours come
    from a k-d tree (:class:`scipy.spatial.cKDTree`): memory grows with the number of
    atoms, never with its square.

    Parameters
    ----------
    positions : array_like (T, N, 3) or (N, 3)
        Coordinates in Å.
    elements : sequence of str (N,)
        Element symbols (:func:`atom_elements`); each needs a covalent radius (H, C, N,
        O, F, Si, P, S, Cl, Fe, Cu, Zn, Se, Br, I).
    tolerance : float
        Factor on the sum of the covalent radii (default :data:`GUESS_TOLERANCE`).

    Returns
    -------
    ndarray (B, 2) of int64
        Pairs ``i < j``, sorted.

    Raises
    ------
    ValueError
        An element has no covalent radius, or ``positions`` are not 3D.
    """

    x = np.asarray(positions)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(
            f"guessing bonds needs positions (T, N, 3) in Å; got shape {np.shape(positions)}"
        )
    picked = np.linspace(0, len(x) - 1, min(len(x), _GUESS_FRAMES)).round().astype(int)
    x = np.asarray(x[np.unique(picked)], dtype=np.float64)  # not a copy of every frame
    tolerance = ensure_number(tolerance, "tolerance", minimum=0.0, exclusive=True)
    elements = list(elements)
    if len(elements) != x.shape[1]:
        raise ValueError(f"elements must name {x.shape[1]} atoms; got {len(elements)}")
    unknown = [k for k, e in enumerate(elements) if e not in _ELEMENTS]
    if unknown:
        k = unknown[0]
        raise ValueError(
            f"guessing bonds needs elements with a covalent radius ({', '.join(_ELEMENTS)}); "
            f"atom {k} is {elements[k]!r}"
            + (f" ({len(unknown) - 1} more atoms have none)" if len(unknown) > 1 else "")
        )
    radius = np.array([_ELEMENTS[e][1] for e in elements])
    hydrogen = np.array([e == "H" for e in elements])
    reach = tolerance * 2.0 * radius.max()
    found = [cKDTree(frame).query_pairs(reach, output_type="ndarray") for frame in x]
    pairs = np.unique(np.sort(np.concatenate(found).reshape(-1, 2), axis=1), axis=0)
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    d = np.median(geometry.pair_distances(x, pairs), axis=0)
    keep = d < tolerance * radius[pairs].sum(axis=1)
    pairs, d = pairs[keep], d[keep]
    # each hydrogen keeps one bond: its nearest heavy partner, else its nearest hydrogen
    is_h = hydrogen[pairs]
    rank = d + 1e3 * is_h.all(axis=1)
    ends = np.flatnonzero(is_h.ravel())  # (pair * 2 + side) of every hydrogen end
    pair_of = ends // 2
    atom = pairs.ravel()[ends]
    order = np.lexsort((rank[pair_of], atom))
    first = np.unique(atom[order], return_index=True)[1]
    votes = np.bincount(pair_of[order][first], minlength=len(pairs))
    keep = votes == is_h.sum(axis=1)  # chosen by every hydrogen it joins (none: heavy-heavy)
    return pairs[keep].astype(np.int64)
