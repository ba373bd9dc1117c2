"""Several models from one run: seeds, β and latent sizes side by side, ranked.

:func:`train_many` prepares the frames once (one pipeline, and one validation split for
every member, so that their scores compare) and trains the members of each latent size
together: their parameters and Adam states carry a leading model axis, and one compiled
epoch (:func:`polyvae.nn.steps.make_ensemble_steps`, a ``jax.vmap`` of the single model's
steps) advances all of them, each with its own initialization, batch order, noise and
β, in the epoch loop that trains a single model (:func:`polyvae.training.loop.run_epochs`:
early stopping per member, divergence, interrupts). Members of different latent sizes
train in groups, one after the other.

The members are ranked by the importance-weighted log-likelihood of the validation
frames, ``log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x)`` with K samples z_k from the
encoder (:meth:`polyvae.vae.VAEModel.iw_log_likelihood`), the same estimate for every
member: it rewards a model for the probability it gives to frames it has not trained
on, whatever its β or latent size. Each member's model file is an ordinary polyvae
model; ``polyvae.train(frames, epochs=N, resume=path)`` continues it alone.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from polyvae._checks import ensure_int, ensure_number
from polyvae._outputs import check_output, write_text
from polyvae.config import TrainSettings
from polyvae.frames import Frames
from polyvae.measures.marginals import distance_marginals
from polyvae.nn.model import VAEConfig, init_params, loss_terms
from polyvae.nn.steps import epoch_plan, make_ensemble_steps
from polyvae.training.data import prepare_training, split_indices, split_weights, weights_record
from polyvae.training.finishing import finished_model
from polyvae.training.loop import Members, run_epochs
from polyvae.vae import VAEModel

__all__ = ["ACTIVE_VARIANCE", "IW_SAMPLES", "SHARED_SETTINGS", "Ensemble", "Member", "train_many"]

logger = logging.getLogger(__name__)

IW_SAMPLES = 64
"""Samples K of the importance-weighted log-likelihood that ranks the members."""

ACTIVE_VARIANCE = 0.01
"""A latent coordinate is active when its encoder mean varies more than this over the
validation frames (the prior's variance is 1)."""

SHARED_SETTINGS = tuple(
    f.name for f in fields(TrainSettings) if f.name not in ("seed", "beta", "latent_dim")
)
"""The fields of :class:`~polyvae.config.TrainSettings` every member shares; seeds, β and
latent sizes set the members apart."""


@dataclass(frozen=True)
class Member:
    """One model of an :class:`Ensemble` and the figures it is ranked by.

    Attributes
    ----------
    model : VAEModel
    seed, beta, latent_dim
        What sets the member apart.
    iw_log_px : float
        Mean importance-weighted log p(x) of the validation frames, nats per frame
        (aligned coordinates, so members with different latent sizes compare); -inf
        for a member whose training diverged.
    val_elbo : float
        Validation ELBO of the kept epoch.
    epoch, epochs_run : int
        The epoch whose parameters the model holds (the best validation epoch with
        early stopping, otherwise the last), and the epochs trained.
    active_dims : int
        Latent coordinates whose encoder mean varies over the validation frames by more
        than :data:`ACTIVE_VARIANCE`.
    w1 : float
        Mean W1/σ of the generated (1024 draws) against the training pair-distance
        marginals.
    diverged : int or None
        The epoch in which the loss became NaN/inf (the model then holds the parameters
        of the epoch before).
    path : Path or None
        Where the model was saved.
    """

    model: Any
    seed: int
    beta: float
    latent_dim: int
    iw_log_px: float
    val_elbo: float
    epoch: int
    epochs_run: int
    active_dims: int
    w1: float
    diverged: int | None = None
    path: Path | None = None

    @property
    def name(self) -> str:
        return f"seed{self.seed}_beta{self.beta:g}_latent{self.latent_dim}"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "seed": self.seed,
            "beta": self.beta,
            "latent_dim": self.latent_dim,
            "iw_log_px": None if not math.isfinite(self.iw_log_px) else self.iw_log_px,
            "val_elbo": self.val_elbo,
            "epoch": self.epoch,
            "epochs_run": self.epochs_run,
            "active_dims": self.active_dims,
            "w1": self.w1,
            "diverged": self.diverged,
            "path": None if self.path is None else str(self.path),
        }


@dataclass
class Ensemble:
    """Members of a :func:`train_many` run, best first.

    Attributes
    ----------
    members : list of Member
        Ranked by ``iw_log_px``, highest first; diverged members last.
    iw_samples : int
        K of the importance-weighted estimate.
    n_validation : int
        Validation frames every member is scored on.
    seconds : float
        Wall time of the run (preparation, training, scoring).
    """

    members: list[Member]
    iw_samples: int
    n_validation: int
    seconds: float

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self):
        return iter(self.members)

    def __getitem__(self, i: int) -> Member:
        return self.members[i]

    @property
    def best(self) -> Member:
        return self.members[0]

    def to_dict(self) -> dict:
        return {
            "ranked_by": f"importance-weighted log p(x) of {self.n_validation} validation "
            f"frames, K={self.iw_samples} samples (nats per frame, aligned coordinates)",
            "iw_samples": self.iw_samples,
            "n_validation": self.n_validation,
            "seconds": round(self.seconds, 2),
            "members": [m.to_dict() for m in self.members],
        }

    def table(self) -> str:
        """The ranking as a text table."""
        head = (
            f"{'rank':>4}  {'member':<26} {'log p(x)':>10} {'val ELBO':>10} {'epoch':>9} "
            f"{'active':>6} {'W1/σ':>7}"
        )
        rows = [
            f"ranked by importance-weighted log p(x), K={self.iw_samples}, over "
            f"{self.n_validation} validation frames (nats per frame)",
            head,
        ]
        for rank, m in enumerate(self.members, 1):
            ll = "diverged" if m.diverged else f"{m.iw_log_px:.3f}"
            rows.append(
                f"{rank:>4}  {m.name:<26} {ll:>10} {m.val_elbo:>10.3f} "
                f"{f'{m.epoch}/{m.epochs_run}':>9} {f'{m.active_dims}/{m.latent_dim}':>6} "
                f"{m.w1:>7.3f}"
            )
        return "\n".join(rows)

    def save(self, folder: str | os.PathLike) -> Path:
        """``ranking.json`` and ``ranking.txt`` in ``folder``; returns the JSON's path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / "ranking.txt", self.table() + "\n")
        path = folder / "ranking.json"
        write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _values(value: Any, name: str, kind: type) -> list:
    """``value`` (one or a sequence) as a list of distinct numbers of ``kind``."""
    values = list(value) if isinstance(value, list | tuple | range | np.ndarray) else [value]
    if not values:
        raise ValueError(f"{name} must give at least one value; got none")
    if kind is int:
        values = [ensure_int(v, name, 1 if name == "latent_dim" else 0) for v in values]
    else:
        values = [float(ensure_number(v, name, minimum=0)) for v in values]
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{name} must not repeat a value; got {repeated[0]} more than once")
    return values


@partial(jax.jit, static_argnums=0)
def _evaluate_many(config: VAEConfig, params, data, keys, weights):
    """Validation (recon, kl) of every member, (M, 2): means, or weighted means."""

    def one(p, key):
        recon, kl = loss_terms(p, data[0], config, key=key, x_in=data[1] if len(data) > 1 else None)
        if weights is None:
            return jnp.stack([jnp.mean(recon), jnp.mean(kl)])
        return jnp.stack([jnp.sum(weights * recon), jnp.sum(weights * kl)]) / jnp.sum(weights)

    return jax.vmap(one)(params, keys)


def _fit_group(config, tc, members, arrays, split, weights, progress, on_interrupt):
    """Train the ``members`` ((seed, beta) pairs) of one latent size together, through
    the epoch loop of a single model (:func:`polyvae.training.loop.run_epochs`) with
    stacked parameters and one vmapped step.

    Returns
    -------
    list of MemberRun
    """
    train_idx, val_idx = split
    w_train, w_val = weights
    keys = [jax.random.split(jax.random.PRNGKey(seed), 3) for seed, _ in members]
    params = jax.tree.map(lambda *a: jnp.stack(a), *[init_params(config, key=k[1]) for k in keys])
    optimizer, steps = make_ensemble_steps(config, float(tc.learning_rate))
    opt_state = jax.vmap(optimizer.init)(params)
    train_data = tuple(jnp.asarray(a[train_idx], jnp.float32) for a in arrays)
    val_data = tuple(jnp.asarray(a[val_idx], jnp.float32) for a in arrays)
    betas = [b for _, b in members]
    beta = jnp.asarray(betas, jnp.float32)
    # the key a single run's evaluate() draws its validation sample with
    val_keys = jnp.stack([jax.random.split(k[2])[1] for k in keys])
    w_train = None if w_train is None else jnp.asarray(w_train, jnp.float32)
    w_val = None if w_val is None else jnp.asarray(w_val, jnp.float32)

    def run_epoch(params, opt_state, epoch_keys):
        plans = [
            epoch_plan(k, train_idx.size, tc.batch_size, config.latent_dim) for k in epoch_keys
        ]
        order = np.stack([p[0] for p in plans])
        eps = np.stack([p[1] for p in plans])
        return steps(params, opt_state, train_data, order, eps, w_train, beta)

    def validate(params):
        return _evaluate_many(config, params, val_data, val_keys, w_val)

    return run_epochs(
        run_epoch,
        params,
        opt_state,
        [k[0] for k in keys],
        tc,
        betas,
        members=Members.stacked(len(members)),
        validate=validate,
        on_interrupt=on_interrupt,
        progress=progress,
        names=[f"seed={s} beta={b:g}" for s, b in members],
    )


def train_many(
    frames: Frames | Any,
    settings: TrainSettings | None = None,
    *,
    seeds: Any = None,
    beta: Any = None,
    latent_dim: Any = None,
    weights: Any = None,
    iw_samples: int = IW_SAMPLES,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **options: Any,
) -> Ensemble:
    """Train one model per combination of seed, β and latent size, and rank them.

    Parameters
    ----------
    frames : Frames or array (T, N, D)
    settings : TrainSettings, optional
        What every member shares (default ``TrainSettings()``), as in
        :func:`polyvae.train`; early stopping is per member (the group stops when every
        member has), and ``validation_fraction`` must be > 0: the ranking is on the
        validation frames. Its ``seed``, ``beta`` and ``latent_dim`` are the defaults of
        ``seeds``, ``beta`` and ``latent_dim``.
    seeds, beta, latent_dim : one value or a sequence of them
        Every combination is a member. Seeds set each member's initialization, batch
        order and noise; the validation split comes from the first seed for all.
        Members with one latent size train together in one compiled epoch.
    weights : array (T,), optional
        Per-frame weights, as in :func:`polyvae.train`; the ranking's mean is weighted.
    iw_samples : int
        Samples K of the importance-weighted log p(x).
    output_dir : path, optional
        Write each member's model (``seed{S}_beta{B}_latent{L}.npz``), ``ranking.json``
        and ``ranking.txt`` here. SIGINT, SIGTERM or SIGHUP during training saves every member
        with its training state here, then raises
        :class:`polyvae.nn.train_state.TrainingInterrupted`.
    progress : bool
    **options
        Fields of :class:`~polyvae.config.TrainSettings` other than those the members
        vary (:data:`SHARED_SETTINGS`: ``epochs``, ``batch_size``, ``hidden``,
        ``decoder``, ...), replacing the values of ``settings``.

    Returns
    -------
    Ensemble
        Members ranked best first; ``ensemble.best.model`` is the top model.
    """
    t_start = time.perf_counter()
    unknown = sorted(set(options) - set(SHARED_SETTINGS))
    if unknown:
        raise TypeError(
            f"train_many got an unexpected argument {unknown[0]!r}; the settings members "
            f"share are {', '.join(SHARED_SETTINGS)}"
        )
    if settings is None:
        settings = TrainSettings()
    elif not isinstance(settings, TrainSettings):
        raise TypeError(f"settings must be a TrainSettings; got {type(settings).__name__}")
    settings = settings.replace(**options)
    seeds = _values(settings.seed if seeds is None else seeds, "seeds", int)
    betas = _values(settings.beta if beta is None else beta, "beta", float)
    latent_dims = _values(
        settings.latent_dim if latent_dim is None else latent_dim, "latent_dim", int
    )
    ensure_int(iw_samples, "iw_samples", 1)
    validation_fraction, batch_size = settings.validation_fraction, settings.batch_size
    if not validation_fraction or validation_fraction <= 0:
        raise ValueError(
            "validation_fraction must be > 0 for train_many: members are ranked on the "
            f"validation frames; got {validation_fraction}"
        )
    tc = settings.train_config(seed=seeds[0], split_seed=seeds[0])
    out = None
    if output_dir is not None:
        out = check_output(output_dir, name="output_dir", kind="dir")
    if not isinstance(frames, Frames):
        frames = Frames(frames)
    base, pipeline, prepared, metadata = prepare_training(
        frames, settings.replace(latent_dim=latent_dims[0], beta=betas[0])
    )
    train_idx, val_idx = split_indices(frames.n_frames, validation_fraction, seeds[0])
    if train_idx.size < batch_size or val_idx.size == 0:
        raise ValueError(
            f"{frames.n_frames} frames give {train_idx.size} training and {val_idx.size} "
            f"validation frames: train_many needs at least batch_size={batch_size} and one; "
            "use more frames"
        )
    arrays = [np.asarray(prepared.targets, np.float32)]
    if prepared.inputs is not None and base.n_inputs is not None:
        arrays.append(np.asarray(prepared.inputs, np.float32))
    w_all = w_val = None
    if weights is not None:
        w_all, w_val = split_weights(weights, frames.n_frames, train_idx, val_idx)
        metadata["weights"] = weights_record(weights, frames.n_frames)
    metadata["ensemble"] = {
        "seeds": seeds,
        "beta": betas,
        "latent_dim": latent_dims,
        "split_seed": seeds[0],
    }
    val_frames = frames[val_idx]
    members = []
    for n_latent in latent_dims:
        config = replace(base, latent_dim=n_latent)
        combos = [(s, b) for b in betas for s in seeds]

        def models(runs, config=config, combos=combos):
            for (s, b), run in zip(combos, runs, strict=True):
                if run.diverged is not None:
                    run.history["best_epoch"] = run.best_epoch
                yield (
                    (s, b),
                    run.diverged,
                    finished_model(
                        replace(config, beta=b),
                        run.params,
                        pipeline,
                        replace(tc, seed=s),
                        run.history,
                        dict(metadata),
                        prepared.aligned,
                        run.state,
                        weights=w_all,
                    ),
                )

        def save_interrupted(states, histories, config=config, combos=combos):
            if out is None:
                return None

            out.mkdir(parents=True, exist_ok=True)
            for (s, b), st, history in zip(combos, states, histories, strict=True):
                if st is None:
                    continue
                name = Member(None, s, b, config.latent_dim, 0, 0, 0, 0, 0, 0).name
                VAEModel(
                    replace(config, beta=b),
                    st.params,
                    pipeline,
                    replace(tc, seed=s),
                    history,
                    dict(metadata),
                    st,
                ).save(out / f"{name}.npz")
            return out

        logger.info("training %d models with latent size %d together", len(combos), n_latent)
        results = _fit_group(
            config,
            tc,
            combos,
            arrays,
            (train_idx, val_idx),
            (None if w_all is None else w_all[train_idx], w_val),
            progress,
            save_interrupted,
        )
        for (s, b), diverged, model in models(results):
            members.append(
                _score(model, s, b, diverged, val_frames, (w_all, w_val), iw_samples, prepared)
            )
    members.sort(key=lambda m: (m.diverged is not None, -m.iw_log_px))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        members = [replace(m, path=m.model.save(out / f"{m.name}.npz")) for m in members]
    ensemble = Ensemble(members, iw_samples, int(val_idx.size), time.perf_counter() - t_start)
    if out is not None:
        ensemble.save(out)
    return ensemble


def _score(model, seed, beta, diverged, val_frames, weights, iw_samples, prepared) -> Member:
    """A member's ranking figures on the validation frames (``weights``: all frames' and
    the validation frames', or None)."""

    w_all, w_val = weights
    history = model.history
    epochs_run = len(history.get("val_elbo", []))
    kept = model.train_config.patience is not None and history.get("best_epoch")
    epoch = int(history["best_epoch"]) if kept else epochs_run
    val_elbo = history["val_elbo"][epoch - 1] if epoch else float("nan")
    if diverged is not None:
        return Member(
            model,
            seed,
            beta,
            model.latent_dim,
            -math.inf,
            val_elbo,
            epoch,
            epochs_run,
            0,
            float("nan"),
            diverged,
        )
    ll = model.iw_log_likelihood(val_frames, n_samples=iw_samples)
    ll = float(np.average(ll, weights=w_val))
    mean, _ = model.encode(val_frames)
    active = int(np.sum(np.var(mean, axis=0) > ACTIVE_VARIANCE))
    w1 = float("nan")
    if prepared.aligned.shape[1] >= 3:
        generated = model.generate(1024, seed=1)
        marginals = distance_marginals(prepared.aligned, generated, train_weights=w_all)
        w1 = float(marginals.mean_w1_normalized)
    return Member(
        model, seed, beta, model.latent_dim, ll, float(val_elbo), epoch, epochs_run, active, w1
    )
