"""Langevin simulation of alanine dipeptide (ACE-ALA-NME, 22 atoms) in vacuum with OpenMM.

A small real molecule in 3D with hydrogens and one chiral centre (the Cα of L-alanine),
for tests and benchmarks. The start structure is written into this file: the first frame
of an Amber run of capped alanine in water (the ``capped-ala`` files of MDAnalysisTests),
water left out. The force field is Amber ff14SB (OpenMM's ``amber14-all.xml``), in vacuum
without cutoff. Needs ``openmm`` (part of the ``test`` extra). Write a trajectory with
``python tools/peptide.py -o ala2.npz --frames 2000 --seed 0``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyvae.frames import Frames
from polyvae.io import write_npz

__all__ = ["START_PDB", "simulate_alanine_dipeptide", "write_openmm_files", "main"]

logger = logging.getLogger(__name__)

# (name, residue, residue number, x, y, z in Å): Amber atom order, L-alanine
_START = [
    ("HH31", "ACE", 1, 22.499, 16.108, 21.215),
    ("CH3", "ACE", 1, 21.802, 16.777, 20.711),
    ("HH32", "ACE", 1, 20.916, 16.879, 21.338),
    ("HH33", "ACE", 1, 21.474, 16.456, 19.722),
    ("C", "ACE", 1, 22.515, 18.133, 20.700),
    ("O", "ACE", 1, 23.677, 18.058, 21.033),
    ("N", "ALA", 2, 21.803, 19.190, 20.454),
    ("H", "ALA", 2, 20.815, 19.086, 20.270),
    ("CA", "ALA", 2, 22.336, 20.557, 20.281),
    ("HA", "ALA", 2, 23.174, 20.773, 20.944),
    ("CB", "ALA", 2, 22.921, 20.696, 18.794),
    ("HB1", "ALA", 2, 22.338, 20.092, 18.099),
    ("HB2", "ALA", 2, 22.774, 21.749, 18.552),
    ("HB3", "ALA", 2, 23.951, 20.368, 18.650),
    ("C", "ALA", 2, 21.126, 21.534, 20.491),
    ("O", "ALA", 2, 19.963, 21.170, 20.600),
    ("N", "NME", 3, 21.435, 22.836, 20.684),
    ("H", "NME", 3, 22.399, 23.069, 20.492),
    ("CH3", "NME", 3, 20.476, 23.944, 20.990),
    ("HH31", "NME", 3, 20.528, 24.289, 22.023),
    ("HH32", "NME", 3, 20.806, 24.825, 20.441),
    ("HH33", "NME", 3, 19.430, 23.753, 20.748),
]

START_PDB = (
    "\n".join(
        f"ATOM  {i + 1:5d} {name:<4s} {res:3s} A{num:4d}    {x:8.3f}{y:8.3f}{z:8.3f}"
        f"  1.00  0.00          {name[0]:>2s}"
        for i, (name, res, num, x, y, z) in enumerate(_START)
    )
    + "\nEND\n"
)
"""The start structure as PDB text (22 atoms, Å)."""


def simulate_alanine_dipeptide(
    path: str | os.PathLike,
    n_frames: int = 2000,
    interval_ps: float = 0.5,
    seed: int = 0,
    temperature: float = 300.0,
) -> Path:
    """Simulate alanine dipeptide in vacuum and write it as a polyvae ``.npz`` trajectory.

    Amber ff14SB (``amber14-all.xml``), no cutoff, no solvent; bonds to hydrogen are
    constrained (HBonds), so their lengths do not vary between frames. The start structure
    (:data:`START_PDB`) is energy-minimized, given Maxwell-Boltzmann velocities, and
    equilibrated for 10 ps; then ``n_frames`` frames are saved every ``interval_ps``.
    Dynamics: ``LangevinMiddleIntegrator``, friction 1/ps, time step 2 fs, on OpenMM's
    Reference platform (double precision, single thread), so a seed gives the same
    trajectory on every run. The default run (1 ns, 2000 frames) takes about 10 s on one
    CPU core (9 s of it in OpenMM). With seed 0 it moves many times between the C7eq
    (71 % of frames) and C5/β (20 %) basins of the backbone (phi, psi); αR is seldom
    visited (1 %) and αL not at all.

    If ``path`` exists it is returned as it is, without simulating (a cache; it is not
    checked against the arguments).

    Parameters
    ----------
    path : str or os.PathLike
        Output file (``.npz`` is appended if missing).
    n_frames : int
        Number of saved frames T (at least 1).
    interval_ps : float
        Time between saved frames in ps; a multiple of the 2 fs time step.
    seed : int
        Seed (>= 0) of the initial velocities and the thermostat noise.
    temperature : float
        Temperature of the velocities and the thermostat in K.

    Returns
    -------
    Path
        The file, with ``positions`` (T, 22, 3) in Å, ``names`` (the Amber atom names of
        the start structure), ``masses`` (amu), ``times`` (ps after the equilibration) and
        ``bonds`` (21, 2), 0-based.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if path.exists():
        return path
    start = time.perf_counter()
    run = _simulate(n_frames, interval_ps, seed, temperature)
    frames = Frames(
        run.positions,
        masses=run.masses,
        names=[name for name, *_ in _START],  # Amber names; OpenMM renames the NME atoms
        times=run.times,
        bonds=[(b.atom1.index, b.atom2.index) for b in run.topology.bonds()],
    )
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    write_npz(tmp, frames)
    os.replace(tmp, path)
    logger.info(
        "alanine dipeptide: %d frames in %.1f s -> %s", n_frames, time.perf_counter() - start, path
    )
    return path


def write_openmm_files(
    directory: str | os.PathLike,
    n_frames: int = 200,
    interval_ps: float = 0.5,
    seed: int = 0,
    temperature: float = 300.0,
) -> tuple[Path, Path]:
    """Simulate alanine dipeptide and write it as OpenMM writes it: a PDB and a DCD.

    The run is that of :func:`simulate_alanine_dipeptide` (same arguments, same frames
    for the same seed). ``ala2.pdb`` is the topology with the minimized start structure,
    written by ``openmm.app.PDBFile.writeFile``: OpenMM writes ``CONECT`` records only
    for bonds that touch a nonstandard residue (the ACE and NME caps), none for the
    bonds inside the standard residue ALA, and its own atom names (``H1``, ``H2``, ...
    for the cap hydrogens). ``traj.dcd`` holds the frames (``openmm.app.DCDFile``, no
    unit cell: the run is in vacuum).

    If both files exist in ``directory`` they are returned as they are (a cache; not
    checked against the arguments).

    Returns
    -------
    pdb, dcd : Path
        ``directory / "ala2.pdb"`` and ``directory / "traj.dcd"``.
    """
    from openmm import app, unit

    directory = Path(directory)
    pdb_path, dcd_path = directory / "ala2.pdb", directory / "traj.dcd"
    if pdb_path.exists() and dcd_path.exists():
        return pdb_path, dcd_path
    directory.mkdir(parents=True, exist_ok=True)
    run = _simulate(n_frames, interval_ps, seed, temperature)
    tmp = directory / f".ala2.{os.getpid()}.tmp"
    with open(tmp.with_suffix(".pdb"), "w") as handle:
        app.PDBFile.writeFile(run.topology, run.start * unit.angstrom, handle)
    with open(tmp.with_suffix(".dcd"), "wb") as handle:
        dcd = app.DCDFile(handle, run.topology, 0.002 * unit.picoseconds, interval=run.stride)
        for frame in run.positions:
            dcd.writeModel(frame * unit.angstrom)
    os.replace(tmp.with_suffix(".dcd"), dcd_path)
    os.replace(tmp.with_suffix(".pdb"), pdb_path)
    logger.info("alanine dipeptide: %d frames -> %s, %s", n_frames, pdb_path, dcd_path)
    return pdb_path, dcd_path


@dataclass(frozen=True)
class _Run:
    """One simulation: OpenMM topology, minimized start and frames (Å), masses, times."""

    topology: Any
    start: np.ndarray
    positions: np.ndarray
    masses: np.ndarray
    times: np.ndarray
    stride: int


def _simulate(n_frames: int, interval_ps: float, seed: int, temperature: float) -> _Run:
    """Check the arguments and run the simulation of :func:`simulate_alanine_dipeptide`."""
    import openmm
    from openmm import app, unit

    if isinstance(n_frames, bool) or int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames must be an integer >= 1; got {n_frames!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be > 0; got {temperature!r}")
    dt_ps = 0.002
    stride = round(interval_ps / dt_ps) if np.isfinite(interval_ps) else 0
    if stride < 1 or not np.isclose(stride * dt_ps, interval_ps):
        raise ValueError(
            f"interval_ps must be a positive multiple of {dt_ps} ps; got {interval_ps!r}"
        )
    # OpenMM takes seed 0 to mean "choose one at random"
    omm_seed = int(seed) % (2**31 - 2) + 1

    pdb = app.PDBFile(io.StringIO(START_PDB))
    forcefield = app.ForceField("amber14-all.xml")
    system = forcefield.createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds
    )
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin, 1.0 / unit.picosecond, dt_ps * unit.picoseconds
    )
    integrator.setRandomNumberSeed(omm_seed)
    platform = openmm.Platform.getPlatformByName("Reference")
    context = openmm.Context(system, integrator, platform)
    context.setPositions(pdb.positions)
    openmm.LocalEnergyMinimizer.minimize(context)
    start = context.getState(getPositions=True).getPositions(asNumpy=True)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, omm_seed)
    integrator.step(5000)  # 10 ps

    positions = np.empty((int(n_frames), system.getNumParticles(), 3), dtype=np.float64)
    for k in range(int(n_frames)):
        integrator.step(stride)
        state = context.getState(getPositions=True)
        positions[k] = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    masses = [
        system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(len(positions[0]))
    ]
    return _Run(
        topology=pdb.topology,
        start=np.asarray(start.value_in_unit(unit.angstrom)),
        positions=positions,
        masses=np.asarray(masses),
        times=interval_ps * np.arange(1, int(n_frames) + 1),
        stride=stride,
    )


def main(argv: list[str] | None = None) -> None:
    """Command line: write an alanine dipeptide trajectory."""
    parser = argparse.ArgumentParser(prog="python tools/peptide.py", description=__doc__)
    parser.add_argument("-o", "--output", required=True, help="output .npz file")
    parser.add_argument("--frames", type=int, default=2000, help="saved frames")
    parser.add_argument("--interval", type=float, default=0.5, help="ps between frames")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    simulate_alanine_dipeptide(
        args.output, args.frames, args.interval, seed=args.seed, temperature=args.temperature
    )


if __name__ == "__main__":
    main()
