"""Analysis of training and generated frames: structure checks, distance marginals,
free-energy surfaces of CVs and latent-space optimization."""

from polyvae.analysis.fes import FreeEnergySurface, free_energy_surface
from polyvae.analysis.optimize import OptimizationResult, optimize_latent
from polyvae.analysis.structure import (
    StructureReport,
    all_pairs,
    bond_lengths,
    chain_bonds,
    compare_structures,
    min_nonbonded_distance,
    nonbonded_pairs,
    pairwise_distances,
    radius_of_gyration,
)
from polyvae.measures.marginals import STD_REL_TOL, Marginals, distance_marginals

__all__ = [
    # structure
    "all_pairs",
    "chain_bonds",
    "pairwise_distances",
    "bond_lengths",
    "nonbonded_pairs",
    "min_nonbonded_distance",
    "radius_of_gyration",
    "StructureReport",
    "compare_structures",
    # marginals
    "Marginals",
    "distance_marginals",
    "STD_REL_TOL",
    # free energy
    "FreeEnergySurface",
    "free_energy_surface",
    # latent-space optimization
    "OptimizationResult",
    "optimize_latent",
]
