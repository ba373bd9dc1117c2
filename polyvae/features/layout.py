"""The internal-coordinate decoder: its features, its likelihood and its rebuild.

With ``decoder="internal"`` the VAE's decoder gives, for every latent point, two
descriptions of the molecule: its aligned Cartesian coordinates (which fix its global
shape) and its internal coordinates along a Z-matrix (:mod:`polyvae.features.internal`): bond
lengths, bond angles and, in 3D, dihedrals; in 2D the angles are signed turning
angles. Each has its own learned noise scales and both enter the likelihood, a product
of two experts on the same frame:

- *Cartesian* coordinates and *linear* internal coordinates (bond lengths, 3D bond
  angles) are standardized and normally distributed;
- *circular* coordinates (dihedrals, 2D turning angles) are kept in radians, relative
  to their circular mean and wrapped to (-pi, pi], and follow a wrapped normal
  distribution.

A structure is the most probable one under both experts: :meth:`InternalLayout.refine`
minimizes the two experts' energies with L-BFGS (optax, in JAX, batched and compiled)
from the better of two starts; for generated structures
(:meth:`InternalLayout.refine_jit`) each one stops once it passes the model's structure
checks, so that minimizing does not pull every draw to its mode and narrow the ensemble. Where the internal
scales are tight (bonds, angles) the structure takes the internal values; where the
Cartesian scales are tight relative to what many small internal changes add up to (the
far ends of a long chain) it keeps the Cartesian shape, so errors do not build up along
the chain as they do when a structure is rebuilt from internal coordinates alone.
A generated structure perturbs both experts' means with their noise and then takes the
most probable structure (perturb and minimize), which samples the product exactly for
Gaussian experts on linear coordinates. The minimization starts from the unperturbed
Cartesian mean (``start``): independent noise on every Cartesian coordinate (half an
ångström and more for the mobile parts of a protein) mirrors stereocentres and tangles
side chains in the start, which no local minimization undoes, while as a force on the
structure it only shifts the minimum within the start's basin.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from polyvae import geometry
from polyvae.features.internal import ZMatrix, to_cartesian, to_internal, zmatrix

__all__ = [
    "InternalLayout",
    "FeatureKinds",
    "REFINE_STEPS",
    "REFINE_ROUND",
    "REFINE_RESTRAINED",
    "REFINE_MAX_STEP",
    "CONTACT_SKIN",
    "CHIRAL_HANDEDNESS",
    "MIRRORED_REACH",
    "CARTESIAN_WEIGHTS",
    "STIFF_TORSION",
    "STIFF_RANGE",
]

CARTESIAN_WEIGHTS = (0.0, 0.1, 0.3, 1.0)
"""The weights of the Cartesian expert that training chooses from."""

REFINE_STEPS = 150
"""L-BFGS iterations of :meth:`InternalLayout.refine`."""

REFINE_ROUND = 5
"""L-BFGS iterations of :meth:`InternalLayout.refine_jit` between two searches for the
contact pairs to repel and two questions whether a structure is done."""

REFINE_RESTRAINED = 50
"""The first L-BFGS iterations of :meth:`InternalLayout.refine`, which hold chiral
centres on the internal expert's side (a multiple of :data:`REFINE_ROUND`); also the
length of a round of the JAX :meth:`InternalLayout.refine`."""

REFINE_MAX_STEP = 0.2
"""The longest move of an atom in one L-BFGS iteration of :meth:`InternalLayout.refine`,
in bond lengths (the median bond of the molecule)."""

CHIRAL_HANDEDNESS = 0.2
"""Branched atoms whose rebuilt handedness (signed volume over the bond lengths'
product; about 0.5 when tetrahedral) exceeds this in magnitude keep their side in
:meth:`InternalLayout.refine`."""

MIRRORED_REACH = 2
"""Where the Cartesian expert (its draw or its mean) has a chiral centre on the other
side than the internal expert, :meth:`InternalLayout.refine` drops the Cartesian
expert's term for the atoms within this many bonds of the centre."""

CONTACT_SKIN = 0.03
"""The refinement repels contact pairs below their class's closest training distance
widened by this fraction, so the small overlap that balances a pair pushed together
leaves it above the distance the structure checks require."""

STIFF_TORSION = math.radians(20.0)
"""A dihedral whose circular standard deviation in training is below this (radians) is
stiff: a redundant coordinate of the decoder where the Z-matrix does not build it
(:attr:`InternalLayout.extra_torsions`). Peptide bonds (O-C-N-H about 8-10° in MD),
aromatic rings and double bonds are; rotamers and backbone phi/psi are not."""

STIFF_RANGE = math.radians(25.0)
"""How far a stiff torsion may lie from its training mean in a structure that
:meth:`InternalLayout.stiff_in_range` accepts, the structures that
:meth:`InternalLayout.refine_jit` may let go: all of alanine dipeptide's peptide-bond
torsions are this close in 96 % of MD frames (within 20°: 88 %), and its generated
structures then as planar as MD's (99th percentile of O-C-N-H 26° from planar, MD's
26°; within 30°: 30°)."""

_REFINE_BLOCK = 256
_ALL_PAIRS_CONTACTS = 1 << 16  # up to this many atom pairs, contacts without neighbour lists
_REFINE_BLOCK_ATOMS = 1 << 16  # atoms of all structures refined at once (memory)

_LOG_2PI = math.log(2.0 * math.pi)
_TWO_PI = 2.0 * math.pi


def _wrap(xp, a):
    """Angles to (-pi, pi]."""
    return xp.arctan2(xp.sin(a), xp.cos(a))


def _take(a, idx: np.ndarray, max_runs: int = 8):
    """``a[..., idx]`` for sorted indices known when tracing: slices of their contiguous
    runs (a gather costs more than a few slices on CPU)."""
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    runs = np.split(idx, breaks)
    if len(runs) > max_runs:
        return a[..., idx]
    parts = [a[..., int(r[0]) : int(r[-1]) + 1] for r in runs]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


def _circular_mean(a: np.ndarray) -> np.ndarray:
    return np.arctan2(np.sin(a).mean(axis=0), np.cos(a).mean(axis=0))


@dataclass(frozen=True)
class FeatureKinds:
    """The kind of every decoder feature: what the likelihood and sampling need.

    Compared and hashed by value, so models of the same molecule share their compiled
    training steps whatever their fitted centres and scales.

    Attributes
    ----------
    n_cartesian : int
        The first ``N * D`` features are Cartesian (linear).
    circular, rigid : tuple of bool (Q,)
        Per internal feature: on the circle; held at its training value.
    """

    n_cartesian: int
    circular: tuple
    rigid: tuple

    @property
    def n_features(self) -> int:
        return self.n_cartesian + len(self.circular)

    def _masks(self):

        pad = (False,) * self.n_cartesian
        return jnp.asarray(pad + self.circular, bool), jnp.asarray(pad + self.rigid, bool)

    def _free(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the linear and of the circular features that are not rigid."""

        circ = np.asarray((False,) * self.n_cartesian + self.circular, bool)
        rigid = np.asarray((False,) * self.n_cartesian + self.rigid, bool)
        return np.flatnonzero(~circ & ~rigid), np.flatnonzero(circ & ~rigid)

    def log_likelihood(self, x, mean, log_sigma):
        """log p(x | mean, sigma) of all decoder features, summed, shape (...,), in JAX.

        Normal for linear features; wrapped normal for circular ones (the three nearest
        windings, exact to float32 precision for sigma below about 1.5 rad); rigid
        features add nothing. The kinds are known when the function is traced, so each
        feature computes only its own kind's terms.
        """

        linear, circular = self._free()
        log_sigma = jnp.broadcast_to(log_sigma, jnp.shape(mean)[-1:])
        total = 0.0
        if len(linear):
            ls = _take(log_sigma, linear)
            r = (_take(x, linear) - _take(mean, linear)) * jnp.exp(-ls)
            total = -0.5 * jnp.sum(r**2, axis=-1) - jnp.sum(ls, axis=-1)
        if len(circular):
            ls = _take(log_sigma, circular)
            d = _take(x, circular) - _take(mean, circular)
            d = d - _TWO_PI * jnp.round(d / _TWO_PI)  # in [-pi, pi]: the nearest winding
            inv_var = jnp.exp(-2.0 * ls)
            # log of the three nearest windings' sum, relative to the nearest one
            far = jnp.exp(-_TWO_PI * inv_var * (math.pi - d)) + jnp.exp(
                -_TWO_PI * inv_var * (math.pi + d)
            )
            windings = -0.5 * d**2 * inv_var + jnp.log1p(far)
            total = total + jnp.sum(windings - ls, axis=-1)
        return total - 0.5 * _LOG_2PI * (len(linear) + len(circular))

    def sample(self, mean, log_sigma, eps):
        """A draw of every decoder feature from standard-normal ``eps`` (..., F)."""

        circ, rigid = self._masks()
        draw = mean + jnp.where(rigid, 0.0, jnp.exp(log_sigma) * eps)
        return jnp.where(circ, _wrap(jnp, draw), draw)


@dataclass(frozen=True, eq=False)
class InternalLayout:
    """Fitted description of the internal coordinates of a molecule.

    Attributes
    ----------
    zmatrix : ZMatrix
        Build order and reference atoms.
    circular : ndarray (Q,) of bool
        Which internal coordinates are angles on the circle (dihedrals; 2D turning
        angles).
    center, scale : ndarray (Q,)
        Linear coordinates: training mean and standard deviation. Circular ones:
        circular mean and 1.
    contact_min : ndarray (2,)
        The closest two atoms came in the training frames, for 1-4 pairs (three bonds
        apart) and for pairs further apart (``inf`` where a molecule has none);
        :meth:`refine` repels pairs that come closer. The pairs themselves are found
        per structure with a neighbour list (:meth:`near_pairs`), never all of them.
    rigid : ndarray (Q,) of bool
        Linear coordinates that do not vary in training (bonds constrained in the
        simulation): the decoder gives their training value, without noise and without a
        likelihood term; :meth:`refine` holds them at 0.1 % of their value.
    extra_angles : ndarray (E, 3) of int
        Bond angles ``(i, j, k)`` that the Z-matrix does not build (between later
        siblings, e.g. H2-C-H3 of a methyl group, and around ring closures): redundant
        internal coordinates, measured and predicted like the others but not used by
        the NeRF rebuild. They give the refinement each bond angle of the molecule,
        so angles between siblings keep their own spread instead of adding up the
        noise of the coordinates they depend on.
    extra_bonds : ndarray (E, 2) of int
        The bonds that close rings (:attr:`ZMatrix.ring_bonds`): the Z-matrix does not
        build them, so their lengths are redundant internal coordinates too, and an
        aromatic ring's closing bond keeps its length.
    extra_torsions : ndarray (E, 4) of int
        Dihedrals ``(i, j, k, l)`` along bonds that the Z-matrix does not build and that
        stay within about :data:`STIFF_TORSION` of their mean in training: O-C-N-H and
        O-C-N-CA of peptide bonds, the torsions of aromatic rings, those around double
        bonds. Redundant circular coordinates like :attr:`extra_angles`: they keep
        planar groups as planar as in training, where the built dihedrals (omega, the
        phases of the N-H and C=O) would add up their noise.
    cartesian_weight : float
        Weight of the Cartesian expert in :meth:`refine` (0: the structure is rebuilt
        from the internal coordinates alone). :func:`polyvae.training.trainer.train` chooses it
        after training, as the one of :data:`CARTESIAN_WEIGHTS` whose generated
        structures match the held-out frames' pair distances best.

    The decoder's features are the ``N * D`` standardized Cartesian coordinates
    followed by the Q internal features (:attr:`n_features` in all). Instances compare
    and hash by identity; the training step depends only on :attr:`kinds` and the
    compiled :meth:`refine` only on the Z-matrix and the masks, so both are shared by
    models of the same molecule.
    """

    zmatrix: ZMatrix
    circular: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    contact_min: np.ndarray
    rigid: np.ndarray
    cartesian_weight: float = 1.0
    extra_angles: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    extra_torsions: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    extra_bonds: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    @property
    def n_internal(self) -> int:
        return int(self.circular.size)

    @property
    def n_cartesian(self) -> int:
        return self.zmatrix.n_atoms * self.zmatrix.dim

    @property
    def n_features(self) -> int:
        return self.n_cartesian + self.n_internal

    @property
    def n_atoms(self) -> int:
        return self.zmatrix.n_atoms

    @property
    def dim(self) -> int:
        return self.zmatrix.dim

    # ---- fitting and features ----------------------------------------------------------
    @classmethod
    def fit(cls, positions: np.ndarray, bonds=None) -> InternalLayout:
        """Fit on training frames (T, N, D); ``bonds`` as :func:`polyvae.features.internal.zmatrix`."""
        x = np.asarray(positions, dtype=np.float64)
        zm = zmatrix(x.shape[1], bonds, dim=x.shape[2])
        extra = _extra_angles(zm) if zm.dim == 3 else np.zeros((0, 3), np.int64)
        stiff = _extra_torsions(x, zm) if zm.dim == 3 else np.zeros((0, 4), np.int64)
        rings = np.asarray(zm.ring_bonds, np.int64).reshape(-1, 2)
        values = _measure(x, zm, extra, stiff, rings)
        circular = np.concatenate(
            [
                _circular_mask(zm),
                np.zeros(len(extra), bool),
                np.ones(len(stiff), bool),
                np.zeros(len(rings), bool),
            ]
        )
        center = np.where(circular, _circular_mean(values), values.mean(axis=0))
        std = values.std(axis=0)
        rigid = ~circular & (std <= 1e-4 * np.abs(center))
        scale = np.where(circular, 1.0, np.where(rigid, 1e-3 * np.abs(center), std))
        scale = np.where(scale > 0, scale, 1.0)
        layout = cls(
            zm, circular, center, scale, np.full(2, np.inf), rigid, 1.0, extra, stiff, rings
        )
        near, _ = layout._exclusions
        one_four = layout._one_four_pairs
        contact_min = np.full(2, np.inf)
        if len(one_four):
            contact_min[0] = geometry.pair_distances(x, one_four).min()
        start = float(np.median(center[: x.shape[1] - 1]))
        contact_min[1] = geometry.closest_nonbonded(x, layout._within_three, start).min()
        return replace(layout, contact_min=contact_min)

    def features(self, positions: np.ndarray) -> np.ndarray:
        """Internal features (T, Q) of frames (T, N, D), float32."""
        values = self.measure(np.asarray(positions, dtype=np.float64))
        out = np.where(self.circular, _wrap(np, values - self.center), values - self.center)
        return (out / self.scale).astype(np.float32)

    def values(self, features):
        """Internal features (..., Q) to internal coordinates (..., Q), radians for angles."""
        xp = geometry.array_namespace(features)
        center = xp.asarray(self.center, features.dtype)
        values = features * xp.asarray(self.scale, features.dtype) + center
        return xp.where(xp.asarray(self.rigid), center, values)

    def measure(self, positions):
        """Internal coordinates (..., Q) of positions (..., N, D), NumPy or JAX."""
        return _measure(
            positions, self.zmatrix, self.extra_angles, self.extra_torsions, self.extra_bonds
        )

    def rebuild(self, features):
        """Internal features (..., Q) to positions (..., N, D) by NeRF alone, in JAX.

        The first atom at the origin; errors add up along the chain (see
        :meth:`refine` for the structure the model gives).
        """
        v = self.values(features)
        n = self.n_atoms
        parts = {"bonds": v[..., : n - 1], "angles": v[..., n - 1 : 2 * n - 3]}
        if self.dim == 3:
            parts["dihedrals"] = v[..., 2 * n - 3 : 3 * n - 6]
        return to_cartesian(parts, self.zmatrix)

    def stiff_in_range(self, positions) -> np.ndarray:
        """Per structure of ``positions`` (..., N, D): whether every stiff torsion
        (:attr:`extra_torsions`) lies within :data:`STIFF_RANGE` of its training mean,
        bool (...,): the planarity of peptide bonds, aromatic rings and double bonds."""
        x = np.asarray(positions, np.float64)
        quads = self.extra_torsions
        if len(quads) == 0:
            return np.ones(x.shape[:-2], bool)
        first = self.n_internal - len(self.extra_bonds) - len(quads)
        center = self.center[first : first + len(quads)]
        off = _wrap(np, geometry.dihedrals(x, quads) - center)
        return np.all(np.abs(off) <= STIFF_RANGE, axis=-1)

    @property
    def kinds(self) -> FeatureKinds:
        """What the likelihood needs of the layout (compared by value)."""
        return FeatureKinds(
            self.n_cartesian,
            tuple(bool(v) for v in self.circular),
            tuple(bool(v) for v in self.rigid),
        )

    # ---- the structure ------------------------------------------------------------------
    @property
    def bonds(self) -> np.ndarray:
        """The molecule's bonds (B, 2): the Z-matrix's tree and its ring closures."""
        zm = self.zmatrix
        tree = np.stack([zm.order[1:], zm.refs[1:, 0]], axis=1)
        return np.concatenate([tree, zm.ring_bonds]).astype(np.int64)

    @cached_property
    def _exclusions(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted pair codes (:func:`polyvae.geometry.pair_codes`) of the 1-2 and 1-3
        pairs (never repelled) and of the 1-4 pairs."""
        pairs, hops = geometry.bonded_within(self.n_atoms, self.bonds, 3)
        codes = geometry.pair_codes(pairs, self.n_atoms)
        return codes[hops <= 2], codes[hops == 3]

    @cached_property
    def _one_four_pairs(self) -> np.ndarray:
        code = self._exclusions[1]
        return np.stack([code // self.n_atoms, code % self.n_atoms], axis=1)

    @cached_property
    def _within_three(self) -> np.ndarray:
        return np.sort(np.concatenate(self._exclusions))

    @cached_property
    def _chiral_quads(self) -> np.ndarray:
        """``(centre, a, b, c)`` (C, 4) for every atom with three or more bonded
        neighbours of which at most one ends a branch (its first three neighbours):
        the centres whose handedness :meth:`refine` keeps. Two or more end atoms
        (CH2, CH3, NH3) are most often alike, so their side is no stereocentre."""
        n = self.n_atoms
        if self.dim != 3:
            return np.zeros((0, 4), np.int64)
        neighbours = [[] for _ in range(n)]
        for i, j in self.bonds:
            neighbours[int(i)].append(int(j))
            neighbours[int(j)].append(int(i))
        ends = {i for i, nb in enumerate(neighbours) if len(nb) == 1}
        quads = [
            [c, *nb[:3]]
            for c, nb in enumerate(neighbours)
            if len(nb) >= 3 and sum(j in ends for j in nb) <= 1
        ]
        return np.asarray(quads, np.int64).reshape(-1, 4)

    @cached_property
    def _chiral_reach(self) -> np.ndarray:
        """(C, R) the atoms within :data:`MIRRORED_REACH` bonds of each centre of
        :attr:`_chiral_quads` (the centre included), padded with ``n_atoms``."""
        quads = self._chiral_quads
        nb = geometry.neighbours(self.n_atoms, self.bonds)
        rows = []
        for c in quads[:, 0]:
            seen, front = {int(c)}, {int(c)}
            for _ in range(MIRRORED_REACH):
                front = {j for i in front for j in nb[i]} - seen
                seen |= front
            rows.append(sorted(seen))
        width = max((len(r) for r in rows), default=0)
        out = np.full((len(rows), width), self.n_atoms, np.int64)
        for k, r in enumerate(rows):
            out[k, : len(r)] = r
        return out

    @cached_property
    def _tetrahedral(self) -> np.ndarray:
        """(C,) bool: centres of :attr:`_chiral_quads` with four bonded neighbours
        (sp3; three neighbours are most often a planar sp2 centre)."""
        degree = np.bincount(self.bonds.reshape(-1), minlength=self.n_atoms)
        return degree[self._chiral_quads[:, 0]] == 4

    def _mirrored(self, handed, x):
        """(..., C) bool: the tetrahedral centres of :attr:`_chiral_quads` that ``x``
        has on the other side than ``handed`` (the internal expert's) says."""

        have = _handedness(x, self._chiral_quads)
        chiral = (jnp.abs(handed) > CHIRAL_HANDEDNESS) & jnp.asarray(self._tetrahedral)
        return chiral & (jnp.sign(have) != jnp.sign(handed))

    def _grafted(self, x, rebuilt, mirrored):
        """``x`` (..., N, D) with the atoms around each ``mirrored`` centre (within
        :data:`MIRRORED_REACH` bonds) replaced by ``rebuilt``'s, superposed on them
        (a proper rotation, so the rebuilt handedness stays), and a (..., N) mask of
        the replaced atoms. Atoms near several such centres take the mean. Memory
        linear in the atom count (gathers and scatters of the neighbourhoods)."""

        n, reach = self.n_atoms, self._chiral_reach
        lead = x.shape[:-2]
        if reach.size == 0:
            return x, jnp.zeros(lead + (n,), x.dtype)
        idx = jnp.asarray(np.minimum(reach, n - 1))
        w = jnp.asarray(reach < n, x.dtype)  # (C, R): padding weighs nothing
        w = w / jnp.sum(w, axis=-1, keepdims=True)
        p, q = rebuilt[..., idx, :], x[..., idx, :]  # (..., C, R, D)
        pc = jnp.sum(p * w[..., None], axis=-2, keepdims=True)
        qc = jnp.sum(q * w[..., None], axis=-2, keepdims=True)
        h = jnp.swapaxes((p - pc) * w[..., None], -1, -2) @ (q - qc)
        u, _, vt = jnp.linalg.svd(h)
        d = jnp.sign(jnp.linalg.det(u @ vt))
        d = jnp.where(d == 0, 1.0, d)
        fix = jnp.concatenate([jnp.ones(h.shape[:-1])[..., :-1], d[..., None]], axis=-1)
        rot = jnp.swapaxes(vt, -1, -2) @ (fix[..., :, None] * jnp.swapaxes(u, -1, -2))
        local = (p - pc) @ jnp.swapaxes(rot, -1, -2) + qc  # (..., C, R, D)
        take = (mirrored[..., None] & (jnp.asarray(reach) < n)).astype(x.dtype)  # (..., C, R)
        flat = jnp.asarray(reach.reshape(-1))
        total = jnp.zeros(lead + (n + 1, x.shape[-1]), x.dtype)
        total = total.at[..., flat, :].add(
            (local * take[..., None]).reshape(lead + (-1, x.shape[-1]))
        )
        count = jnp.zeros(lead + (n + 1,), x.dtype).at[..., flat].add(take.reshape(lead + (-1,)))
        count, total = count[..., :n], total[..., :n, :]
        moved = count > 0
        out = jnp.where(moved[..., None], total / jnp.maximum(count, 1.0)[..., None], x)
        return out, moved.astype(x.dtype)

    @property
    def n_contacts(self) -> int:
        """K: contact pairs per structure that :meth:`refine` repels (the closest ones)."""
        n = self.n_atoms
        return int(min(n * (n - 1) // 2 - len(self._exclusions[0]), 8 * n))

    def near_pairs(self, positions) -> tuple[np.ndarray, np.ndarray]:
        """Per structure, the :attr:`n_contacts` closest pairs more than two bonds apart,
        from a neighbour list (NumPy; memory linear in the atom count).

        Parameters
        ----------
        positions : array (..., N, D)

        Returns
        -------
        pairs : ndarray (..., K, 2) of int32
            Atom indices, padded with ``(0, 0)`` where fewer pairs lie within reach.
        minimum : ndarray (..., K) float32
            The closest training distance of each pair's class (0 for padding).
        """
        pairs, kind = self._near_pair_kinds(positions, self._reach(np))
        return pairs, self._kind_minimum(np, self.contact_min, kind)

    def _reach(self, xp, contact_min=None, center=None):
        """How far apart pairs may start and still be repelled: the larger class
        minimum and one and a half bonds."""
        contact_min = self.contact_min if contact_min is None else contact_min
        center = self.center if center is None else center
        finite = xp.where(xp.isfinite(contact_min), contact_min, 0.0)
        return xp.max(finite) + 1.5 * xp.median(center[: self.n_atoms - 1])

    @staticmethod
    def _kind_minimum(xp, contact_min, kind):
        """The class minimum of each pair kind: 0 (1-4), 1 (further), 2 (padding: 0)."""
        table = xp.concatenate(
            [xp.where(xp.isfinite(contact_min), contact_min, 0.0), xp.zeros(1)]
        ).astype(xp.float32)
        return table[kind]

    @cached_property
    def _candidate_pairs(self) -> np.ndarray | None:
        """For a molecule of at most :data:`_ALL_PAIRS_CONTACTS` atom pairs, the kind of
        every pair (N, N) int8: 0 (1-4), 1 (further), -1 (1-2, 1-3 or not ``i < j``);
        None for larger molecules."""
        n = self.n_atoms
        if n * (n - 1) // 2 > _ALL_PAIRS_CONTACTS:
            return None
        excluded, one_four = self._exclusions
        table = np.full((n, n), -1, np.int8)
        i, j = np.triu_indices(n, 1)
        table[i, j] = 1
        for codes, value in ((excluded, -1), (one_four, 0)):
            table[codes // n, codes % n] = value
        return table

    def _near_of_all_pairs(self, flat, reach, pairs, kind) -> None:
        """:meth:`_near_pair_kinds` of a small molecule, measuring every pair of a block
        of structures at once (no per-structure neighbour search): fills ``pairs``
        (T, K, 2) and ``kind`` (T, K)."""
        table = self._candidate_pairs
        k, n = pairs.shape[1], self.n_atoms
        candidate = table >= 0
        x = np.asarray(flat, np.float32)
        step = max(1, (1 << 22) // (n * n))
        for first in range(0, len(x), step):
            block = x[first : first + step]
            sq = np.einsum("tnd,tnd->tn", block, block)
            d2 = sq[:, :, None] + sq[:, None, :] - 2.0 * np.matmul(block, block.transpose(0, 2, 1))
            near = (d2 < reach * reach) & candidate
            rows, a, b = np.nonzero(near)
            counts = np.bincount(rows, minlength=len(block))
            slot = np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]
            fits = slot < k
            at = (first + rows[fits], slot[fits])
            pairs[at] = np.stack([a[fits], b[fits]], axis=1)
            kind[at] = table[a[fits], b[fits]]
            for r in np.flatnonzero(counts > k):  # more than K within reach: the closest K
                mine = rows == r
                ra, rb = a[mine], b[mine]
                keep = np.argsort(d2[r, ra, rb], kind="stable")[:k]
                pairs[first + r] = np.stack([ra[keep], rb[keep]], axis=1)
                kind[first + r] = table[ra[keep], rb[keep]]

    def _near_pair_kinds(self, positions, reach) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`near_pairs` as atom pairs (..., K, 2) int32 and kinds (..., K) int32."""
        x = np.asarray(positions, np.float64)
        lead, n = x.shape[:-2], self.n_atoms
        flat = x.reshape((-1,) + x.shape[-2:])
        k = self.n_contacts
        pairs = np.zeros((len(flat), k, 2), np.int32)
        kind = np.full((len(flat), k), 2, np.int32)
        excluded, one_four = self._exclusions
        if self._candidate_pairs is not None:
            self._near_of_all_pairs(flat, float(reach), pairs, kind)
            return pairs.reshape(lead + (k, 2)), kind.reshape(lead + (k,))
        for t, frame in enumerate(flat):
            found, _ = geometry.close_pairs(frame, float(reach), excluded)
            found = found[:k]
            code = geometry.pair_codes(found, n)
            at = np.searchsorted(one_four, code).clip(max=max(len(one_four) - 1, 0))
            is14 = one_four[at] == code if len(one_four) else np.zeros(len(code), bool)
            pairs[t, : len(found)] = found
            kind[t, : len(found)] = np.where(is14, 0, 1)
        return pairs.reshape(lead + (k, 2)), kind.reshape(lead + (k,))

    def refine(
        self,
        anchor,
        internal_features,
        cartesian_sigma,
        internal_sigma,
        steps=None,
        weight=None,
        start=None,
    ):
        """The structure most probable under both experts (batched, in JAX).

        Of two starts, ``start`` (default: the anchor) and the internal coordinates
        rebuilt and superposed on it, the one of lower energy is minimized with L-BFGS
        (:meth:`_minimize_with`), in rounds of :data:`REFINE_RESTRAINED` iterations that
        keep each structure's L-BFGS memory. Every round repels the closest contact pairs of
        its start (:meth:`near_pairs`) below their training distance (widened by
        :data:`CONTACT_SKIN`). The neighbour lists are found with NumPy (a host
        callback inside ``jit``) and are constant within a round. Compiles under
        ``jit`` and is differentiable (a fixed number of steps, no line search).

        Parameters
        ----------
        anchor : array (..., N, D)
            The Cartesian expert's positions (length units), drawn or its mean.
        internal_features : array (..., Q)
            The internal expert's features.
        cartesian_sigma : array (N * D,)
            The Cartesian expert's scale per coordinate, in length units.
        internal_sigma : array (Q,)
            The internal expert's scale per feature (feature units).
        steps : int, optional
            L-BFGS iterations in all; default :data:`REFINE_STEPS`. 0: the start with
            the lower energy, unminimized.
        weight : float or scalar array, optional
            Weight of the Cartesian expert; default :attr:`cartesian_weight`.
        start : array (..., N, D), optional
            Where the minimization starts instead of the anchor: the Cartesian
            expert's mean when the anchor is a draw (see the module's notes).

        Returns
        -------
        jax.Array (..., N, D)
        """

        anchor = jnp.asarray(anchor)
        start = anchor if start is None else jnp.asarray(start, anchor.dtype)
        weight = self.cartesian_weight if weight is None else weight
        rebuilt = self._superposed_rebuild(internal_features, start)
        # the handedness of the internal expert's structure, kept by every start
        handed = jax.lax.stop_gradient(_handedness(rebuilt, self._chiral_quads))
        # where the Cartesian start mirrors a centre, its neighbourhood is taken from
        # the rebuilt structure, and the Cartesian expert gives up those atoms
        start, free_atoms = self._grafted(start, rebuilt, self._mirrored(handed, start))
        free_atoms = jax.lax.stop_gradient(free_atoms)
        experts = _Experts(
            anchor, internal_features, cartesian_sigma, internal_sigma, weight, 1.0 - free_atoms
        )
        n_steps = REFINE_STEPS if steps is None else int(steps)
        near_start, near_rebuilt = self._near_pairs(start), self._near_pairs(rebuilt)
        e_start = self._energy(experts, handed, *near_start)(start)
        e_rebuilt = self._energy(experts, handed, *near_rebuilt)(rebuilt)
        pick = e_rebuilt < e_start
        x = jnp.where(pick[..., None, None], rebuilt, start)
        if n_steps == 0:
            return x
        near = jax.tree.map(lambda r, s: jnp.where(_widen(pick, r), r, s), near_rebuilt, near_start)
        free = jnp.zeros_like(handed)  # after the first round: the experts' energy alone
        done, carry = 0, None
        while done < n_steps:  # rounds as long as the restraint: fewer callbacks in jit
            length = min(REFINE_RESTRAINED, n_steps - done)
            restrained = handed if done < REFINE_RESTRAINED else free
            x, _, carry = self._minimize_with(x, experts, restrained, *near, length, carry)
            done += length
            if done < n_steps:
                near = self._near_pairs(x)
        return x

    def _near_pairs(self, x):
        """:meth:`near_pairs` of JAX positions, also inside ``jit`` (a host callback);
        constant for the gradient."""

        x = jax.lax.stop_gradient(jnp.asarray(x))
        k, lead = self.n_contacts, x.shape[:-2]
        shapes = (
            jax.ShapeDtypeStruct(lead + (k, 2), jnp.int32),
            jax.ShapeDtypeStruct(lead + (k,), jnp.int32),
        )
        contact_min, center = jnp.asarray(self.contact_min), jnp.asarray(self.center)
        reach = jax.lax.stop_gradient(self._reach(jnp, contact_min, center))
        pairs, kind = jax.pure_callback(self._near_pair_kinds, shapes, x, reach)
        return pairs, self._kind_minimum(jnp, contact_min, kind)

    def _energy(self, experts, handed, pairs, mins):
        """The energy (...,) of structures x (..., N, D), as a function of x.

        The two experts' energies (:class:`_Experts`; ``experts.kept`` weighs each atom's
        term of the Cartesian one, 0 near a centre the experts disagree on, see
        :meth:`_grafted`), the contact pairs' repulsion, and a restraint that
        keeps each branched atom (:attr:`_chiral_quads`) at least half as chiral as
        ``handed`` (..., C) says (:func:`_handedness` of the rebuilt structure), on the
        same side: a start whose Cartesian mean has mirrored a stereocentre is pushed
        through the plane, where the experts' own terms would hold it.
        """

        anchor, internal_features, cartesian_sigma, internal_sigma, weight, kept = experts
        dtype = anchor.dtype
        target = self.values(jnp.asarray(internal_features, dtype))
        circ = jnp.asarray(self.circular)
        inv_c = 1.0 / jnp.reshape(jnp.asarray(cartesian_sigma, dtype), anchor.shape[-2:])
        inv_q = 1.0 / (jnp.asarray(internal_sigma, dtype) * jnp.asarray(self.scale, dtype))
        weight = jnp.asarray(weight, dtype)
        bond = jnp.median(jnp.asarray(self.center[: self.n_atoms - 1], dtype))
        stiff = 0.5 / (0.01 * bond) ** 2  # 1 kT at 1 % of a bond inside the closest contact
        pairs = jnp.asarray(pairs)
        mins = jnp.asarray(mins, dtype) * (1.0 + CONTACT_SKIN)
        handed = jnp.asarray(handed, dtype)
        chiral = jnp.abs(handed) > CHIRAL_HANDEDNESS  # planar and near-planar centres: free
        quads = self._chiral_quads

        def energy(x):
            per_atom = jnp.sum(((x - anchor) * inv_c) ** 2, axis=-1)
            e_cart = 0.5 * weight * jnp.sum(kept * per_atom, axis=-1)
            d = self.measure(x) - target
            e_int = jnp.where(circ, 1.0 - jnp.cos(d), 0.5 * d**2) * inv_q**2
            close = jax.nn.relu(mins - _gathered_distances(x, pairs))
            short = jax.nn.relu(0.5 * jnp.abs(handed) - jnp.sign(handed) * _handedness(x, quads))
            e_chiral = 0.5 / 0.01**2 * jnp.sum(jnp.where(chiral, short**2, 0.0), axis=-1)
            return e_cart + jnp.sum(e_int, axis=-1) + stiff * jnp.sum(close**2, axis=-1) + e_chiral

        return energy

    def _minimize_with(self, x0, experts, handed, pairs, mins, steps, carry=None):
        """``steps`` L-BFGS iterations on each structure of ``x0`` (..., N, D) alone,
        repelling the contact ``pairs`` (..., K, 2) below ``mins`` (..., K)
        (:meth:`near_pairs` of ``x0``); returns the structures, their energies (...,) and
        the ``carry`` to go on from: each structure's L-BFGS memory and trust radius
        (:meth:`_fresh_carry`; None starts afresh).

        Every structure keeps its own L-BFGS memory (optax's ``scale_by_lbfgs``), also
        from one call to the next, when its contact pairs are renewed. There is no line
        search (its loops would make every structure of a batch wait for the slowest):
        as in molecular geometry optimizers, no atom moves more than
        :data:`REFINE_MAX_STEP` bond lengths in one step; a step that would not go
        downhill (curvature that a non-convex energy breaks) follows the gradient
        instead, and a step that raises the energy is not taken: the next one tries the
        same direction half as far (a trust radius, doubled again after each success).
        No host callback: the compiled code can be kept on disk.
        """

        x0 = jnp.asarray(x0)
        anchor, internal_features, _, _, _, kept = experts
        lead, shape = x0.shape[:-2], x0.shape[-2:]
        pairs, mins = jnp.asarray(pairs), jnp.asarray(mins)
        b = math.prod(lead)  # explicit: a molecule without contact pairs has K = 0
        if carry is None:
            carry = self._fresh_carry(x0.reshape((b,) + shape), jnp)
        else:
            carry = jax.tree.map(
                lambda c: jnp.reshape(jnp.asarray(c), (b,) + c.shape[len(lead) :]), carry
            )
        flat = (
            x0.reshape((b,) + shape),
            jnp.broadcast_to(anchor, x0.shape).reshape((b,) + shape),
            jnp.broadcast_to(internal_features, lead + (self.n_internal,)).reshape(
                b, self.n_internal
            ),
            jnp.broadcast_to(kept, lead + kept.shape[-1:]).reshape(b, kept.shape[-1]),
            jnp.broadcast_to(handed, lead + handed.shape[-1:]).reshape(b, handed.shape[-1]),
            pairs.reshape((b,) + pairs.shape[-2:]),
            mins.reshape(b, mins.shape[-1]),
            carry,
        )
        bond = jnp.median(jnp.asarray(self.center[: self.n_atoms - 1], x0.dtype))
        max_step = REFINE_MAX_STEP * bond
        opt = optax.scale_by_lbfgs()

        def one(x, anchor, features, kept, handed, pairs, mins, carry):
            own = experts._replace(anchor=anchor, internal_features=features, kept=kept)
            energy = self._energy(own, handed, pairs, mins)
            value_and_grad = jax.value_and_grad(energy)

            def step(carry, _):
                x, state, radius, value, grad = carry
                direction, proposed = opt.update(grad, state, x)
                direction = jnp.where(jnp.sum(direction * grad) > 0, direction, grad)
                longest = jnp.sqrt(jnp.max(jnp.sum(direction**2, axis=-1)))
                trial = x - direction * jnp.minimum(1.0, radius / (longest + 1e-12))
                trial_value, trial_grad = value_and_grad(trial)
                ok = trial_value <= value  # else: the same direction, half as far
                keep = functools.partial(jnp.where, ok)
                state = jax.tree.map(keep, proposed, state)
                radius = jnp.where(ok, jnp.minimum(2.0 * radius, max_step), 0.5 * radius)
                return (
                    keep(trial, x),
                    state,
                    radius,
                    keep(trial_value, value),
                    keep(trial_grad, grad),
                ), None

            state, radius = carry
            radius = jnp.where(radius > 0, radius, max_step)  # 0: a fresh start
            value, grad = value_and_grad(x)
            start = (x, state, radius, value, grad)
            (x, state, radius, value, _), _ = jax.lax.scan(step, start, None, length=int(steps))
            return x, value, (state, radius)

        x, e, carry = jax.vmap(one)(*flat)
        carry = jax.tree.map(lambda c: c.reshape(lead + c.shape[1:]), carry)
        return x.reshape(x0.shape), e.reshape(lead), carry

    @staticmethod
    def _fresh_carry(x, xp=np):
        """A fresh L-BFGS memory and trust radius (0: the largest) for each structure of
        ``x`` (B, N, D): zeros, as optax's ``scale_by_lbfgs().init`` gives them."""
        shapes = jax.eval_shape(
            optax.scale_by_lbfgs().init, jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
        )
        state = jax.tree.map(lambda s: xp.zeros((len(x),) + s.shape, s.dtype), shapes)
        return state, xp.zeros(len(x), x.dtype)

    def _superposed_rebuild(self, internal_features, anchor):
        """NeRF rebuild of the internal features, superposed on ``anchor`` (Kabsch)."""

        dtype = anchor.dtype
        w = jnp.ones(self.n_atoms, dtype) / self.n_atoms
        rebuilt = geometry.centered(self.rebuild(jnp.asarray(internal_features, dtype)), w)
        centre = jnp.mean(anchor, axis=-2, keepdims=True)
        rot = geometry.kabsch_rotation(rebuilt, anchor - centre, w)
        return geometry.rotate(rebuilt, rot) + centre

    def refine_jit(self, steps: int | None = None):
        """:meth:`refine` for NumPy callers, compiled once per molecule and round length,
        and able to stop early.

        The same minimization, driven from the host: the start (the rebuilt structure,
        the handedness it keeps, the grafts), the starts' energies and each round of
        L-BFGS iterations are compiled functions without host callbacks, so JAX's
        persistent cache keeps them between processes; the contact pairs of each round
        are found in NumPy between rounds. The fitted values and the weight are
        arguments of the compiled functions, and structures go through them in blocks of
        up to 256 structures (fewer for large molecules: about 65 000 atoms in a block,
        16 structures of all-atom AdK), padded to a power of two, so a few compilations
        serve every model of the molecule and every count, and a few structures do not
        cost a whole block.

        The returned function takes ``done`` besides :meth:`refine`'s arguments: a
        function of structures (B, N, D) that says which of them need no more
        iterations (bool (B,)). It is asked after every round of :data:`REFINE_ROUND`
        iterations; a structure it accepts leaves the minimization as it is, and the
        rest go on, fewer at a time, until :data:`REFINE_STEPS` iterations. Without it
        (None) every structure runs every iteration, as :meth:`refine` does.
        """
        n_steps = REFINE_STEPS if steps is None else int(steps)
        key = _StructureKey(self)
        numeric = (self.center, self.scale, self.contact_min)
        reach = self._reach(np)

        def contacts(x):
            pairs, kind = self._near_pair_kinds(x, reach)
            return pairs, self._kind_minimum(np, self.contact_min, kind)

        def rounds(a, f, s, cartesian_sigma, internal_sigma, w, done_fn):
            s, rebuilt, handed, free = (np.asarray(v) for v in _jitted_start(key)(numeric, f, s))
            kept = (1.0 - free).astype(np.float32)
            experts = (a, f, cartesian_sigma, internal_sigma, w, kept)
            energy = _jitted_energy(key)
            k = self.n_contacts
            none = (np.zeros((len(s), k, 2), np.int32), np.zeros((len(s), k), np.float32))
            # the contact term is never negative: the start whose energy without it is
            # lower wins outright where its energy with it stays below the other's
            # without, and only the other structures search both starts' contacts
            bare_s = np.asarray(energy(numeric, s, *experts, handed, *none))
            bare_r = np.asarray(energy(numeric, rebuilt, *experts, handed, *none))
            pick = bare_r < bare_s
            x = np.where(pick[:, None, None], rebuilt, s)
            pairs, mins = contacts(x)
            e_x = np.asarray(energy(numeric, x, *experts, handed, pairs, mins))
            open_ = np.flatnonzero(e_x > np.where(pick, bare_s, bare_r))
            if len(open_):
                y = np.where(pick[:, None, None], s, rebuilt)  # the other start
                near_y = contacts(y[open_])
                rows = np.concatenate([open_, np.repeat(open_[:1], len(s) - len(open_))])
                full = tuple(
                    np.concatenate([v, v[:1].repeat(len(s) - len(open_), 0)]) for v in near_y
                )
                take = (a[rows], f[rows], cartesian_sigma, internal_sigma, w, kept[rows])
                e_y = np.asarray(energy(numeric, y[rows], *take, handed[rows], *full))[: len(open_)]
                other = open_[e_y < e_x[open_]]
                won = np.isin(open_, other)
                x[other], pairs[other], mins[other] = y[other], near_y[0][won], near_y[1][won]
            if n_steps == 0:
                return x
            state, radius = self._fresh_carry(x)
            free = np.zeros_like(handed)  # after the first round: the experts' energy alone
            active, done = np.arange(len(x)), 0
            while True:
                length = min(REFINE_ROUND, n_steps - done)
                # a full block goes on with an eighth of it (one more program) once few
                # structures need more iterations; smaller ones keep their size, so that
                # which programs run does not depend on how soon structures are done
                small = len(x) // 8 if len(x) >= _REFINE_BLOCK else len(x)
                size = len(x) if len(active) > small else small
                rows = np.concatenate([active, np.repeat(active[:1], size - len(active))])
                fn = _jitted_round(key, length)
                out = fn(
                    numeric,
                    x[rows],
                    a[rows],
                    f[rows],
                    cartesian_sigma,
                    internal_sigma,
                    w,
                    kept[rows],
                    (handed if done < REFINE_RESTRAINED else free)[rows],
                    pairs[rows],
                    mins[rows],
                    jax.tree.map(functools.partial(np.take, indices=rows, axis=0), state),
                    radius[rows],
                )
                kept_rows = slice(0, len(active))
                x[active] = np.asarray(out[0])[kept_rows]
                for whole, part in zip(
                    jax.tree.leaves(state), jax.tree.leaves(out[2]), strict=True
                ):
                    whole[active] = np.asarray(part)[kept_rows]
                radius[active] = np.asarray(out[3])[kept_rows]
                done += length
                if done >= n_steps:
                    return x
                if done_fn is not None:
                    active = active[~np.asarray(done_fn(x[active]), bool)]
                    if len(active) == 0:
                        return x
                pairs[active], mins[active] = contacts(x[active])

        def refine(
            anchor,
            internal_features,
            cartesian_sigma,
            internal_sigma,
            weight=None,
            start=None,
            done=None,
        ):
            w = np.float32(self.cartesian_weight if weight is None else weight)
            anchor = np.asarray(anchor, np.float32)
            lead = anchor.shape[:-2]
            anchor = anchor.reshape((-1,) + anchor.shape[-2:])
            start = anchor if start is None else np.asarray(start, np.float32).reshape(anchor.shape)
            feats = np.asarray(internal_features, np.float32).reshape(len(anchor), -1)
            cartesian_sigma = np.asarray(cartesian_sigma, np.float32)
            internal_sigma = np.asarray(internal_sigma, np.float32)
            n, out = len(anchor), []
            block = _REFINE_BLOCK
            while block > 1 and block * self.n_atoms > _REFINE_BLOCK_ATOMS:
                block //= 2
            for first in range(0, n, block):
                part = slice(first, first + block)
                a, f, s = anchor[part], feats[part], start[part]
                size = min(block, 1 << (len(a) - 1).bit_length())  # a power of two
                pad = size - len(a)
                if pad:  # repeat the first structure: every structure is minimized alone
                    a, f, s = (
                        np.concatenate([v, np.repeat(v[:1], pad, axis=0)]) for v in (a, f, s)
                    )
                x = rounds(a, f, s, cartesian_sigma, internal_sigma, w, done)
                out.append(x[: size - pad])
            if not out:
                return np.zeros(anchor.shape, np.float32).reshape(lead + anchor.shape[-2:])
            return np.concatenate(out).reshape(lead + anchor.shape[-2:])

        return refine

    # ---- persistence ---------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        zm = self.zmatrix
        return {
            "zm_order": zm.order,
            "zm_refs": zm.refs,
            "zm_ring_bonds": zm.ring_bonds,
            "zm_phase": zm.phase,
            "circular": self.circular.astype(np.int8),
            "center": self.center,
            "scale": self.scale,
            # a class without pairs (inf) is stored as -1: model files hold finite numbers
            "contact_classes": np.where(np.isfinite(self.contact_min), self.contact_min, -1.0),
            "rigid": self.rigid.astype(np.int8),
            "cartesian_weight": np.asarray([self.cartesian_weight]),
            "extra_angles": self.extra_angles,
            "extra_torsions": self.extra_torsions,
            "extra_bonds": self.extra_bonds,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], dim: int) -> InternalLayout:
        """Read :meth:`to_arrays` output, also of files written before phases and
        neighbour lists (their siblings keep independent dihedrals; their per-pair
        contact distances become the two class minima)."""
        order = np.asarray(arrays["zm_order"], np.int64)
        phase = arrays.get("zm_phase")
        zm = ZMatrix(
            order,
            np.asarray(arrays["zm_refs"], np.int64),
            np.asarray(arrays["zm_ring_bonds"], np.int64).reshape(-1, 2),
            int(dim),
            None if phase is None else np.asarray(phase, np.int64),
        )
        layout = cls(
            zm,
            np.asarray(arrays["circular"]).astype(bool),
            np.asarray(arrays["center"], np.float64),
            np.asarray(arrays["scale"], np.float64),
            np.full(2, np.inf),
            np.asarray(arrays["rigid"]).astype(bool),
            float(np.asarray(arrays["cartesian_weight"]).ravel()[0]),
            np.asarray(arrays.get("extra_angles", np.zeros((0, 3))), np.int64).reshape(-1, 3),
            np.asarray(arrays.get("extra_torsions", np.zeros((0, 4))), np.int64).reshape(-1, 4),
            np.asarray(arrays.get("extra_bonds", np.zeros((0, 2))), np.int64).reshape(-1, 2),
        )
        if "contact_classes" in arrays:
            contact_min = np.asarray(arrays["contact_classes"], np.float64).reshape(2)
            contact_min = np.where(contact_min < 0, np.inf, contact_min)
        else:  # one distance per pair, constant within each class
            pairs = np.asarray(arrays["contact_pairs"], np.int64).reshape(-1, 2)
            values = np.asarray(arrays["contact_min"], np.float64).reshape(len(pairs))
            code = geometry.pair_codes(pairs, layout.n_atoms)
            is14 = np.isin(code, layout._exclusions[1])
            contact_min = np.asarray(
                [values[m].min() if m.any() else np.inf for m in (is14, ~is14)]
            )
        return replace(layout, contact_min=contact_min)


class _Experts(NamedTuple):
    """What :meth:`InternalLayout.refine` weighs a structure against: the Cartesian
    expert (``anchor`` (..., N, D), its scale ``cartesian_sigma`` (N * D,), its ``weight``
    and the per-atom factor ``kept`` (..., N)) and the internal one
    (``internal_features`` (..., Q), their scale ``internal_sigma`` (Q,))."""

    anchor: Any
    internal_features: Any
    cartesian_sigma: Any
    internal_sigma: Any
    weight: Any
    kept: Any


def _handedness(x, quads):
    """Signed volume of the three bond vectors of each ``(centre, a, b, c)`` quad over
    the product of their lengths (..., C): about ±0.5 at a tetrahedral centre, 0 at a
    planar one. In JAX."""

    if len(quads) == 0:
        return jnp.zeros(x.shape[:-2] + (0,), x.dtype)
    q = jnp.asarray(quads)
    u = x[..., q[:, 1:], :] - x[..., q[:, :1], :]  # (..., C, 3, D)
    norm = jnp.sqrt(jnp.sum(u**2, axis=-1) + 1e-12)
    triple = jnp.sum(u[..., 0, :] * jnp.cross(u[..., 1, :], u[..., 2, :]), axis=-1)
    return triple / jnp.prod(norm, axis=-1)


def _widen(mask, like):
    """``mask`` (...,) with axes appended to broadcast against ``like`` (..., ...)."""
    return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def _gathered_distances(x, pairs):
    """Distances (..., K) of per-structure atom pairs (..., K, 2) in x (..., N, D)."""

    a = jnp.take_along_axis(x, pairs[..., 0:1], axis=-2)
    b = jnp.take_along_axis(x, pairs[..., 1:2], axis=-2)
    return jnp.sqrt(jnp.sum((a - b) ** 2, axis=-1) + 1e-12)


class _StructureKey:
    """A layout's integer and boolean arrays, compared by value: what fixes the
    compiled :meth:`InternalLayout.refine`."""

    def __init__(self, layout: InternalLayout) -> None:
        zm = layout.zmatrix
        self.layout = layout
        arrays = (zm.order, zm.refs, zm.ring_bonds, zm.phase, layout.extra_angles)
        arrays += (layout.extra_torsions, layout.extra_bonds)
        arrays += (layout.circular, layout.rigid)
        self._key = (zm.dim,) + tuple((a.shape, np.ascontiguousarray(a).tobytes()) for a in arrays)
        self._hash = hash(self._key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, _StructureKey) and self._key == other._key


def _with_numeric(key: _StructureKey, numeric) -> InternalLayout:
    center, scale, contact_min = numeric
    return replace(key.layout, center=center, scale=scale, contact_min=contact_min)


@lru_cache(maxsize=8)
def _jitted_start(key: _StructureKey):
    """Compiled: the starts of :meth:`InternalLayout.refine_jit` (the start with its
    grafts, the rebuilt structure), the handedness kept and the grafted atoms."""

    def run(numeric, internal_features, start):
        layout = _with_numeric(key, numeric)
        rebuilt = layout._superposed_rebuild(internal_features, start)
        handed = _handedness(rebuilt, layout._chiral_quads)
        start, free = layout._grafted(start, rebuilt, layout._mirrored(handed, start))
        return start, rebuilt, handed, free

    return jax.jit(run)


@lru_cache(maxsize=8)
def _jitted_energy(key: _StructureKey):
    """Compiled: the energies (B,) of structures (B, N, D) (:meth:`InternalLayout._energy`),
    which choose the start of :meth:`InternalLayout.refine_jit`."""

    def run(numeric, x, anchor, features, c_sigma, i_sigma, weight, kept, handed, pairs, mins):
        layout = _with_numeric(key, numeric)

        def one(x, anchor, features, kept, handed, pairs, mins):
            experts = _Experts(anchor, features, c_sigma, i_sigma, weight, kept)
            return layout._energy(experts, handed, pairs, mins)(x)

        return jax.vmap(one)(x, anchor, features, kept, handed, pairs, mins)

    return jax.jit(run)


@lru_cache(maxsize=16)
def _jitted_round(key: _StructureKey, steps: int):
    """Compiled: ``steps`` L-BFGS iterations of :meth:`InternalLayout._minimize_with`, from
    and to a carried memory."""

    def run(
        numeric,
        x,
        anchor,
        features,
        c_sigma,
        i_sigma,
        weight,
        kept,
        handed,
        pairs,
        mins,
        state,
        radius,
    ):
        layout = _with_numeric(key, numeric)
        experts = _Experts(anchor, features, c_sigma, i_sigma, weight, kept)
        x, energy, (state, radius) = layout._minimize_with(
            x, experts, handed, pairs, mins, steps, (state, radius)
        )
        return x, energy, state, radius

    return jax.jit(run)


def _extra_angles(zm: ZMatrix) -> np.ndarray:
    """The bond angles (E, 3) of the bond graph that the Z-matrix does not build."""
    n = zm.n_atoms
    bonds = np.concatenate([np.stack([zm.order[1:], zm.refs[1:, 0]], 1), zm.ring_bonds])
    built = {
        (min(int(i), int(k)), int(j), max(int(i), int(k)))
        for i, (j, k, _) in zip(zm.order[2:], zm.refs[2:], strict=True)
    }
    every = geometry.angle_triples(n, bonds)
    keep = [tuple(t) not in built for t in every.tolist()]
    return every[np.asarray(keep, bool)].reshape(-1, 3)


def _extra_torsions(x: np.ndarray, zm: ZMatrix) -> np.ndarray:
    """The stiff dihedrals (E, 4) of the bond graph that the Z-matrix does not build.

    Stiff: circular standard deviation over the training frames ``x`` (T, N, 3) below
    :data:`STIFF_TORSION` (measured on at most 2000 frames spread through them).
    """
    n = zm.n_atoms
    bonds = np.concatenate([np.stack([zm.order[1:], zm.refs[1:, 0]], 1), zm.ring_bonds])
    built = set()
    for i, refs in zip(zm.order[3:], zm.refs[3:], strict=True):
        quad = (int(i),) + tuple(int(r) for r in refs)
        built.add(min(quad, quad[::-1]))
    every = geometry.dihedral_quads(n, bonds)
    quads = every[np.asarray([tuple(q) not in built for q in every.tolist()], bool)]
    quads = quads.reshape(-1, 4)
    if len(quads) == 0:
        return quads
    pick = np.unique(np.linspace(0, len(x) - 1, min(len(x), 2000)).round().astype(int))
    d = geometry.dihedrals(x[pick], quads)
    length = np.abs(np.exp(1j * d).mean(axis=0))
    spread = np.sqrt(-2.0 * np.log(np.clip(length, 1e-12, 1.0)))
    return quads[spread < STIFF_TORSION].astype(np.int64)


def _measure(x, zm: ZMatrix, extra: np.ndarray, stiff=None, rings=None):
    """The internal coordinates of a layout: the Z-matrix's, the extra angles, the
    extra (stiff) torsions, then the lengths of the bonds that close rings."""
    values = _concat(to_internal(x, zm))
    xp = geometry.array_namespace(values)
    parts = [values]
    if len(extra):
        parts.append(geometry.bond_angles(x, extra))
    if stiff is not None and len(stiff):
        parts.append(geometry.dihedrals(x, stiff))
    if rings is not None and len(rings):
        parts.append(geometry.pair_distances(x, rings))
    return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=-1)


def _concat(parts: dict):
    xp = geometry.array_namespace(parts["bonds"])
    keys = ("bonds", "angles", "dihedrals")
    return xp.concatenate([parts[k] for k in keys if k in parts], axis=-1)


def _circular_mask(zm: ZMatrix) -> np.ndarray:
    n = zm.n_atoms
    bonds = np.zeros(n - 1, bool)
    angles = np.full(n - 2, zm.dim == 2)
    parts = [bonds, angles] + ([np.ones(n - 3, bool)] if zm.dim == 3 else [])
    return np.concatenate(parts)
