"""The trained model users hold: pipeline + VAE parameters + metadata.

:func:`polyvae.train` turns frames into a :class:`VAEModel`; the model encodes frames
to latent CVs, decodes and generates conformations, and saves itself to one safe
file. Analysis and exports read it through its methods and typed properties
(:attr:`~VAEModel.atoms`, :attr:`~VAEModel.train_stats`,
:meth:`~VAEModel.encoder_layers`, :attr:`~VAEModel.decoder_sigma`,
:meth:`~VAEModel.structure_fn`), never through the params dict.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from polyvae import geometry
from polyvae._checks import ensure_array, ensure_choice, ensure_int, ensure_onehot
from polyvae._prefetch import prefetch
from polyvae.config import TrainConfig
from polyvae.features.pipeline import Pipeline
from polyvae.frames import Frames, evenly_spaced
from polyvae.measures.validity import AtomLabels, StructureChecks
from polyvae.metadata import AtomInfo, TrainingStats
from polyvae.model_file import ModelParts, read_model_file, write_model_file
from polyvae.nn import model as vae
from polyvae.nn.encoder_numpy import numpy_params
from polyvae.nn.latent_codes import LATENT_SOURCES, LatentCodes

__all__ = ["VAEModel", "load_model"]

logger = logging.getLogger(__name__)

RESEMBLANCE_FRAMES = 64
"""Frames (evenly spaced) whose reconstruction :meth:`VAEModel.encode` compares with the
training frames' when their atoms cannot be compared by name."""

RESEMBLANCE_FACTOR = 2.0
"""Frames whose median reconstruction RMSD exceeds this many times the training frames'
99th percentile are reported as unlike the training frames."""

_CHUNK = 8192


def _key(key: Any, seed: int | None) -> jax.Array:
    if key is not None:
        return key
    return jax.random.PRNGKey(0 if seed is None else int(seed))


@partial(jax.jit, static_argnums=0)
def _encode(config, params, x):
    return vae.encode(params, x, config)


@partial(jax.jit, static_argnums=(0, 2, 4))
def _sample(config, params, n, key, mean_only):
    return vae.sample(params, n, config, key=key, mean_only=mean_only)


@partial(jax.jit, static_argnums=(0, 4))
def _sample_at(config, params, z, key, mean_only):
    return vae.sample(params, z.shape[0], config, key=key, mean_only=mean_only, z=z)


@partial(jax.jit, static_argnums=0)
def _decode_mean(config, params, z):
    out = vae.decode(params, z, config)
    return out["probs"] if config.likelihood == "categorical" else out["mean"]


@partial(jax.jit, static_argnums=0)
def _reconstruction(config, params, scale, shift, x):
    """The decoder mean's Cartesian features at the encoder mean of inputs ``x``, mapped
    back to flat aligned coordinates ``features * scale + shift`` (as
    :meth:`~polyvae.features.pipeline.Pipeline.inverse_transform` maps them): what
    :meth:`VAEModel.reconstruction_rmsd` compares with the frames."""
    mean, _ = vae.encode(params, x, config)
    out = vae.decode(params, mean, config)["mean"]
    cartesian = out if config.decoder != "internal" else out[..., : config.kinds.n_cartesian]
    return cartesian * scale + shift


@partial(jax.jit, static_argnums=(0, 3))
def _iwll(config, params, x, n_samples, key):
    """``x``: features, followed by the encoder inputs when they differ (n_inputs set)."""
    f = config.n_features
    x_in = None if config.n_inputs is None else x[:, f:]
    return vae.iw_log_likelihood(params, x[:, :f], config, key=key, n_samples=n_samples, x_in=x_in)


def _chunked_sample(config, params, z, key, mean_only: bool):
    """:func:`_sample_at` over fixed-size zero-padded chunks of ``z`` (each size compiles
    once), with a key per chunk."""
    z = np.asarray(z, np.float32)
    keys = iter(jax.random.split(key, -(-len(z) // _CHUNK)))
    return _chunked(lambda part: _sample_at(config, params, part, next(keys), mean_only), z)


def _chunked(fn, x: np.ndarray, chunk: int = _CHUNK):
    """Apply ``fn`` (compiled) to fixed-size, zero-padded chunks so each size compiles once.

    The chunks go to ``fn`` as NumPy arrays: a compiled function copies them to the
    device itself, where ``jnp.asarray`` would compile a program per chunk size."""
    n = x.shape[0]
    size = min(chunk, 1 << max(n - 1, 0).bit_length())
    outs = []
    for start in range(0, n, size):
        part = x[start : start + size]
        pad = size - part.shape[0]
        if pad:
            part = np.concatenate([part, np.zeros((pad,) + part.shape[1:], part.dtype)])
        res = fn(part)
        res = res if isinstance(res, tuple) else (res,)
        outs.append([np.asarray(r)[: size - pad] for r in res])  # cut on the host
    return tuple(np.concatenate(cols) for cols in zip(*outs, strict=True))


LENGTH_UNITS = {"Å": 1.0, "A": 1.0, "Angstrom": 1.0, "angstrom": 1.0, "nm": 10.0}
"""Length units frames are converted between, in Å."""


MAX_GENERATED_NUMBERS = (1 << 31) - 1
"""Most numbers one :meth:`VAEModel.generate` returns (XLA's array index limit)."""


def _default_names(names) -> bool:
    """Whether ``names`` are the placeholders ``B0, B1, ...`` of frames without names."""
    return all(n == f"B{i}" for i, n in enumerate(names))


@dataclass
class VAEModel:
    """A trained VAE with the preprocessing it was trained with.

    Attributes
    ----------
    config : VAEConfig
    params : dict
        The params pytree (JAX arrays).
    pipeline : Pipeline
        Fitted centering/alignment/standardization (None for non-coordinate data).
    train_config : TrainConfig or None
    history : dict of lists
        Per-epoch training history.
    metadata : dict
        JSON-ready facts about the training data: unit, atom names, masses, source.
    train_state : TrainState or None
        What continuing the training needs (:mod:`polyvae.nn.train_state`); saved with the model.
    latent_codes : LatentCodes or None
        The encoder distributions of (up to 4096) training frames, where
        :meth:`generate` draws latent points by default
        (:mod:`polyvae.nn.latent_codes`); None for models without them (toys, files
        written before them), which draw from the prior.
    """

    config: vae.VAEConfig
    params: dict
    pipeline: Pipeline | None = None
    train_config: TrainConfig | None = None
    history: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    train_state: Any = None
    latent_codes: LatentCodes | None = None

    # ---- shape facts -------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def n_atoms(self) -> int | None:
        return None if self.pipeline is None else self.pipeline.n_atoms

    @property
    def dim(self) -> int | None:
        return None if self.pipeline is None else self.pipeline.dim

    @property
    def unit(self) -> str:
        return self.metadata.get("unit", "Å")

    @property
    def atoms(self) -> AtomInfo | None:
        """The atoms the model was trained on (names, masses, topology indices...).

        From the trajectory's topology when there was one; otherwise names and masses
        of the frames, without topology indices. ``bonds`` are the bonds the model used
        (files from before bonds were kept have none). None for non-coordinate models.
        """
        atoms = self.metadata.get("atoms")
        if atoms:
            return AtomInfo.from_dict(atoms, "model metadata 'atoms'")
        if self.pipeline is None:
            return None
        names = self.metadata.get("names") or [f"B{i}" for i in range(self.pipeline.n_atoms)]
        return AtomInfo(names=tuple(names), masses=np.asarray(self.pipeline.masses))

    @property
    def bonds(self) -> np.ndarray | None:
        """The molecule's bonds (B, 2), 0-based in the model's atom order.

        Those stored at training; for older files, those of the structure checks, or a
        chain in atom order (what such models used). None for non-coordinate models.
        """
        atoms = self.atoms
        if atoms is None:
            return None
        if atoms.bonds is not None:
            return atoms.bonds
        checks = self.structure_checks
        return checks.bonds if checks is not None else geometry.chain_bonds(atoms.n_atoms)

    @property
    def train_stats(self) -> TrainingStats | None:
        """Structural statistics of the training frames (None if the file has none)."""
        stats = self.metadata.get("train_stats")
        return None if stats is None else TrainingStats.from_dict(stats)

    @property
    def structure_checks(self):
        """The validity checks fitted on the training frames
        (:class:`polyvae.measures.validity.StructureChecks`), or None if the model file has
        none (older files, non-coordinate models, molecules of very few atoms)."""

        d = self.metadata.get("structure_checks")
        return None if d is None else StructureChecks.from_dict(d)

    def check_structures(self, positions: Any):
        """:class:`~polyvae.measures.validity.ValidityReport` of structures (T, N, D) in the
        model's unit, naming atoms by the model's atom names and residues; None when the
        model has no structure checks."""

        checks, atoms = self.structure_checks, self.atoms
        if checks is None:
            return None
        labels = None
        if atoms is not None and atoms.n_atoms == checks.n_atoms:
            labels = AtomLabels.of(atoms.names, atoms.resnames, atoms.resids)
        return checks.check(positions, labels=labels)

    def encoder_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Dense layers of the encoder mean, as float64 NumPy ``(W (n_in, n_out), b)``.

        The last layer keeps only the ``latent_dim`` mean outputs. Hidden layers use
        ``config.activation``; the last is linear. The input is :meth:`inputs`.
        """
        layers = [
            (np.asarray(x["w"], np.float64), np.asarray(x["b"], np.float64))
            for x in self.params["encoder"]
        ]
        w, b = layers[-1]
        layers[-1] = (w[:, : self.latent_dim], b[: self.latent_dim])
        return layers

    def encoder_params(self) -> dict:
        """NumPy copies of the whole encoder (mean and std heads): ``{"encoder": [...]}``.

        For :func:`polyvae.nn.encoder_numpy.encode_numpy`, e.g. in worker processes
        where JAX must not run.
        """
        return numpy_params({"encoder": self.params["encoder"]})

    @property
    def decoder_sigma(self) -> np.ndarray | None:
        """The decoder's noise scale per feature (F,), in standardized feature units.

        None for a categorical likelihood.
        """
        if self.config.likelihood != "gaussian":
            return None
        if self.config.learned_sigma:
            return np.exp(np.asarray(self.params["log_sigma"], np.float64))
        return np.full(self.config.n_features, self.config.sigma)

    def structure_fn(self):
        """A differentiable JAX function ``z (..., L) -> positions (..., N, D)``.

        The decoder mean mapped back to aligned coordinates, for JAX callers that
        differentiate through the decoder (latent optimization, custom objectives).
        For the internal decoder it is the mean of its Cartesian part: cheap to
        differentiate, and able to reach shapes such as the most compact ones, which
        the mean of the internal coordinates (an average over angles) is not; latent
        optimization checks the structures it returns against the structure checks.
        """
        if self.pipeline is None or self.config.likelihood != "gaussian":
            raise ValueError("structure_fn needs a coordinate model with a gaussian likelihood")
        params, config, pipeline = self.params, self.config, self.pipeline

        nc = None if pipeline.layout is None else pipeline.layout.n_cartesian

        def structure(z):
            out = vae.decode(params, z, config)
            if nc is None:
                return pipeline.inverse_transform(out["mean"])
            # the internal decoder's Cartesian part (see the docstring)
            return pipeline.inverse_transform(out["mean"][..., :nc], cartesian_only=True)

        return structure

    def cv_fn(self):
        """A differentiable JAX function ``x (N, D) -> CV (L,)``: the encoder mean of one
        raw frame, in the model's unit, as an MD engine computes it from the exported CV.

        For distance and torsion inputs and for ``align="kabsch"`` or ``"none"`` (the principal-axes
        frame is not a smooth function of the positions). Its gradient is the CV's
        derivative with respect to the positions: a restraint ``k/2 (s - s0)^2`` on
        component ``s`` pulls with ``-k (s - s0) grad s``.
        """
        pipe = self.pipeline
        if pipe is None:
            raise ValueError("cv_fn needs a coordinate model (frames, not raw features)")
        params, config = self.params, self.config
        if pipe.features != "positions":  # distances, angles, sin/cos of dihedrals
            shift, scale = (jnp.asarray(v, jnp.float32) for v in (pipe.in_mean, pipe.in_scale))

            def inputs(x):
                return (pipe.raw_inputs(x) - shift) / scale

        elif pipe.align in ("kabsch", "none"):
            w = jnp.asarray(geometry.mass_weights(pipe.masses, pipe.n_atoms), jnp.float32)
            shift, scale = (jnp.asarray(v, jnp.float32) for v in (pipe.mean, pipe.scale))
            ref = None
            if pipe.align == "kabsch":
                ref = geometry.centered(jnp.asarray(pipe.reference, jnp.float32), w)

            def inputs(x):
                xc = geometry.centered(x, w)
                if ref is not None:
                    xc = geometry.rotate(xc, geometry.kabsch_rotation(xc, ref, w))
                return (jnp.reshape(xc, (-1,)) - shift) / scale

        else:
            raise ValueError(
                'cv_fn needs distance or torsion inputs, or align="kabsch" or "none"; this '
                f"model uses align={pipe.align!r}, whose frame is not a smooth function of the positions"
            )

        def cv(x):
            mean, _ = vae.encode(params, inputs(jnp.asarray(x, jnp.float32))[None], config)
            return mean[0]

        return cv

    @property
    def n_noise(self) -> int:
        """Size of the decoder noise that :meth:`sample_structure_fn` takes: the internal
        decoder's feature count (rigid features ignore theirs); 0 for other models."""
        layout = None if self.pipeline is None else self.pipeline.layout
        return 0 if layout is None else layout.n_internal

    def sample_structure_fn(self):
        """A differentiable JAX function ``(z (L,), eps (Q,)) -> positions (N, D)``:
        the internal decoder's sample at ``z`` with standard-normal noise ``eps``.

        The internal coordinates ``mean(z) + sigma * eps`` (wrapped on the circle,
        rigid ones at their training value) are rebuilt by NeRF and superposed on the
        Cartesian part's mean at ``z``. Every structure the internal part generates is
        ``f(z, eps)`` for some ``eps``; latent optimization searches over both (see
        :func:`polyvae.analysis.optimize.optimize_latent`). The superposing rotation
        is held constant under differentiation, which is exact for objectives that a
        rigid motion leaves unchanged (Rg, distances, angles).
        """
        layout = None if self.pipeline is None else self.pipeline.layout
        if layout is None:
            raise ValueError("sample_structure_fn needs a model with decoder='internal'")
        params, config, cartesian = self.params, self.config, self.structure_fn()
        nc = layout.n_cartesian
        kinds = config.kinds
        log_sigma = jnp.log(jnp.asarray(self.decoder_sigma, jnp.float32))
        w = jnp.full(layout.n_atoms, 1.0 / layout.n_atoms, jnp.float32)

        def structure(z, eps):
            mean = vae.decode(params, z, config)["mean"]
            full_eps = jnp.concatenate([jnp.zeros(nc, eps.dtype), eps])
            feats = kinds.sample(mean, log_sigma, full_eps)[nc:]
            x = geometry.centered(layout.rebuild(feats), w)
            anchor = cartesian(z)
            centre = jnp.mean(anchor, axis=-2)
            rot = jax.lax.stop_gradient(geometry.kabsch_rotation(x, anchor - centre, w))
            return geometry.rotate(x, rot) + centre

        return structure

    def __repr__(self) -> str:
        c = self.config
        return (
            f"VAEModel(n_atoms={self.n_atoms}, dim={self.dim}, latent_dim={c.latent_dim}, "
            f"hidden={c.hidden}, activation={c.activation!r}, likelihood={c.likelihood!r}, "
            f"beta={c.beta}, unit={self.unit!r})"
        )

    # ---- features ------------------------------------------------------------------
    def features(self, frames: Any) -> np.ndarray:
        """Frames (T, N, D) to the model's input features (T, F), float32."""
        if self.pipeline is None:
            x = np.asarray(frames, dtype=np.float32)
            categorical = self.config.likelihood == "categorical"
            if categorical and x.ndim == 2 and x.shape[1] != self.config.n_features:
                raise ValueError(
                    f"data have {x.shape[1]} classes but the model expects {self.config.n_features}"
                )
            if x.ndim != 2 or x.shape[1] != self.config.n_features:
                raise ValueError(
                    f"data must have shape (T, {self.config.n_features}); got {x.shape}"
                )
            if categorical:
                ensure_onehot(x, "data")
            return x
        return self.pipeline.transform(self.own_frames(frames))

    def inputs(self, frames: Any) -> np.ndarray:
        """What the encoder reads for frames: the features, or (distance-feature models)
        the standardized pair distances; (T, n_inputs) float32."""
        if self.pipeline is None or self.config.n_inputs is None:
            return self.features(frames)
        return self.pipeline.encoder_inputs(self.own_frames(frames))

    def reconstruction_rmsd(self, frames: Any) -> np.ndarray:
        """How far each frame lies from the model's reconstruction of it: the RMSD (T,)
        between the aligned frame and the decoder mean at its encoder mean (for the
        internal decoder, its Cartesian part), in the model's unit.

        Training keeps the median and 99th percentile over the training frames in
        ``metadata["reconstruction_rmsd"]``; frames far beyond them are not what the
        model was trained on (another molecule, or the atoms in another order).
        """
        if self.pipeline is None or self.config.likelihood != "gaussian":
            raise ValueError("reconstruction_rmsd needs a coordinate model (frames, not features)")
        frames = self.own_frames(frames)
        aligned = self.pipeline.align_frames(frames)
        pipe = self.pipeline
        scale, shift = (np.asarray(v, np.float32) for v in (pipe.scale, pipe.mean))
        # compiled with the decoder: XLA's fused multiply-add, as structure_fn() computes it
        reconstruct = partial(_reconstruction, self.config, self.params, scale, shift)
        (flat,) = _chunked(reconstruct, self.inputs(aligned))
        back = np.asarray(flat, np.float64).reshape(aligned.shape)
        return np.sqrt(np.mean(np.sum((back - aligned) ** 2, axis=-1), axis=-1))

    def check_resemblance(self, frames: Any) -> None:
        """Warn when frames whose atoms cannot be checked by name (no names on one side)
        reconstruct far worse than the training frames (:meth:`reconstruction_rmsd` of up
        to :data:`RESEMBLANCE_FRAMES` of them, median above :data:`RESEMBLANCE_FACTOR`
        times the training frames' 99th percentile). :meth:`encode` and
        :class:`polyvae.mda.LatentCV` call it; models without the stored figure (older
        files) are not checked."""
        ref = self.metadata.get("reconstruction_rmsd")
        if ref is None or self.pipeline is None:
            return
        names = self.metadata.get("names") or ()
        given = frames.names if isinstance(frames, Frames) else ()
        if len(names) == len(given) and not (_default_names(names) or _default_names(given)):
            return  # compared by name (own_frames)
        positions = frames.positions if isinstance(frames, Frames) else np.asarray(frames)
        if positions.ndim != 3 or len(positions) == 0:
            return
        pick = evenly_spaced(len(positions), RESEMBLANCE_FRAMES)
        sample = positions[pick]
        if isinstance(frames, Frames):
            sample = frames[pick]
        limit = float(ref["p99"])
        if not limit > 0:  # a model that reconstructs its frames exactly has no scale
            return
        got = float(np.median(self.reconstruction_rmsd(sample)))
        if got > RESEMBLANCE_FACTOR * limit:
            logger.warning(
                "these frames reconstruct %.1fx worse than the training frames (RMSD %.3g %s, "
                "median of %d; training 99th percentile %.3g): with no atom names to "
                "compare, check that they hold the model's atoms in its order; if they do, "
                "they lie outside the training ensemble and their CVs are extrapolated",
                got / limit, got, self.unit, len(pick), limit,
            )  # fmt: skip

    def own_frames(self, frames: Any) -> Any:
        """``frames`` as the model reads them: a :class:`~polyvae.frames.Frames` in another
        length unit converted to the model's (Å and nm), its atom names checked against the
        model's in order (where both have names, not the default ``B0, B1, ...``); bare
        arrays are taken as they are.

        Raises
        ------
        ValueError
            A unit that cannot be converted, or the first atom whose name differs.
        """
        if not isinstance(frames, Frames):
            return frames
        if frames.unit != self.unit:
            have, want = LENGTH_UNITS.get(frames.unit), LENGTH_UNITS.get(self.unit)
            if have is None or want is None:
                raise ValueError(
                    f"frames are in unit {frames.unit!r} but the model was trained in "
                    f"{self.unit!r}; give the frames in {self.unit!r}"
                )
            logger.info("frames in %s converted to %s, the model's unit", frames.unit, self.unit)
            frames = replace(frames, positions=frames.positions * (have / want), unit=self.unit)
        names = tuple(str(s) for s in self.metadata.get("names") or ())
        given = tuple(frames.names)
        if len(names) == len(given) and not (_default_names(names) or _default_names(given)):
            wrong = [k for k, (a, b) in enumerate(zip(given, names, strict=True)) if a != b]
            if wrong:
                k = wrong[0]
                raise ValueError(
                    f"frames' atom {k} is named {given[k]!r} where the model's atom {k} is "
                    f"{names[k]!r} ({len(wrong)} of {len(names)} names differ); give the "
                    "model's atoms in its order"
                )
        return frames

    def positions(self, features: Any, start: Any = None) -> np.ndarray:
        """Model features (T, F) back to aligned positions (T, N, D).

        ``start`` (T, F): for features drawn from the decoder, the decoder mean at the
        same latent points, where the internal decoder's refinement starts
        (:meth:`polyvae.features.pipeline.Pipeline.inverse_transform`).
        """
        if self.pipeline is None:
            return np.asarray(features)
        f = np.asarray(features, np.float32)
        start = None if start is None else np.asarray(start, np.float32)
        x = self.pipeline.inverse_transform(
            f, self.decoder_sigma, start=start, done=self._refined_enough()
        )
        return np.asarray(x)

    def _refined_enough(self):
        """For the internal decoder's refinement: structures that pass the model's
        structure checks, with their stiff torsions as planar as in training, need no
        more iterations (None without checks)."""
        checks = self.structure_checks
        if checks is None or self.pipeline is None or self.pipeline.layout is None:
            return None
        layout = self.pipeline.layout
        return lambda x: checks.check(x).valid & layout.stiff_in_range(x)

    # ---- outputs ---------------------------------------------------------------------
    def encode(self, frames: Any) -> tuple[np.ndarray, np.ndarray]:
        """Latent CVs of frames: the encoder mean (never a sample) and std.

        Parameters
        ----------
        frames : Frames or array (T, N, D)

        Returns
        -------
        mean : ndarray (T, L)
        std : ndarray (T, L)
        """
        self.check_resemblance(frames)
        x = self.inputs(frames)
        return _chunked(partial(_encode, self.config, self.params), x)

    def encode_chunks(self, chunks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latent CVs of frames that arrive in chunks (e.g. a long trajectory streamed).

        Only the CVs are kept, so memory does not grow with the positions of all frames.
        The next chunks are read in a background thread while this one is aligned, and
        each block is encoded asynchronously, so reading, alignment and encoding overlap.

        Parameters
        ----------
        chunks : iterable of Frames

        Returns
        -------
        mean : ndarray (T, L)
        std : ndarray (T, L)
        times : ndarray (T,)
        """
        means, stds, times = [], [], []
        pending = None
        for chunk in prefetch(chunks):
            if not times:
                self.check_resemblance(chunk)
            x = self.inputs(chunk)  # NumPy alignment runs while the last chunk encodes
            size = min(_CHUNK, 1 << max(x.shape[0] - 1, 0).bit_length())
            for start in range(0, x.shape[0], size):
                part = x[start : start + size]
                n = part.shape[0]
                if n < size:
                    part = np.concatenate(
                        [part, np.zeros((size - n,) + part.shape[1:], part.dtype)]
                    )
                launched = (_encode(self.config, self.params, jnp.asarray(part)), n)
                if pending is not None:
                    (mean, std), m = pending
                    # copies: a NumPy view would keep the whole XLA output allocation alive
                    means.append(np.array(mean[:m]))
                    stds.append(np.array(std[:m]))
                pending = launched
            times.append(chunk.times)
        if pending is None:
            raise ValueError("chunks held no frames to encode")
        (mean, std), m = pending
        means.append(np.array(mean[:m]))
        stds.append(np.array(std[:m]))
        return np.concatenate(means), np.concatenate(stds), np.concatenate(times)

    def decode(self, z: Any) -> np.ndarray:
        """Decoder mean of latent points ``z`` (M, L) or (L,).

        Returns
        -------
        ndarray
            Aligned positions (M, N, D) for a coordinate model; the decoder's mean
            features (M, F) without a pipeline; class probabilities (M, C) for a
            categorical likelihood.
        """
        z = ensure_array(z, "z", dtype=np.float32, ndim=(1, 2))
        if z.ndim == 1:
            z = z[None]
        if z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (M, {self.latent_dim}); got {z.shape}")
        (mean,) = _chunked(partial(_decode_mean, self.config, self.params), z)
        return mean if self.config.likelihood == "categorical" else self.positions(mean)

    def generate(
        self,
        n: int,
        *,
        key: jax.Array | None = None,
        seed: int | None = None,
        mean_only: bool = False,
        latent: str | None = None,
    ) -> np.ndarray:
        """Conformations sampled from the model: latent points z, decoded.

        Parameters
        ----------
        n : int
            Number of conformations.
        key, seed : PRNG key or int, optional
            Randomness (default seed 0).
        mean_only : bool
            Leave out the decoder's noise (return the decoder mean of each z).
        latent : {"training", "prior"}, optional
            Where z comes from: ``"training"``, the encoder distributions of the
            training frames (:attr:`latent_codes`; populations of basins as in the
            trajectory, weighted as in training); ``"prior"``, N(0, I). Default
            ``"training"`` where the model keeps its frames' codes, else ``"prior"``.

        Returns
        -------
        ndarray (n, N, D) in the aligned frame, float32 (or (n, F) for non-coordinate data)
        """
        ensure_int(n, "the number of structures n", 1)
        numbers = int(n) * max(1, self.config.n_features)
        if numbers > MAX_GENERATED_NUMBERS:
            most = MAX_GENERATED_NUMBERS // max(1, self.config.n_features)
            raise ValueError(
                f"the number of structures n must be at most {most} for this model (one call's array is "
                f"limited to 2^31 numbers); got {n}: generate in parts with other seeds"
            )
        latent = ensure_choice(
            latent or ("prior" if self.latent_codes is None else "training"),
            "latent",
            LATENT_SOURCES,
        )
        key = _key(key, seed)
        if latent == "prior":
            x, z = _sample(self.config, self.params, int(n), key, bool(mean_only))
            k_x = key
        else:
            if self.latent_codes is None:
                raise ValueError(
                    'latent="training" needs the latent codes of the training frames, which '
                    "this model does not keep (trained before they were kept): use "
                    'latent="prior"'
                )
            k_z, k_x = jax.random.split(key)
            z = self.latent_codes.draw(n, k_z)
            x, _ = _chunked_sample(self.config, self.params, z, k_x, bool(mean_only))
        start = None
        if not mean_only and self.n_noise:  # the internal decoder starts from its mean
            start, _ = _chunked_sample(self.config, self.params, np.asarray(z), k_x, True)
        return self.positions(np.asarray(x), start=start)

    def reconstruct(self, frames: Any) -> np.ndarray:
        """Decoder mean at the encoder mean of each frame, as aligned positions."""
        mean, _ = self.encode(frames)
        return self.decode(mean)

    def iw_log_likelihood(self, frames: Any, *, n_samples: int = 64, seed: int = 0) -> np.ndarray:
        """Importance-weighted log p(x) per frame, in nats, for the model's features.

        For standardized coordinates the log-density of the standardized features is
        converted to the aligned coordinates (minus sum of log scales), so models with
        different latent sizes but the same data can be compared directly.

        Returns
        -------
        ndarray (T,)
        """
        ensure_int(n_samples, "n_samples", 1)
        x = self.features(frames)
        if self.config.n_inputs is not None:
            x = np.concatenate([x, self.inputs(frames)], axis=1)
        fn = partial(
            _iwll, self.config, self.params, n_samples=n_samples, key=jax.random.PRNGKey(seed)
        )
        (ll,) = _chunked(lambda c: fn(c), x, chunk=1024)
        if self.pipeline is not None:
            ll = ll - np.sum(np.log(self.pipeline.scale))
        return ll

    # ---- persistence ------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to one file (zip of config.json + params.npz)."""
        parts = ModelParts(
            self.config,
            self.params,
            self.pipeline,
            self.train_config,
            self.history,
            self.metadata,
            self.train_state,
            self.latent_codes,
        )
        return write_model_file(path, parts)

    @classmethod
    def load(cls, path: str | os.PathLike) -> VAEModel:
        """Read a model file written by :meth:`save` (never executes code); an error names
        the part of the file that is wrong (see :mod:`polyvae.model_file`)."""
        return cls(*read_model_file(path))


def load_model(path: str | os.PathLike) -> VAEModel:
    """Load a model file (see :meth:`VAEModel.load`)."""
    return VAEModel.load(path)
