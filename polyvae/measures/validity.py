"""Is a structure physically valid? Checks from the topology, thresholds from the training data.

:class:`StructureChecks` is fitted on aligned training frames and the molecule's bonds
(default: a chain in atom order): every bond length and every bond angle must lie in
its range over the training frames, and no pair beyond the excluded ones (bonded 1-2
and angle 1-3 pairs, and 1-4 pairs in 3D, which force fields do not repel fully) may
come closer than the closest such pair in the training frames. In 3D, given atom
names, every chiral centre (:func:`polyvae.geometry.chiral_centres`) must keep the
handedness most training frames have. The training frames
pass these checks by construction (with the default percentiles 0 and 100); a
generated or optimized structure that fails one has a broken bond, a bent angle,
overlapping atoms or a mirrored stereocentre that the data never showed.

The ranges of the training range itself (percentiles 0 and 100) are widened by a
margin fitted on the frames, :func:`held_out_margin`: so much of each value's training
spread that every training frame would also pass checks fitted on the other frames.
A new frame of the same ensemble then fails with a probability of about 1/(T + 1) for
T training frames. Without it, a molecule with many bonds and few frames fails
nearly every new frame: with 425 bonds and angles and 100 frames of AdK's Cα chain,
the plain ranges passed none of 100 other MD frames.

Besides the ranges it checks, :class:`StructureChecks` keeps the bond and angle ranges
of a few narrower percentile bands (:data:`STORED_BANDS`, e.g. the 0.5th to 99.5th
percentile); :meth:`StructureChecks.band` returns the checks with one of those, for
callers that want a margin inside the training range (latent optimization).

The contact check forms all atom pairs only for small molecules (up to
:data:`ALL_PAIRS_LIMIT` checked pairs, measured a block of frames at a time); for larger
ones the excluded pairs come from a walk of the bond graph and the close pairs of each
structure from a k-d tree (:func:`polyvae.geometry.close_pairs`), so memory grows with
the atom count, not its square (all-atom proteins of thousands of atoms). Both give the
same results.

A :class:`ValidityReport` says which structures pass each check and which bond, angle,
contact pair or chiral centre fails in the most structures, by atom name when given
:class:`AtomLabels` (:meth:`ValidityReport.summary`, :meth:`ValidityReport.warning`).

The checks are JSON-ready (:meth:`StructureChecks.to_dict`), so the model file keeps
them; files written before the bands were stored load with the ranges alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from polyvae import geometry
from polyvae._checks import ensure_frames, ensure_int, ensure_number, ensure_pairs

RANGE_TOLERANCE = 1e-3
"""Relative widening of bond ranges (and radians of angle ranges) in the checks."""

__all__ = [
    "StructureChecks",
    "ValidityReport",
    "AtomLabels",
    "Offender",
    "CHECKS",
    "LOW_VALIDITY",
    "ALL_PAIRS_LIMIT",
    "RANGE_TOLERANCE",
    "STORED_BANDS",
    "held_out_margin",
]

STORED_BANDS: tuple[tuple[float, float], ...] = ((0.5, 99.5), (1.0, 99.0), (2.5, 97.5))
"""Percentile bands whose bond and angle ranges :meth:`StructureChecks.from_training` keeps
besides the ones it checks."""


def held_out_margin(values: Any, floor: Any = 0.0) -> float:
    """Widening of training ranges, in units of each column's standard deviation, that
    lets every training frame pass ranges fitted on the other frames.

    Left out, the frame holding a column's lowest (highest) value would see the range
    start at the second lowest (end at the second highest): the margin is the largest of
    these gaps over all columns, each over its column's standard deviation. Columns whose
    deviation is at most ``floor`` (constrained, or rounding only) are left out.

    Parameters
    ----------
    values : array (T, K)
        One row per training frame (e.g. bond lengths and bond angles).
    floor : float or array (K,)

    Returns
    -------
    float
        0 with fewer than 3 frames or no column above its floor.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 3:
        return 0.0
    std = v.std(axis=0)
    keep = std > np.broadcast_to(np.asarray(floor, dtype=np.float64), std.shape)
    if not keep.any():
        return 0.0
    v, std = v[:, keep], std[keep]
    low = np.partition(v, 1, axis=0)[:2]
    high = np.partition(v, v.shape[0] - 2, axis=0)[-2:]
    gaps = np.maximum(low[1] - low[0], high[1] - high[0]) / std
    return float(gaps.max())


ALL_PAIRS_LIMIT = geometry.ALL_PAIRS_LIMIT
"""Up to this many pairs to check for contacts, the checks measure every pair (faster for
small molecules: no per-frame neighbour search); beyond, neighbour lists (memory linear in
the atom count)."""

_BLOCK_ELEMENTS = 1 << 22  # pair distances (frames x pairs) measured at a time


@lru_cache(maxsize=8)
def _excluded_by_key(n_atoms: int, bonds: bytes, exclude: int) -> np.ndarray:
    pairs, _ = geometry.bonded_within(n_atoms, np.frombuffer(bonds, np.int64), exclude)
    codes = geometry.pair_codes(pairs, n_atoms)
    codes.flags.writeable = False
    return codes


def _excluded_codes(n_atoms: int, bonds: np.ndarray, exclude: int) -> np.ndarray:
    """Sorted pair codes of the pairs at most ``exclude`` bonds apart (those
    :func:`polyvae.geometry.nonbonded_pairs` leaves out), kept for the last few molecules."""
    key = np.ascontiguousarray(bonds, dtype=np.int64).tobytes()
    return _excluded_by_key(int(n_atoms), key, int(exclude))


def _contact_pairs(n_atoms: int, excluded: np.ndarray) -> np.ndarray:
    """All pairs ``i < j`` not ``excluded`` (sorted pair codes), row-major: (P, 2), O(N²)."""
    return geometry.pairs_not_excluded(n_atoms, excluded)


def _frame_blocks(n_frames: int, n_pairs: int):
    """Slices of frames whose (frames, pairs) distances stay bounded."""
    step = max(1, _BLOCK_ELEMENTS // max(1, n_pairs))
    return (slice(s, s + step) for s in range(0, n_frames, step))


def _closest_contact(x: np.ndarray, excluded: np.ndarray, start: float) -> float:
    """The shortest distance of a pair not ``excluded`` over all frames (T, N, D)."""
    n = x.shape[1]
    if n * (n - 1) // 2 - len(excluded) > ALL_PAIRS_LIMIT:
        return float(geometry.closest_nonbonded(x, excluded, start).min())
    pairs = _contact_pairs(n, excluded)
    blocks = _frame_blocks(len(x), len(pairs))
    return float(min(geometry.pair_distances(x[b], pairs).min() for b in blocks))


def _by_count(items: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items with a positive count, most first (ties in their order)."""
    keep = np.flatnonzero(counts)
    order = keep[np.argsort(-counts[keep], kind="stable")]
    return items[order], counts[order]


def _band_key(percentiles: Any, name: str = "percentiles") -> tuple[float, float]:
    try:
        lo, hi = percentiles
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high); got {percentiles!r}") from None
    lo = ensure_number(lo, f"{name}[0]", minimum=0, maximum=100)
    hi = ensure_number(hi, f"{name}[1]", minimum=lo, maximum=100)
    return (float(lo), float(hi))


CHECKS: tuple[str, ...] = ("bonds", "angles", "contacts", "chirality")
"""The checks of a :class:`ValidityReport`, in the order reports list them."""

LOW_VALIDITY = 0.5
"""Below this fraction of valid structures :meth:`ValidityReport.warning` has a warning."""

_ITEM = {"bonds": "bond", "angles": "angle", "contacts": "contact", "chirality": "chiral centre"}


def _percent(fraction: float) -> str:
    """A fraction as a short percentage: ``"62 %"``, ``"0.2 %"``, ``"0.013 %"``."""
    p = 100.0 * float(fraction)
    return f"{p:.0f} %" if p >= 10 else f"{p:.2g} %"


@dataclass(frozen=True)
class AtomLabels:
    """Readable and unambiguous names of a molecule's atoms, for reports.

    Attributes
    ----------
    names : tuple of str (N,)
        Atom names; a name that repeats (within its residue, when there are residues)
        carries its 0-based atom index, as ``"HB1(10)"``.
    residues : tuple of str (N,) or None
        Each atom's residue as ``"ALA2"`` (residue name and number) when the atoms
        belong to more than one residue; None otherwise.
    """

    names: tuple[str, ...]
    residues: tuple[str, ...] | None = None

    @classmethod
    def of(cls, names: Any, resnames: Any = None, resids: Any = None) -> AtomLabels:
        """Labels from atom names and, optionally, residue names and numbers (N,) each.

        Residues are shown only with ``resids`` that take more than one value.
        """
        names = [str(s) for s in names]
        n = len(names)
        residues = None
        if resids is not None and len(set(np.asarray(resids).tolist())) > 1:
            ids = np.asarray(resids).tolist()
            if len(ids) != n or (resnames is not None and len(resnames) != n):
                raise ValueError(f"resnames and resids must have one entry per atom (N={n})")
            prefix = [""] * n if resnames is None else [str(r) for r in resnames]
            residues = tuple(f"{r}{i}" for r, i in zip(prefix, ids, strict=True))
        keys = list(zip(residues or [""] * n, names, strict=True))
        seen: dict[tuple[str, str], int] = {}
        for key in keys:
            seen[key] = seen.get(key, 0) + 1
        unique = tuple(s if seen[r, s] == 1 else f"{s}({i})" for i, (r, s) in enumerate(keys))
        return cls(unique, residues)

    def __len__(self) -> int:
        return len(self.names)

    def item(self, atoms: Any) -> str:
        """One bond, angle, pair or centre: ``"H1-CH3-H2"``, ``"ALA2:N-CA-C"`` within one
        residue, ``"ACE1:C-ALA2:N"`` across residues."""
        atoms = [int(i) for i in np.ravel(atoms)]
        names = [self.names[i] for i in atoms]
        if self.residues is None:
            return "-".join(names)
        residues = [self.residues[i] for i in atoms]
        if len(set(residues)) == 1:
            return f"{residues[0]}:{'-'.join(names)}"
        return "-".join(f"{r}:{s}" for r, s in zip(residues, names, strict=True))


class Offender(NamedTuple):
    """An item of a check that fails in some structures.

    Attributes
    ----------
    check : str
        One of :data:`CHECKS`.
    atoms : tuple of int
        The bond's two atoms, the angle's three (vertex in the middle), the contact
        pair's two, or the chiral centre.
    label : str
        The atoms by name (:meth:`AtomLabels.item`), or their indices joined by ``-``.
    fraction : float
        Fraction of the structures in which it fails.
    """

    check: str
    atoms: tuple[int, ...]
    label: str
    fraction: float

    def __str__(self) -> str:
        return f"{_ITEM[self.check]} {self.label} fails in {_percent(self.fraction)}"


def _failing_items(atoms: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items (K, m) that fail (``ok`` (T, K) False) in some structure, with the number of
    structures in which each fails, most failing first."""
    return _by_count(atoms, (~ok).sum(axis=0))


@dataclass(frozen=True)
class ValidityReport:
    """Which structures pass the checks, and why the others fail.

    Attributes
    ----------
    bonds_ok, angles_ok, contacts_ok : ndarray (T,) of bool
        Every bond in range; every angle in range; no non-excluded pair too close.
    chirality_ok : ndarray (T,) of bool or None
        Every chiral centre has its training handedness; None without chiral centres.
    failures : dict of str to (ndarray (K, m) of int, ndarray (K,) of int)
        For each check (:data:`CHECKS`), its items (bonds, angles, contact pairs, chiral
        centres) that fail in at least one structure, and in how many structures each
        fails, most failing first; empty for a report built without them.
    labels : AtomLabels or None
        The atoms' names for :meth:`worst` and :meth:`summary`.
    valid : ndarray (T,) of bool
        All of them.
    """

    bonds_ok: np.ndarray
    angles_ok: np.ndarray
    contacts_ok: np.ndarray
    chirality_ok: np.ndarray | None = None
    failures: dict = field(default_factory=dict)
    labels: AtomLabels | None = None

    @property
    def valid(self) -> np.ndarray:
        valid = self.bonds_ok & self.angles_ok & self.contacts_ok
        return valid if self.chirality_ok is None else valid & self.chirality_ok

    @property
    def fraction_valid(self) -> float:
        return float(self.valid.mean())

    @property
    def checks_ok(self) -> dict[str, np.ndarray]:
        """Each check's (T,) pass flags, in the order of :data:`CHECKS` (chirality if checked)."""
        flags = {"bonds": self.bonds_ok, "angles": self.angles_ok, "contacts": self.contacts_ok}
        if self.chirality_ok is not None:
            flags["chirality"] = self.chirality_ok
        return flags

    def _label(self, atoms: np.ndarray) -> str:
        if self.labels is None:
            return "-".join(str(int(i)) for i in atoms)
        return self.labels.item(atoms)

    def worst(self, k: int = 3) -> list[Offender]:
        """The ``k`` items of each check that fail in the most structures, most failing
        first over all checks (ties in the order of :data:`CHECKS`)."""
        k = ensure_int(k, "k", 1)
        n = max(int(self.valid.size), 1)
        out = []
        for check in self.checks_ok:
            atoms, counts = self.failures.get(check, ((), ()))
            out += [
                Offender(check, tuple(int(i) for i in a), self._label(a), int(c) / n)
                for a, c in zip(atoms[:k], counts[:k], strict=True)
            ]
        return sorted(out, key=lambda o: -o.fraction)

    def summary(self, k: int = 1) -> list[str]:
        """Lines on what fails: the ``k`` worst items of each failing check, such as
        ``"angle H1-CH3-H2 fails in 62 %"`` (:meth:`worst`), most failing first; a check
        whose items the report does not hold reads ``"angles check fails in 62 %"``."""
        lines = [str(o) for o in self.worst(k)]
        for check, ok in self.checks_ok.items():
            if check not in self.failures and not ok.all():
                lines.append(f"{check} check fails in {_percent(1.0 - ok.mean())}")
        return lines

    def warning(self, what: str = "structures", checks: str = "the checks") -> str | None:
        """One line when fewer than :data:`LOW_VALIDITY` of the structures pass, else None:
        ``"only 8 of 5000 structures (0.16 %) pass the checks; most failures: angle
        H1-CH3-H2 fails in 62 %, contact HB1-HA fails in 10 %"``.

        Parameters
        ----------
        what : str
            What the structures are (``"generated structures"``).
        checks : str
            Whose checks they are (``"the model's checks"``).
        """
        n, n_valid = int(self.valid.size), int(self.valid.sum())
        if n == 0 or n_valid >= LOW_VALIDITY * n:
            return None
        text = f"only {n_valid} of {n} {what} ({_percent(n_valid / n)}) pass {checks}"
        lines = self.summary(k=1)
        return f"{text}; most failures: {', '.join(lines)}" if lines else text

    def to_dict(self, k: int = 3) -> dict:
        """JSON-ready fractions: valid, and each check on its own (chirality if checked),
        with the ``k`` items of each check that fail most (``worst_offenders``: atoms,
        label, fraction failing)."""
        out = {
            "n_structures": int(self.valid.size),
            "fraction_valid": self.fraction_valid,
            "fraction_bonds_ok": float(self.bonds_ok.mean()),
            "fraction_angles_ok": float(self.angles_ok.mean()),
            "fraction_contacts_ok": float(self.contacts_ok.mean()),
        }
        if self.chirality_ok is not None:
            out["fraction_chirality_ok"] = float(self.chirality_ok.mean())
        worst = self.worst(k)
        out["worst_offenders"] = {
            check: [
                {"atoms": list(o.atoms), "label": o.label, "fraction_failing": o.fraction}
                for o in worst
                if o.check == check
            ]
            for check in self.checks_ok
            if check in self.failures
        }
        return out


@dataclass(frozen=True, eq=False)
class StructureChecks:
    """Ranges of bonds and angles and the closest contact, from training frames.

    Attributes
    ----------
    n_atoms : int
    bonds : ndarray (B, 2) of int
    bond_range : ndarray (B, 2)
        Lowest and highest length of each bond (length unit of the frames), widened by
        ``margin`` standard deviations.
    angle_range : ndarray (A, 2)
        Lowest and highest value of each bond angle (radians), for
        ``geometry.angle_triples(n_atoms, bonds)``, widened likewise.
    exclude : int
        Pairs up to this many bonds apart are not checked for contacts (2 in 2D, 3 in 3D).
    min_contact : float
        Closest distance of a non-excluded pair over the training frames.
    chiral : ndarray (C, 4) of int
        Chiral centres as ``(centre, a, b, c)`` quads (:func:`polyvae.geometry.chiral_centres`);
        empty in 2D or without atom names.
    chiral_sign : ndarray (C,) of float
        Handedness (+1 or -1) of each centre in most training frames.
    percentiles : (float, float)
        The percentiles of the training values that ``bond_range`` and ``angle_range``
        span ((0, 100): the training range itself).
    bands : dict of (float, float) to (bond_range, angle_range)
        Ranges of further percentile bands, kept for :meth:`band`.
    margin : float
        The widening of the training range (percentiles 0 and 100), in standard
        deviations of each value (:func:`held_out_margin`; 0 in older files). Narrower
        percentile bands are not widened.
    """

    n_atoms: int
    bonds: np.ndarray
    bond_range: np.ndarray
    angle_range: np.ndarray
    exclude: int
    min_contact: float
    chiral: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    chiral_sign: np.ndarray = field(default_factory=lambda: np.zeros(0))
    percentiles: tuple[float, float] = (0.0, 100.0)
    bands: dict = field(default_factory=dict)
    margin: float = 0.0

    def band(self, percentiles: Any) -> StructureChecks:
        """The same checks with the bond and angle ranges of a stored percentile band.

        Parameters
        ----------
        percentiles : (low, high)
            :attr:`percentiles` itself or one of the keys of :attr:`bands`.

        Raises
        ------
        ValueError
            If that band is not stored (the message lists the stored ones).
        """
        key = _band_key(percentiles)
        if key == tuple(self.percentiles):
            return self
        if key not in self.bands:
            stored = sorted({tuple(self.percentiles), *self.bands})
            raise ValueError(
                f"percentiles must be a stored band of the structure checks, one of "
                f"{[list(b) for b in stored]}; got {list(key)}"
            )
        bond_range, angle_range = self.bands[key]
        return replace(
            self,
            bond_range=bond_range,
            angle_range=angle_range,
            percentiles=key,
            bands=self.bands | {tuple(self.percentiles): (self.bond_range, self.angle_range)},
        )

    @property
    def angles(self) -> np.ndarray:
        return geometry.angle_triples(self.n_atoms, self.bonds)

    @property
    def pairs(self) -> np.ndarray:
        """Every pair checked for contacts (P, 2), row-major: all pairs more than
        :attr:`exclude` bonds apart.

        O(N²) memory (5.6 million pairs for 3341 atoms), for small molecules only; the
        checks themselves use neighbour lists beyond :data:`ALL_PAIRS_LIMIT` pairs
        (:attr:`excluded_codes`).
        """
        return _contact_pairs(self.n_atoms, self.excluded_codes)

    @property
    def excluded_codes(self) -> np.ndarray:
        """Sorted :func:`polyvae.geometry.pair_codes` (E,) of the pairs at most
        :attr:`exclude` bonds apart, which the contact check leaves out (computed once
        per molecule and kept, read-only)."""
        return _excluded_codes(self.n_atoms, self.bonds, self.exclude)

    @classmethod
    def from_training(
        cls,
        positions: Any,
        bonds: Any = None,
        *,
        names: Any = None,
        exclude: int | None = None,
        percentiles: tuple[float, float] = (0.0, 100.0),
        bands: Any = STORED_BANDS,
    ) -> StructureChecks:
        """Fit the checks on training frames.

        Parameters
        ----------
        positions : array (T, N, D)
            Training frames (any orientation).
        bonds : array (B, 2) of int, optional
            The molecule's bonds; default a chain in atom order.
        names : sequence of str (N,), optional
            Atom names or elements; with them, 3D frames also fix the handedness of
            every chiral centre (the sign most training frames have).
        exclude : int, optional
            Bond-count distance up to which pairs are excluded from the contact check;
            default 3 in 3D (1-2, 1-3, 1-4), 2 in 2D (1-2, 1-3).
        percentiles : (low, high)
            Percentiles of each bond's and angle's training values that bound it;
            (0, 100) takes the training range itself.
        bands : sequence of (low, high)
            Further percentile bands whose ranges are kept for :meth:`band`.
        """
        x, _ = ensure_frames(positions, "positions", allow_single=False, min_atoms=3)
        n, d = x.shape[1], x.shape[2]
        bonds = geometry.chain_bonds(n) if bonds is None else ensure_pairs(bonds, n, "bonds")
        if len(bonds) == 0:
            raise ValueError("bonds must hold at least one bond; got none")
        exclude = (3 if d == 3 else 2) if exclude is None else ensure_int(exclude, "exclude", 1)
        key = _band_key(percentiles)
        keys = [_band_key(b, "bands[]") for b in bands]
        lengths = geometry.pair_distances(x, bonds)
        angles = geometry.bond_angles(x, geometry.angle_triples(n, bonds))
        excluded = _excluded_codes(n, bonds, exclude)
        if n * (n - 1) // 2 == len(excluded):
            raise ValueError(
                f"no pair of the {n} atoms is more than {exclude} bonds apart: "
                "nothing to check for contacts"
            )
        contacts = _closest_contact(x, excluded, float(lengths.mean()))
        chiral = np.zeros((0, 4), np.int64)
        if names is not None and d == 3:
            names = [str(s) for s in names]
            if len(names) != n:
                raise ValueError(f"names must have one entry per atom (N={n}); got {len(names)}")
            chiral = geometry.chiral_centres(n, bonds, names)
        signs = geometry.chirality(x, chiral).sum(axis=0) if len(chiral) else np.zeros(0)

        def ranges(band):
            bond_range = np.percentile(lengths, band, axis=0).T
            return bond_range, np.percentile(angles, band, axis=0).T.reshape(-1, 2)

        bond_range, angle_range = ranges(key)
        margin = 0.0
        if key == (0.0, 100.0):  # the training range: widened for frames it has not seen
            floors = (RANGE_TOLERANCE * lengths.mean(axis=0), RANGE_TOLERANCE)
            margin = max(held_out_margin(lengths, floors[0]), held_out_margin(angles, floors[1]))
            for rng, values, floor in (
                (bond_range, lengths, floors[0]),
                (angle_range, angles, floors[1]),
            ):
                std = values.std(axis=0)
                widen = np.where(std > floor, margin * std, 0.0)
                rng[:, 0] -= widen
                rng[:, 1] += widen
        return cls(
            n_atoms=n,
            bonds=bonds,
            bond_range=bond_range,
            angle_range=angle_range,
            exclude=exclude,
            min_contact=float(contacts),
            chiral=chiral,
            chiral_sign=np.where(signs < 0, -1.0, 1.0),
            percentiles=key,
            bands={b: ranges(b) for b in keys if b != key},
            margin=margin,
        )

    def check(self, positions: Any, labels: Any = None) -> ValidityReport:
        """Check structures (T, N, D) or one structure (N, D).

        Bond ranges are widened by :data:`RANGE_TOLERANCE` of the bond's length and angle
        ranges by that many radians: a bond constrained in the simulation has a range
        narrower than float32 rounding of a rebuilt structure.

        Parameters
        ----------
        positions : array (T, N, D) or (N, D)
        labels : AtomLabels or sequence of str (N,), optional
            Atom names, for the report's :meth:`~ValidityReport.summary`; without them
            it names atoms by index.
        """
        x, _ = ensure_frames(positions, "positions", min_atoms=self.n_atoms)
        if x.shape[1] != self.n_atoms:
            raise ValueError(
                f"positions must hold the {self.n_atoms} atoms of the checks; got {x.shape[1]}"
            )
        if labels is not None and not isinstance(labels, AtomLabels):
            labels = AtomLabels.of(labels)
        if labels is not None and len(labels) != self.n_atoms:
            raise ValueError(
                f"labels must name the {self.n_atoms} atoms of the checks; got {len(labels)}"
            )
        lengths = geometry.pair_distances(x, self.bonds)
        tol = RANGE_TOLERANCE * self.bond_range.mean(axis=1)
        lo, hi = self.bond_range[:, 0] - tol, self.bond_range[:, 1] + tol
        bond_ok = (lengths >= lo) & (lengths <= hi)
        triples = self.angles
        angles = geometry.bond_angles(x, triples)
        lo, hi = self.angle_range[:, 0] - RANGE_TOLERANCE, self.angle_range[:, 1] + RANGE_TOLERANCE
        angle_ok = (angles >= lo) & (angles <= hi)
        contacts_ok, close = self._contacts(x)
        failures = {
            "bonds": _failing_items(self.bonds, bond_ok),
            "angles": _failing_items(triples, angle_ok),
            "contacts": close,
        }
        chirality_ok = None
        if len(self.chiral):
            if x.shape[2] != 3:
                raise ValueError(
                    f"positions must be 3D to check the {len(self.chiral)} chiral centres; "
                    f"got D={x.shape[2]}"
                )
            centre_ok = geometry.chirality(x, self.chiral) == self.chiral_sign
            chirality_ok = np.all(centre_ok, axis=1)
            failures["chirality"] = _failing_items(self.chiral[:, :1], centre_ok)
        return ValidityReport(
            np.all(bond_ok, axis=1),
            np.all(angle_ok, axis=1),
            contacts_ok,
            chirality_ok,
            failures,
            labels,
        )

    def _contacts(self, x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Per structure of ``x`` (T, N, D), whether no pair beyond the excluded ones comes
        closer than :attr:`min_contact`; and the pairs (K, 2) that do in some structure,
        with in how many, most first (ties in row-major order)."""
        n, excluded = self.n_atoms, self.excluded_codes
        if n * (n - 1) // 2 - len(excluded) > ALL_PAIRS_LIMIT:
            return self._contacts_near(x, excluded)
        pairs = _contact_pairs(n, excluded)
        ok = np.ones(len(x), dtype=bool)
        counts = np.zeros(len(pairs), dtype=np.int64)
        for b in _frame_blocks(len(x), len(pairs)):
            close = geometry.pair_distances(x[b], pairs) < self.min_contact
            ok[b] = ~close.any(axis=1)
            counts += close.sum(axis=0)
        return ok, _by_count(pairs, counts)

    def _contacts_near(self, x: np.ndarray, excluded: np.ndarray):
        """:meth:`_contacts` from a k-d tree per structure: memory linear in N."""
        n = self.n_atoms
        # a pair at min_contact itself passes; the tree's distances may round differently
        reach = self.min_contact * (1.0 + 1e-9)
        ok = np.ones(len(x), dtype=bool)
        codes = []
        for t, frame in enumerate(x):
            pairs, d = geometry.close_pairs(frame, reach, excluded)
            close = pairs[d < self.min_contact]
            ok[t] = len(close) == 0
            codes.append(geometry.pair_codes(close, n))
        code, count = np.unique(np.concatenate(codes), return_counts=True)
        return ok, _by_count(np.stack([code // n, code % n], axis=1), count)

    def to_dict(self) -> dict:
        """JSON-ready form, for the model file."""
        return {
            "n_atoms": int(self.n_atoms),
            "bonds": self.bonds.tolist(),
            "bond_range": self.bond_range.tolist(),
            "angle_range": self.angle_range.tolist(),
            "exclude": int(self.exclude),
            "min_contact": float(self.min_contact),
            **(
                {"chiral": self.chiral.tolist(), "chiral_sign": self.chiral_sign.tolist()}
                if len(self.chiral)
                else {}
            ),
            "percentiles": list(self.percentiles),
            "margin": float(self.margin),
            "bands": [
                {"percentiles": list(b), "bond_range": r[0].tolist(), "angle_range": r[1].tolist()}
                for b, r in sorted(self.bands.items())
            ],
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "structure_checks") -> StructureChecks:
        """Read :meth:`to_dict` output; ValueError naming ``where`` when it is malformed.

        Files without ``percentiles`` and ``bands`` (written before they were stored)
        hold the training ranges, percentiles (0, 100), and no further bands; files
        without ``margin`` hold ranges that were not widened (margin 0).
        """
        try:
            n = ensure_int(d["n_atoms"], f"{where} 'n_atoms'", 3)
            bonds = ensure_pairs(np.asarray(d["bonds"], dtype=np.int64), n, f"{where} 'bonds'")
            bond_range = np.asarray(d["bond_range"], dtype=np.float64).reshape(len(bonds), 2)
            n_angles = len(geometry.angle_triples(n, bonds))
            angle_range = np.asarray(d["angle_range"], dtype=np.float64).reshape(n_angles, 2)
            exclude = ensure_int(d["exclude"], f"{where} 'exclude'", 1)
            min_contact = ensure_number(d["min_contact"], f"{where} 'min_contact'", minimum=0)
            chiral = ensure_pairs(
                np.asarray(d.get("chiral", []), dtype=np.int64), n, f"{where} 'chiral'", width=4
            )
            chiral_sign = np.asarray(d.get("chiral_sign", []), dtype=np.float64).reshape(
                len(chiral)
            )
            if not np.all(np.abs(chiral_sign) == 1):
                raise ValueError(f"{where} 'chiral_sign' must hold +1 or -1 for each centre")
            key = _band_key(d.get("percentiles", (0.0, 100.0)), f"{where} 'percentiles'")
            margin = ensure_number(d.get("margin", 0.0), f"{where} 'margin'", minimum=0)
            bands = {}
            for k, b in enumerate(d.get("bands", [])):
                bands[_band_key(b["percentiles"], f"{where} 'bands'[{k}]")] = (
                    np.asarray(b["bond_range"], dtype=np.float64).reshape(len(bonds), 2),
                    np.asarray(b["angle_range"], dtype=np.float64).reshape(n_angles, 2),
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where} is malformed: {exc}") from None
        return cls(
            n,
            bonds,
            bond_range,
            angle_range,
            exclude,
            min_contact,
            chiral,
            chiral_sign,
            key,
            bands,
            float(margin),
        )
