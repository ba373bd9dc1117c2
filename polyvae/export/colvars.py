"""The latent CV as a Colvars configuration: a ``NeuralNetwork`` of ``distance`` inputs.

Colvars facts used here (from the Colvars sources; reference only, no code taken):

* The component is registered as ``NeuralNetwork`` (Colvars keywords are not case
  sensitive). Keys: ``output_component`` (0-based index of the network output that is
  the colvar's value), ``layerN_WeightsFile``, ``layerN_BiasesFile`` and either
  ``layerN_activation`` or, where Colvars is built with Lepton,
  ``layerN_custom_activation`` (an expression in ``x``), for N = 1, 2, ...; the three
  counts must agree.
  https://github.com/Colvars/colvars/blob/master/src/colvarcomp_neuralnetwork.cpp
* Built-in activations: ``tanh``, ``sigmoid``, ``linear``, ``relu``, ``lrelu100``
  (slope 0.01) and ``elu`` (``exp(x) - 1`` below 0, i.e. alpha = 1 as in JAX).
  Weights file: one line per *output* node, holding that node's n_in input weights
  separated by spaces (``output[i] = sum_j input[j] * w[i][j] + b[i]``); biases file:
  one number per line.
  https://github.com/Colvars/colvars/blob/master/src/colvar_neuralnetworkcompute.cpp
  Softplus is written as ``layerN_custom_activation`` (:data:`SOFTPLUS_EXPRESSION`), so
  it needs a Colvars built with Lepton (tested: LAMMPS 22 Jul 2025, COLVARS + LEPTON).
* The inputs are the nested scalar components in the order of their ``name`` (sorted
  as strings: ``std::sort`` with ``i->name < j->name``), so names here are zero-padded.
  https://github.com/Colvars/colvars/blob/master/src/colvarcomp_combination.cpp
* ``distance { group1 { atomNumbers i } group2 { atomNumbers j } }`` with 1-based atom
  numbers, minimal-image distance. ``colvarsTrajFrequency`` sets the output stride.
  Lengths are in the engine's unit: Å in NAMD, VMD and LAMMPS ``units real`` or
  ``units metal``; nm in GROMACS (this file is not for GROMACS).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from polyvae._outputs import write_text
from polyvae.export.plumed import as_spec, atom_numbers, label_width, num
from polyvae.export.spec import ExportError

__all__ = ["write_colvars", "COLVARS_ACTIVATIONS", "SOFTPLUS_EXPRESSION"]

#: Lepton expression of softplus, ``log(1 + exp(x))`` without overflow for large x.
SOFTPLUS_EXPRESSION = "max(x,0)+log(1+exp(-abs(x)))"

#: polyvae activation -> (Colvars key suffix, value).
COLVARS_ACTIVATIONS: dict[str, tuple[str, str]] = {
    "relu": ("activation", "relu"),
    "tanh": ("activation", "tanh"),
    "elu": ("activation", "elu"),
    "softplus": ("custom_activation", SOFTPLUS_EXPRESSION),
    "linear": ("activation", "linear"),
}


def _activation(name: str) -> tuple[str, str]:
    if name not in COLVARS_ACTIVATIONS:
        raise ExportError(
            f"activation {name!r} has no Colvars equivalent here (supported: "
            f"{', '.join(k for k in COLVARS_ACTIVATIONS if k != 'linear')}); retrain with one "
            "of them or use the TorchScript export"
        )
    return COLVARS_ACTIVATIONS[name]


def write_colvars(
    spec_or_model: Any,
    out_dir: str | os.PathLike,
    *,
    name_prefix: str = "z",
    colvars_trajectory_frequency: int = 100,
    atoms: Any = None,
) -> Path:
    """Write a Colvars configuration computing the latent CV of a distance-input model.

    One ``colvar`` per latent dimension (``z0``, ``z1``, ...), each a ``NeuralNetwork``
    with ``output_component k`` over one ``distance`` per input feature. The layers go
    to ``layer<N>_weights.txt`` / ``layer<N>_biases.txt`` with the input standardization
    folded into layer 1, so the network reads raw distances in Å.

    Parameters
    ----------
    spec_or_model : EncoderSpec or VAEModel
        A model with distance features.
    out_dir : str or path-like
        Folder for the files (created). File names inside are relative: run the engine
        from this folder or adjust the paths.
    name_prefix : str
        Colvar names are ``name_prefix`` + latent index.
    colvars_trajectory_frequency : int
        ``colvarsTrajFrequency``: steps between lines of the Colvars trajectory file.
    atoms : sequence of int, optional
        0-based topology indices of the model's atoms (see :func:`encoder_spec`).

    Returns
    -------
    Path
        ``out_dir / "polyvae.colvars"``.

    Raises
    ------
    ExportError
        Position inputs, unit not Å, or an activation Colvars cannot express.
    """
    spec = as_spec(spec_or_model, "Colvars", atoms)
    if spec.kind == "internal":
        raise ExportError(
            "Colvars cannot export this CV: its NeuralNetwork component takes the values of "
            "other components, and the encoder reads the sine and cosine of dihedrals (or "
            "bond angles), which Colvars cannot compute before the network; export it to "
            "PLUMED (polyvae export plumed, write_plumed) or TorchScript (polyvae export "
            "torchscript, write_torchscript) instead"
        )
    if spec.kind != "distances":
        raise ExportError(
            "Colvars export needs distance features: retrain with --features distances "
            f"(features='distances'); this model's inputs are {spec.kind!r}"
        )
    freq = colvars_trajectory_frequency
    if isinstance(freq, bool) or not isinstance(freq, int | np.integer) or freq < 1:
        raise ValueError(
            f"colvars_trajectory_frequency must be a positive integer (MD steps); got {freq!r}"
        )
    if not name_prefix or any(c.isspace() or c in "{}#" for c in name_prefix):
        raise ValueError(f"name_prefix must be a non-empty word; got {name_prefix!r}")
    layers = spec.folded_layers()
    acts = [_activation(spec.activation)] * (len(layers) - 1) + [COLVARS_ACTIVATIONS["linear"]]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k, (w, b) in enumerate(layers, start=1):
        rows = "".join(" ".join(map(num, row)) + "\n" for row in np.asarray(w).T)
        write_text(out / f"layer{k}_weights.txt", rows, encoding="ascii")
        write_text(out / f"layer{k}_biases.txt", "".join(num(v) + "\n" for v in b), "ascii")

    numbers = atom_numbers(spec)
    width = label_width(len(spec.features))
    inputs = []
    for k, (_, i, j) in enumerate(spec.features):
        inputs += [
            "    distance {",
            f"      name d{k:0{width}d}",
            f"      group1 {{ atomNumbers {numbers[i]} }}",
            f"      group2 {{ atomNumbers {numbers[j]} }}",
            "    }",
        ]
    text = [
        "# Colvars configuration: latent CV (encoder mean) of a polyvae model.",
        "# Lengths in Å: for NAMD, VMD, or LAMMPS with `units real` or `units metal`",
        "# (not GROMACS, whose Colvars lengths are in nm).",
        "# Inputs: one distance per feature, taken in the order of their names; the input",
        "# standardization is folded into layer 1. Weights files: one row per output node.",
        "# File names are relative to the directory the engine runs in.",
        f"colvarsTrajFrequency {int(freq)}",
    ]
    for out_k in range(spec.latent_dim):
        text += ["", "colvar {", f"  name {name_prefix}{out_k}", "  NeuralNetwork {"]
        text.append(f"    output_component {out_k}")
        for k, (key, value) in enumerate(acts, start=1):
            text += [
                f"    layer{k}_WeightsFile layer{k}_weights.txt",
                f"    layer{k}_BiasesFile layer{k}_biases.txt",
                f"    layer{k}_{key} {value}",
            ]
        text += inputs + ["  }", "}"]
    path = out / "polyvae.colvars"
    write_text(path, "\n".join(text) + "\n")
    return path
