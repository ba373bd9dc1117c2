"""MDAnalysis plugin: latent CVs as an analysis, polyvae's alignments as transformations.

:class:`LatentCV` computes the latent collective variables of a trained model for
every frame of a trajectory, as an :class:`~MDAnalysis.analysis.base.AnalysisBase`
that runs serially or in parallel (``backend="multiprocessing"`` or ``"dask"``)::

    u = MDAnalysis.Universe("top.psf", "traj.dcd")
    cv = LatentCV(u.select_atoms("name CA"), "model.polyvae").run(backend="dask", n_workers=4)
    cv.results.latent      # (T, L) encoder means
    cv.results.latent_std  # (T, L) encoder standard deviations

Its per-frame work is NumPy only (:mod:`polyvae.nn.encoder_numpy`): JAX does not survive
``fork()``. :class:`CenterOfMass`, :class:`PrincipalAxesAlign` and
:class:`ReferenceAlign` apply :mod:`polyvae.features.pipeline`' kernels on the fly::

    u.trajectory.add_transformations(PrincipalAxesAlign(u.select_atoms("name CA")))

This module imports MDAnalysis; ``import polyvae`` does not import it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from MDAnalysis.analysis.backends import BackendBase
from MDAnalysis.analysis.base import AnalysisBase
from MDAnalysis.analysis.results import ResultsGroup
from MDAnalysis.core.groups import AtomGroup
from MDAnalysis.core.universe import Universe
from MDAnalysis.exceptions import NoDataError
from MDAnalysis.transformations.base import TransformationBase

from polyvae import geometry
from polyvae._checks import ensure_array, ensure_int, ensure_masses
from polyvae.frames import Frames, evenly_spaced
from polyvae.io.pbc import Unwrapper, resolve_unwrap
from polyvae.io.trajectories import check_atom_names, model_atoms
from polyvae.nn.encoder_numpy import encode_numpy
from polyvae.vae import RESEMBLANCE_FRAMES, VAEModel, load_model

__all__ = [
    "LatentCV",
    "CenterOfMass",
    "PrincipalAxesAlign",
    "ReferenceAlign",
    "resolve_unwrap",
]


def _as_atomgroup(atomgroup: Any, name: str = "atomgroup") -> AtomGroup:
    if isinstance(atomgroup, Universe):
        return atomgroup.atoms
    if not isinstance(atomgroup, AtomGroup):
        raise TypeError(
            f"{name} must be an MDAnalysis AtomGroup (or Universe); got {type(atomgroup).__name__}"
        )
    if atomgroup.n_atoms == 0:
        raise ValueError(f"{name} is empty (0 atoms)")
    return atomgroup


def _as_model(model: Any) -> VAEModel:
    if isinstance(model, str | os.PathLike):
        model = load_model(model)
    if not isinstance(model, VAEModel):
        raise TypeError(
            f"model must be a VAEModel or a path to a model file; got {type(model).__name__}"
        )
    if model.pipeline is None:
        raise ValueError(
            "model was trained on non-coordinate data (it has no coordinate pipeline); "
            "LatentCV needs a model trained on 3D positions"
        )
    if model.dim != 3:
        raise ValueError(
            f"model was trained on {model.dim}D positions; LatentCV needs a model trained on "
            "3D positions (dim=3)"
        )
    return model


class DaskClientBackend(BackendBase):
    """Run each part of an MDAnalysis analysis as a task on a ``dask.distributed`` client.

    MDAnalysis' own ``backend="dask"`` uses dask's local process pool; this backend
    sends the parts to a cluster instead (``LatentCV(...).run(client=client)``).

    Parameters
    ----------
    client : distributed.Client
        A connected client.
    n_workers : int, optional
        Default: the cluster's worker count.
    """

    def __init__(self, client: Any, n_workers: int | None = None) -> None:
        self.client = client
        self.workers_used: set[str] = set()
        if n_workers is None:
            n_workers = max(1, len(client.scheduler_info()["workers"]))
        super().__init__(n_workers=n_workers)

    def apply(self, func, computations: list) -> list:
        # optional, the dask extra
        import distributed

        futures = self.client.map(func, computations, pure=False)
        distributed.wait(futures)
        for where in self.client.who_has(futures).values():
            self.workers_used.update(where)
        return self.client.gather(futures)


class LatentCV(AnalysisBase):
    """Latent collective variables (encoder mean and std) of every analysed frame.

    Parameters
    ----------
    atomgroup : AtomGroup
        The atoms the model was trained on, in the training order (N atoms). For a model
        trained through a topology, their names are checked against the model's
        (:func:`polyvae.io.check_atom_names`); a mismatch raises ``ValueError``.
    model : VAEModel or path
        A model trained on 3D positions of N atoms (lengths in Å), or its file.
    unwrap : bool or None
        Make molecules whole across periodic boundaries before encoding; None
        (default) does so when the trajectory has a box, and then needs bonds in the
        topology (the same rule and code as polyvae's readers, :mod:`polyvae.io.pbc`).
        Whole molecules are unwrapped, so a selection such as ``"name CA"`` works.
    chunk_size : int
        Frames encoded together (memory: ``chunk_size * N * 3`` float32 positions).
    **kwargs
        Passed to :class:`~MDAnalysis.analysis.base.AnalysisBase` (``verbose``).

    Attributes
    ----------
    latent_dim : int
        Size L of the latent space.
    unwrap : bool
        Whether molecules are made whole before encoding.
    results.latent : ndarray (T, L), float32
        Encoder mean of each analysed frame (never a sample).
    results.latent_std : ndarray (T, L), float32
        Encoder standard deviation of each analysed frame.
    results.frames : ndarray (T,), int
        Trajectory frame indices.
    results.times : ndarray (T,), float
        Frame times (ps).

    Notes
    -----
    Parallel runs (``run(backend="multiprocessing" | "dask", n_workers=k)``) pickle
    this object into each worker; it holds only NumPy copies of the encoder weights
    and the model's (NumPy) pipeline, never JAX arrays. Each worker buffers and
    encodes its own contiguous slice of frames (``_prepare`` and ``_single_frame``
    run there); the main process concatenates the slices in frame order
    (:meth:`_get_aggregator`) and then runs ``_conclude``.
    """

    _analysis_algorithm_is_parallelizable = True

    @classmethod
    def get_supported_backends(cls) -> tuple[str, ...]:
        return ("serial", "multiprocessing", "dask")

    def __init__(
        self,
        atomgroup: AtomGroup,
        model: VAEModel | str | os.PathLike,
        *,
        unwrap: bool | None = None,
        chunk_size: int = 1024,
        **kwargs: Any,
    ) -> None:
        atomgroup = _as_atomgroup(atomgroup)
        model = _as_model(model)
        if atomgroup.n_atoms != model.n_atoms:
            raise ValueError(
                f"atomgroup has {atomgroup.n_atoms} atoms but the model was trained on "
                f"{model.n_atoms}"
            )
        if model_atoms(model) is not None:
            try:
                names = atomgroup.names
            except NoDataError:
                raise ValueError(
                    "atomgroup has no atom names, so it cannot be checked against the model's "
                    "atoms; use a topology with names (PSF, TPR, PDB, GRO)"
                ) from None
            try:
                resnames, resids = atomgroup.resnames, atomgroup.resids
            except NoDataError:
                resnames = resids = None
            check_atom_names(names, model_atoms(model), "atomgroup", resnames, resids)
        ensure_int(chunk_size, "chunk_size", 1)
        super().__init__(atomgroup.universe.trajectory, **kwargs)
        self._ag = atomgroup
        self.unwrap = resolve_unwrap(atomgroup.dimensions, unwrap)
        # built here so that a missing-bonds error comes at once; it pickles (NumPy only)
        self._unwrapper = Unwrapper(atomgroup, False, "the trajectory") if self.unwrap else None
        if model_atoms(model) is None:  # nothing to compare by name: by reconstruction
            model.check_resemblance(self._sample_frames())
        # NumPy only from here on: this object travels to worker processes
        self._pipeline = model.pipeline
        self._params = model.encoder_params()
        self._activation = model.config.activation
        self.latent_dim = model.latent_dim
        self._chunk_size = int(chunk_size)
        self._buffer: np.ndarray | None = None

    def _sample_frames(self) -> Frames:
        """Up to :data:`~polyvae.vae.RESEMBLANCE_FRAMES` evenly spaced frames of the
        trajectory as the encoder will see them (Å); the current frame is kept."""
        trajectory = self._ag.universe.trajectory
        current, n = trajectory.frame, len(trajectory)
        pick = evenly_spaced(n, RESEMBLANCE_FRAMES)
        try:
            sample = np.stack([self._positions().copy() for _ in trajectory[pick]])
        finally:
            trajectory[current]
        return Frames(sample.astype(np.float32), unit="Å")

    def _positions(self) -> np.ndarray:
        """Current positions of the group (N, 3), Å, unwrapped if requested."""
        if self._unwrapper is not None:
            return self._unwrapper(self._unwrapper.atoms.positions, self._ag.dimensions)
        return self._ag.positions

    def run(self, *args: Any, client: Any = None, **kwargs: Any) -> LatentCV:
        """Run the analysis; see :meth:`MDAnalysis.analysis.base.AnalysisBase.run`.

        Usual keywords: ``start``, ``stop``, ``step``, ``frames``, ``backend``
        (``"serial"``, ``"multiprocessing"``, ``"dask"``), ``n_workers``, ``n_parts``.
        ``client``: a ``dask.distributed.Client`` of a cluster (possibly across
        machines): the frame blocks run as tasks on its workers (see
        :class:`DaskClientBackend`; the trajectory must be readable at the same path
        on every worker).
        JAX's warning that ``os.fork()`` may deadlock is silenced for this call: the
        forked workers run NumPy code only.

        Returns
        -------
        self
        """
        if client is not None:
            kwargs["backend"] = DaskClientBackend(client, kwargs.pop("n_workers", None))
            kwargs["unsupported_backend"] = True
            kwargs.setdefault("n_parts", kwargs["backend"].n_workers)
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning
            )
            return super().run(*args, **kwargs)

    def _prepare(self) -> None:
        n = self.n_frames  # frames of this worker's slice
        size = min(self._chunk_size, max(n, 1))
        self._buffer = np.empty((size, self._ag.n_atoms, 3), dtype=np.float32)
        self._n_buffered = 0
        self._n_done = 0
        self.results.latent = np.empty((n, self.latent_dim), dtype=np.float32)
        self.results.latent_std = np.empty((n, self.latent_dim), dtype=np.float32)

    def _single_frame(self) -> None:
        self._buffer[self._n_buffered] = self._positions()
        self._n_buffered += 1
        last = self._frame_index == self.n_frames - 1
        if self._n_buffered == len(self._buffer) or last:
            self._flush()
        if last:
            self._buffer = None  # the worker's copy of self is pickled back: drop positions

    def _flush(self) -> None:
        """Encode the buffered block and store its latents."""
        k = self._n_buffered
        if k == 0:
            return
        x = self._pipeline.encoder_inputs(self._buffer[:k])
        mean, std = encode_numpy(self._params, x, self._activation)
        sl = slice(self._n_done, self._n_done + k)
        self.results.latent[sl] = mean
        self.results.latent_std[sl] = std
        self._n_done += k
        self._n_buffered = 0

    def _get_aggregator(self) -> ResultsGroup:
        return ResultsGroup(
            lookup={
                "latent": ResultsGroup.ndarray_vstack,
                "latent_std": ResultsGroup.ndarray_vstack,
            }
        )

    def _conclude(self) -> None:
        self._buffer = None
        self.results.frames = np.asarray(self.frames)
        self.results.times = np.asarray(self.times)


# ---- on-the-fly transformations ------------------------------------------------------


def _group_masses(atomgroup: AtomGroup, masses: Any) -> np.ndarray:
    if masses is None:
        try:
            masses = atomgroup.masses
        except NoDataError:
            raise ValueError(
                "atomgroup has no masses; pass masses=... (e.g. np.ones(n_atoms) for equal weights)"
            ) from None
    return ensure_masses(masses, atomgroup.n_atoms)


class _GroupTransformation(TransformationBase):
    """The group, its weights, and TransformationBase's thread/parallel flags."""

    def __init__(
        self,
        atomgroup: AtomGroup,
        masses: Any = None,
        *,
        max_threads: int | None = None,
        parallelizable: bool = True,
    ) -> None:
        super().__init__(max_threads=max_threads, parallelizable=parallelizable)
        self.atomgroup = _as_atomgroup(atomgroup)
        self.masses = _group_masses(self.atomgroup, masses)
        self._w = geometry.mass_weights(self.masses, self.atomgroup.n_atoms)

    def _centred(self, ts: Any) -> np.ndarray:
        """All positions of ``ts`` minus the group's centre of mass (float32 rounding)."""
        group = ts.positions[self.atomgroup.ix].astype(np.float64)
        return (ts.positions - geometry.center_of_mass(group, self._w)).astype(np.float32)


class CenterOfMass(_GroupTransformation):
    """Translate every frame so that the group's mass-weighted centre is at the origin.

    Parameters
    ----------
    atomgroup : AtomGroup
        Group whose centre is moved; all atoms of the frame move with it.
    masses : array (N,), optional
        Weights (default: the group's masses).
    max_threads, parallelizable
        See :class:`~MDAnalysis.transformations.base.TransformationBase`.
    """

    def _transform(self, ts: Any) -> Any:
        ts.positions = self._centred(ts)
        return ts


class PrincipalAxesAlign(_GroupTransformation):
    """Center on the group and rotate its principal axes onto x, y, z.

    Same as :func:`polyvae.features.pipeline.align_principal` on the group's positions,
    including the sign rule (axes oriented along the group's atom order); the
    rotation is applied to all atoms of the frame.

    Parameters
    ----------
    atomgroup : AtomGroup
    masses : array (N,), optional
        Weights (default: the group's masses).
    max_threads, parallelizable
        See :class:`~MDAnalysis.transformations.base.TransformationBase`.
    """

    def _transform(self, ts: Any) -> Any:
        xc = self._centred(ts).astype(np.float64)
        rot = geometry.principal_axes(xc[self.atomgroup.ix][None], self._w)[0]
        ts.positions = geometry.rotate(xc, rot).astype(np.float32)
        return ts


class ReferenceAlign(_GroupTransformation):
    """Center on the group and superimpose it on a reference structure (Kabsch).

    Same as :func:`polyvae.features.pipeline.align_to_reference` on the group's positions:
    the group ends up centred at the origin in the reference's orientation. The
    rotation is applied to all atoms of the frame.

    Parameters
    ----------
    atomgroup : AtomGroup
        Mobile group (N atoms).
    reference : array (N, 3) or AtomGroup
        Reference positions in Å (an AtomGroup's current positions are copied).
    masses : array (N,), optional
        Weights (default: the group's masses).
    max_threads, parallelizable
        See :class:`~MDAnalysis.transformations.base.TransformationBase`.
    """

    def __init__(
        self,
        atomgroup: AtomGroup,
        reference: Any,
        masses: Any = None,
        *,
        max_threads: int | None = None,
        parallelizable: bool = True,
    ) -> None:
        super().__init__(atomgroup, masses, max_threads=max_threads, parallelizable=parallelizable)
        if isinstance(reference, AtomGroup):
            reference = reference.positions
        ref = ensure_array(reference, "reference", shape=(self.atomgroup.n_atoms, 3))
        centred = geometry.centered(ref, self._w).astype(np.float32)  # float32, as center()
        self.reference = centred.astype(np.float64)

    def _transform(self, ts: Any) -> Any:
        xc = self._centred(ts).astype(np.float64)
        rot = geometry.kabsch_rotation(xc[self.atomgroup.ix], self.reference, self._w)
        ts.positions = geometry.rotate(xc, rot).astype(np.float32)
        return ts
