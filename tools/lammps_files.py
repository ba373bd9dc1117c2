"""LAMMPS input and output files: the bead-spring chain's data file, dumps, Colvars traces.

No LAMMPS needed here: these functions write and read plain text.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

DEFAULT_POLYMER = {
    "mass": 100.0,  # g/mol
    "bond_k": 10.0,  # kcal/mol/Å^2 in E = K (r - r0)^2
    "bond_r0": 3.8,  # Å
    "angle_k": 2.0,  # kcal/mol/rad^2 in E = K (theta - theta0)^2
    "angle_theta0": 130.0,  # degrees
    "lj_epsilon": 0.5,  # kcal/mol
    "lj_sigma": 4.0,  # Å
    "timestep": 5.0,  # fs
    "damping": 500.0,  # fs, Langevin damping time
}


def zigzag_chain(
    n_beads: int,
    bond_length: float = 3.8,
    angle_deg: float = 130.0,
    *,
    jitter: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """A planar zigzag chain (N, 3) in Å with the given bond length and bond angle.

    ``jitter`` adds Gaussian noise (Å, all three axes) so the start is not planar.
    """
    if n_beads < 1:
        raise ValueError("n_beads must be >= 1")
    half = math.radians(angle_deg) / 2.0
    dx = bond_length * math.sin(half)
    dy = bond_length * math.cos(half)
    x = np.zeros((n_beads, 3))
    x[:, 0] = dx * np.arange(n_beads)
    x[1::2, 1] = dy
    x -= x.mean(axis=0)
    if jitter:
        x += np.random.default_rng(seed).normal(scale=jitter, size=x.shape)
    return x


def _as_pairs(items, width: int, n: int, name: str) -> np.ndarray:
    arr = np.asarray(items if items is not None else [], dtype=np.int64).reshape(-1, width)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"{name}: 0-based atom indices must lie in [0, {n})")
    return arr


def _box_bounds(positions: np.ndarray, box, padding: float) -> np.ndarray:
    if box is None:
        lo = positions.min(axis=0) - padding
        hi = positions.max(axis=0) + padding
        bounds = np.stack([lo, hi], axis=1)
    elif np.ndim(box) == 0:
        centre = 0.5 * (positions.min(axis=0) + positions.max(axis=0))
        bounds = np.stack([centre - 0.5 * float(box), centre + 0.5 * float(box)], axis=1)
    else:
        bounds = np.asarray(box, dtype=float)
        if bounds.shape == (3,):
            centre = 0.5 * (positions.min(axis=0) + positions.max(axis=0))
            bounds = np.stack([centre - 0.5 * bounds, centre + 0.5 * bounds], axis=1)
        if bounds.shape != (3, 2):
            raise ValueError("box: None, an edge length, three edge lengths or (3, 2) lo/hi")
    if np.any(bounds[:, 1] <= bounds[:, 0]):
        raise ValueError("box: every hi must exceed its lo")
    if np.any(positions < bounds[:, 0]) or np.any(positions > bounds[:, 1]):
        raise ValueError("box: some positions lie outside the box")
    return bounds


def polymer_data_file(
    path,
    positions,
    *,
    masses: float = DEFAULT_POLYMER["mass"],
    box=None,
    bonds=None,
    angles=None,
    dihedrals=None,
    padding: float = 50.0,
) -> Path:
    """Write a LAMMPS data file (``atom_style molecular``) for a bead-spring chain.

    positions: (N, 3) in Å. One atom type, bond type 1, angle type 1, all atoms in
    molecule 1, atom IDs 1..N in the order of ``positions``.
    masses: the bead mass in g/mol (one atom type: a scalar, or an array of equal values).
    box: None (bounding box of the positions plus ``padding`` Å on every side), an edge
    length or three edge lengths (a box centred on the chain), or (3, 2) lo/hi bounds.
    bonds: (B, 2) 0-based atom indices; None means the chain ``(i, i + 1)``.
    angles: (A, 3) 0-based atom indices; None means ``(i, i + 1, i + 2)``.
    dihedrals: (D, 4) 0-based atom indices of dihedral type 1; None means none.
    Returns the path written.
    """
    x = np.asarray(positions, dtype=float)
    if x.ndim != 2 or x.shape[1] != 3 or x.shape[0] < 1:
        raise ValueError(f"positions must be (N, 3), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("positions must be finite")
    n = x.shape[0]
    mass_values = np.unique(np.atleast_1d(np.asarray(masses, dtype=float)))
    if mass_values.size != 1 or not mass_values[0] > 0:
        raise ValueError("masses: one positive mass (the chain has a single atom type)")
    if bonds is None:
        bonds = [(i, i + 1) for i in range(n - 1)]
    if angles is None:
        angles = [(i, i + 1, i + 2) for i in range(n - 2)]
    b = _as_pairs(bonds, 2, n, "bonds")
    a = _as_pairs(angles, 3, n, "angles")
    d = _as_pairs(dihedrals, 4, n, "dihedrals")
    bounds = _box_bounds(x, box, padding)

    lines = [
        "LAMMPS data file: bead-spring chain written by lammps_harness",
        "",
        f"{n} atoms",
        f"{len(b)} bonds",
        f"{len(a)} angles",
        *([f"{len(d)} dihedrals"] if len(d) else []),
        "1 atom types",
        "1 bond types",
        "1 angle types",
        *(["1 dihedral types"] if len(d) else []),
        "",
    ]
    for (lo, hi), ax in zip(bounds, "xyz", strict=True):
        lines.append(f"{lo:.10f} {hi:.10f} {ax}lo {ax}hi")
    lines += ["", "Masses", "", f"1 {mass_values[0]:.10g}", "", "Atoms # molecular", ""]
    for i, (px, py, pz) in enumerate(x):
        lines.append(f"{i + 1} 1 1 {px:.15g} {py:.15g} {pz:.15g}")
    if len(b):
        lines += ["", "Bonds", ""]
        lines += [f"{k + 1} 1 {i + 1} {j + 1}" for k, (i, j) in enumerate(b)]
    if len(a):
        lines += ["", "Angles", ""]
        lines += [f"{k + 1} 1 {i + 1} {j + 1} {m + 1}" for k, (i, j, m) in enumerate(a)]
    if len(d):
        lines += ["", "Dihedrals", ""]
        lines += [f"{k + 1} 1 {' '.join(str(i + 1) for i in q)}" for k, q in enumerate(d)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def read_lammps_dump(path) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Read a text ``dump custom`` file sorted by id.

    Returns (timesteps (T,), column names, data (T, N, C)); the number of atoms must be
    the same in every frame.
    """
    lines = Path(path).read_text().splitlines()
    steps: list[int] = []
    rows: list[str] = []
    columns: list[str] | None = None
    n_atoms = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("ITEM: TIMESTEP"):
            steps.append(int(lines[i + 1].split()[0]))
            i += 2
        elif line.startswith("ITEM: NUMBER OF ATOMS"):
            n = int(lines[i + 1])
            if n_atoms is not None and n != n_atoms:
                raise ValueError(f"{path}: the number of atoms changes between frames")
            n_atoms = n
            i += 2
        elif line.startswith("ITEM: ATOMS"):
            cols = line.split()[2:]
            if columns is not None and cols != columns:
                raise ValueError(f"{path}: the dump columns change between frames")
            columns = cols
            rows.extend(lines[i + 1 : i + 1 + n_atoms])
            i += 1 + n_atoms
        else:
            i += 1
    if columns is None:
        return np.zeros(0, dtype=np.int64), [], np.zeros((0, 0, 0))
    data = np.array(" ".join(rows).split(), dtype=float)
    data = data.reshape(len(steps), n_atoms, len(columns))
    return np.asarray(steps, dtype=np.int64), columns, data


_TOKEN = re.compile(r"\([^)]*\)|\S+")


def read_colvars_traj(path) -> tuple[list[str], np.ndarray]:
    """Read a Colvars ``.colvars.traj`` file.

    Returns (column names, array (T, C)); the first column is ``step``. The header line
    (``# step  name1  name2 ...``, repeated now and then by Colvars) gives the names; a
    vector-valued column ``v`` written as ``( a , b , c )`` becomes ``v_1, v_2, v_3``.
    If a restart repeats steps, all rows are kept in file order.
    """
    header: list[str] | None = None
    names: list[str] | None = None
    rows: list[list[float]] = []
    for line in Path(path).read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if header is None:
                header = stripped.lstrip("#").split()
            continue
        tokens = _TOKEN.findall(stripped)
        if header is None:
            raise ValueError(f"{path}: data before the header line")
        if len(tokens) != len(header):
            raise ValueError(
                f"{path}: {len(tokens)} values on a line for {len(header)} header names"
            )
        values: list[float] = []
        these: list[str] = []
        for name, tok in zip(header, tokens, strict=True):
            if tok.startswith("("):
                parts = [float(v) for v in tok.strip("()").replace(",", " ").split()]
                values.extend(parts)
                these.extend(f"{name}_{k + 1}" for k in range(len(parts)))
            else:
                values.append(float(tok))
                these.append(name)
        if names is None:
            names = these
        elif these != names:
            raise ValueError(f"{path}: the columns change between lines")
        rows.append(values)
    if names is None:
        return (header or []), np.zeros((0, len(header or [])))
    return names, np.asarray(rows, dtype=float)


# ---------------------------------------------------------------------------------------
# running
