"""Training data made ready: the frames checked, the pipeline fitted on them, the model's
configuration and what the model file keeps of the frames; the validation split, frame
weights, the checked feature matrices and whether to stream them."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from polyvae import geometry
from polyvae._checks import ensure_choice, ensure_finite_rows, ensure_onehot
from polyvae.config import DECODERS, TrainConfig, TrainSettings, VAEConfig
from polyvae.features.pipeline import Pipeline
from polyvae.features.topology import backbone_dihedrals
from polyvae.features.topology import model_bonds as resolve_bonds
from polyvae.frames import Frames
from polyvae.measures.validity import StructureChecks
from polyvae.measures.weights import check_weights, effective_sample_size
from polyvae.metadata import TrainingStats
from polyvae.nn.keys import seed_keys
from polyvae.nn.model import init_params
from polyvae.training.resume import data_fingerprint

__all__ = [
    "LARGEST_COORDINATE",
    "STREAM_ABOVE_BYTES",
    "host_arrays",
    "prepare_run",
    "prepare_training",
    "split_indices",
    "split_weights",
    "training_stats",
    "wants_stream",
    "weights_record",
]

logger = logging.getLogger(__name__)


STREAM_ABOVE_BYTES = 1 << 30
"""Feature matrices larger than this (1 GiB, float32) are streamed from host memory."""


LARGEST_COORDINATE = 1e6
"""Positions beyond this (in the frames' unit) are refused: float32 distances lose their
digits long before (1e6 Å is 0.1 mm), and squares overflow near 1e19."""


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into training and validation indices."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(validation_fraction * n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _split_seed(tc: TrainConfig) -> int:
    return tc.seed if tc.split_seed is None else tc.split_seed


def prepare_run(n_frames: int, config: VAEConfig, tc: TrainConfig, params=None):
    """Validation split, PRNG keys and initial parameters, the same for every trainer.

    Returns
    -------
    train_idx, val_idx, key, k_val, params
    """
    train_idx, val_idx = split_indices(n_frames, tc.validation_fraction, _split_seed(tc))
    if train_idx.size < tc.batch_size:
        raise ValueError(
            f"batch_size={tc.batch_size} is larger than the {train_idx.size} training frames left "
            f"after the validation split of {n_frames} frames; use a smaller batch_size or more frames"
        )
    key, k_init, k_val = seed_keys(tc.seed, 3)
    if params is None:
        params = init_params(config, key=k_init)
    return train_idx, val_idx, key, k_val, params


def split_weights(weights, n_frames: int, train_idx, val_idx):
    """Checked weights scaled to mean 1 over the training rows, and the validation rows'."""

    w = check_weights(weights, n_frames)
    if not w[train_idx].any():
        raise ValueError("weights: every training frame has weight 0; no frame would count")
    if val_idx.size and not w[val_idx].any():
        raise ValueError(
            "weights: every validation frame has weight 0; change seed or validation_fraction"
        )
    w = w / w[train_idx].mean()
    logger.info(
        "frame weights: effective sample size %.1f of %d frames",
        effective_sample_size(w),
        n_frames,
    )
    return w, (w[val_idx] if val_idx.size else None)


def weights_record(weights, n_frames: int) -> dict:
    """What the model file keeps of the frame weights: their count and effective sample size."""

    w = check_weights(weights, n_frames)
    return {"n_frames": n_frames, "effective_sample_size": effective_sample_size(w)}


def _host_matrix(a: Any, name: str, n_rows: int | None, n_cols: int, config: VAEConfig):
    """``a`` as a 2D real NumPy array (T, n_cols); a memmap is kept as it is."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must be a real-valued array; got dtype {a.dtype}")
    if name == "features" and config.likelihood == "categorical" and a.ndim == 2:
        if a.shape[1] != n_cols:
            raise ValueError(f"features have {a.shape[1]} classes but the model expects {n_cols}")
    if a.ndim != 2 or a.shape[1] != n_cols or n_rows not in (None, a.shape[0]):
        rows = "T" if n_rows is None else n_rows
        what = "n_features" if name == "features" else "n_inputs"
        raise ValueError(
            f"{name} must have shape ({rows}, {n_cols}) to match the model's {what}; got {a.shape}"
        )
    return a


def host_arrays(features, inputs, config: VAEConfig, block_frames: int) -> list:
    """The matrices :func:`~polyvae.training.trainer.fit` trains on, checked: ``features``
    (T, F) and, when the encoder reads other inputs, ``inputs`` (T, n_inputs), as 2D real
    arrays (a memmap kept as it is) whose rows are finite (and one-hot for a categorical
    likelihood), read ``block_frames`` rows at a time."""
    x = _host_matrix(features, "features", None, config.n_features, config)
    arrays = [x]
    if _check_inputs_given(config, inputs):
        arrays.append(_host_matrix(inputs, "inputs", x.shape[0], config.n_inputs, config))
    for a, name in zip(arrays, ("features", "inputs"), strict=False):
        _check_rows(a, name, block_frames, config.likelihood == "categorical" and a is x)
    return arrays


def _check_rows(array: np.ndarray, name: str, block: int, onehot: bool) -> None:
    """Finite (and, if ``onehot``, one-hot) rows, checked ``block`` rows at a time."""
    for start in range(0, array.shape[0], block):
        x = np.asarray(array[start : start + block], dtype=np.float32)
        ensure_finite_rows(x, name, offset=start)
        if onehot:
            ensure_onehot(x, name, offset=start)


def _check_inputs_given(config: VAEConfig, inputs) -> bool:
    """Whether encoder inputs are expected; raise if that and ``inputs`` disagree."""
    if config.n_inputs is None:
        if inputs is not None:
            raise ValueError("inputs given but config.n_inputs is None: the encoder reads features")
        return False
    if inputs is None:
        raise ValueError(
            f"inputs (T, {config.n_inputs}) are required: the model's encoder reads "
            f"n_inputs={config.n_inputs} features other than the {config.n_features} it "
            "reconstructs"
        )
    return True


def wants_stream(arrays: list, stream: bool | None) -> bool:
    if stream is not None:
        if not isinstance(stream, bool):
            raise TypeError(f"stream must be True, False or None (automatic); got {stream!r}")
        return stream
    if any(isinstance(a, np.memmap) for a in arrays):
        return True
    return sum(a.shape[0] * a.shape[1] * 4 for a in arrays) > STREAM_ABOVE_BYTES


def _check_trainable(frames: Frames) -> None:
    """Refuse, before any work, frames no model can be trained on: absurd coordinates."""
    largest = float(np.abs(frames.positions).max())
    if largest > LARGEST_COORDINATE:
        raise ValueError(
            f"frames: positions reach {largest:.3g} {frames.unit}, beyond "
            f"{LARGEST_COORDINATE:.0e}, which float32 training cannot use; check the unit "
            "and the file"
        )


def _check_varies(frames: Frames, aligned: np.ndarray) -> None:
    """Refuse frames that are all one structure (up to a rigid motion): nothing to learn."""
    spread = float(np.max(np.std(aligned, axis=0))) if len(aligned) > 1 else 0.0
    size = float(np.max(np.abs(aligned))) if aligned.size else 0.0
    if spread <= 1e-6 * max(size, 1e-30):
        what = "one frame shows" if frames.n_frames == 1 else f"all {frames.n_frames} frames show"
        raise ValueError(
            f"frames: {what} one structure (after alignment no coordinate varies "
            f"by more than {spread:.2g} {frames.unit}): there is nothing to learn; train on "
            "a trajectory whose frames differ"
        )


def _resolve_decoder(decoder: str | None, n_atoms: int, dim: int) -> str:
    """The decoder to train: ``decoder``, or the default for a molecule of this size."""
    smallest = 4 if dim == 3 else 3
    if decoder is None:
        if n_atoms >= smallest:
            return "internal"
        logger.info(
            "%d atoms in %dD are too few for internal coordinates: the decoder is cartesian",
            n_atoms,
            dim,
        )
        return "cartesian"
    decoder = ensure_choice(decoder, "decoder", DECODERS)
    if decoder == "internal" and n_atoms < smallest:
        raise ValueError(
            f'decoder="internal" needs at least {smallest} atoms in {dim}D; got {n_atoms}: '
            'use decoder="cartesian"'
        )
    return decoder


def prepare_training(frames: Frames, settings: TrainSettings | None = None):
    """What :func:`~polyvae.train` sets up before fitting: the fitted pipeline and the model.

    ``settings`` (default ``TrainSettings()``) say how the frames become features and
    what the network is.

    Returns
    -------
    config : VAEConfig
    pipeline : Pipeline
        Fitted on ``frames``.
    prepared : PreparedFrames
        The aligned frames, the training targets and the encoder inputs.
    metadata : dict
        Units, atoms and bonds, training statistics and structure checks.
    """
    s = TrainSettings() if settings is None else settings
    _check_trainable(frames)
    if isinstance(s.latent_dim, int) and s.latent_dim > frames.n_atoms * frames.dim:
        raise ValueError(
            f"latent_dim must be at most the {frames.n_atoms * frames.dim} coordinates of a "
            f"frame; got {s.latent_dim}"
        )
    model_bonds = resolve_bonds(frames, bonds=s.bonds)
    decoder = _resolve_decoder(s.decoder, frames.n_atoms, frames.dim)
    dihedrals = s.dihedrals
    if s.features == "torsions" and dihedrals is None:
        dihedrals = backbone_dihedrals(frames.names, model_bonds)
        if len(dihedrals) == 0:
            if s.angles is None:
                raise ValueError(
                    'features="torsions" found no backbone phi/psi: they need atoms named N, '
                    "CA and C, bonded (a peptide with its topology); pass dihedrals=[...] "
                    "(0-based atom quads) instead"
                )
            dihedrals = None
        else:
            logger.info("torsion features: %d backbone phi/psi dihedrals", len(dihedrals))
    pipeline = Pipeline(
        align=s.align,
        reference=s.reference,
        features=s.features,
        pairs=s.pairs,
        angles=s.angles,
        dihedrals=dihedrals,
        decoder=decoder,
        bonds=model_bonds if decoder == "internal" else None,
    )
    prepared = pipeline.fit_transform(frames)
    _check_varies(frames, prepared.aligned)
    config = s.vae_config(
        pipeline.n_features,
        n_inputs=pipeline.n_inputs if pipeline.separate_inputs else None,
        decoder=decoder,
        layout=pipeline.layout,
    )
    atoms = frames.metadata.get("atoms") or {
        "names": list(frames.names),
        "masses": frames.masses.tolist(),
    }
    metadata = {
        "unit": frames.unit,
        "names": list(frames.names),
        "n_frames_trained": frames.n_frames,
        "data_fingerprint": data_fingerprint(frames),
        **{k: frames.metadata[k] for k in ("source",) if k in frames.metadata},
        "atoms": {**atoms, "bonds": model_bonds.tolist()},
        "train_stats": training_stats(prepared.aligned, pipeline.masses, model_bonds).to_dict(),
    }
    checks = _structure_checks(prepared.aligned, model_bonds, frames.names)
    if checks is not None:
        metadata["structure_checks"] = checks.to_dict()
    return config, pipeline, prepared, metadata


def training_stats(
    aligned: np.ndarray, masses: np.ndarray, bonds: np.ndarray | None = None
) -> TrainingStats:
    """Structural statistics of aligned training frames (T, N, D), kept in the model file.

    ``bonds`` (B, 2) are the molecule's bonds (:func:`polyvae.features.topology.model_bonds`);
    default a linear chain in atom order. The closest non-bonded contact of each frame
    (pairs that are not bonds) comes from a neighbour list
    (:func:`polyvae.geometry.closest_contact`): memory grows with N, not N².
    """
    x = np.asarray(aligned, dtype=np.float64)
    n = x.shape[1]
    w = geometry.mass_weights(masses, n)
    rg = geometry.radius_of_gyration(x, w)
    bonds = geometry.chain_bonds(n) if bonds is None else np.asarray(bonds, dtype=np.int64)
    closest = geometry.closest_contact(x, bonds)
    lengths = geometry.pair_distances(x, bonds)
    return TrainingStats(
        rg_min=float(rg.min()),
        rg_mean=float(rg.mean()),
        min_nonbonded_p01=float(np.percentile(closest, 1.0)),
        bond_mean=float(lengths.mean()),
        bond_std=float(lengths.std()),
    )


def _structure_checks(aligned: np.ndarray, bonds: np.ndarray | None = None, names=None):
    """Validity checks fitted on the training frames with the model's bonds (and, in 3D,
    the handedness of the chiral centres found from ``names``), or None for molecules
    too small to have pairs beyond the excluded ones."""

    try:
        return StructureChecks.from_training(aligned, bonds, names=names)
    except ValueError:
        return None
