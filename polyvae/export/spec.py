"""What an MD engine needs to compute a model's CV: the encoder-mean network and its inputs.

:func:`encoder_spec` reduces a trained model to an :class:`EncoderSpec`: the input
features as an engine defines them (atom positions after superposition on a
reference, or interatomic distances), the standardization of those inputs, the
dense layers of the encoder that produce the latent mean, and the activation. The
writers in this package (COLVAR, PLUMED, Colvars, TorchScript) all start from it, so
they agree on feature order, units and weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polyvae.nn.encoder_numpy import forward_numpy

__all__ = ["EncoderSpec", "encoder_spec", "ExportError"]


class ExportError(ValueError):
    """The model cannot be expressed in the requested target."""


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder mean, ready to be written for an engine.

    Attributes
    ----------
    kind : {"positions", "distances", "internal"}
        Input features: aligned Cartesian positions of the model's atoms, interatomic
        distances, or internal coordinates (distances, bond angles and the sine and
        cosine of dihedrals).
    features : list of tuple
        One per input, in input order: ``("position", atom, component)`` with
        ``component`` in "xyz", ``("distance", i, j)``, ``("angle", i, j, k)`` (radians,
        at j), ``("sin_dihedral", i, j, k, l)`` or ``("cos_dihedral", i, j, k, l)`` (IUPAC
        sign); atoms are indices into the model's atom list (0..N-1).
    atom_indices : ndarray (N,), int
        0-based indices of the model's atoms in the topology (engine atom number is
        ``index + 1``).
    atom_names : list of str
    masses : ndarray (N,)
    reference : ndarray (N, D) or None
        Centred superposition reference for position inputs (the model's Kabsch
        reference), in ``unit``.
    mean, scale : ndarray (F,)
        Input standardization: the network sees ``(feature - mean) / scale``.
    layers : list of (W (n_in, n_out), b (n_out,))
        Dense layers; the last has ``latent_dim`` outputs (the encoder mean only).
    activation : str
        Hidden-layer activation (relu, tanh, elu, softplus); the output is linear.
    unit : str
        Length unit of features, reference and standardization ("Å").
    """

    kind: str
    features: list
    atom_indices: np.ndarray
    atom_names: list
    masses: np.ndarray
    reference: np.ndarray | None
    mean: np.ndarray
    scale: np.ndarray
    layers: list
    activation: str
    unit: str

    @property
    def latent_dim(self) -> int:
        return self.layers[-1][0].shape[1]

    def folded_layers(self) -> list:
        """Layers with the input standardization folded into the first one.

        ``W1' = W1 / scale[:, None]``, ``b1' = b1 - (mean / scale) @ W1``, so the
        network takes the raw features (in ``unit``).
        """
        (w, b), rest = self.layers[0], self.layers[1:]
        w1 = w / self.scale[:, None]
        b1 = b - (self.mean / self.scale) @ w
        return [(w1, b1), *rest]

    def evaluate(self, features: np.ndarray) -> np.ndarray:
        """The CV (T, latent_dim) of raw features (T, F), in float64 NumPy."""
        return forward_numpy(self.folded_layers(), features, self.activation)


def _atom_indices(atoms, n: int) -> np.ndarray:
    arr = np.asarray(atoms)
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise ExportError(
            f"atoms must be a sequence of 0-based integer atom indices; got {arr.dtype} "
            f"array of shape {arr.shape}"
        )
    if arr.size != n:
        raise ExportError(f"atoms must give one index per model atom ({n}); got {arr.size}")
    if arr.min() < 0 or len(np.unique(arr)) != n:
        raise ExportError("atoms must be distinct, non-negative 0-based atom indices")
    return arr.astype(np.int64)


def encoder_spec(model, atoms=None) -> EncoderSpec:
    """Reduce a trained coordinate model to what an engine needs for its CV.

    Parameters
    ----------
    model : VAEModel
    atoms : sequence of int (N,), optional
        0-based topology indices of the model's atoms, in the model's order (engine atom
        number = index + 1). Default: the indices stored with a model trained through a
        topology; needed for a model trained on ``.npz`` frames.

    Raises
    ------
    ExportError
        The model has no coordinate pipeline, no atom indices are known, or it uses
        principal-axis alignment with position inputs (engines superpose on a
        reference: retrain with ``align="kabsch"`` or with distance features).
    """
    pipe = model.pipeline
    if pipe is None or model.config.likelihood != "gaussian":
        raise ExportError("only models of atom coordinates can be exported as a CV")
    info = model.atoms
    if atoms is not None:
        indices = _atom_indices(atoms, pipe.n_atoms)
    elif info is not None and info.indices is not None:
        indices = np.asarray(info.indices, dtype=np.int64)
    else:
        raise ExportError(
            "the model file has no atom indices (it was trained on an .npz trajectory, not "
            "through a topology), so the engine's atom numbers are unknown; pass atoms=[...] "
            f"with the 0-based topology indices of the model's {pipe.n_atoms} atoms"
        )
    kind = getattr(pipe, "features", "positions")
    n, d = pipe.n_atoms, pipe.dim
    if kind == "positions":
        if pipe.align != "kabsch":
            raise ExportError(
                f"a position-input encoder aligned by {pipe.align!r} cannot be reproduced by an "
                "engine, which superposes on a reference structure: retrain with "
                "align='kabsch' (--align kabsch) or with distance features (--features distances)"
            )
        features = [("position", i, "xyz"[c]) for i in range(n) for c in range(d)]
        mean, scale, reference = pipe.mean, pipe.scale, pipe.reference
    else:
        features = (
            [] if pipe.pairs is None else [("distance", int(i), int(j)) for i, j in pipe.pairs]
        )
        if pipe.angles is not None:
            features += [("angle", *map(int, t)) for t in pipe.angles]
        if pipe.dihedrals is not None:
            for q in pipe.dihedrals:
                features += [("sin_dihedral", *map(int, q)), ("cos_dihedral", *map(int, q))]
        if pipe.angles is not None or pipe.dihedrals is not None:
            kind = "internal"
        mean, scale, reference = pipe.in_mean, pipe.in_scale, None
    return EncoderSpec(
        kind=kind,
        features=features,
        atom_indices=indices,
        atom_names=list(info.names),
        masses=np.asarray(pipe.masses, dtype=np.float64),
        reference=None if reference is None else np.asarray(reference, np.float64),
        mean=np.asarray(mean, np.float64),
        scale=np.asarray(scale, np.float64),
        layers=model.encoder_layers(),
        activation=model.config.activation,
        unit=model.unit,
    )
