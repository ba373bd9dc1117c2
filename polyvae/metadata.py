"""Typed facts a model file keeps about its training data.

:class:`AtomInfo` describes the atoms a model was trained on (topology indices, names,
residues, masses, the selection); :class:`TrainingStats` the structural statistics of
the training frames that analysis compares against. Both are read from and written to
the JSON of the model file, and checked on reading, so that a damaged or hand-edited
file fails at load with one message instead of deep inside an analysis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from polyvae._checks import ensure_pairs
from polyvae.measures.validity import StructureChecks

__all__ = ["AtomInfo", "TrainingStats", "check_model_metadata"]


def _str_list(d: dict, key: str, n: int | None, where: str) -> tuple[str, ...] | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: {key!r} must be a list of strings; got {_brief(value)}")
    if n is not None and len(value) != n:
        raise ValueError(f"{where}: {key!r} must have {n} entries (one per atom); got {len(value)}")
    return tuple(value)


def _num_list(d: dict, key: str, n: int | None, where: str, integer: bool):
    value = d.get(key)
    if value is None:
        return None
    kind = int if integer else (int, float)
    ok = isinstance(value, list) and all(
        isinstance(v, kind) and not isinstance(v, bool) for v in value
    )
    if not ok:
        what = "integers" if integer else "numbers"
        raise ValueError(f"{where}: {key!r} must be a list of {what}; got {_brief(value)}")
    if n is not None and len(value) != n:
        raise ValueError(f"{where}: {key!r} must have {n} entries (one per atom); got {len(value)}")
    return np.asarray(value, dtype=np.int64 if integer else np.float64)


def _bonds(d: dict, n: int, where: str) -> np.ndarray | None:
    value = d.get("bonds")
    if value is None:
        return None
    ok = isinstance(value, list) and all(
        isinstance(b, list)
        and len(b) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) for i in b)
        for b in value
    )
    if not ok:
        raise ValueError(
            f"{where}: 'bonds' must be a list of [i, j] pairs of integers; got {_brief(value)}"
        )
    return ensure_pairs(np.asarray(value, dtype=np.int64).reshape(-1, 2), n, f"{where} 'bonds'")


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, eq=False)
class AtomInfo:
    """The atoms of a model, in the model's order.

    Attributes
    ----------
    names : tuple of str (N,)
    masses : ndarray (N,) or None
        Masses from the topology (u), when known.
    indices : ndarray (N,) of int or None
        0-based indices in the topology the model was trained from (engine atom number
        is ``index + 1``); None for frames without a topology (``.npz``).
    resnames : tuple of str or None
    resids : ndarray (N,) of int or None
    selection : str or None
        The selection that picked the atoms.
    n_atoms_topology : int or None
        Atoms in the whole topology.
    bonds : ndarray (B, 2) of int or None
        0-based bonded pairs in the model's atom order, only bonds with both atoms in
        the selection; None when unknown (an older file, a topology without bonds). A
        model file written by :func:`polyvae.train` holds the bonds the model used.
    """

    names: tuple[str, ...]
    masses: np.ndarray | None = None
    indices: np.ndarray | None = None
    resnames: tuple[str, ...] | None = None
    resids: np.ndarray | None = None
    selection: str | None = None
    n_atoms_topology: int | None = None
    bonds: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        return len(self.names)

    @classmethod
    def from_dict(cls, d: Any, where: str = "atoms") -> AtomInfo:
        """Read the JSON form (``to_dict``); ValueError naming ``where`` on bad content."""
        if not isinstance(d, dict):
            raise ValueError(f"{where} must be a JSON object; got {_brief(d)}")
        names = _str_list(d, "names", None, where)
        indices = _num_list(d, "indices", None, where, integer=True)
        if names is None and indices is None:
            raise ValueError(f"{where} must hold 'names' or 'indices'")
        n = len(names) if names is not None else len(indices)
        if names is None:
            names = tuple(f"B{i}" for i in range(n))
        if indices is not None and len(indices) != n:
            raise ValueError(f"{where} has {len(indices)} indices but {n} names")
        if indices is not None and n and indices.min() < 0:
            raise ValueError(f"{where}: 'indices' holds a negative index ({indices.min()})")
        for key in ("masses", "resnames", "resids"):
            given = d.get(key)
            if isinstance(given, list) and names is not None and len(given) != n:
                raise ValueError(
                    f"{where}: 'names' lists {n} atoms but {key!r} {len(given)}: the lists "
                    "must describe the same atoms (was one of them edited?)"
                )
        masses = _num_list(d, "masses", n, where, integer=False)
        if masses is not None and not (np.all(np.isfinite(masses)) and np.all(masses > 0)):
            raise ValueError(f"{where}: 'masses' must be finite and positive")
        selection = d.get("selection")
        if selection is not None and not isinstance(selection, str):
            raise ValueError(f"{where}: 'selection' must be a string; got {_brief(selection)}")
        total = d.get("n_atoms_topology")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
            raise ValueError(f"{where}: 'n_atoms_topology' must be an integer; got {_brief(total)}")
        return cls(
            names=names,
            masses=masses,
            indices=indices,
            resnames=_str_list(d, "resnames", n, where),
            resids=_num_list(d, "resids", n, where, integer=True),
            selection=selection,
            n_atoms_topology=total,
            bonds=_bonds(d, n, where),
        )

    def to_dict(self) -> dict:
        """JSON-ready form (lists), leaving out what is unknown."""
        out: dict[str, Any] = {"names": list(self.names)}
        for key in ("indices", "resids"):
            value = getattr(self, key)
            if value is not None:
                out[key] = [int(v) for v in value]
        if self.masses is not None:
            out["masses"] = [float(v) for v in self.masses]
        if self.resnames is not None:
            out["resnames"] = list(self.resnames)
        if self.selection is not None:
            out["selection"] = self.selection
        if self.n_atoms_topology is not None:
            out["n_atoms_topology"] = int(self.n_atoms_topology)
        if self.bonds is not None:
            out["bonds"] = [[int(i), int(j)] for i, j in self.bonds]
        return out


@dataclass(frozen=True)
class TrainingStats:
    """Structural statistics of the aligned training frames (lengths in the model's unit).

    Attributes
    ----------
    rg_min, rg_mean : float
        Smallest and mean mass-weighted radius of gyration.
    min_nonbonded_p01 : float
        1st percentile over frames of the closest non-bonded contact (pairs beyond
        the chain's bonds).
    bond_mean, bond_std : float
        Mean and standard deviation of the chain's bond lengths.
    """

    rg_min: float
    rg_mean: float
    min_nonbonded_p01: float
    bond_mean: float
    bond_std: float

    @classmethod
    def from_dict(cls, d: Any, where: str = "train_stats") -> TrainingStats:
        if not isinstance(d, dict):
            raise ValueError(f"{where} must be a JSON object; got {_brief(d)}")
        values = {}
        for f in fields(cls):
            v = d.get(f.name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{where}: {f.name!r} must be a finite number; got {_brief(v)}")
            values[f.name] = float(v)
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


def check_model_metadata(metadata: Any) -> dict:
    """The ``metadata`` of a model file with its typed parts checked; ``{}`` for None.

    Raises ValueError naming the part that is malformed (unit, names, atoms,
    train_stats).
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValueError(f"'metadata' must be a JSON object; got {_brief(metadata)}")
    unit = metadata.get("unit", "Å")
    if not isinstance(unit, str) or not unit:
        raise ValueError(f"metadata 'unit' must be a non-empty string; got {_brief(unit)}")
    _str_list(metadata, "names", None, "metadata")
    if metadata.get("atoms") is not None:
        AtomInfo.from_dict(metadata["atoms"], "metadata 'atoms'")
    if metadata.get("train_stats") is not None:
        TrainingStats.from_dict(metadata["train_stats"], "metadata 'train_stats'")
    if metadata.get("structure_checks") is not None:
        StructureChecks.from_dict(metadata["structure_checks"], "metadata 'structure_checks'")
    return metadata
