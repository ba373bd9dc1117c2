"""A NumPy twin of the VAE encoder, for processes where JAX must not run.

JAX does not survive ``fork()``: analysis workers started by MDAnalysis'
multiprocessing backend or by dask must not call into it. This module evaluates
the encoder of :func:`polyvae.nn.model.encode` with NumPy only, on parameters
converted once by :func:`numpy_params`. It imports neither JAX nor
:mod:`polyvae.nn.model`, so it is cheap to import in a worker; its constants mirror
those of :mod:`polyvae.nn.model` (the tests check that they agree).

Results match the JAX encoder (float32) to about 1e-6 relative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["ACTIVATIONS_NUMPY", "numpy_params", "forward_numpy", "encode_numpy"]

_STD_FLOOR = 1e-6  # polyvae.nn.model._STD_FLOOR


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, x.dtype.type(0))


def _elu(x: np.ndarray) -> np.ndarray:
    # alpha = 1, as jax.nn.elu; expm1 of the clipped value never overflows
    return np.where(x > 0, x, np.expm1(np.minimum(x, x.dtype.type(0))))


def _softplus(x: np.ndarray) -> np.ndarray:
    # log(1 + exp(x)) without overflow for large x
    return np.logaddexp(x.dtype.type(0), x)


ACTIVATIONS_NUMPY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": _relu,
    "tanh": np.tanh,
    "elu": _elu,
    "softplus": _softplus,
}


def numpy_params(params: Any) -> Any:
    """Copy a params pytree (nested dicts/lists/tuples of arrays) into NumPy arrays.

    The copies share no memory with JAX device buffers, so they pickle and can be
    used after ``fork()``.

    Parameters
    ----------
    params : pytree
        For example ``VAEModel.params`` (JAX arrays) or a subtree of it.

    Returns
    -------
    pytree of the same structure, with every leaf an ``ndarray`` (dtype kept).
    """
    if isinstance(params, dict):
        return {k: numpy_params(v) for k, v in params.items()}
    if isinstance(params, list | tuple):
        return type(params)(numpy_params(v) for v in params)
    return np.array(params, copy=True)


def _activation_name(config: Any) -> str:
    name = config if isinstance(config, str) else getattr(config, "activation", None)
    if name not in ACTIVATIONS_NUMPY:
        raise ValueError(
            f"config must be a VAEConfig (or an activation name) with activation in "
            f"{sorted(ACTIVATIONS_NUMPY)}; got {name!r}"
        )
    return name


def encode_numpy(params: dict, x: Any, config: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of q(z|x), computed with NumPy.

    Same function as :func:`polyvae.nn.model.encode`: an MLP whose last layer's
    output is split into the mean and a raw value, ``std = softplus(raw) + 1e-6``.

    Parameters
    ----------
    params : dict
        Params pytree (or just ``{"encoder": [...]}``) as NumPy arrays, see
        :func:`numpy_params`; JAX arrays also work but are converted on every call.
    x : array (B, F)
        Standardized features, float32 (other dtypes are converted).
    config : VAEConfig or str
        The model's config (only ``activation`` is read) or the activation name.

    Returns
    -------
    mean : ndarray (B, L), float32
    std : ndarray (B, L), float32, > 0

    Notes
    -----
    The layers are evaluated in float64 (inputs and weights are float32 values) and
    the outputs rounded to float32, so each row's result is independent of the
    batch it is computed in, up to rare one-ulp ties.
    """
    try:
        layers = params["encoder"]
    except (TypeError, KeyError):
        raise TypeError(
            f"params must be a params pytree with an 'encoder' entry; got {type(params).__name__}"
        ) from None
    x = np.asarray(x, dtype=np.float32)
    n_in = np.shape(layers[0]["w"])[0]
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(f"x must have shape (B, F) = (B, {n_in}); got {x.shape}")
    mean, raw = np.split(forward_numpy(layers, x, _activation_name(config)), 2, axis=-1)
    std = _softplus(raw) + _STD_FLOOR
    return mean.astype(np.float32), std.astype(np.float32)


def forward_numpy(layers: Any, x: Any, activation: str) -> np.ndarray:
    """A dense network in float64 NumPy: ``activation`` after every layer but the last.

    The one NumPy forward pass of polyvae: the encoder here, the exported encoder
    mean (:meth:`polyvae.export.EncoderSpec.evaluate`) and engine read-backs use it.

    Parameters
    ----------
    layers : sequence of {"w": (n_in, n_out), "b": (n_out,)} dicts or (w, b) pairs
    x : array (B, n_in)
    activation : str
        A key of :data:`ACTIVATIONS_NUMPY`.

    Returns
    -------
    ndarray (B, n_out), float64

    Notes
    -----
    Inputs and weights are float32 values evaluated in float64: BLAS rounds
    differently for different batch sizes, and in float64 that stays far below float32
    resolution, so a frame's result does not depend on the block (chunk, worker) it is
    computed in.
    """
    act = ACTIVATIONS_NUMPY[_activation_name(activation)]
    h = np.asarray(x, dtype=np.float64)
    for i, layer in enumerate(layers):
        w, b = (layer["w"], layer["b"]) if isinstance(layer, dict) else layer
        h = h @ np.asarray(w, dtype=np.float64) + np.asarray(b, dtype=np.float64)
        if i < len(layers) - 1:
            h = act(h)
    return h
