"""Frames: the trajectory container every stage of polyvae consumes.

A :class:`Frames` holds positions ``(T, N, D)`` in float32 (lengths in Å unless
``unit`` says otherwise), per-atom masses and names, per-frame times and, when the
source knows them, the bonds between its atoms. It is
validated once, at construction, so that later stages can trust its shape and
content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polyvae._checks import ensure_finite_rows, ensure_masses, ensure_pairs, ensure_positions

__all__ = ["Frames", "as_positions", "check_finite"]


def check_finite(positions: np.ndarray, name: str = "positions") -> None:
    """Raise ``ValueError`` naming the first frame of (T, N, D) that holds NaN or inf."""
    ensure_finite_rows(positions, f"{name} (coordinates)", what="frame")


def as_positions(positions: Any, name: str = "positions", min_atoms: int = 3) -> np.ndarray:
    """Validate and convert coordinates to a float32 array of shape (T, N, D).

    A single frame ``(N, D)`` is promoted to ``(1, N, D)``; see
    :func:`polyvae._checks.ensure_positions`.
    """
    return ensure_positions(positions, name, min_atoms=min_atoms)


def _canonical(bonds: np.ndarray) -> np.ndarray:
    rows = np.sort(bonds, axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def _same_bonds(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return np.array_equal(_canonical(a), _canonical(b))


def _count(bonds: np.ndarray | None) -> str:
    return "no bond information" if bonds is None else f"{len(bonds)} bonds"


@dataclass(frozen=True, eq=False)
class Frames:
    """A validated trajectory of one molecule (or one atom selection).

    Parameters
    ----------
    positions : array_like (T, N, D)
        Coordinates, D = 2 or 3, stored as float32.
    masses : array_like (N,), optional
        Atomic masses (default 1 for every atom); must be positive.
    names : sequence of str (N,), optional
        Atom names (default ``"B0"``, ``"B1"``, ...).
    times : array_like (T,), optional
        Frame times (default 0, 1, 2, ...).
    unit : str
        Length unit of ``positions`` ("Å" unless the source says otherwise).
    metadata : dict, optional
        What the reader knows about the source; ``metadata["atoms"]`` describes the
        atoms (the :func:`polyvae.io.mda.atom_info` schema).
    bonds : array_like (B, 2) of int, optional
        0-based bonded atom pairs (from the topology), or None when unknown. Default:
        ``metadata["atoms"]["bonds"]`` if present; when both are given they must agree.
        ``metadata["atoms"]``, if present, is made to hold the same bonds.
    """

    positions: np.ndarray
    masses: np.ndarray = None  # type: ignore[assignment]
    names: tuple[str, ...] = None  # type: ignore[assignment]
    times: np.ndarray = None  # type: ignore[assignment]
    unit: str = "Å"
    metadata: dict = field(default_factory=dict)
    bonds: np.ndarray | None = None

    def __post_init__(self) -> None:
        pos = as_positions(self.positions, "positions")
        t, n, _ = pos.shape
        masses = ensure_masses(self.masses, n)
        names = (
            tuple(f"B{i}" for i in range(n)) if self.names is None else tuple(map(str, self.names))
        )
        if len(names) != n:
            raise ValueError(f"names must have one entry per atom (N={n}); got {len(names)}")
        times = (
            np.arange(t, dtype=np.float64)
            if self.times is None
            else np.asarray(self.times, np.float64)
        )
        if times.shape != (t,):
            raise ValueError(
                f"times must have shape (T,) = ({t},) to match positions; got {times.shape}"
            )
        if not isinstance(self.unit, str) or not self.unit:
            raise TypeError(f"unit must be a non-empty string; got {self.unit!r}")
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "masses", masses)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "times", times)
        self._set_bonds(n)

    def _set_bonds(self, n: int) -> None:
        atoms = self.metadata.get("atoms") if isinstance(self.metadata, dict) else None
        stored = atoms.get("bonds") if isinstance(atoms, dict) else None
        bonds = self.bonds
        if bonds is None and stored is None:
            return
        if bonds is None:
            bonds = ensure_pairs(stored, n, "metadata['atoms']['bonds']")
        else:
            bonds = ensure_pairs(bonds, n, "bonds")
            if stored is not None and not np.array_equal(
                np.asarray(stored, dtype=np.int64).reshape(-1, 2), bonds
            ):
                raise ValueError(
                    "bonds and metadata['atoms']['bonds'] must agree when both are given; "
                    f"got {len(bonds)} and {len(stored)} bonds that differ"
                )
        object.__setattr__(self, "bonds", bonds)
        if isinstance(atoms, dict):
            metadata = dict(self.metadata)
            metadata["atoms"] = {**atoms, "bonds": bonds.tolist()}
            object.__setattr__(self, "metadata", metadata)

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return self.positions.shape[0]

    @property
    def n_atoms(self) -> int:
        """Number of atoms N."""
        return self.positions.shape[1]

    @property
    def dim(self) -> int:
        """Spatial dimension D (2 or 3)."""
        return self.positions.shape[2]

    def __len__(self) -> int:
        return self.n_frames

    def __getitem__(self, index) -> Frames:
        """Frames selected by an int, slice, or index array (atoms are kept)."""
        idx = np.arange(self.n_frames)[index]
        idx = np.atleast_1d(idx)
        return Frames(
            self.positions[idx],
            self.masses,
            self.names,
            self.times[idx],
            self.unit,
            dict(self.metadata),
            self.bonds,
        )

    @classmethod
    def concat(cls, frames: Sequence[Frames], labels: Sequence[str] | None = None) -> Frames:
        """Join trajectories of the same atoms frame-wise.

        Parameters
        ----------
        frames : sequence of Frames
            At least one; all with the same atoms (count and names), dimension and unit.
        labels : sequence of str, optional
            A name for each item (e.g. its file) used in error messages; default
            ``frames[0]``, ``frames[1]``, ...

        Returns
        -------
        Frames
            Positions (sum of T, N, D) and times concatenated; masses, names, bonds and
            a copy of the metadata of the first item.
        """
        parts = list(frames)
        if not parts:
            raise ValueError("frames must hold at least one Frames to concatenate; got none")
        for k, f in enumerate(parts):
            if not isinstance(f, Frames):
                raise TypeError(f"frames[{k}] must be a polyvae Frames; got {type(f).__name__}")
        names = [f"frames[{k}]" for k in range(len(parts))] if labels is None else list(labels)
        first = parts[0]
        for k, f in enumerate(parts[1:], start=1):
            if (f.n_atoms, f.dim) != (first.n_atoms, first.dim):
                raise ValueError(
                    f"{names[k]} has {f.n_atoms} atoms in {f.dim}D but {names[0]} has "
                    f"{first.n_atoms} atoms in {first.dim}D; they cannot be concatenated"
                )
            if f.unit != first.unit:
                raise ValueError(
                    f"{names[k]} is in unit {f.unit!r} but {names[0]} in {first.unit!r}; "
                    "they cannot be concatenated"
                )
            if f.names != first.names:
                i = next(
                    i for i, (a, b) in enumerate(zip(f.names, first.names, strict=True)) if a != b
                )
                raise ValueError(
                    f"atom {i} of {names[k]} is named {f.names[i]!r} but {first.names[i]!r} in "
                    f"{names[0]}: not the same atoms, they cannot be concatenated"
                )
            if not _same_bonds(f.bonds, first.bonds):
                raise ValueError(
                    f"{names[k]} and {names[0]} have different bonds ({_count(f.bonds)} and "
                    f"{_count(first.bonds)}): not the same topology, they cannot be concatenated"
                )
        if len(parts) == 1:
            return first[:]
        return cls(
            np.concatenate([f.positions for f in parts]),
            first.masses,
            first.names,
            np.concatenate([f.times for f in parts]),
            first.unit,
            dict(first.metadata),
            first.bonds,
        )

    def __repr__(self) -> str:
        return (
            f"Frames(n_frames={self.n_frames}, n_atoms={self.n_atoms}, dim={self.dim}, "
            f"unit={self.unit!r})"
        )


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """Indices of up to ``k`` of ``n`` frames, evenly spread from the first to the last."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))
