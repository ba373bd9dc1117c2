"""Periodic boundaries: making molecules whole that a trajectory splits across the box.

:class:`Unwrapper` is built once per atom selection and then unwraps each frame with
a few vectorized NumPy steps (no per-atom Python loop), so it suits long
trajectories and forked worker processes alike. It agrees with MDAnalysis'
``unwrap`` transformation to float precision while being far faster (about 0.6 ms vs
136 ms per frame for a 3341-atom protein).

The rule used across polyvae: unwrap when the trajectory has a periodic box (unless
told not to); a box without bonds is an error rather than silently split molecules.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components

__all__ = ["Unwrapper", "has_box", "resolve_unwrap"]

logger = logging.getLogger(__name__)


def has_box(dimensions: Any) -> bool:
    return dimensions is not None and bool(np.all(np.asarray(dimensions[:3]) > 0))


def resolve_unwrap(dimensions: Any, unwrap: bool | None, label: str = "the trajectory") -> bool:
    """Whether to unwrap: ``None`` means "when there is a box"; True requires a box."""
    if unwrap is not None and not isinstance(unwrap, bool | np.bool_):
        raise TypeError(f"unwrap must be True, False or None; got {unwrap!r}")
    boxed = has_box(dimensions)
    if unwrap and not boxed:
        raise ValueError(f"unwrap=True but {label} has no periodic box; pass unwrap=None or False")
    return boxed if unwrap is None else bool(unwrap)


class Unwrapper:
    """Make every molecule (bonded fragment) holding selected atoms whole, per frame.

    A breadth-first spanning forest of the bonds is built once, rooted at the first
    atom of each molecule. Per frame, each tree edge gets its minimum-image vector and
    the vectors are summed along the paths to the roots by pointer jumping (log2 of
    the tree depth vectorized steps), so each root stays where the file put it.
    """

    def __init__(self, group: Any, guess_bonds: bool, label: str) -> None:
        u = group.universe
        try:
            bonds = u.atoms.bonds.to_indices().astype(np.int64)
        except AttributeError:  # NoDataError: the topology has no bonds
            bonds = np.zeros((0, 2), np.int64)
        if group.n_atoms > 1 and not np.isin(bonds, group.ix).any():
            if not guess_bonds:
                raise ValueError(
                    f"trajectory {label} has a periodic box but the topology has no bonds (for "
                    "the selected atoms), so molecules split across the box cannot be made "
                    "whole. Use a topology with bonds (e.g. TPR or PSF), pass guess_bonds=True "
                    "to guess them from distances, or pass unwrap=False if the molecule never "
                    "crosses the box"
                )
            bonds = self._guess(group)
        elif guess_bonds:
            logger.info("guess_bonds=True ignored: the topology has bonds for the selection")
        n = u.atoms.n_atoms
        ones = np.ones(len(bonds))
        graph = coo_matrix((ones, (bonds[:, 0], bonds[:, 1])), shape=(n, n)).tocsr()
        _, labels = connected_components(graph, directed=False)
        mols = np.unique(labels[group.ix])
        if mols.size > 1:
            logger.warning(
                "the selection spans %d molecules: each is made whole separately, their "
                "relative placement across the periodic box is left as in the file",
                mols.size,
            )
        whole = np.flatnonzero(np.isin(labels, mols))
        sub = graph[whole][:, whole].tocoo()
        m = whole.size
        _, roots = np.unique(labels[whole], return_index=True)  # first atom of each molecule
        rows = np.concatenate([sub.row, np.full(roots.size, m)])  # node m: joins all roots
        cols = np.concatenate([sub.col, roots])
        forest = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(m + 1, m + 1))
        _, pred = breadth_first_order(forest.tocsr(), m, directed=False)
        parent = pred[:m].copy()
        parent[roots] = roots
        self.parent, self.jumps, anc = parent, [], parent
        while not np.array_equal(anc[anc], anc):  # ancestors 1, 2, 4, ... generations up
            self.jumps.append(anc)
            anc = anc[anc]
        self.root, self.atoms = anc, u.atoms[whole]
        self.select = np.searchsorted(whole, group.ix)

    @staticmethod
    def _guess(group: Any) -> np.ndarray:
        """Guess bonds among the residues of ``group`` and add them to its Universe."""
        # optional, the md extra
        from MDAnalysis.guesser.default_guesser import DefaultGuesser

        atoms = group.residues.atoms
        try:
            found = DefaultGuesser(None, box=atoms.dimensions).guess_bonds(atoms, atoms.positions)
        except ValueError as exc:
            raise ValueError(f"guess_bonds=True: MDAnalysis could not guess bonds: {exc}") from exc
        group.universe.add_bonds(found, guessed=True)
        logger.info("guessed %d bonds among %d atoms", len(found), atoms.n_atoms)
        return np.asarray(found, dtype=np.int64).reshape(-1, 2)

    def __call__(self, positions: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Whole-molecule positions (N_selected, 3) from wrapped ``positions`` of ``atoms``."""
        # optional, the md extra
        from MDAnalysis.lib.distances import minimize_vectors

        x = positions.astype(np.float64)
        offset = minimize_vectors(x - x[self.parent], box.astype(np.float64))
        for anc in self.jumps:
            offset = offset + offset[anc]
        return (x[self.root] + offset)[self.select]
