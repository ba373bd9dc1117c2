"""The latent CV as a TorchScript module, for PLUMED's ``PYTORCH_MODEL`` action.

Contract of ``PYTORCH_MODEL`` (from PLUMED's ``src/pytorch/PytorchModel.cpp``, 2.9 and
2.10; reference only, no code taken):
https://github.com/plumed/plumed2/blob/master/src/pytorch/PytorchModel.cpp

* the file (``FILE=``, default ``model.ptc``) is read with ``torch::jit::load``, so it
  must be a module compiled with ``torch.jit.script`` or ``torch.jit.trace`` and saved
  with ``torch.jit.save``; PLUMED 2.10 then calls ``eval()``, ``torch::jit::freeze`` and
  ``optimize_for_inference`` on it;
* the ``ARG`` values are copied into a **float32** tensor of shape **(1, n_args)**
  (``torch::tensor(std::vector<float>).view({1, n_in})``) with ``requires_grad``, and
  ``forward`` is called on it alone;
* the output must be a float32 tensor (read through ``data_ptr<float>``) of shape
  (1, n_out): its number of elements gives the components ``node-0 ... node-{n_out-1}``,
  and the derivatives come from autograd of ``output[:, j]`` with respect to the input.

The module written here follows that: float32 weights, ``forward`` of a (B, F) tensor
gives (B, L) (and (F,) gives (L,)), the input standardization is folded into the first
layer (:meth:`EncoderSpec.folded_layers`), so it takes the raw features in Å:

* distance models: the distances of ``spec.features`` in that order (PLUMED: one
  ``DISTANCE ATOMS=i,j`` per input);
* position models: the positions of the model's atoms, flattened ``x0, y0, z0, x1, ...``,
  after superposition on ``spec.reference`` (PLUMED: ``FIT_TO_TEMPLATE TYPE=OPTIMAL``
  with the reference structure, as in the PLUMED export, then ``POSITION ATOM=n`` and
  ``ARG=p0.x,p0.y,p0.z,...``).

PLUMED's length unit is nm unless the input sets ``UNITS LENGTH=A``; this module wants Å.
A JSON sidecar (:func:`write_torchscript`) lists inputs, atom numbers and unit.

``torch`` is imported only when a module is built: ``pip install torch==2.13.0``.
TorchScript is deprecated in recent PyTorch in favour of ``torch.export``, but LibTorch's
``torch::jit::load`` (what PLUMED calls) reads only TorchScript, so it is used here and
its deprecation warnings are silenced while writing.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from polyvae._outputs import atomic_path, write_text
from polyvae.export.spec import EncoderSpec, encoder_spec

__all__ = ["to_torch_module", "write_torchscript", "torchscript_sidecar"]

# activation name -> torch.nn module (alpha=1 ELU and beta=1 softplus, as jax.nn)
_TORCH_ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "elu": "ELU", "softplus": "Softplus"}
_INSTALL = "pip install torch==2.13.0"


def _import_torch():
    try:
        import torch  # optional, the torch extra: loaded only by this export
    except ImportError as err:
        raise ImportError(
            f"the TorchScript export needs PyTorch, which is not installed: {_INSTALL} "
            "(a CPU build is enough; PLUMED's LibTorch runs the saved module)"
        ) from err
    return torch


@functools.cache
def _module_class():
    """The ``nn.Module`` class of an encoder mean (built once torch is imported)."""
    torch = _import_torch()

    class EncoderMean(torch.nn.Module):
        """Encoder mean of a polyvae model: raw features (B, F) or (F,) to CVs (B, L) or (L,).

        Dense layers (standardization folded into the first) with an activation after
        every layer but the last; float32.
        """

        def __init__(self, layers: list, activation: str):
            super().__init__()
            modules = []
            for k, (w, b) in enumerate(layers):
                lin = torch.nn.Linear(w.shape[0], w.shape[1])
                with torch.no_grad():
                    lin.weight.copy_(
                        torch.as_tensor(np.ascontiguousarray(w.T), dtype=torch.float32)
                    )
                    lin.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
                modules.append(lin)
                if k < len(layers) - 1:
                    modules.append(getattr(torch.nn, _TORCH_ACTIVATIONS[activation])())
            self.net = torch.nn.Sequential(*modules)
            self.n_features = int(layers[0][0].shape[0])
            self.latent_dim = int(layers[-1][0].shape[1])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.dim() < 1 or x.dim() > 2 or x.shape[-1] != self.n_features:
                raise ValueError(
                    "x must have shape (B, F) or (F,) with F = "
                    + str(self.n_features)
                    + " raw features; got shape "
                    + str(x.shape)
                )
            return self.net(x)

    return EncoderMean


def _as_spec(spec_or_model: Any) -> EncoderSpec:
    if isinstance(spec_or_model, EncoderSpec):
        return spec_or_model
    if hasattr(spec_or_model, "pipeline") and hasattr(spec_or_model, "params"):
        return encoder_spec(spec_or_model)  # raises ExportError for what it cannot export
    raise TypeError(
        "spec_or_model must be an EncoderSpec or a trained VAEModel; "
        f"got {type(spec_or_model).__name__}"
    )


def to_torch_module(spec_or_model: EncoderSpec | Any):
    """The encoder mean as a float32 ``torch.nn.Module`` that takes raw features.

    Parameters
    ----------
    spec_or_model : EncoderSpec or VAEModel
        A model is reduced with :func:`encoder_spec` first.

    Returns
    -------
    torch.nn.Module
        In eval mode, parameters without gradients. ``module(x)`` maps ``x`` of shape
        (B, F) (PLUMED passes (1, F)) or (F,), float32, to the CVs (B, L) or (L,). ``x``
        holds the raw features in Å in the spec's order: the distances of
        ``spec.features`` for a distance model; for a position model the positions of
        the model's atoms superposed on ``spec.reference`` (mass-weighted Kabsch, as
        :func:`polyvae.features.pipeline.align_to_reference`), flattened ``x0, y0, z0, x1, ...``
        (in PLUMED: ``FIT_TO_TEMPLATE`` with the reference first).

    Raises
    ------
    ImportError
        torch is not installed.
    ExportError
        From :func:`encoder_spec`, for a model it cannot export.
    ValueError
        The spec's activation has no torch counterpart.
    """
    spec = _as_spec(spec_or_model)
    if spec.activation not in _TORCH_ACTIVATIONS:
        raise ValueError(
            f"spec.activation must be one of {sorted(_TORCH_ACTIVATIONS)}; got {spec.activation!r}"
        )
    module = _module_class()(spec.folded_layers(), spec.activation)
    module.eval()
    module.requires_grad_(False)
    return module


def torchscript_sidecar(spec_or_model: EncoderSpec | Any, model_file: str = "model.ptc") -> dict:
    """What the JSON sidecar of :func:`write_torchscript` holds, as a dict.

    Keys: ``format``, ``model_file``, ``kind`` ("positions", "distances" or "internal"),
    ``unit`` ("Å"), ``dtype``, ``input_shape`` ([1, F]), ``n_inputs``, ``latent_dim``,
    ``activation``, ``outputs`` (PLUMED component names ``node-0 ...``), ``inputs`` (one
    per input, in order: ``{"kind": "distance", "atoms": [i, j]}``, ``{"kind": "angle",
    "atoms": [i, j, k]}`` (radians), ``{"kind": "sin_dihedral" | "cos_dihedral", "atoms":
    [i, j, k, l]}`` or ``{"kind": "position", "atom": n, "component": "x"}``, with 1-based
    topology atom numbers), ``atoms`` (``numbers``, ``names``), and for position models ``reference``
    (the superposition reference (N, D), in ``unit``) and ``masses`` (its weights).
    """
    spec = _as_spec(spec_or_model)
    numbers = [int(i) + 1 for i in spec.atom_indices]
    inputs = []
    for feat in spec.features:
        if feat[0] == "position":
            inputs.append({"kind": "position", "atom": numbers[feat[1]], "component": feat[2]})
        else:  # distance, angle, sin_dihedral, cos_dihedral: computed by the engine
            inputs.append({"kind": feat[0], "atoms": [numbers[a] for a in feat[1:]]})
    info = {
        "format": "polyvae-torchscript-cv/1",
        "model_file": str(model_file),
        "kind": spec.kind,
        "unit": spec.unit,
        "dtype": "float32",
        "input_shape": [1, len(spec.features)],
        "n_inputs": len(spec.features),
        "latent_dim": int(spec.latent_dim),
        "activation": spec.activation,
        "outputs": [f"node-{k}" for k in range(spec.latent_dim)],
        "inputs": inputs,
        "atoms": {"numbers": numbers, "names": list(spec.atom_names)},
    }
    if spec.kind == "positions":
        info["reference"] = np.asarray(spec.reference, np.float64).tolist()
        info["masses"] = np.asarray(spec.masses, np.float64).tolist()
    return info


def write_torchscript(spec_or_model: EncoderSpec | Any, path: str | os.PathLike) -> Path:
    """Compile the encoder mean with TorchScript and save it for ``PYTORCH_MODEL``.

    Parameters
    ----------
    spec_or_model : EncoderSpec or VAEModel
    path : str or path-like
        Module file (PLUMED's default name is ``model.ptc``; ``.pt`` works too); its
        folder is created. A JSON sidecar :func:`torchscript_sidecar` is written next to
        it as ``path.with_suffix(".json")`` and also stored inside the module file as
        the extra file ``polyvae.json``.

    Returns
    -------
    Path
        The module file.

    Raises
    ------
    ImportError
        torch is not installed.
    ExportError
        From :func:`encoder_spec`, for a model it cannot export.
    ValueError
        ``path`` ends in ``.json`` (the sidecar's name).
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        raise ValueError(
            f"path must be the module file (e.g. model.ptc or model.pt), not a .json file, "
            f"which is the sidecar's name; got {str(path)!r}"
        )
    spec = _as_spec(spec_or_model)
    module = to_torch_module(spec)
    torch = _import_torch()
    text = json.dumps(torchscript_sidecar(spec, path.name), indent=2, ensure_ascii=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # deprecated in favour of torch.export, which LibTorch / PLUMED cannot load
        warnings.filterwarnings("ignore", message=r".*torch\.jit", category=DeprecationWarning)
        scripted = torch.jit.script(module)
        with atomic_path(path) as tmp:
            torch.jit.save(scripted, str(tmp), _extra_files={"polyvae.json": text})
    write_text(path.with_suffix(".json"), text + "\n")
    return path
