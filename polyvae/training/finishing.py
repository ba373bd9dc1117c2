"""After the epochs: the trained model made whole (the latent codes of its training frames,
its reconstruction RMSD, the internal decoder's Cartesian weight), and the errors of those
steps."""

from __future__ import annotations

import logging
from dataclasses import replace

import jax
import numpy as np

from polyvae.features.layout import CARTESIAN_WEIGHTS
from polyvae.frames import evenly_spaced
from polyvae.measures.marginals import distance_marginals
from polyvae.nn.latent_codes import LatentCodes
from polyvae.nn.model import sample
from polyvae.nn.train_state import TrainingInterrupted
from polyvae.vae import VAEModel

__all__ = [
    "SCAN_ATOMS",
    "InterruptedAfterTraining",
    "PostTrainingError",
    "choose_cartesian_weight",
    "finished_model",
]

logger = logging.getLogger(__name__)


SCAN_ATOMS = 100_000
"""Atoms in all of the structures :func:`choose_cartesian_weight` refines per weight."""


class PostTrainingError(RuntimeError):
    """A step after the fit failed (e.g. out of memory); the trained model is kept.

    The model was trained; only the step named failed. With an output path, the model
    was saved there before that step, so the file holds the trained model without what
    the step adds.

    Attributes
    ----------
    step : str
        What failed, e.g. ``"choosing the Cartesian weight"``.
    model : VAEModel
        The trained model without what the step adds (for the internal decoder: the
        default Cartesian weight), ready to use or save.
    saved_to : Path or None
        Where that model was saved, if an output path was given.
    """

    def __init__(self, step: str, cause: BaseException, model, saved_to=None):
        self.step, self.model, self.saved_to = step, model, saved_to
        text = " ".join(str(cause).split())
        text = text if len(text) <= 200 else text[:197] + "..."
        why = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
        kept = (
            f"the trained model is saved in {saved_to} without it"
            if saved_to is not None
            else "the trained model, without it, is this error's .model"
        )
        super().__init__(f"{step} failed after training ({why}); {kept}")


class InterruptedAfterTraining(TrainingInterrupted):
    """SIGINT (or another interrupt) arrived in the work after the last epoch; the trained
    model was saved before it began (``saved_to``; None without an output path)."""

    def __init__(self, step: str, epoch: int, saved_to=None):
        KeyboardInterrupt.__init__(
            self,
            f"interrupted after training (epoch {epoch}), while {step}; "
            + (
                "nothing saved: no output file was given"
                if saved_to is None
                else f"the trained model is saved in {saved_to} without that step "
                f"(continue training with resume={saved_to})"
            ),
        )
        self.step, self.epoch, self.saved_to = step, epoch, saved_to


def choose_cartesian_weight(model, aligned: np.ndarray, *, n: int | None = None, seed: int = 0):
    """The internal decoder's model with the Cartesian weight whose structures fit best.

    ``n`` decoder draws (default 128, fewer for large molecules: about
    :data:`SCAN_ATOMS` atoms in all, at least 32, as for all-atom AdK's 3341 atoms)
    are turned into structures with each
    weight of :data:`polyvae.features.layout.CARTESIAN_WEIGHTS` (refined as
    :meth:`~polyvae.vae.VAEModel.generate` refines them), and their pair-distance
    marginals compared with the frames ``aligned`` (mean W1/σ over all pairs); the
    lowest wins. The figures are kept in ``metadata["cartesian_weight_scan"]``.

    Returns
    -------
    VAEModel
        A model sharing ``model``'s parameters, with the chosen weight.
    """
    if n is None:
        n = int(min(128, max(32, SCAN_ATOMS // model.n_atoms)))
    k_z, k_x = jax.random.split(jax.random.PRNGKey(seed))
    codes = model.latent_codes  # the latent points generate draws, where the model has them
    z = None if codes is None else codes.draw(n, k_z)
    draws, z = sample(model.params, n, model.config, key=k_x, z=z)
    means, _ = sample(model.params, n, model.config, key=k_x, z=z, mean_only=True)
    draws, sigma = np.asarray(draws), model.decoder_sigma
    done = model._refined_enough()  # as generate refines them
    scan = {}
    quiet = logging.getLogger("polyvae.measures.marginals")  # its notes are the scan's own
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for weight in CARTESIAN_WEIGHTS:
            generated = model.pipeline.inverse_transform(
                draws, sigma, cartesian_weight=weight, start=np.asarray(means), done=done
            )
            w1 = distance_marginals(aligned, generated).to_dict()["mean_w1_normalized"]
            scan[str(weight)] = round(float(w1), 4)
    finally:
        quiet.setLevel(level)
    best = float(min(scan, key=scan.get))
    logger.info("internal decoder: Cartesian weight scan (mean W1/sigma) %s", scan)
    layout = replace(model.pipeline.layout, cartesian_weight=best)
    return VAEModel(
        replace(model.config, layout=layout),
        model.params,
        replace(model.pipeline, layout=layout),
        model.train_config,
        model.history,
        {**model.metadata, "cartesian_weight_scan": scan},
    )


def finished_model(
    config,
    params,
    pipeline,
    tconfig,
    history,
    metadata,
    aligned,
    state=None,
    output=None,
    weights=None,
):
    """The trained :class:`~polyvae.vae.VAEModel`: for the internal decoder with the
    Cartesian weight chosen on the training frames ``aligned``, with its training state
    and, for a coordinate model, the latent codes of ``aligned`` (weighted by
    ``weights``) that :meth:`~polyvae.vae.VAEModel.generate` draws from.

    With ``output``, the model is saved there as soon as it is trained, before any step
    that follows (which may run out of memory on a large molecule), and again once they
    are done. A failing step raises :class:`PostTrainingError`, which names it and
    carries the trained model.
    """
    result = VAEModel(config, params, pipeline, tconfig, history, metadata)
    result.train_state = state
    saved = None if output is None else result.save(output)
    step = "keeping the latent codes of the training frames"
    try:
        if pipeline is not None:
            try:
                result.latent_codes = LatentCodes.of(result, aligned, weights)
                if config.likelihood == "gaussian":
                    rmsd = result.reconstruction_rmsd(aligned[evenly_spaced(len(aligned), 256)])
                    result.metadata["reconstruction_rmsd"] = {
                        "median": round(float(np.median(rmsd)), 6),
                        "p99": round(float(np.percentile(rmsd, 99)), 6),
                    }
            except Exception as exc:  # MemoryError, XLA's RESOURCE_EXHAUSTED, ...
                raise PostTrainingError(step, exc, result, saved) from exc
        if config.decoder != "internal":
            if output is not None and result.latent_codes is not None:
                result.save(output)
            return result
        step = "choosing the Cartesian weight"
        try:
            chosen = choose_cartesian_weight(result, aligned)
        except Exception as exc:  # MemoryError, XLA's RESOURCE_EXHAUSTED, ...
            raise PostTrainingError(step, exc, result, saved) from exc
        chosen.train_state = state
        chosen.latent_codes = result.latent_codes
        if output is not None:
            chosen.save(output)
        return chosen
    except KeyboardInterrupt:
        epoch = len(history.get("train_loss", ()))
        raise InterruptedAfterTraining(step, epoch, saved) from None
