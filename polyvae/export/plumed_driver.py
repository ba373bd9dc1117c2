"""Run an exported PLUMED input in a real PLUMED, over a trajectory (``plumed driver``).

:func:`find_plumed` locates a ``plumed`` program: the one named by the environment
variable ``POLYVAE_PLUMED``; the kernel bundled in a Python wheel that ships PLUMED
under ``site-packages/plumed/_lib`` (for example ``hillclimber``, built with the ANN and
molfile modules); or ``plumed`` on ``PATH``. :func:`run_driver` runs ``plumed driver``
over a trajectory and returns the COLVAR file it wrote (read it with
:func:`polyvae.export.read_colvar`), so a user can check an exported CV against
``polyvae encode`` before a biased run.

PLUMED facts used here: the driver reads trajectories through VMD's molfile plugins with
``--mf_<format>`` (lengths in Å, converted to the driver's nm; an input that says
``UNITS LENGTH=A`` then works in Å again, so no ``--length-units`` is given);
``--dump-forces FILE`` writes, per frame, the atom count, the virial line and one line
``X fx fy fz`` per atom, in the driver's units (kJ/mol/nm with the defaults).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["PlumedBinary", "find_plumed", "run_driver", "read_forces"]

#: Trajectory suffixes the driver reads through molfile (lengths in Å).
MOLFILE_FORMATS = ("dcd", "xtc", "trr", "gro", "pdb", "crd", "g96")


@dataclass(frozen=True)
class PlumedBinary:
    """A ``plumed`` program and the environment it needs."""

    path: Path
    env: dict = field(default_factory=dict)

    def run(self, args, cwd, timeout: float = 600.0) -> subprocess.CompletedProcess:
        """Run ``plumed --no-mpi ARGS`` in ``cwd``; an error names the failing command
        and ends with PLUMED's own last lines."""
        cmd = [str(self.path), "--no-mpi", *map(str, args)]
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
            raise RuntimeError(
                f"plumed exited with code {proc.returncode} ({' '.join(cmd)}): {tail}"
            )
        return proc

    def version(self) -> str:
        return self.run(["info", "--version"], cwd=".").stdout.strip()


def _wheel_binary() -> PlumedBinary | None:
    """The PLUMED a wheel bundles under ``site-packages/plumed/_lib``."""
    for key in ("purelib", "platlib"):
        site = Path(sysconfig.get_paths()[key])
        lib = site / "plumed" / "_lib"
        exe = lib / "bin" / "plumed"
        if exe.is_file():
            libs = [str(lib / "lib"), *(str(p) for p in sorted(site.glob("*.libs")))]
            old = os.environ.get("LD_LIBRARY_PATH")
            return PlumedBinary(
                exe,
                {
                    "PLUMED_ROOT": str(lib / "lib" / "plumed"),
                    "LD_LIBRARY_PATH": os.pathsep.join(libs + ([old] if old else [])),
                },
            )
    return None


def find_plumed() -> PlumedBinary:
    """The ``plumed`` program to run (see the module notes for the search order).

    Raises
    ------
    FileNotFoundError
        No PLUMED was found; the message says where it was looked for.
    """
    named = os.environ.get("POLYVAE_PLUMED")
    if named:
        if not Path(named).is_file():
            raise FileNotFoundError(f"POLYVAE_PLUMED names {named!r}, which is not a file")
        return PlumedBinary(Path(named))
    wheel = _wheel_binary()
    if wheel is not None:
        return wheel
    on_path = shutil.which("plumed")
    if on_path:
        return PlumedBinary(Path(on_path))
    raise FileNotFoundError(
        "no PLUMED found: set POLYVAE_PLUMED to a plumed program, put plumed on PATH, or "
        "install a wheel that bundles it (pip install --no-deps hillclimber==0.1.8)"
    )


def run_driver(
    plumed_dat: str | os.PathLike,
    trajectory: str | os.PathLike,
    *,
    colvar: str = "COLVAR",
    dump_forces: str | None = None,
    plumed: PlumedBinary | None = None,
) -> Path:
    """Run ``plumed driver`` with the input ``plumed_dat`` over ``trajectory``.

    The driver runs in the input's folder (exported inputs name their files relative to
    it). Returns the path of the ``colvar`` file the input's PRINT wrote there.
    """
    dat = Path(plumed_dat).resolve()
    traj = Path(trajectory).resolve()
    fmt = traj.suffix.lower().lstrip(".")
    if fmt not in MOLFILE_FORMATS:
        raise ValueError(
            f"trajectory must be one of {', '.join('.' + f for f in MOLFILE_FORMATS)}; "
            f"got {traj.name!r}"
        )
    if not traj.is_file():
        raise FileNotFoundError(f"trajectory {str(traj)!r} does not exist")
    exe = find_plumed() if plumed is None else plumed
    args = ["driver", "--plumed", dat.name, f"--mf_{fmt}", str(traj)]
    if dump_forces is not None:
        args += ["--dump-forces", dump_forces, "--dump-forces-fmt", "%.10e"]
    exe.run(args, cwd=dat.parent)
    out = dat.parent / colvar
    if not out.is_file():
        raise RuntimeError(f"plumed driver ran but wrote no {colvar} in {dat.parent}")
    return out


def read_forces(path: str | os.PathLike) -> np.ndarray:
    """Per-frame atom forces (T, N, 3) from the driver's ``--dump-forces`` file."""
    lines = Path(path).read_text().split("\n")
    frames, k = [], 0
    while k < len(lines) and lines[k].strip():
        n = int(lines[k])
        block = lines[k + 2 : k + 2 + n]  # after the count, the virial line
        frames.append([[float(v) for v in line.split()[1:4]] for line in block])
        k += n + 2
    return np.asarray(frames, dtype=np.float64)
