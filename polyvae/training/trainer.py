"""Training one model: :func:`train` on frames, :func:`fit` on a feature matrix.

:func:`train` is what users call: it fits the :class:`~polyvae.features.pipeline.Pipeline`
on the frames (aligning them once; :mod:`~polyvae.training.data`), builds the model's
configuration, and runs :func:`fit`, which trains the VAE on the feature matrix with
optax Adam through the epoch loop of :mod:`~polyvae.training.loop`; the steps after
the fit are in :mod:`~polyvae.training.finishing`, continuing a run in
:mod:`~polyvae.training.resume`. An epoch's random draws come from
:func:`polyvae.nn.steps.epoch_plan` and its optimizer steps run inside one compiled scan
(:func:`polyvae.nn.steps.make_steps`); the same seed gives bit-identical parameters.

Frames in memory are copied to the device once. Larger feature matrices (above
:data:`~polyvae.training.data.STREAM_ABOVE_BYTES`, a :class:`numpy.memmap`, or
``stream=True``) stay in host memory: each epoch's batches are cut into blocks of
``block_frames`` rows, gathered on the host in a background thread (in ascending row
order, so that a memmap is read front to back) and copied to the device while the
previous block trains. The device then holds at most two blocks. Batch order, noise and
steps are the same either way: with one block the streamed result equals the in-memory
one bit for bit (on CPU); with several, parameters agree to a few float32 ulps after an
epoch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from polyvae._checks import ensure_int
from polyvae._outputs import check_output
from polyvae.config import (
    TrainConfig,
    TrainSettings,
    VAEConfig,
)
from polyvae.frames import Frames
from polyvae.nn.steps import data_mesh, initial_state, make_steps
from polyvae.nn.train_state import TrainState
from polyvae.training.data import (
    STREAM_ABOVE_BYTES,
    host_arrays,
    prepare_run,
    prepare_training,
    split_indices,
    split_weights,
    training_stats,
    wants_stream,
    weights_record,
)
from polyvae.training.finishing import PostTrainingError, choose_cartesian_weight, finished_model
from polyvae.training.history import training_summary
from polyvae.training.loop import (
    TrainingDivergedError,
    one_model_epochs,
    run_epochs,
)
from polyvae.training.resume import resumable
from polyvae.vae import VAEModel

__all__ = [
    "STREAM_ABOVE_BYTES",
    "PostTrainingError",
    "TrainingDivergedError",
    "choose_cartesian_weight",
    "fit",
    "split_indices",
    "train",
    "training_stats",
    "training_summary",
]

logger = logging.getLogger(__name__)


def train(
    frames: Frames | Any,
    settings: TrainSettings | None = None,
    *,
    stream: bool | None = None,
    weights: Any = None,
    output: str | os.PathLike | None = None,
    progress: bool = True,
    resume: Any = None,
    **options: Any,
):
    """Center, align and standardize frames, then train a VAE on them.

    Parameters
    ----------
    frames : Frames or array (T, N, D)
        Training trajectory, lengths in Å (or the Frames' unit).
    settings : TrainSettings, optional
        What to train (default ``TrainSettings()``, whose defaults are given below); the
        keyword options that follow, each a field of
        :class:`~polyvae.config.TrainSettings`, replace its values.
    latent_dim, hidden, activation, sigma, beta
        Architecture and objective, see :class:`polyvae.nn.model.VAEConfig`. ``sigma=None``
        learns the decoder's per-feature noise (recommended); a number fixes it, in
        units of each feature's training standard deviation.
    epochs, batch_size, learning_rate, seed, validation_fraction, patience
        See :class:`TrainConfig`. With a validation split, training stops after
        ``patience`` epochs (default 50) without a better validation loss and the model
        holds the parameters of its best validation epoch (``history["best_epoch"]``);
        ``patience=None`` trains all ``epochs`` and keeps the last.
    align : {"principal", "kabsch", "none"}
        Alignment before flattening; ``reference`` is the Kabsch target (N, D).
    features : {"positions", "distances", "torsions"}
        Encoder input: aligned coordinates; interatomic distances (``pairs``: (P, 2)
        atom pairs, or k for every k-th pair; default all); or the sine and cosine of
        dihedrals, by default the backbone φ/ψ that the atom names and bonds define
        (:func:`polyvae.features.topology.backbone_dihedrals`). MD engines compute the last two
        without alignment.
    angles : array (A, 3) of int, optional
        Bond angles (0-based atom indices into the frames) the encoder also reads, with
        distance or torsion features.
    dihedrals : array (Q, 4) of int, optional
        Dihedrals the encoder reads as sine and cosine: added to distance features, or
        replacing the backbone φ/ψ of torsion features.
    decoder : {"internal", "cartesian"}, optional
        What the decoder reconstructs: aligned Cartesian coordinates with internal
        coordinates (bond lengths, angles, dihedrals) along a Z-matrix of ``bonds``, so
        generated bonds, angles and chiral centres stay physical (see
        :mod:`polyvae.features.layout`); or aligned Cartesian coordinates alone.
        Default: ``"internal"``, or ``"cartesian"`` for molecules too small for a
        Z-matrix (fewer than 3 atoms in 2D, 4 in 3D).
    bonds : array (B, 2) of int, or {"auto", "topology", "guess"}, optional
        The molecule's bonds (0-based, in the frames' atom order), or how to find them
        (:func:`polyvae.features.topology.model_bonds`). ``"auto"`` (the default): the topology's
        bonds (``frames.bonds``) where they join the atoms; completed from distances and
        covalent radii where they do not (a PDB with ``CONECT`` records for some
        residues only); guessed from distances for an all-atom molecule without any;
        else (a Cα trace, beads) a chain in atom order. ``"topology"``: the topology's
        bonds only; ``"guess"``: from distances only. They fix the Z-matrix, the
        structure checks and training statistics and are kept in
        ``metadata["atoms"]["bonds"]``.
    stream : bool, optional
        Stream the training rows from host memory (see :func:`fit`); default: above
        :data:`STREAM_ABOVE_BYTES`.
    weights : array (T,), optional
        Per-frame weights, e.g. ``exp(V/kT)`` of a biased run's bias
        (:func:`polyvae.measures.weights.bias_weights`): each frame's loss counts in proportion,
        in training and validation. Their effective sample size is logged and kept in
        ``metadata["weights"]``.
    output : path, optional
        Save the trained model here: as soon as the fit ends, and again once the steps
        after it (the internal decoder's Cartesian weight) are done; if such a step
        fails, :class:`PostTrainingError` names it and the file holds the trained model
        without it. If training diverges, this file is left as it
        was; the last finite parameters go to ``NAME.diverged.SUFFIX`` next to it and
        the error names that file. SIGINT, SIGTERM or SIGHUP stops training after the current
        epoch and saves the model with its training state here, then raises
        :class:`polyvae.nn.train_state.TrainingInterrupted` naming the file.
    progress : bool
        Show a progress bar.
    resume : path or VAEModel, optional
        Continue the run that wrote this model (its architecture, preprocessing and
        settings) on the same ``frames`` and ``weights``, to ``epochs`` epochs in total;
        the other settings given here are not used. This gives the same parameters, bit
        for bit on one CPU, as one run of ``epochs`` epochs.

    Returns
    -------
    VAEModel

    Raises
    ------
    TrainingDivergedError
        The loss became NaN or inf; it carries the last finite parameters.
    PostTrainingError
        A step after the fit failed (e.g. out of memory while choosing the Cartesian
        weight); its ``.model`` is the trained model without that step, also saved to
        ``output`` when given.
    """

    if not isinstance(frames, Frames):
        frames = Frames(frames)
    if output is not None:  # before any work: a model that cannot be written is not trained
        check_output(output, name="output")
        _refuse_a_source(frames, output)
    if settings is None:
        settings = TrainSettings()
    elif not isinstance(settings, TrainSettings):
        raise TypeError(f"settings must be a TrainSettings; got {type(settings).__name__}")
    settings = settings.replace(**options)
    if resume is not None:
        previous = resumable(resume, frames, settings, weights)
        metadata = {k: v for k, v in previous.metadata.items() if k != "cartesian_weight_scan"}
        return _train(
            frames,
            previous.config,
            previous.pipeline,
            replace(previous.train_config, epochs=settings.epochs),
            previous.pipeline.training_arrays(frames),
            metadata,
            weights,
            stream,
            output,
            progress,
            previous,
        )
    config, pipeline, prepared, metadata = prepare_training(frames, settings)
    return _train(
        frames,
        config,
        pipeline,
        settings.train_config(),
        prepared,
        metadata,
        weights,
        stream,
        output,
        progress,
    )


def fit(
    features,
    config: VAEConfig,
    train_config: TrainConfig | None = None,
    *,
    inputs=None,
    params: dict | None = None,
    stream: bool | None = None,
    block_frames: int = 65536,
    weights=None,
    progress: bool = True,
    resume: TrainState | None = None,
    history: dict | None = None,
    on_state=None,
) -> tuple[dict, dict]:
    """Train a VAE on a feature matrix, in memory or streamed from host memory.

    Parameters
    ----------
    features : array or numpy.memmap (T, F)
        Training rows (standardized coordinates, or one-hot rows); any real dtype.
        Streamed, it is read ``block_frames`` rows at a time and never copied whole.
    config : VAEConfig
    train_config : TrainConfig, optional
        Default ``TrainConfig()``.
    inputs : array (T, n_inputs), optional
        Encoder inputs when they differ from the reconstructed features
        (``config.n_inputs`` set), e.g. standardized interatomic distances.
    params : dict, optional
        Starting parameters (default: a fresh seeded initialization).
    stream : bool, optional
        Keep the rows in host memory and move ``block_frames`` at a time to the
        device. Default: when the arrays are memmaps or hold more than
        :data:`STREAM_ABOVE_BYTES` as float32.
    block_frames : int
        Rows per streamed block (rounded down to a multiple of ``batch_size``; at
        least ``batch_size``). Peak device memory is then about
        ``2 * block_frames * (F + n_inputs) * 4`` bytes plus the model and optimizer.
    weights : array (T,), optional
        Per-frame weights (e.g. from a biased run, :mod:`polyvae.measures.weights`): each frame's
        loss counts in proportion, in training and in the validation loss.
    progress : bool
        Show a tqdm progress bar.
    resume : TrainState, optional
        Continue a run (same rows, config and ``train_config`` but ``epochs``) from its
        state to ``train_config.epochs`` epochs in total; ``history`` is its history.
    on_state : callable, optional
        ``on_state(state, history, interrupted)`` receives the :class:`TrainState` after
        the last epoch, or after the epoch at which SIGINT, SIGTERM or SIGHUP arrived (then
        :class:`TrainingInterrupted` is raised with what it returns, a saved path).

    Returns
    -------
    params : dict
        Trained parameters.
    history : dict of lists
        Per epoch: ``train_recon``, ``train_kl``, ``train_elbo``, ``train_loss`` (and the
        same with ``val_`` when a validation split is used), in nats per frame;
        ``epoch_time_s``.

    Raises
    ------
    TrainingDivergedError
        When the loss becomes NaN/inf; it carries the last finite parameters.
    ValueError
        Shapes that do not match the model, NaN/inf rows (the first one is named),
        rows that are not one-hot for a categorical likelihood, fewer training rows
        than one batch.
    """
    if not isinstance(config, VAEConfig):
        raise TypeError(f"config must be a VAEConfig; got {type(config).__name__}")
    tc = TrainConfig() if train_config is None else train_config
    if not isinstance(tc, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig; got {type(tc).__name__}")
    ensure_int(block_frames, "block_frames", 1)
    block_frames = max(int(block_frames), tc.batch_size)  # a block holds whole batches
    arrays = host_arrays(features, inputs, config, block_frames)
    n_frames = arrays[0].shape[0]
    streamed = wants_stream(arrays, stream)
    if not streamed:
        arrays = [np.asarray(a, dtype=np.float32) for a in arrays]

    train_idx, val_idx, key, k_val, params = prepare_run(n_frames, config, tc, params)
    if resume is not None:
        params = resume.params
    w_all = w_val = None
    if weights is not None:
        w_all, w_val = split_weights(weights, n_frames, train_idx, val_idx)
    mesh = data_mesh(tc.batch_size) if not streamed else None
    if mesh is not None and mesh.size > 1:
        logger.info("data-parallel training on %d devices", mesh.size)
    optimizer, steps = make_steps(config, float(tc.learning_rate), mesh)
    per_block = block_frames // tc.batch_size
    run_epoch, validate, place = one_model_epochs(
        steps,
        config,
        tc,
        arrays,
        (train_idx, val_idx),
        (w_all, w_val),
        k_val,
        mesh=mesh,
        per_block=per_block if streamed else None,
    )
    params = place(params)
    opt_state = initial_state(optimizer, params) if resume is None else resume.bind(optimizer)
    opt_state = place(opt_state)

    def on_interrupt(states, histories):
        return on_state(states[0], histories[0], True) if on_state else None

    [run] = run_epochs(
        run_epoch,
        params,
        opt_state,
        [key],
        tc,
        [config.beta],
        validate=validate,
        starts=None if resume is None else [resume],
        histories=None if history is None else [history],
        on_interrupt=on_interrupt,
        progress=progress,
    )
    if run.diverged is not None:
        raise TrainingDivergedError(run.diverged, run.params, run.history)
    if on_state is not None:
        on_state(run.state, run.history, False)
    params, history = run.params, run.history
    how = f", streamed in blocks of {per_block * tc.batch_size} rows" if streamed else ""
    logger.info(
        "trained %d epochs on %d frames%s: train -ELBO %.4f%s",
        tc.epochs,
        n_frames,
        how,
        -history["train_elbo"][-1],
        f", validation -ELBO {-history['val_elbo'][-1]:.4f}" if "val_elbo" in history else "",
    )
    return params, history


def _train(
    frames,
    config,
    pipeline,
    tconfig,
    prepared,
    metadata,
    weights,
    stream,
    output,
    progress,
    previous=None,
):
    """Fit the model, or continue ``previous``, and keep the training state in it."""
    if weights is not None:
        metadata["weights"] = weights_record(weights, frames.n_frames)
    kept = {}
    existed = output is not None and os.path.exists(output)

    def keep(state, history, interrupted):
        kept["state"] = state
        if interrupted and output is not None:
            model = VAEModel(config, state.params, pipeline, tconfig, history, metadata, state)
            return model.save(output)
        return None

    try:
        params, history = fit(
            prepared.targets,
            config,
            tconfig,
            inputs=prepared.inputs,
            stream=stream,
            weights=weights,
            progress=progress,
            resume=None if previous is None else previous.train_state,
            history=None if previous is None else previous.history,
            on_state=keep,
        )
    except TrainingDivergedError as err:
        if output is None:
            raise
        last = VAEModel(config, err.params, pipeline, tconfig, err.history, metadata)
        saved = last.save(_diverged_path(output))
        raise TrainingDivergedError(
            err.epoch, err.params, err.history, saved_to=saved, output=output,
            output_existed=existed,
        ) from None  # fmt: skip
    return finished_model(
        config,
        params,
        pipeline,
        tconfig,
        history,
        metadata,
        prepared.aligned,
        kept.get("state"),
        output,
        weights,
    )


def _refuse_a_source(frames: Frames, output) -> None:
    """ValueError when ``output`` is one of the files the frames were read from
    (``metadata["source"]``): saving the model would replace them."""
    if not os.path.exists(output):
        return
    for source in str(frames.metadata.get("source") or "").split(", "):
        try:
            same = bool(source) and os.path.samefile(source, output)
        except (OSError, ValueError):
            continue
        if same:
            raise ValueError(
                f"output {str(output)!r} is a file the frames were read from, which saving "
                "the model would replace; choose another output path"
            )


def _diverged_path(output: str | os.PathLike) -> Path:
    """Where a diverged run keeps its last finite parameters: ``NAME.diverged.SUFFIX``."""
    out = Path(output)
    return out.with_name(f"{out.stem}.diverged{out.suffix}")
