"""The model file's schema: its parts, written and read in one place.

A model file is a zip of ``config.json`` and ``params.npz``; :mod:`polyvae.nn.checkpoint`
writes and opens that container and checks its format and version. What the container
holds is a set of parts, each an entry of ``config.json``, the arrays of ``params.npz``
under one prefix, or both:

===========  =====================  ===============  ========================================
part         config.json            params.npz       holds
===========  =====================  ===============  ========================================
params       ``params_structure``   ``params/*``     the network's parameters
pipeline     ``pipeline``           ``pipeline/*``   centering, alignment, scaling, layout
model        ``model``                               the network's settings (``VAEConfig``)
train        ``train``                               the optimizer's settings
history      ``history``                             losses per epoch
metadata     ``metadata``                            atoms, structure checks, data statistics
resume       ``resume``             ``resume/*``     what continuing the training needs
latent                              ``latent/*``     the training frames' latent codes
===========  =====================  ===============  ========================================

:func:`read_model_file` reads them in this order (a part may need an earlier one: the
model's settings need the pipeline's layout and must fit the parameters' shapes) with
the reader of the file's format version; an error names the part and, for parameters,
the array that is wrong.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from polyvae.config import TrainConfig, VAEConfig
from polyvae.features.pipeline import Pipeline
from polyvae.metadata import check_model_metadata
from polyvae.nn.checkpoint import (
    flatten_tree,
    load_archive,
    save_archive,
    tree_structure,
    unflatten_tree,
)
from polyvae.nn.latent_codes import LatentCodes
from polyvae.nn.model import init_params
from polyvae.nn.train_state import TrainState

__all__ = ["ModelParts", "read_model_file", "write_model_file"]


class ModelParts(NamedTuple):
    """What a model file holds, in the order :class:`~polyvae.VAEModel` takes it."""

    config: VAEConfig
    params: Any
    pipeline: Pipeline | None
    train_config: TrainConfig | None
    history: dict
    metadata: dict
    train_state: TrainState | None
    latent_codes: LatentCodes | None


def write_model_file(path: str | os.PathLike, parts: ModelParts) -> Path:
    """Write ``parts`` to one model file (atomically); return its path."""
    params = jax.device_get(parts.params)
    arrays = {f"params/{k}": v for k, v in flatten_tree(params).items()}
    config = {
        "model": parts.config.to_dict(),
        "params_structure": tree_structure(params),
        "train": None if parts.train_config is None else parts.train_config.to_dict(),
        "history": parts.history,
        "metadata": parts.metadata,
        "pipeline": None,
    }
    if parts.pipeline is not None:
        config["pipeline"], pipeline_arrays = parts.pipeline.to_config()
        arrays.update({f"pipeline/{k}": v for k, v in pipeline_arrays.items()})
    if parts.train_state is not None:
        config["resume"], state_arrays = parts.train_state.to_archive(parts.params)
        arrays.update(state_arrays)
    if parts.latent_codes is not None:
        arrays.update({f"latent/{k}": v for k, v in parts.latent_codes.to_arrays().items()})
    return save_archive(path, config, arrays)


def read_model_file(path: str | os.PathLike) -> ModelParts:
    """Read and check every part of a model file (never executes code).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The container is damaged, of a newer format version, or a part is missing or
        inconsistent; the message names the part.
    """
    config, arrays = load_archive(path)
    return _READERS[config["format_version"]](str(path), config, arrays)


@contextmanager
def _part(path: str, name: str, where: str):
    """Turn an error while reading part ``name`` (stored at ``where``) into one that
    names the file and the part."""
    try:
        yield
    except KeyError as exc:
        raise ValueError(
            f"model file {path!r}: part {name!r} ({where}) is incomplete: it lacks "
            f"{exc.args[0]!r}: the file is damaged or not written by polyvae"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"model file {path!r}: part {name!r} ({where}) is incomplete or inconsistent: {exc}"
        ) from exc


def _required(path: str, config: dict, key: str, name: str) -> Any:
    if key not in config:
        raise ValueError(
            f"model file {path!r} lacks its part {name!r} (config.json {key!r}), which every "
            "model file polyvae writes has; the file is damaged or not written by polyvae"
        )
    return config[key]


def _under(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def _check_shapes(path: str, params: Any, config: VAEConfig) -> None:
    """Every parameter array has the shape the model's settings give it (named if not)."""
    template = jax.eval_shape(partial(init_params, config), key=jax.random.PRNGKey(0))
    expected = flatten_tree(jax.tree.map(lambda a: np.empty(a.shape, np.int8), template))
    found = flatten_tree(params)
    for name in sorted(set(expected) | set(found)):
        want = expected[name].shape if name in expected else None
        got = np.shape(found[name]) if name in found else None
        if want != got:
            raise ValueError(
                f"model file {path!r}: part 'params' (params.npz 'params/*'): parameter shapes "
                f"do not match its config: 'params/{name}' is "
                f"{'missing' if got is None else tuple(got)}, config.json 'model' gives "
                f"{'no such array' if want is None else tuple(want)}"
            )


def _read_v1(path: str, config: dict, arrays: dict[str, np.ndarray]) -> ModelParts:
    structure = _required(path, config, "params_structure", "params")
    with _part(path, "params", "config.json 'params_structure', params.npz 'params/*'"):
        params = jax.tree.map(jnp.asarray, unflatten_tree(_under(arrays, "params/"), structure))
    pipeline = None
    if config.get("pipeline") is not None:
        with _part(path, "pipeline", "config.json 'pipeline', params.npz 'pipeline/*'"):
            pipeline = Pipeline.from_config(config["pipeline"], _under(arrays, "pipeline/"))
    model = _required(path, config, "model", "model")
    with _part(path, "model", "config.json 'model'"):
        vae_config = VAEConfig.from_dict(
            model, layout=None if pipeline is None else pipeline.layout
        )
    _check_shapes(path, params, vae_config)
    train_config = None
    if config.get("train") is not None:
        with _part(path, "train", "config.json 'train'"):
            train_config = TrainConfig(**config["train"])
    history = config.get("history") or {}
    if not isinstance(history, dict):
        raise ValueError(f"model file {path!r}: part 'history' must be a JSON object")
    with _part(path, "metadata", "config.json 'metadata'"):
        metadata = check_model_metadata(config.get("metadata"))
    state = None
    if config.get("resume") is not None:
        with _part(path, "resume", "config.json 'resume', params.npz 'resume/*'"):
            state = TrainState.from_archive(config["resume"], arrays, params)
    codes = None
    latent = _under(arrays, "latent/")
    if latent:
        with _part(path, "latent", "params.npz 'latent/*'"):
            codes = LatentCodes.from_arrays(latent, vae_config.latent_dim)
    return ModelParts(vae_config, params, pipeline, train_config, history, metadata, state, codes)


_READERS = {1: _read_v1}
"""The reader of each format version up to :data:`~polyvae.nn.checkpoint.FORMAT_VERSION`
(a newer file is refused by :func:`~polyvae.nn.checkpoint.load_archive`)."""
