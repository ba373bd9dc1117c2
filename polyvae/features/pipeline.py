"""Frame transforms: centering, alignment, flattening and standardization.

Every function here is an array kernel on positions ``(T, N, D)`` (lengths in the
frames' unit), mass-weighted where masses apply. :class:`Pipeline` chains them, is
fit once on training frames, applied to new frames, inverted on decoder output, and
stored in the model file.

Principal-axis alignment rotates each frame so that its mass-weighted principal axes
(largest spread first) lie along x, y (, z). An axis is only defined up to sign; the
sign rule used here orients each axis along the molecule's index direction: the
mass-weighted covariance between atom index and the projection on the axis is made
non-negative. For a chain this points the axis from the first towards the last
atom, so a frame does not flip when its axes only turn smoothly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from polyvae import geometry
from polyvae._checks import ensure_choice, ensure_int, ensure_masses, ensure_pairs
from polyvae._checks import ensure_positions as _positions
from polyvae.config import ALIGN_METHODS, DECODERS, FEATURES
from polyvae.features.layout import InternalLayout
from polyvae.frames import Frames

__all__ = [
    "center_of_mass",
    "center",
    "principal_axes",
    "align_principal",
    "kabsch_rotation",
    "align_to_reference",
    "flatten",
    "unflatten",
    "Pipeline",
    "TrainingArrays",
    "ALIGN_METHODS",
    "FEATURES",
]


def _validated(positions: Any, masses: Any, name: str = "positions"):
    """Positions as float64 (T, N, D) and normalized mass weights (N,)."""
    x = _positions(positions, name, dtype=np.float64)
    return x, geometry.mass_weights(ensure_masses(masses, x.shape[1]), x.shape[1])


def center_of_mass(positions: Any, masses: Any = None) -> np.ndarray:
    """Mass-weighted centre of each frame.

    Parameters
    ----------
    positions : array (T, N, D)
    masses : array (N,), optional
        Default: equal masses.

    Returns
    -------
    ndarray (T, D)
    """
    return geometry.center_of_mass(*_validated(positions, masses))


def center(positions: Any, masses: Any = None) -> np.ndarray:
    """Translate each frame so that its centre of mass is at the origin.

    Returns
    -------
    ndarray (T, N, D), float32
    """
    return geometry.centered(*_validated(positions, masses)).astype(np.float32)


def principal_axes(positions: Any, masses: Any = None) -> np.ndarray:
    """Rotation matrices whose rows are the sign-fixed principal axes of each frame.

    The axes are the eigenvectors of the mass-weighted gyration tensor about the
    centre of mass, largest eigenvalue first, each oriented by the index-direction
    sign rule (see module docstring); the last axis completes a right-handed frame.

    Parameters
    ----------
    positions : array (T, N, D)
    masses : array (N,), optional

    Returns
    -------
    ndarray (T, D, D)
        ``R[t] @ r`` gives the coordinates of ``r`` in the principal frame of frame t.
    """
    x, w = _validated(positions, masses)
    return geometry.principal_axes(geometry.centered(x, w), w)


def _align_principal(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    xc = geometry.centered(x, w)
    return geometry.rotate(xc, geometry.principal_axes(xc, w))


def _align_kabsch(x: np.ndarray, w: np.ndarray, reference: np.ndarray) -> np.ndarray:
    xc = geometry.centered(x, w)
    ref = geometry.centered(reference, w)
    return geometry.rotate(xc, geometry.kabsch_rotation(xc, ref, w))


def align_principal(positions: Any, masses: Any = None) -> np.ndarray:
    """Center each frame and rotate it into its principal-axis frame.

    Returns
    -------
    ndarray (T, N, D), float32
    """
    return _align_principal(*_validated(positions, masses)).astype(np.float32)


def kabsch_rotation(mobile: Any, reference: Any, masses: Any = None) -> np.ndarray:
    """Proper rotations that best superimpose centred frames onto a centred reference.

    Minimizes the mass-weighted squared deviation (Kabsch algorithm, reflections
    excluded).

    Parameters
    ----------
    mobile : array (T, N, D)
        Frames, already centred.
    reference : array (N, D) or (T, N, D)
        Reference structure (or one per frame), already centred.
    masses : array (N,), optional

    Returns
    -------
    ndarray (T, D, D)
        ``mobile[t] @ R[t].T`` is frame t superimposed on the reference.
    """
    p, w = _validated(mobile, masses, "mobile")
    q = np.asarray(reference, dtype=np.float64)
    if q.shape != p.shape[1:] and q.shape != p.shape:
        raise ValueError(
            f"reference must have shape (N, D) = {p.shape[1:]} or (T, N, D) = {p.shape}; "
            f"got {q.shape}"
        )
    return geometry.kabsch_rotation(p, q, w)


def align_to_reference(positions: Any, reference: Any, masses: Any = None) -> np.ndarray:
    """Center each frame and superimpose it on ``reference`` (centred first).

    Returns
    -------
    ndarray (T, N, D), float32
    """
    x, w = _validated(positions, masses)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != x.shape[1:]:
        raise ValueError(f"reference must have shape (N, D) = {x.shape[1:]}; got {ref.shape}")
    return _align_kabsch(x, w, ref).astype(np.float32)


def _resolve_pairs(pairs: Any, n_atoms: int) -> np.ndarray:
    if pairs is None:
        return geometry.all_pairs(n_atoms)
    if isinstance(pairs, int | np.integer) and not isinstance(pairs, bool):
        stride = ensure_int(pairs, "pairs", 1, what="as a stride: every k-th pair")
        return geometry.all_pairs(n_atoms)[::stride]
    return ensure_pairs(pairs, n_atoms, "pairs")


def _index_rows(rows: Any, n_atoms: int, k: int, name: str) -> np.ndarray:
    """``rows`` as (M, k) int64 atom indices into n_atoms, each row of distinct atoms."""
    a = np.asarray(rows)
    if a.size == 0 and a.ndim <= 2:
        raise ValueError(f"{name} must hold at least one row of {k} atom indices; got none")
    if a.ndim != 2 or a.shape[1] != k or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(
            f"{name} must be integer atom indices of shape (M, {k}); got {a.dtype} {a.shape}"
        )
    if a.min() < 0 or a.max() >= n_atoms:
        raise ValueError(
            f"{name} must index the {n_atoms} atoms (0 to {n_atoms - 1}); got {a.min()} to {a.max()}"
        )
    if any(len(set(r)) != k for r in a.tolist()):
        raise ValueError(f"{name}: each row must name {k} different atoms")
    return a.astype(np.int64)


def flatten(positions: Any) -> np.ndarray:
    """(T, N, D) positions to (T, N*D) features, atom-major."""
    x = np.asarray(positions)
    return x.reshape(x.shape[0], -1)


def unflatten(features: Any, n_atoms: int, dim: int):
    """(T, N*D) features to (T, N, D) positions (works on NumPy and JAX arrays)."""
    if features.shape[-1] != n_atoms * dim:
        raise ValueError(
            f"features must have N*D = {n_atoms * dim} columns; got {features.shape[-1]}"
        )
    return features.reshape(features.shape[:-1] + (n_atoms, dim))


class TrainingArrays(NamedTuple):
    """The training frames as :meth:`Pipeline.fit_transform` prepares them (float32)."""

    aligned: np.ndarray  # (T, N, D)
    targets: np.ndarray  # (T, F) decoder features: standardized aligned or internal coordinates
    inputs: np.ndarray | None  # (T, n_inputs) encoder inputs, None when they are the targets


@dataclass
class Pipeline:
    """Center, align, flatten and standardize frames; fit once, saved with the model.

    Parameters
    ----------
    align : {"principal", "kabsch", "none"}
        Principal-axis alignment (the default), Kabsch superposition on ``reference``,
        or centering only.
    reference : array (N, D), optional
        Reference for ``align="kabsch"``; default: the first training frame. It is
        centred and rounded to 0.001 (the resolution of a PDB file).
    standardize : bool
        Scale every feature to zero mean and unit variance over the training frames.
    features : {"positions", "distances", "torsions"}
        What the encoder reads: the aligned coordinates (the default); interatomic
        distances; or the sine and cosine of ``dihedrals``. The last two need no
        alignment, so MD engines can compute them; both take ``angles`` too. The
        decoder always reconstructs aligned coordinates.
    pairs : array (P, 2) or int, optional
        Atom pairs for ``features="distances"``: explicit pairs, or ``k`` for every
        k-th pair of all pairs (large selections); default all pairs.
    angles : array (A, 3) of int, optional
        Bond angles (radians) the encoder also reads, with ``features="distances"`` or
        ``"torsions"``.
    dihedrals : array (Q, 4) of int, optional
        Dihedrals the encoder reads as their sine and cosine: with
        ``features="torsions"`` (required then, e.g. backbone φ/ψ) or ``"distances"``.
    decoder : {"cartesian", "internal"}
        What the decoder reconstructs: the standardized aligned coordinates, or the
        internal coordinates along a Z-matrix of ``bonds``
        (:class:`~polyvae.features.layout.InternalLayout`, fitted here).
    bonds : array (B, 2) of int, optional
        The molecule's bonds for the internal decoder; default a chain in atom order.

    Attributes
    ----------
    masses : ndarray (N,)
        Set by :meth:`fit`, as every attribute below.
    mean, scale : ndarray (F,)
        Standardization of the aligned coordinates.
    n_atoms, dim : int
    in_mean, in_scale : ndarray (n_inputs,)
        Standardization of the encoder inputs other than coordinates: distances, then
        angles, then (sin, cos) of each dihedral.
    layout : InternalLayout or None
        The internal coordinates (``decoder="internal"``).
    """

    align: str = "principal"
    reference: np.ndarray | None = None
    standardize: bool = True
    masses: np.ndarray | None = None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    n_atoms: int | None = None
    dim: int | None = None
    features: str = "positions"
    pairs: Any = None
    angles: Any = None
    dihedrals: Any = None
    in_mean: np.ndarray | None = None
    in_scale: np.ndarray | None = None
    decoder: str = "cartesian"
    bonds: np.ndarray | None = None
    layout: Any = None

    _ARRAYS = (
        "reference", "masses", "mean", "scale", "pairs", "angles", "dihedrals", "in_mean",
        "in_scale", "bonds",
    )  # fmt: skip

    def __post_init__(self) -> None:
        ensure_choice(self.align, "align", ALIGN_METHODS)
        ensure_choice(self.features, "features", FEATURES)
        ensure_choice(self.decoder, "decoder", DECODERS)
        if self.pairs is not None and self.features != "distances":
            raise ValueError('pairs applies to features="distances" only')
        if self.features == "positions" and (self.angles is not None or self.dihedrals is not None):
            raise ValueError(
                'angles and dihedrals are encoder inputs with features="distances" or '
                '"torsions"; the encoder of features="positions" reads coordinates'
            )
        if self.features == "torsions" and self.dihedrals is None and self.angles is None:
            raise ValueError(
                'features="torsions" needs dihedrals (e.g. backbone phi/psi) or angles'
            )

    @property
    def n_inputs(self) -> int:
        """Size of the encoder's input."""
        self._require_fit()
        if self.features == "positions":
            return self.n_atoms * self.dim
        return len(self.in_mean)

    @property
    def separate_inputs(self) -> bool:
        """Whether the encoder reads other features than the decoder reconstructs."""
        return self.features != "positions" or self.decoder != "cartesian"

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    @property
    def n_features(self) -> int:
        """Size of the decoder's output: N*D coordinates, or the internal coordinates."""
        self._require_fit()
        return self.n_atoms * self.dim if self.layout is None else self.layout.n_features

    def _require_fit(self) -> None:
        if not self.fitted:
            raise RuntimeError("this Pipeline is not fitted yet: call fit(positions) first")

    def _weights(self) -> np.ndarray:
        return geometry.mass_weights(self.masses, self.n_atoms)

    def _aligned(self, x: np.ndarray) -> np.ndarray:
        """Validated positions (T, N, D) to aligned float32 positions."""
        x, w = np.asarray(x, dtype=np.float64), self._weights()
        if self.align == "principal":
            out = _align_principal(x, w)
        elif self.align == "kabsch":
            out = _align_kabsch(x, w, self.reference)
        else:
            out = geometry.centered(x, w)
        return out.astype(np.float32)

    def _standardized(self, aligned: np.ndarray) -> np.ndarray:
        feats = flatten(aligned).astype(np.float64)
        return ((feats - self.mean) / self.scale).astype(np.float32)

    def _targets(self, aligned: np.ndarray) -> np.ndarray:
        cartesian = self._standardized(aligned)
        if self.layout is None:
            return cartesian
        return np.concatenate([cartesian, self.layout.features(aligned)], axis=1)

    def _inputs(self, x: np.ndarray, aligned: np.ndarray) -> np.ndarray:
        if self.features == "positions":
            return self._standardized(aligned)
        raw = self.raw_inputs(np.asarray(x, dtype=np.float64))
        return ((raw - self.in_mean) / self.in_scale).astype(np.float32)

    def raw_inputs(self, x):
        """Unstandardized encoder inputs (..., n_inputs) of frames (..., N, D), NumPy or
        JAX: pair distances, bond angles (radians), then sin and cos of each dihedral."""
        xp = geometry.array_namespace(x)
        parts = []
        if self.pairs is not None:
            parts.append(geometry.pair_distances(x, np.asarray(self.pairs)))
        if self.angles is not None:
            parts.append(geometry.bond_angles(x, np.asarray(self.angles)))
        if self.dihedrals is not None:
            phi = geometry.dihedrals(x, np.asarray(self.dihedrals))
            sc = xp.stack([xp.sin(phi), xp.cos(phi)], axis=-1)
            parts.append(xp.reshape(sc, sc.shape[:-2] + (-1,)))
        return xp.concatenate(parts, axis=-1)

    def fit(self, positions: Any, masses: Any = None) -> Pipeline:
        """Fit the reference (Kabsch) and the standardization; returns ``self``.

        Arguments as :meth:`fit_transform`.
        """
        self.fit_transform(positions, masses)
        return self

    def fit_transform(self, positions: Any, masses: Any = None) -> TrainingArrays:
        """Fit the reference (Kabsch) and the standardization on training frames, and
        return what training needs, aligning the frames once.

        Parameters
        ----------
        positions : array (T, N, D) or Frames
        masses : array (N,), optional
            Default: the Frames' masses, or equal masses.

        Returns
        -------
        TrainingArrays
            ``aligned`` (T, N, D), ``targets`` (T, F) (the decoder's features) and
            ``inputs`` (T, n_inputs), float32; ``inputs`` is None when the encoder
            reads the targets.
        """
        if isinstance(positions, Frames):  # validated when it was made
            x, masses = positions.positions, positions.masses if masses is None else masses
        else:
            x = _positions(positions, min_atoms=3)
        _, n, d = x.shape
        self.masses = ensure_masses(masses, n)
        self.n_atoms, self.dim = n, d
        if self.align == "kabsch":
            ref = x[0] if self.reference is None else np.asarray(self.reference, np.float64)
            if ref.shape != (n, d):
                raise ValueError(f"reference must have shape (N, D) = ({n}, {d}); got {ref.shape}")
            # rounded to PDB resolution (0.001), so the reference an engine reads from a
            # PDB file is this one exactly; the change is far below thermal motion
            centred = geometry.centered(np.asarray(ref, np.float64)[None], self._weights())
            self.reference = np.round(centred[0].astype(np.float32).astype(np.float64), 3)
        aligned = self._aligned(x)
        feats = flatten(aligned).astype(np.float64)
        if self.standardize:
            self.mean = feats.mean(axis=0)
            std = feats.std(axis=0)
            # features that do not vary (e.g. fixed by alignment) are left unscaled
            self.scale = np.where(std > 1e-6 * max(std.max(), 1e-30), std, 1.0)
        else:
            self.mean = np.zeros(n * d)
            self.scale = np.ones(n * d)
        if self.decoder == "internal":
            if self.bonds is not None:
                self.bonds = ensure_pairs(self.bonds, n, "bonds")
            self.layout = InternalLayout.fit(aligned, self.bonds)
        inputs = None
        if self.features != "positions":
            if self.features == "distances":
                self.pairs = _resolve_pairs(self.pairs, n)
                if len(self.pairs) == 0:
                    raise ValueError("pairs must hold at least one atom pair; got none")
            if self.angles is not None:
                self.angles = _index_rows(self.angles, n, 3, "angles")
            if self.dihedrals is not None:
                if d != 3:
                    raise ValueError(f"dihedrals need 3D positions; got {d}D")
                self.dihedrals = _index_rows(self.dihedrals, n, 4, "dihedrals")
            raw = self.raw_inputs(x.astype(np.float64))
            self.in_mean = raw.mean(axis=0)
            std = raw.std(axis=0)
            rigid = std <= 1e-6 * max(float(np.abs(raw).max()), 1e-30)
            if rigid.all():
                raise ValueError(
                    "no encoder input (distance, angle or dihedral) varies over the training frames"
                )
            self.in_scale = np.where(rigid, 1.0, std) if self.standardize else np.ones_like(std)
            if not self.standardize:
                self.in_mean = np.zeros_like(self.in_mean)
        if self.separate_inputs:
            inputs = self._inputs(x, aligned)
        return TrainingArrays(aligned, self._targets(aligned), inputs)

    def training_arrays(self, positions: Any) -> TrainingArrays:
        """What :meth:`fit_transform` returns, from the fitted settings (to continue a
        training run on its frames)."""
        x = self.check_positions(
            positions.positions if isinstance(positions, Frames) else positions
        )
        aligned = self._aligned(x)
        inputs = self._inputs(x, aligned) if self.separate_inputs else None
        return TrainingArrays(aligned, self._targets(aligned), inputs)

    def check_positions(self, positions: Any, name: str = "positions") -> np.ndarray:
        """Validate frames against the fitted atom count and dimension."""
        self._require_fit()
        x = _positions(positions, name, min_atoms=3)
        if x.shape[1:] != (self.n_atoms, self.dim):
            raise ValueError(
                f"{name} has {x.shape[1]} atoms in {x.shape[2]}D but the model was trained on "
                f"{self.n_atoms} atoms in {self.dim}D"
            )
        return x

    def align_frames(self, positions: Any) -> np.ndarray:
        """Center and align frames as during training. Returns (T, N, D) float32."""
        return self._aligned(self.check_positions(positions))

    def transform(self, positions: Any) -> np.ndarray:
        """Frames (T, N, D) to the decoder's features (T, F), float32: standardized
        aligned coordinates, or internal coordinates."""
        return self._targets(self.align_frames(positions))

    def encoder_inputs(self, positions: Any) -> np.ndarray:
        """What the encoder reads, (T, n_inputs) float32: the standardized aligned
        coordinates, or the standardized pair distances."""
        x = self.check_positions(positions)
        return self._inputs(x, self._aligned(x) if self.features == "positions" else None)

    def inverse_transform(
        self,
        features: Any,
        sigma: Any = None,
        cartesian_only: bool = False,
        cartesian_weight: float | None = None,
        start: Any = None,
        done: Any = None,
    ):
        """Decoder features (..., F) to aligned positions (..., N, D).

        Works on NumPy arrays and on JAX arrays (inside jit and grad), so decoded
        structures stay differentiable. For the internal decoder the structure is the
        most probable one under its Cartesian and internal parts
        (:meth:`~polyvae.features.layout.InternalLayout.refine`), which weighs them by
        the decoder's noise scales ``sigma`` (F,), in feature units (required then),
        with :data:`~polyvae.features.layout.REFINE_STEPS` minimization steps.
        ``cartesian_only``: the
        features are the N*D Cartesian ones alone, mapped back without refinement.
        ``cartesian_weight`` overrides the layout's weight of the Cartesian part.
        ``start`` (..., F): for features drawn from the decoder, its mean at the same
        latent points, whose Cartesian part starts the refinement (default: the
        features' own). ``done`` (NumPy features only): a function of structures
        (B, N, D) that says which need no more minimization
        (:meth:`~polyvae.features.layout.InternalLayout.refine_jit`).
        """
        self._require_fit()
        xp = geometry.array_namespace(features)
        nc = self.n_atoms * self.dim
        cart = features[..., :nc] * xp.asarray(self.scale, dtype=features.dtype) + xp.asarray(
            self.mean, dtype=features.dtype
        )
        positions = unflatten(cart, self.n_atoms, self.dim)
        if self.layout is None or cartesian_only:
            return positions
        if sigma is None:
            raise ValueError(
                'sigma (the decoder scales, F values) is required to turn decoder="internal" '
                "features into positions"
            )
        sig = xp.asarray(sigma, dtype=features.dtype)
        if start is not None:
            start = xp.asarray(start, dtype=features.dtype)[..., :nc]
            start = unflatten(
                start * xp.asarray(self.scale, features.dtype)
                + xp.asarray(self.mean, features.dtype),
                self.n_atoms,
                self.dim,
            )
        args = (
            positions,
            features[..., nc:],
            sig[:nc] * xp.asarray(self.scale, sig.dtype),
            sig[nc:],
        )
        if xp is np:
            refined = self.layout.refine_jit()(*args, cartesian_weight, start, done)
        else:
            refined = self.layout.refine(*args, weight=cartesian_weight, start=start)
        if xp is not np:
            return refined
        flat = np.asarray(refined, np.float64).reshape(-1, self.n_atoms, self.dim)
        return self._aligned(flat).reshape(positions.shape)

    def to_config(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-ready settings and the fitted arrays, for the model file."""
        self._require_fit()
        config = {
            "align": self.align,
            "standardize": self.standardize,
            "n_atoms": self.n_atoms,
            "dim": self.dim,
            "features": self.features,
            "decoder": self.decoder,
        }
        arrays = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        if self.layout is not None:
            arrays.update({f"layout_{k}": v for k, v in self.layout.to_arrays().items()})
        return config, arrays

    @classmethod
    def from_config(cls, config: dict, arrays: dict[str, np.ndarray]) -> Pipeline:
        """Rebuild a fitted pipeline from :meth:`to_config` output."""
        decoder = config.get("decoder", "cartesian")
        layout = None
        if decoder == "internal":
            layout = InternalLayout.from_arrays(
                {k[7:]: v for k, v in arrays.items() if k.startswith("layout_")}, config["dim"]
            )
        return cls(
            decoder=decoder,
            bonds=arrays.get("bonds"),
            layout=layout,
            align=config["align"],
            standardize=config["standardize"],
            n_atoms=int(config["n_atoms"]),
            dim=int(config["dim"]),
            reference=arrays.get("reference"),
            masses=arrays["masses"],
            mean=arrays["mean"],
            scale=arrays["scale"],
            features=config.get("features", "positions"),
            pairs=arrays.get("pairs"),
            angles=arrays.get("angles"),
            dihedrals=arrays.get("dihedrals"),
            in_mean=arrays.get("in_mean"),
            in_scale=arrays.get("in_scale"),
        )
