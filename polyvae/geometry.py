"""Array kernels of molecular geometry, for NumPy and JAX arrays alike.

Every formula polyvae uses on coordinates lives here once: atom pairs and the bond
graph, pair distances, centre of mass, centring, rotation, principal axes, Kabsch
superposition, radius of gyration, bond angles, dihedrals, and the chiral centres of
the bond graph with their handedness. The public, validating
functions (:mod:`polyvae.features.pipeline`, :mod:`polyvae.analysis.structure`) check their
arguments and call these; the model, the optimizer and the exports call them directly.

Kernels trust their arguments: positions ``x`` of shape (..., N, D) (D = 2 or 3; any
leading frame axes), weights ``w`` (N,) that sum to 1, index arrays of int64. A kernel
given a JAX array (also a tracer inside ``jit`` or ``grad``) computes with
``jax.numpy`` and stays differentiable; given NumPy arrays it computes with NumPy.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix, identity
from scipy.sparse.csgraph import shortest_path
from scipy.spatial import cKDTree

__all__ = [
    "array_namespace",
    "all_pairs",
    "chain_bonds",
    "bond_graph_distances",
    "nonbonded_pairs",
    "neighbours",
    "angle_triples",
    "dihedral_quads",
    "mass_weights",
    "pair_distances",
    "center_of_mass",
    "centered",
    "rotate",
    "principal_axes",
    "kabsch_rotation",
    "radius_of_gyration",
    "bond_angles",
    "dihedrals",
    "element_symbol",
    "chiral_centres",
    "signed_volumes",
    "chirality",
    "bonded_within",
    "pair_codes",
    "pairs_not_excluded",
    "close_pairs",
    "closest_nonbonded",
    "closest_contact",
    "ALL_PAIRS_LIMIT",
]

_CHUNK_ELEMENTS = 1 << 22  # float64 elements per (t, P, D) temporary of NumPy pair distances

ALL_PAIRS_LIMIT = 1 << 14
"""Up to this many pairs to search, :func:`closest_nonbonded` measures every pair, a block
of structures at a time (small molecules: no neighbour search per structure); beyond,
a k-d tree per structure keeps memory linear in the atom count."""


def array_namespace(*arrays: Any):
    """``jax.numpy`` if any argument is a JAX array (or tracer), else ``numpy``.

    JAX is only looked up if already imported, which a JAX argument implies.
    """
    jax = sys.modules.get("jax")
    if jax is not None and any(isinstance(a, jax.Array) for a in arrays):
        return jax.numpy
    return np


# ---- index sets ----------------------------------------------------------------------
def all_pairs(n_atoms: int) -> np.ndarray:
    """All index pairs ``i < j`` in row-major order: (N (N - 1) / 2, 2) int64."""
    i, j = np.triu_indices(int(n_atoms), k=1)
    return np.stack([i, j], axis=1).astype(np.int64)


def chain_bonds(n_atoms: int) -> np.ndarray:
    """Bonds ``(i, i + 1)`` of a linear chain: (N - 1, 2) int64."""
    i = np.arange(max(int(n_atoms) - 1, 0), dtype=np.int64)
    return np.stack([i, i + 1], axis=1)


def bond_graph_distances(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """Number of bonds on the shortest path between every two atoms: (N, N) float.

    0 on the diagonal, ``inf`` between atoms that no path of bonds joins. Pairs at
    distance 1, 2, 3 are the 1-2, 1-3 and 1-4 pairs of a force field.
    """

    n = int(n_atoms)
    b = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n, n))
    return shortest_path(graph, directed=False, unweighted=True)


def nonbonded_pairs(n_atoms: int, bonds: np.ndarray, exclude: int = 1) -> np.ndarray:
    """Pairs ``i < j`` more than ``exclude`` bonds apart, row-major: (P, 2) int64.

    ``exclude=1`` leaves out bonded pairs, 2 also angle (1-3) pairs, 3 also 1-4 pairs.
    """
    pairs = all_pairs(n_atoms)
    if exclude == 1:  # the common case without a graph search
        b = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
        bonded = np.zeros((n_atoms, n_atoms), dtype=bool)
        bonded[b[:, 0], b[:, 1]] = bonded[b[:, 1], b[:, 0]] = True
        return pairs[~bonded[pairs[:, 0], pairs[:, 1]]]
    hops = bond_graph_distances(n_atoms, bonds)
    return pairs[hops[pairs[:, 0], pairs[:, 1]] > exclude]


def neighbours(n_atoms: int, bonds: np.ndarray) -> list[list[int]]:
    """The atoms bonded to each atom, in ascending order."""
    nb: list[set[int]] = [set() for _ in range(int(n_atoms))]
    for i, j in np.asarray(bonds, dtype=np.int64).reshape(-1, 2):
        nb[i].add(int(j))
        nb[j].add(int(i))
    return [sorted(v) for v in nb]


def angle_triples(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """Every bond angle ``(i, j, k)`` with ``j`` bonded to ``i`` and ``k``, ``i < k``: (A, 3)."""
    out = [
        (i, j, k)
        for j, nb in enumerate(neighbours(n_atoms, bonds))
        for a, i in enumerate(nb)
        for k in nb[a + 1 :]
    ]
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


def dihedral_quads(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """Every proper dihedral ``(i, j, k, l)`` along bonded paths i-j-k-l, once each: (Q, 4)."""
    nb = neighbours(n_atoms, bonds)
    out = set()
    for j, k in np.asarray(bonds, dtype=np.int64).reshape(-1, 2):
        for i in nb[j]:
            for m in nb[k]:
                if len({i, int(j), int(k), m}) == 4:
                    quad = (i, int(j), int(k), m)
                    out.add(min(quad, quad[::-1]))
    return np.asarray(sorted(out), dtype=np.int64).reshape(-1, 4)


def element_symbol(label: str) -> str:
    """Element symbol from an atom name or element: ``"CA"`` -> C, ``"1HB"`` -> H, ``"Cl"`` -> Cl.

    Digits and symbols are dropped; a second lower-case letter is kept (``"Cl"``,
    ``"Br"``), otherwise the first letter is the element, as in biomolecular naming
    (an upper-case ``"CL"`` reads as carbon).
    """
    letters = re.sub(r"[^A-Za-z]", "", str(label))
    if len(letters) >= 2 and letters[0].isupper() and letters[1].islower():
        return letters[:2]
    return letters[:1].upper()


def _branch(nb: list[list[int]], elements: list[str], atom: int, parent: int, depth: int):
    """The bond tree seen from ``atom`` away from ``parent``, ``depth`` bonds deep, as a
    nested tuple that does not depend on atom numbering."""
    if depth == 0:
        return (elements[atom],)
    children = sorted(_branch(nb, elements, c, atom, depth - 1) for c in nb[atom] if c != parent)
    return (elements[atom], tuple(children))


def chiral_centres(n_atoms: int, bonds: np.ndarray, names, depth: int = 6) -> np.ndarray:
    """Stereocentres: atoms with 4 bonded neighbours whose four branches all differ.

    Each neighbour's branch is the tree of bonds leading away from the centre, with
    atoms labelled by element (:func:`element_symbol` of ``names``), compared out to
    ``depth`` bonds. This finds tetrahedral centres such as the Cα of amino acids
    other than glycine; it does not find centres whose branches differ only beyond
    ``depth`` bonds, nor by isotope or bond order.

    Returns
    -------
    ndarray (C, 4) of int64
        Rows ``(centre, a, b, c)``: the centre and its three lowest-numbered neighbours,
        the quads for :func:`chirality`.
    """
    nb = neighbours(n_atoms, bonds)
    elements = [element_symbol(s) for s in names]
    out = []
    for centre, around in enumerate(nb):
        if len(around) != 4:
            continue
        branches = {_branch(nb, elements, a, centre, depth) for a in around}
        if len(branches) == 4:
            out.append((centre, *around[:3]))
    return np.asarray(out, dtype=np.int64).reshape(-1, 4)


# ---- kernels on positions --------------------------------------------------------------
def mass_weights(masses: np.ndarray | None, n_atoms: int) -> np.ndarray:
    """Masses normalized to sum 1 (equal weights when ``masses`` is None), float64."""
    if masses is None:
        return np.full(int(n_atoms), 1.0 / int(n_atoms))
    m = np.asarray(masses, dtype=np.float64)
    return m / m.sum()


def _atom_getter(x):
    """``(take, back)``: ``take(idx)`` gives the positions of atoms ``idx`` and ``back`` puts
    the atom axis of a per-atom-set result where callers expect it, (..., K).

    JAX arrays are gathered along a leading atom axis: the gradient's scatter then adds
    whole rows (every frame at once), several times faster on CPU than per-frame
    3-vectors. NumPy arrays are indexed as they are.
    """
    xp = array_namespace(x)
    if xp is np:
        return (lambda idx: x[..., idx, :]), (lambda r: r)
    xt = xp.moveaxis(x, -2, 0)
    return (lambda idx: xt[idx]), (lambda r: xp.moveaxis(r, 0, -1))


def pair_distances(x, pairs: np.ndarray):
    """Distances ``|x_i - x_j|`` of atom pairs: (..., N, D) -> (..., P).

    NumPy input is processed in blocks of frames, so the (frames, P, D) temporary
    stays bounded for long trajectories.
    """
    xp = array_namespace(x)
    i, j = pairs[:, 0], pairs[:, 1]
    if xp is not np:
        take, back = _atom_getter(x)
        diff = take(i) - take(j)
        return back(xp.sqrt(xp.sum(diff * diff, axis=-1)))
    x = np.asarray(x)
    if x.ndim != 3:
        return np.linalg.norm(x[..., i, :] - x[..., j, :], axis=-1)
    out = np.empty((x.shape[0], len(pairs)), dtype=np.result_type(x.dtype, np.float32))
    step = max(1, _CHUNK_ELEMENTS // max(1, len(pairs) * x.shape[2]))
    for start in range(0, x.shape[0], step):
        block = x[start : start + step]
        diff = block[:, i] - block[:, j]
        out[start : start + step] = np.sqrt(np.einsum("tpd,tpd->tp", diff, diff))
    return out


def center_of_mass(x, w):
    """Weighted centre (..., D) of positions (..., N, D) with weights ``w`` (N,) summing to 1."""
    xp = array_namespace(x, w)
    return xp.sum(w[:, None] * x, axis=-2) if xp is not np else w @ x


def centered(x, w):
    """Positions translated so that their weighted centre is at the origin."""
    return x - center_of_mass(x, w)[..., None, :]


def rotate(x, rot):
    """Rows of ``x[t]`` rotated by ``rot[t]``: ``x[t] @ rot[t].T``, (..., N, D)."""
    xp = array_namespace(x, rot)
    return x @ xp.swapaxes(rot, -1, -2)


def principal_axes(xc: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Rows: the sign-fixed principal axes of centred frames (T, N, D) -> (T, D, D), NumPy.

    Eigenvectors of the weighted gyration tensor, largest eigenvalue first; each axis
    but the last is oriented so that the weighted covariance between atom index and
    the projection on it is non-negative (for a chain: from the first towards the last
    atom), the last completes a right-handed frame.
    """
    n, d = xc.shape[1:]
    gyration = np.swapaxes(xc * w[:, None], 1, 2) @ xc
    _, evecs = np.linalg.eigh(gyration)  # ascending eigenvalues, vectors in columns
    axes = np.swapaxes(evecs[..., ::-1], 1, 2)  # rows, largest first
    index = np.arange(n, dtype=np.float64)
    index_c = (index - np.dot(w, index)) * w  # weighted centred atom index
    signs = np.where(index_c @ rotate(xc, axes) < 0, -1.0, 1.0)
    axes = axes * signs[:, :, None]
    if d == 2:
        axes[:, 1] = np.stack([-axes[:, 0, 1], axes[:, 0, 0]], axis=-1)
    else:
        axes[:, 2] = np.cross(axes[:, 0], axes[:, 1])
    return axes


def kabsch_rotation(p, q, w):
    """Proper rotations R (..., D, D) minimizing ``sum_i w_i |R p_i - q_i|^2`` (centred p, q).

    ``p`` (..., N, D) mobile, ``q`` (N, D) or (..., N, D) reference; ``rotate(p, R)``
    superimposes p on q. Reflections are excluded (Kabsch with the determinant fix).
    """
    xp = array_namespace(p, q, w)
    h = xp.swapaxes(p * w[:, None], -1, -2) @ q  # covariance, mobile x reference
    u, _, vt = xp.linalg.svd(h)
    d = xp.sign(xp.linalg.det(u @ vt))
    d = xp.where(d == 0, 1.0, d)
    fix = xp.concatenate([xp.ones(h.shape[:-1])[..., :-1], d[..., None]], axis=-1)
    return xp.swapaxes(vt, -1, -2) @ (fix[..., :, None] * xp.swapaxes(u, -1, -2))


def radius_of_gyration(x, w):
    """Weighted radius of gyration (...,) of positions (..., N, D).

    The square root is guarded so that the JAX gradient is finite everywhere (zero
    where all atoms coincide).
    """
    xp = array_namespace(x, w)
    msd = xp.sum(w * xp.sum(centered(x, w) ** 2, axis=-1), axis=-1)
    positive = msd > 0
    return xp.where(positive, xp.sqrt(xp.where(positive, msd, 1.0)), 0.0)


def bond_angles(x, triples: np.ndarray):
    """Angle at atom ``j`` of every triple ``(i, j, k)``, radians in [0, pi]: (..., A)."""
    xp = array_namespace(x)
    take, back = _atom_getter(x)
    centre = take(triples[:, 1])
    a, b = take(triples[:, 0]) - centre, take(triples[:, 2]) - centre
    cos = xp.sum(a * b, axis=-1)
    if x.shape[-1] == 2:
        sin = xp.abs(a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0])
    else:
        sin = xp.sqrt(xp.sum(xp.cross(a, b) ** 2, axis=-1))
    return back(xp.arctan2(sin, cos))


def dihedrals(x, quads: np.ndarray):
    """Dihedral of every quad ``(i, j, k, l)`` (IUPAC sign), radians in (-pi, pi]: (..., Q).

    3D positions only.
    """
    xp = array_namespace(x)
    take, back = _atom_getter(x)
    p1, p2 = take(quads[:, 1]), take(quads[:, 2])
    b0, b1, b2 = take(quads[:, 0]) - p1, p2 - p1, take(quads[:, 3]) - p2
    b1 = b1 / xp.sqrt(xp.sum(b1 * b1, axis=-1, keepdims=True))
    v = b0 - xp.sum(b0 * b1, axis=-1, keepdims=True) * b1
    u = b2 - xp.sum(b2 * b1, axis=-1, keepdims=True) * b1
    return back(xp.arctan2(xp.sum(xp.cross(b1, v) * u, axis=-1), xp.sum(v * u, axis=-1)))


def signed_volumes(x, quads: np.ndarray):
    """Signed volume ``(a - o) . ((b - o) x (c - o))`` of every quad ``(o, a, b, c)``: (..., C).

    3D positions only; it changes sign under a mirror image.
    """
    xp = array_namespace(x)
    take, back = _atom_getter(x)
    o = take(quads[:, 0])
    a, b, c = (take(quads[:, k]) - o for k in (1, 2, 3))
    return back(xp.sum(a * xp.cross(b, c), axis=-1))


def chirality(x, quads: np.ndarray):
    """Handedness of every chiral centre ``(centre, a, b, c)``: +1, -1 (0 if planar), (..., C).

    The sign of :func:`signed_volumes`; quads from :func:`chiral_centres`.
    """
    xp = array_namespace(x)
    return xp.sign(signed_volumes(x, quads))


# ---- neighbour lists: memory linear in the atom count ---------------------------------
def bonded_within(n_atoms: int, bonds: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``i < j`` joined by a path of at most ``depth`` bonds, with their bond count.

    A breadth-first walk of ``depth`` steps from every atom over a sparse graph: memory
    grows with the number of such pairs (a few dozen per atom), never with N².

    Returns
    -------
    pairs : ndarray (E, 2) of int64
        Sorted row-major.
    hops : ndarray (E,) of int64
        Bonds on the shortest path, 1..depth.
    """

    n = int(n_atoms)
    b = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    adj = coo_matrix((np.ones(len(b), np.int8), (b[:, 0], b[:, 1])), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.int32)
    reached = identity(n, dtype=np.int32, format="csr")
    frontier = reached
    codes, hops = [], []
    for h in range(1, int(depth) + 1):
        grown = ((frontier @ adj) > 0).astype(np.int32)
        new = (grown - grown.multiply(reached)).tocoo()
        keep = new.row < new.col
        codes.append(new.row[keep].astype(np.int64) * n + new.col[keep])
        hops.append(np.full(int(keep.sum()), h, np.int64))
        reached = ((reached + new.tocsr()) > 0).astype(np.int32)
        frontier = reached
    code = np.concatenate(codes) if codes else np.zeros(0, np.int64)
    hop = np.concatenate(hops) if hops else np.zeros(0, np.int64)
    order = np.argsort(code, kind="stable")
    code, hop = code[order], hop[order]
    return np.stack([code // n, code % n], axis=1), hop


def pair_codes(pairs: np.ndarray, n_atoms: int) -> np.ndarray:
    """One int64 per pair ``i < j``: ``i * N + j`` (sorted pairs give sorted codes)."""
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.minimum(p[:, 0], p[:, 1]) * int(n_atoms) + np.maximum(p[:, 0], p[:, 1])


def pairs_not_excluded(n_atoms: int, excluded: np.ndarray) -> np.ndarray:
    """All pairs ``i < j`` not ``excluded`` (sorted :func:`pair_codes`), row-major:
    (P, 2) int64, O(N²)."""
    pairs = all_pairs(n_atoms)
    if len(excluded) == 0:
        return pairs
    code = pair_codes(pairs, n_atoms)
    at = np.searchsorted(excluded, code).clip(max=len(excluded) - 1)
    return pairs[excluded[at] != code]


def close_pairs(
    x: np.ndarray, cutoff: float, excluded: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``i < j`` of one structure (N, D) closer than ``cutoff``, less ``excluded``.

    A k-d tree (SciPy's cKDTree): memory and time grow with N and the number of close
    pairs, not with N².

    Parameters
    ----------
    x : ndarray (N, D)
    cutoff : float
    excluded : ndarray (E,) of int64, optional
        Sorted :func:`pair_codes` of pairs to leave out (e.g. :func:`bonded_within`).

    Returns
    -------
    pairs : ndarray (P, 2) of int64
    distances : ndarray (P,)
    """

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    pairs = cKDTree(x).query_pairs(float(cutoff), output_type="ndarray").astype(np.int64)
    pairs = np.sort(pairs.reshape(-1, 2), axis=1)
    if excluded is not None and len(excluded) and len(pairs):
        code = pairs[:, 0] * n + pairs[:, 1]
        at = np.searchsorted(excluded, code).clip(max=len(excluded) - 1)
        pairs = pairs[excluded[at] != code]
    d = np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=-1)
    order = np.argsort(d, kind="stable")
    return pairs[order], d[order]


def closest_nonbonded(
    x: np.ndarray, excluded: np.ndarray, start: float, groups: np.ndarray | None = None
) -> np.ndarray:
    """The shortest distance of a pair not ``excluded``, per structure: (T,) for (T, N, D).

    Up to :data:`ALL_PAIRS_LIMIT` pairs, measures them all, a block of finite structures
    at a time; beyond, searches pairs closer than ``start`` and doubles the cutoff until
    one is found, so it never forms all N² pairs. Both measure a distance alike (as
    :func:`close_pairs` does) and give the same numbers. ``inf`` for a structure whose
    every pair is excluded.
    """
    x = np.asarray(x, dtype=np.float64)
    lead = x.shape[:-2]
    flat = x.reshape((-1,) + x.shape[-2:])
    n = flat.shape[1]
    total = n * (n - 1) // 2 - len(excluded)
    out = np.full(len(flat), np.inf)
    if total <= 0:
        return out.reshape(lead)
    if total <= ALL_PAIRS_LIMIT and np.isfinite(flat).all():
        return _closest_of_pairs(flat, pairs_not_excluded(n, excluded)).reshape(lead)
    span = float(np.ptp(flat, axis=1).max()) if len(flat) else 0.0
    for t, frame in enumerate(flat):
        cutoff = float(start)
        while True:
            _, d = close_pairs(frame, cutoff, excluded)
            if len(d) or cutoff > 2.0 * span + float(start):
                break
            cutoff *= 2.0
        out[t] = d[0] if len(d) else np.inf
    return out.reshape(lead)


def _closest_of_pairs(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The shortest of the ``pairs``' distances in each structure: (T,) for ``x`` (T, N, D)
    float64, a block of structures at a time."""
    i, j = pairs[:, 0], pairs[:, 1]
    out = np.empty(len(x))
    step = max(1, _CHUNK_ELEMENTS // max(1, len(pairs) * x.shape[2]))
    for start in range(0, len(x), step):
        block = x[start : start + step]
        # measured as close_pairs measures a pair, so that both ways agree bit for bit
        out[start : start + step] = np.linalg.norm(block[:, i] - block[:, j], axis=-1).min(axis=1)
    return out


def closest_contact(x: np.ndarray, bonds: np.ndarray, exclude: int = 1) -> np.ndarray:
    """The shortest distance between atoms more than ``exclude`` bonds apart, per structure.

    The pairs of :func:`nonbonded_pairs` (``exclude=1``: all but the bonds; 2 also
    leaves out 1-3 pairs, 3 also 1-4 pairs), found with :func:`closest_nonbonded` from
    the median bond length of the first structure outwards: memory grows with N, not N².

    Returns
    -------
    ndarray (...,) for x (..., N, D)
        ``inf`` where no pair is more than ``exclude`` bonds apart.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-2]
    b = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    near, _ = bonded_within(n, b, exclude)
    first = x.reshape((-1,) + x.shape[-2:])[:1]
    start = float(np.median(pair_distances(first, b))) if len(b) and len(first) else 0.0
    if not (np.isfinite(start) and start > 0):  # no bonds, or bonds of length 0
        start = max(float(np.ptp(first, axis=1).max()), 1.0) if len(first) else 1.0
    return closest_nonbonded(x, pair_codes(near, n), start)
