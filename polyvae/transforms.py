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
from typing import Any

import numpy as np

from polyvae.frames import as_positions

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
    "ALIGN_METHODS",
    "FEATURES",
]

ALIGN_METHODS = ("principal", "kabsch", "none")
FEATURES = ("positions", "distances")


def _weights(masses: Any, n_atoms: int) -> np.ndarray:
    if masses is None:
        return np.full(n_atoms, 1.0 / n_atoms)
    m = np.asarray(masses, dtype=np.float64)
    if m.shape != (n_atoms,):
        raise ValueError(f"masses must have shape (N,) = ({n_atoms},); got {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError("masses must be finite and positive")
    return m / m.sum()


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
    x = as_positions(positions)
    return _com(x.astype(np.float64), _weights(masses, x.shape[1]))


# Kernels on validated float64 arrays; batched matrix products, not einsum, which is
# several times slower for these shapes.


def _com(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return w @ x  # (N,) @ (T, N, D) -> (T, D)


def _centered(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x - _com(x, w)[:, None, :]


def _rotate(x: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Rows of ``x[t]`` rotated by ``rot[t]``: ``x[t] @ rot[t].T``."""
    return x @ np.swapaxes(rot, 1, 2)


def _principal_axes(xc: np.ndarray, w: np.ndarray) -> np.ndarray:
    n, d = xc.shape[1:]
    gyration = np.swapaxes(xc * w[:, None], 1, 2) @ xc
    _, evecs = np.linalg.eigh(gyration)  # ascending eigenvalues, vectors in columns
    axes = np.swapaxes(evecs[..., ::-1], 1, 2)  # rows, largest first
    index = np.arange(n, dtype=np.float64)
    index_c = (index - np.dot(w, index)) * w  # mass-weighted centred atom index
    # sign of cov(index, projection) for each axis but the last
    signs = np.where(index_c @ _rotate(xc, axes) < 0, -1.0, 1.0)
    axes = axes * signs[:, :, None]
    if d == 2:
        axes[:, 1] = np.stack([-axes[:, 0, 1], axes[:, 0, 0]], axis=-1)
    else:
        axes[:, 2] = np.cross(axes[:, 0], axes[:, 1])
    return axes


def _kabsch(p: np.ndarray, q: np.ndarray, w: np.ndarray) -> np.ndarray:
    h = np.swapaxes(p * w[:, None], 1, 2) @ q  # covariance, mobile x reference
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    d[d == 0] = 1.0
    fix = np.ones(h.shape[:2])
    fix[:, -1] = d
    # R = V diag(fix) U^T
    return np.swapaxes(vt, 1, 2) @ (fix[:, :, None] * np.swapaxes(u, 1, 2))


def center(positions: Any, masses: Any = None) -> np.ndarray:
    """Translate each frame so that its centre of mass is at the origin.

    Returns
    -------
    ndarray (T, N, D), float32
    """
    x = as_positions(positions)
    return _centered(x.astype(np.float64), _weights(masses, x.shape[1])).astype(np.float32)


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
    x = as_positions(positions).astype(np.float64)
    w = _weights(masses, x.shape[1])
    return _principal_axes(_centered(x, w), w)


def align_principal(positions: Any, masses: Any = None) -> np.ndarray:
    """Center each frame and rotate it into its principal-axis frame.

    Returns
    -------
    ndarray (T, N, D), float32
    """
    x = as_positions(positions).astype(np.float64)
    w = _weights(masses, x.shape[1])
    xc = _centered(x, w)
    return _rotate(xc, _principal_axes(xc, w)).astype(np.float32)


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
    p = as_positions(mobile, "mobile").astype(np.float64)
    q = np.asarray(reference, dtype=np.float64)
    if q.shape != p.shape[1:] and q.shape != p.shape:
        raise ValueError(
            f"reference must have shape (N, D) = {p.shape[1:]} or (T, N, D) = {p.shape}; "
            f"got {q.shape}"
        )
    return _kabsch(p, q, _weights(masses, p.shape[1]))


def align_to_reference(positions: Any, reference: Any, masses: Any = None) -> np.ndarray:
    """Center each frame and superimpose it on ``reference`` (centred first).

    Returns
    -------
    ndarray (T, N, D), float32
    """
    x = as_positions(positions).astype(np.float64)
    w = _weights(masses, x.shape[1])
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != x.shape[1:]:
        raise ValueError(f"reference must have shape (N, D) = {x.shape[1:]}; got {ref.shape}")
    xc = _centered(x, w)
    return _rotate(xc, _kabsch(xc, _centered(ref[None], w)[0], w)).astype(np.float32)


def _resolve_pairs(pairs: Any, n_atoms: int) -> np.ndarray:
    from polyvae.analysis.structure import _pairs, all_pairs

    if pairs is None:
        return all_pairs(n_atoms)
    if isinstance(pairs, int | np.integer) and not isinstance(pairs, bool):
        if pairs < 1:
            raise ValueError(f"pairs as a stride must be >= 1 (every k-th pair); got {pairs}")
        return all_pairs(n_atoms)[:: int(pairs)]
    return _pairs(pairs, n_atoms, "pairs")


def _pair_distances(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1)


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
    features : {"positions", "distances"}
        What the encoder reads: the aligned coordinates (the default), or interatomic
        distances, which need no alignment, so MD engines can compute them. The
        decoder always reconstructs aligned coordinates.
    pairs : array (P, 2) or int, optional
        Atom pairs for ``features="distances"``: explicit pairs, or ``k`` for every
        k-th pair of all pairs (large selections); default all pairs.

    Attributes (after :meth:`fit`)
    ------------------------------
    masses : (N,), mean : (F,), scale : (F,), n_atoms, dim; for distances also
    pairs : (P, 2), in_mean : (P,), in_scale : (P,)
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
    in_mean: np.ndarray | None = None
    in_scale: np.ndarray | None = None

    _ARRAYS = ("reference", "masses", "mean", "scale", "pairs", "in_mean", "in_scale")

    def __post_init__(self) -> None:
        if self.align not in ALIGN_METHODS:
            raise ValueError(f"align must be one of {ALIGN_METHODS}; got {self.align!r}")
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}; got {self.features!r}")
        if self.pairs is not None and self.features != "distances":
            raise ValueError('pairs applies to features="distances" only')

    @property
    def n_inputs(self) -> int:
        """Size of the encoder's input."""
        self._require_fit()
        return self.n_features if self.features == "positions" else len(self.pairs)

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    @property
    def n_features(self) -> int:
        self._require_fit()
        return self.n_atoms * self.dim

    def _require_fit(self) -> None:
        if not self.fitted:
            raise RuntimeError("this Pipeline is not fitted yet: call fit(positions) first")

    def _aligned(self, x: np.ndarray) -> np.ndarray:
        if self.align == "principal":
            return align_principal(x, self.masses)
        if self.align == "kabsch":
            return align_to_reference(x, self.reference, self.masses)
        return center(x, self.masses)

    def fit(self, positions: Any, masses: Any = None) -> Pipeline:
        """Fit the reference (Kabsch) and the standardization on training frames.

        Parameters
        ----------
        positions : array (T, N, D) or Frames
        masses : array (N,), optional
            Default: the Frames' masses, or equal masses.

        Returns
        -------
        self
        """
        if masses is None and hasattr(positions, "masses"):
            masses = positions.masses
        x = as_positions(positions)
        _, n, d = x.shape
        self.n_atoms, self.dim = n, d
        self.masses = np.ones(n) if masses is None else np.asarray(masses, dtype=np.float64)
        _weights(self.masses, n)
        if self.align == "kabsch":
            ref = x[0] if self.reference is None else np.asarray(self.reference, np.float64)
            if ref.shape != (n, d):
                raise ValueError(f"reference must have shape (N, D) = ({n}, {d}); got {ref.shape}")
            # rounded to PDB resolution (0.001), so the reference an engine reads from a
            # PDB file is this one exactly; the change is far below thermal motion
            self.reference = np.round(center(ref[None], self.masses)[0].astype(np.float64), 3)
        feats = flatten(self._aligned(x)).astype(np.float64)
        if self.standardize:
            self.mean = feats.mean(axis=0)
            std = feats.std(axis=0)
            # features that do not vary (e.g. fixed by alignment) are left unscaled
            self.scale = np.where(std > 1e-6 * max(std.max(), 1e-30), std, 1.0)
        else:
            self.mean = np.zeros(n * d)
            self.scale = np.ones(n * d)
        if self.features == "distances":
            self.pairs = _resolve_pairs(self.pairs, n)
            if len(self.pairs) == 0:
                raise ValueError("pairs must hold at least one atom pair; got none")
            dist = _pair_distances(x.astype(np.float64), self.pairs)
            self.in_mean = dist.mean(axis=0)
            std = dist.std(axis=0)
            rigid = std <= 1e-6 * max(float(np.abs(dist).max()), 1e-30)
            if rigid.all():
                raise ValueError("no pair distance varies over the training frames")
            self.in_scale = np.where(rigid, 1.0, std) if self.standardize else np.ones_like(std)
            if not self.standardize:
                self.in_mean = np.zeros_like(self.in_mean)
        return self

    def check_positions(self, positions: Any, name: str = "positions") -> np.ndarray:
        """Validate frames against the fitted atom count and dimension."""
        self._require_fit()
        x = as_positions(positions, name)
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
        """Frames (T, N, D) to standardized features (T, N*D), float32."""
        feats = flatten(self.align_frames(positions)).astype(np.float64)
        return ((feats - self.mean) / self.scale).astype(np.float32)

    def encoder_inputs(self, positions: Any) -> np.ndarray:
        """What the encoder reads, (T, n_inputs) float32: the standardized aligned
        coordinates, or the standardized pair distances."""
        if self.features == "positions":
            return self.transform(positions)
        x = self.check_positions(positions).astype(np.float64)
        dist = _pair_distances(x, self.pairs)
        return ((dist - self.in_mean) / self.in_scale).astype(np.float32)

    def inverse_transform(self, features: Any):
        """Standardized features (..., F) to aligned positions (..., N, D).

        Works on NumPy arrays and on JAX arrays (inside jit and grad), so decoded
        structures stay differentiable.
        """
        self._require_fit()
        import jax

        xp = np
        if isinstance(features, jax.Array):
            import jax.numpy as xp
        feats = features * xp.asarray(self.scale, dtype=features.dtype) + xp.asarray(
            self.mean, dtype=features.dtype
        )
        return unflatten(feats, self.n_atoms, self.dim)

    def to_config(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-ready settings and the fitted arrays, for the model file."""
        self._require_fit()
        config = {
            "align": self.align,
            "standardize": self.standardize,
            "n_atoms": self.n_atoms,
            "dim": self.dim,
            "features": self.features,
        }
        arrays = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        return config, arrays

    @classmethod
    def from_config(cls, config: dict, arrays: dict[str, np.ndarray]) -> Pipeline:
        """Rebuild a fitted pipeline from :meth:`to_config` output."""
        return cls(
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
            in_mean=arrays.get("in_mean"),
            in_scale=arrays.get("in_scale"),
        )
