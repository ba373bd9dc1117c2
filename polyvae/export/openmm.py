"""The latent CV as an OpenMM force: an ``openmm.PythonForce`` whose energy is the CV.

OpenMM facts used here (from OpenMM's Python API documentation; reference only):

* ``openmm.PythonForce(compute)`` calls ``compute(state)`` at every force evaluation;
  ``state.getPositions(asNumpy=True)`` holds the positions in nm, and ``compute`` returns
  the energy (kJ/mol) and the forces, an array (n, 3) in kJ/mol/nm. ``setParticles``
  restricts it to a subset: the state then holds only those particles, in that order,
  and the forces are theirs. ``XmlSerializer`` saves ``compute`` with ``pickle``, so it
  must be an object of a class defined at a module's top level.
* A ``PythonForce`` can be a collective variable of ``CustomCVForce`` and the variable
  of ``openmm.app.metadynamics.BiasVariable``: the force's energy is the CV's value.

The CV and its gradient are computed with NumPy in float64 (no JAX in the engine's
process): the model's input features (distances, bond angles, sine and cosine of
dihedrals) with their analytic derivatives, then the encoder mean's dense layers and
their back-propagation. Position inputs are refused: engines would have to superpose
every frame on the model's reference, and the CV would depend on that fit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from polyvae._outputs import write_text
from polyvae.export.plumed import as_spec
from polyvae.export.spec import EncoderSpec, ExportError
from polyvae.nn.encoder_numpy import ACTIVATIONS_NUMPY

__all__ = ["EncoderCV", "openmm_force", "write_openmm"]

_ANGSTROM_PER_NM = 10.0
_POSITIONS = (
    "the OpenMM export needs a model of internal inputs; this model reads aligned "
    "positions, which an engine can only reproduce by superposing every frame on "
    "the model's reference: retrain with --features distances or --features "
    "torsions (features='distances' or 'torsions')"
)


def _spec(spec_or_model: Any, atoms: Any) -> EncoderSpec:
    """The spec for OpenMM; position inputs refused before anything else is checked."""
    if isinstance(spec_or_model, EncoderSpec):
        kind = spec_or_model.kind
    else:
        kind = getattr(getattr(spec_or_model, "pipeline", None), "features", None)
    if kind == "positions":
        raise ExportError(_POSITIONS)
    return as_spec(spec_or_model, "OpenMM", atoms)


def _activation_slope(name: str, pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """d act / d pre, given the pre-activation and the activation."""
    if name == "relu":
        return (pre > 0).astype(pre.dtype)
    if name == "tanh":
        return 1.0 - post * post
    if name == "elu":
        return np.where(pre > 0, 1.0, post + 1.0)
    if name == "softplus":
        return 1.0 / (1.0 + np.exp(-pre))
    raise ExportError(f"activation {name!r} is not supported by the OpenMM export")


def _cross(a, b):
    """Row-wise cross product of (n, 3) arrays (numpy.cross costs more on small arrays)."""
    a0, a1, a2 = a[:, 0], a[:, 1], a[:, 2]
    b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=1)


def _distance(x, pairs):
    d = x[pairs[:, 0]] - x[pairs[:, 1]]
    r = np.sqrt(np.sum(d * d, axis=-1))
    u = d / r[:, None]
    return r, (u, -u)


def _angle(x, triples):
    """Angle at the middle atom, atan2(|u x v|, u . v), and its derivatives."""
    u = x[triples[:, 0]] - x[triples[:, 1]]
    v = x[triples[:, 2]] - x[triples[:, 1]]
    n = _cross(u, v)
    s = np.sqrt(np.sum(n * n, axis=-1))
    c = np.sum(u * v, axis=-1)
    nh = n / np.maximum(s, 1e-300)[:, None]
    den = (s * s + c * c)[:, None]
    du = (c[:, None] * _cross(v, nh) - s[:, None] * v) / den
    dv = (c[:, None] * _cross(nh, u) - s[:, None] * u) / den
    return np.arctan2(s, c), (du, -du - dv, dv)


def _dihedral(x, quads):
    """IUPAC dihedral of (i, j, k, l) and its derivatives (Blondel and Karplus)."""
    f = x[quads[:, 0]] - x[quads[:, 1]]
    g = x[quads[:, 1]] - x[quads[:, 2]]
    h = x[quads[:, 3]] - x[quads[:, 2]]
    a, b = _cross(f, g), _cross(h, g)
    a2, b2 = np.sum(a * a, axis=-1), np.sum(b * b, axis=-1)
    gn = np.sqrt(np.sum(g * g, axis=-1))
    phi = np.arctan2(np.sum(_cross(b, a) * g, axis=-1) / gn, np.sum(a * b, axis=-1))
    fg, hg = np.sum(f * g, axis=-1), np.sum(h * g, axis=-1)
    da = (gn / a2)[:, None] * a
    db = (gn / b2)[:, None] * b
    ta = (fg / (a2 * gn))[:, None] * a
    tb = (hg / (b2 * gn))[:, None] * b
    return phi, (-da, da + ta - tb, -db - ta + tb, db)


class EncoderCV:
    """One latent CV of a model and its gradient, from atom positions, with NumPy.

    The callable an :class:`openmm.PythonForce` calls: ``cv(state)`` returns the CV as
    the energy (kJ/mol) and minus its gradient as the forces (kJ/mol/nm) on the model's
    atoms. :meth:`value_and_gradient` gives both for positions in Å.

    Parameters
    ----------
    spec : EncoderSpec
        Of a model with distance, angle or dihedral inputs, lengths in Å.
    cv : int
        Which latent CV (0-based).
    """

    def __init__(self, spec: EncoderSpec, cv: int = 0):
        if spec.kind == "positions":
            raise ExportError(_POSITIONS)
        n_latent = spec.latent_dim
        if isinstance(cv, bool) or not isinstance(cv, int | np.integer) or not 0 <= cv < n_latent:
            raise ValueError(f"cv must be a latent index in 0..{n_latent - 1}; got {cv!r}")
        if spec.activation not in ACTIVATIONS_NUMPY:
            raise ExportError(f"activation {spec.activation!r} is not supported")
        self.n_atoms = len(spec.atom_indices)
        self.activation = spec.activation
        self.cv = int(cv)
        layers = [
            (np.array(w, np.float64), np.array(b, np.float64)) for w, b in spec.folded_layers()
        ]
        w, b = layers[-1]
        layers[-1] = (w[:, [cv]], b[[cv]])
        self.layers = layers
        pairs, triples, quads, where = [], [], {}, []
        for what, *atoms in spec.features:
            if what == "distance":
                where.append(("d", len(pairs)))
                pairs.append(atoms)
            elif what == "angle":
                where.append(("a", len(triples)))
                triples.append(atoms)
            elif what in ("sin_dihedral", "cos_dihedral"):
                k = quads.setdefault(tuple(atoms), len(quads))
                where.append((what[0], k))
            else:
                raise ExportError(f"unknown input feature {what!r}")
        self.pairs = np.array(pairs, np.int64).reshape(-1, 2)
        self.triples = np.array(triples, np.int64).reshape(-1, 3)
        self.quads = np.array(list(quads), np.int64).reshape(-1, 4)
        kinds = np.array([k for k, _ in where])
        index = np.array([i for _, i in where], np.int64)
        self.slots = {k: (np.flatnonzero(kinds == k), index[kinds == k]) for k in "dasc"}

    def value_and_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The CV and its gradient (N, 3) per Å, for positions ``x`` (N, 3) in Å."""
        x = np.asarray(x, np.float64)
        n_feat = self.layers[0][0].shape[0]
        feat = np.empty(n_feat)
        parts = {}
        if len(self.pairs):
            parts["d"] = (*_distance(x, self.pairs), self.pairs)
        if len(self.triples):
            parts["a"] = (*_angle(x, self.triples), self.triples)
        if len(self.quads):
            phi, dphi = _dihedral(x, self.quads)
            parts["s"] = (np.sin(phi), tuple(np.cos(phi)[:, None] * t for t in dphi), self.quads)
            parts["c"] = (np.cos(phi), tuple(-np.sin(phi)[:, None] * t for t in dphi), self.quads)
        for kind, (value, _, _) in parts.items():
            slot, idx = self.slots[kind]
            feat[slot] = value[idx]
        # forward through the dense layers, keeping what back-propagation needs
        h, saved = feat, []
        act = ACTIVATIONS_NUMPY[self.activation]
        for k, (w, b) in enumerate(self.layers):
            pre = h @ w + b
            if k < len(self.layers) - 1:
                post = act(pre)
                saved.append((h, pre, post))
                h = post
            else:
                z = float(pre[0])
        grad = self.layers[-1][0][:, 0]
        for k in range(len(self.layers) - 2, -1, -1):
            _, pre, post = saved[k]
            grad = grad * _activation_slope(self.activation, pre, post)
            grad = self.layers[k][0] @ grad
        # grad is dz/dfeatures; chain through each feature's atom derivatives
        out = np.zeros_like(x)
        for kind, (_, derivs, atoms) in parts.items():
            slot, idx = self.slots[kind]
            weight = np.zeros(len(atoms))
            np.add.at(weight, idx, grad[slot])
            for column, d in enumerate(derivs):
                np.add.at(out, atoms[:, column], weight[:, None] * d)
        return z, out

    def __call__(self, state) -> tuple[float, np.ndarray]:
        x = np.asarray(state.getPositions(asNumpy=True)._value, np.float64)
        z, grad = self.value_and_gradient(x * _ANGSTROM_PER_NM)
        return z, -grad * _ANGSTROM_PER_NM


def _openmm():
    try:  # optional: the OpenMM export only
        import openmm
    except ImportError as err:
        raise ImportError(
            "the OpenMM export needs OpenMM: pip install 'openmm>=8.6' (or polyvae[engines])"
        ) from err
    if not hasattr(openmm, "PythonForce"):
        raise ImportError(
            f"the OpenMM export needs openmm.PythonForce, which OpenMM {openmm.__version__} "
            "lacks: pip install -U 'openmm>=8.6'"
        )
    return openmm


def openmm_force(spec_or_model: Any, cv: int = 0, *, atoms: Any = None, periodic: bool = False):
    """One latent CV (the encoder mean) as an OpenMM force whose energy is the CV.

    Add it to a ``System`` (its energy is then the CV in kJ/mol), wrap it in a
    ``CustomCVForce``, or hand it to ``openmm.app.metadynamics.BiasVariable``.

    Parameters
    ----------
    spec_or_model : VAEModel or EncoderSpec
        A model with distance, angle or dihedral inputs (``features="distances"`` or
        ``"torsions"``), trained on lengths in Å.
    cv : int
        Which latent CV (0-based, ``z0`` is 0).
    atoms : sequence of int, optional
        0-based indices of the model's atoms among the System's particles, in the model's
        order. Default: those stored with a model trained through a topology.
    periodic : bool
        Whether the System is periodic: OpenMM then passes positions wrapped into the
        box, and molecules must not span more than half of it.

    Returns
    -------
    openmm.PythonForce
        Acting on the model's atoms only; it pickles with ``XmlSerializer``.

    Raises
    ------
    ExportError
        A position-input model, a unit other than Å, or non-finite weights.
    ImportError
        OpenMM is missing or has no ``PythonForce``.

    Examples
    --------
    >>> force = openmm_force(model, cv=0)  # doctest: +SKIP
    >>> system.addForce(force)  # doctest: +SKIP
    """
    openmm = _openmm()
    spec = _spec(spec_or_model, atoms)
    if not isinstance(periodic, bool):
        raise ValueError(f"periodic must be True or False; got {periodic!r}")
    force = openmm.PythonForce(EncoderCV(spec, cv))
    force.setParticles([int(i) for i in spec.atom_indices])
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setName(f"polyvae z{cv}")
    return force


def write_openmm(
    spec_or_model: Any,
    path: str | os.PathLike,
    *,
    cv: int | None = None,
    atoms: Any = None,
    periodic: bool = False,
) -> list[Path]:
    """Write latent CVs as OpenMM forces serialized by ``XmlSerializer``.

    Parameters
    ----------
    spec_or_model : VAEModel or EncoderSpec
    path : str or path-like
        ``cv.xml``: the file of one CV (``cv`` given, or a one-dimensional latent space);
        otherwise one file per CV, ``cv_z0.xml``, ``cv_z1.xml``, ...
    cv : int, optional
        Only this latent CV (0-based).
    atoms, periodic
        As in :func:`openmm_force`.

    Returns
    -------
    list of Path
        The files written. Read one back with
        ``openmm.XmlSerializer.deserialize(open(file).read())`` (polyvae must be
        importable there).
    """
    openmm = _openmm()
    spec = _spec(spec_or_model, atoms)
    path = Path(path)
    if cv is not None:
        which = [cv]
    else:
        which = list(range(spec.latent_dim))
    files = []
    for k in which:
        force = openmm_force(spec, k, periodic=periodic)
        out = path if len(which) == 1 else path.with_name(f"{path.stem}_z{k}{path.suffix}")
        write_text(out, openmm.XmlSerializer.serialize(force))
        files.append(out)
    return files
