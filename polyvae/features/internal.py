"""Internal coordinates: a Z-matrix from the bond graph, and the rebuild to Cartesian (NeRF).

:func:`zmatrix` walks the topology's bond graph breadth first from a root atom and
gives every other atom three reference atoms already placed: the atom it is bonded to
(``j``), a neighbour of ``j`` for the bond angle (``k``) and a fourth atom for the
dihedral (``l``). Bonds that the walk does not use close rings: they are measured, not
built, and :attr:`ZMatrix.ring_bonds` lists them. A molecule whose atoms the bonds do
not all join is refused with a message that names what to do.

Atoms that share all three reference atoms (the hydrogens of a methyl or ammonium
group, the branches of an sp3 centre, the two partners of a planar sp2 atom) are
siblings. In 3D only the first sibling keeps its own dihedral (the torsion of the
group); every later sibling has a *phase*: its dihedral minus the first sibling's,
wrapped to (-pi, pi] (the improper or phase torsions of bond-angle-torsion
coordinates). A phase hardly varies (about ±120° in a methyl group, 180° across a
peptide bond), so a model that varies the torsion turns the whole group rigidly and
keeps its shape; independent dihedrals would let siblings fall onto one another.
Heavier branches (atoms with more bonds) are placed before hydrogens, so the torsion
a group carries is that of its heavy atoms.

:func:`to_internal` measures bond lengths, bond angles and dihedrals or phases (3D) or
signed turning angles (2D) of frames; :func:`to_cartesian` rebuilds frames from them
with the natural extension reference frame method (NeRF), in JAX: batched over frames,
differentiable and jit-able. The rebuilt frame has the first atom at the origin, the
second on the x axis and the third in the xy plane; it equals the measured frame up to
a rigid motion.

Nothing here forms an array of all atom pairs: the walks are breadth-first searches of
the bond graph, linear in the number of atoms.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from polyvae import geometry
from polyvae._checks import ensure_int, ensure_pairs

__all__ = ["ZMatrix", "zmatrix", "to_internal", "to_cartesian"]


@dataclass(frozen=True, eq=False)
class ZMatrix:
    """Build order and reference atoms of every atom.

    Attributes
    ----------
    order : ndarray (N,) of int
        Atoms in the order they are placed; ``order[0]`` is the root.
    refs : ndarray (N, 3) of int
        For the atom ``order[t]``: the atoms ``j`` (bonded), ``k`` (angle) and ``l``
        (dihedral) it is placed from, all placed before it; -1 where the first atoms
        have none.
    ring_bonds : ndarray (R, 2) of int
        Bonds not used to place atoms (ring closures).
    dim : int
        2 or 3.
    phase : ndarray (N,) of int
        For the atom ``order[t]``: the build step of its first sibling (an earlier atom
        with the same three reference atoms), whose dihedral its own is measured from;
        -1 for atoms with a dihedral of their own (and in 2D).
    """

    order: np.ndarray
    refs: np.ndarray
    ring_bonds: np.ndarray
    dim: int
    phase: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.phase is None:
            object.__setattr__(self, "phase", np.full(len(self.order), -1, np.int64))

    @property
    def dihedral_reference(self) -> np.ndarray:
        """(N - 3,) index of the dihedral each dihedral is measured from (itself if none)."""
        ref = np.arange(max(self.n_atoms - 3, 0))
        t = np.flatnonzero(self.phase >= 3)
        ref[t - 3] = self.phase[t] - 3
        return ref

    @property
    def n_phases(self) -> int:
        return int(np.sum(self.phase >= 0))

    @property
    def n_atoms(self) -> int:
        return len(self.order)

    @property
    def n_internal(self) -> int:
        """Number of internal coordinates: N - 1 bonds, N - 2 angles, N - 3 dihedrals (3D)."""
        n = self.n_atoms
        return (n - 1) + (n - 2) + (n - 3 if self.dim == 3 else 0)


def zmatrix(
    n_atoms: int, bonds=None, *, dim: int = 3, root: int | None = None, phases: bool = True
) -> ZMatrix:
    """A Z-matrix from the bond graph (default: a linear chain in atom order).

    Parameters
    ----------
    n_atoms : int
        At least 3 (4 in 3D).
    bonds : array (B, 2) of int, optional
        0-based bonded pairs; default ``(i, i + 1)``.
    dim : {2, 3}
    root : int, optional
        The atom placed first; default: a centre of the bond graph (the middle of a
        longest shortest path, found by two breadth-first walks), which keeps the
        chains of references short, so rounding errors do not build up along a long
        molecule.
    phases : bool
        In 3D, measure the dihedral of every later sibling from its first sibling's
        (:attr:`ZMatrix.phase`).

    Returns
    -------
    ZMatrix
    """
    n = ensure_int(n_atoms, "n_atoms", 4 if dim == 3 else 3)
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3; got {dim!r}")
    bonds = geometry.chain_bonds(n) if bonds is None else ensure_pairs(bonds, n, "bonds")
    nb = geometry.neighbours(n, bonds)
    hops0, _ = _walk(nb, 0)
    if (hops0 < 0).any():
        unjoined = np.flatnonzero(hops0 < 0)
        raise ValueError(
            f"bonds must join all {n} atoms into one molecule; atom {unjoined[0]} (and "
            f"{unjoined.size - 1} more) is not bonded to atom 0: give the topology's bonds "
            "(a topology file with bonds, or guess them from distances)"
        )
    if root is None:
        root = _centre(nb, hops0)
    root = ensure_int(root, "root", 0)
    degree = np.asarray([len(v) for v in nb])
    # heavier branches first: atoms with more bonds lead their siblings
    nb = [sorted(v, key=lambda a: (-degree[a], a)) for v in nb]
    parent = np.full(n, -1)
    order, seen = [root], {root}
    queue = deque([root])
    while queue:
        a = queue.popleft()
        for b in nb[a]:
            if b not in seen:
                seen.add(b)
                parent[b] = a
                order.append(b)
                queue.append(b)
    placed = np.full(n, -1)
    placed[order] = np.arange(n)
    refs = np.full((n, 3), -1)
    for t, i in enumerate(order[1:], start=1):
        j = int(parent[i])
        k = int(parent[j]) if parent[j] >= 0 else _earlier(nb[j], placed, t, (i, j))
        if k < 0:  # the second atom: bonded to the root only
            refs[t] = (j, -1, -1)
            continue
        h = int(parent[k]) if parent[k] >= 0 else -1
        if h < 0 or h in (i, j):
            h = _earlier([*nb[j], *nb[k]], placed, t, (i, j, k))
        refs[t] = (j, k, h)
    phase = np.full(n, -1, np.int64)
    if dim == 3 and phases:
        first: dict[tuple, int] = {}
        for t in range(3, n):
            key = tuple(int(r) for r in refs[t])
            if key in first:
                phase[t] = first[key]
            else:
                first[key] = t
    tree = {(min(i, int(parent[i])), max(i, int(parent[i]))) for i in order[1:]}
    ring = [tuple(b) for b in np.sort(bonds, axis=1).tolist() if tuple(b) not in tree]
    ring_bonds = np.asarray(sorted(set(ring)), dtype=np.int64).reshape(-1, 2)
    return ZMatrix(np.asarray(order, np.int64), refs.astype(np.int64), ring_bonds, dim, phase)


def _walk(nb: list[list[int]], start: int) -> tuple[np.ndarray, np.ndarray]:
    """Bond counts from ``start`` (-1 where unreached) and each atom's predecessor."""
    hops = np.full(len(nb), -1, np.int64)
    back = np.full(len(nb), -1, np.int64)
    hops[start] = 0
    queue = deque([start])
    while queue:
        a = queue.popleft()
        for b in nb[a]:
            if hops[b] < 0:
                hops[b] = hops[a] + 1
                back[b] = a
                queue.append(b)
    return hops, back


def _centre(nb: list[list[int]], hops0: np.ndarray) -> int:
    """The middle atom of a longest shortest path (exact for trees, close for rings)."""
    a = int(np.argmax(hops0))
    hops_a, _ = _walk(nb, a)
    b = int(np.argmax(hops_a))
    hops_b, back = _walk(nb, b)
    path = [a]
    while path[-1] != b:
        path.append(int(back[path[-1]]))
    return path[len(path) // 2]


def _earlier(candidates, placed: np.ndarray, t: int, exclude: tuple) -> int:
    """The first-placed candidate placed before step ``t`` and not excluded, or -1."""
    best = -1
    for c in candidates:
        if c not in exclude and 0 <= placed[c] < t and (best < 0 or placed[c] < placed[best]):
            best = c
    return best


def _signed_angles(x, i, j, k):
    """Turning angle at j from the direction j->k to j->i, in (-pi, pi] (2D)."""
    xp = geometry.array_namespace(x)
    take, back = geometry._atom_getter(x)
    centre = take(j)
    a, b = take(k) - centre, take(i) - centre
    cross = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    return back(xp.arctan2(cross, xp.sum(a * b, axis=-1)))


def to_internal(x, zm: ZMatrix) -> dict:
    """Bond lengths, angles and dihedrals of frames (..., N, D) along a Z-matrix.

    Returns
    -------
    dict
        ``bonds`` (..., N - 1), ``angles`` (..., N - 2) in radians (3D: [0, pi]; 2D:
        signed, (-pi, pi]), and in 3D ``dihedrals`` (..., N - 3) in (-pi, pi]: the
        dihedral itself, or for a later sibling its phase (:attr:`ZMatrix.phase`);
        entry ``t - 1`` (``t - 2``, ``t - 3``) belongs to atom ``order[t]``.
    """
    order, refs = zm.order, zm.refs
    i = order[1:]
    out = {"bonds": geometry.pair_distances(x, np.stack([i, refs[1:, 0]], axis=1))}
    t = np.arange(2, zm.n_atoms)
    if zm.dim == 3:
        out["angles"] = geometry.bond_angles(x, np.stack([order[t], refs[t, 0], refs[t, 1]], 1))
        t3 = np.arange(3, zm.n_atoms)
        quads = np.stack([order[t3], refs[t3, 0], refs[t3, 1], refs[t3, 2]], axis=1)
        out["dihedrals"] = _to_phases(geometry.dihedrals(x, quads), zm)
    else:
        out["angles"] = _signed_angles(x, order[t], refs[t, 0], refs[t, 1])
    return out


def _to_phases(dihedrals, zm: ZMatrix):
    """Later siblings' dihedrals (..., N - 3) measured from their first sibling's."""
    if zm.n_phases == 0:
        return dihedrals
    xp = geometry.array_namespace(dihedrals)
    ref = zm.dihedral_reference
    mask = ref != np.arange(len(ref))
    diff = dihedrals - xp.take(dihedrals, xp.asarray(ref), axis=-1)
    return xp.where(xp.asarray(mask), xp.arctan2(xp.sin(diff), xp.cos(diff)), dihedrals)


def _from_phases(dihedrals, zm: ZMatrix):
    """Inverse of :func:`_to_phases`: absolute dihedrals (..., N - 3)."""
    if zm.n_phases == 0:
        return dihedrals
    xp = geometry.array_namespace(dihedrals)
    ref = zm.dihedral_reference
    mask = ref != np.arange(len(ref))
    return xp.where(
        xp.asarray(mask), dihedrals + xp.take(dihedrals, xp.asarray(ref), axis=-1), dihedrals
    )


def to_cartesian(internal: dict, zm: ZMatrix):
    """Rebuild frames (..., N, D) from internal coordinates (NeRF), in JAX.

    Parameters
    ----------
    internal : dict
        As :func:`to_internal` returns (NumPy or JAX arrays, any leading axes).
    zm : ZMatrix

    Returns
    -------
    jax.Array (..., N, D)
        Differentiable in every internal coordinate; the first atom at the origin.
    """

    bonds = jnp.asarray(internal["bonds"])
    angles = jnp.asarray(internal["angles"])
    lead, dtype, n, d = bonds.shape[:-1], bonds.dtype, zm.n_atoms, zm.dim
    zeros = jnp.zeros(lead, dtype)
    x = jnp.zeros((*lead, n, d), dtype)
    o, refs = zm.order, zm.refs
    # the first atoms: root at the origin, the second along x, the third in the xy plane
    first = jnp.stack([bonds[..., 0], *([zeros] * (d - 1))], axis=-1)
    x = x.at[..., o[1], :].set(first)
    j2, k2 = refs[2, 0], refs[2, 1]
    a2 = angles[..., 0]
    along = x[..., k2, :] - x[..., j2, :]
    along = along / jnp.linalg.norm(along, axis=-1, keepdims=True)
    perp = jnp.stack([-along[..., 1], along[..., 0], *([zeros] * (d - 2))], axis=-1)
    third = x[..., j2, :] + bonds[..., 1:2] * (
        jnp.cos(a2)[..., None] * along + jnp.sin(a2)[..., None] * perp
    )
    x = x.at[..., o[2], :].set(third)
    if n == 3:
        return x
    steps = np.arange(3, n)
    r = jnp.moveaxis(bonds[..., 2:], -1, 0)
    theta = jnp.moveaxis(angles[..., 1:], -1, 0)
    phi = (
        jnp.moveaxis(_from_phases(jnp.asarray(internal["dihedrals"]), zm), -1, 0)
        if d == 3
        else jnp.zeros_like(theta)
    )
    xs = (jnp.asarray(o[steps]), jnp.asarray(refs[steps]), r, theta, phi)

    def place(x, step):
        i, (j, k, h), r, theta, phi = step
        xj, xk = x[..., j, :], x[..., k, :]
        bc = xj - xk
        bc = bc / jnp.linalg.norm(bc, axis=-1, keepdims=True)
        if d == 2:
            c, s = jnp.cos(theta), jnp.sin(theta)  # turn from j->k by the signed angle
            back = -bc
            direction = jnp.stack(
                [c * back[..., 0] - s * back[..., 1], s * back[..., 0] + c * back[..., 1]], -1
            )
            return x.at[..., i, :].set(xj + r[..., None] * direction), None
        ab = xk - x[..., h, :]
        nrm = jnp.cross(ab, bc)
        nrm = nrm / jnp.linalg.norm(nrm, axis=-1, keepdims=True)
        m = jnp.cross(nrm, bc)
        local = (
            -r * jnp.cos(theta),
            r * jnp.sin(theta) * jnp.cos(phi),
            r * jnp.sin(theta) * jnp.sin(phi),
        )
        pos = xj + local[0][..., None] * bc + local[1][..., None] * m + local[2][..., None] * nrm
        return x.at[..., i, :].set(pos), None

    x, _ = jax.lax.scan(place, x, xs)
    return x
