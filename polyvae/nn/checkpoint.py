"""The model file: one zip archive holding ``config.json`` and ``params.npz``.

``config.json`` carries the format name and version, the package version, the
architecture and likelihood, beta, the training settings and history, the fitted
preprocessing pipeline's settings, the length unit and the atom metadata.
``params.npz`` carries every array: the network weights under ``params/...`` and the
pipeline's fitted arrays under ``pipeline/...``. Arrays are read with
``allow_pickle=False`` and JSON with ``json.loads``: loading never executes code.
A folder holding the same two files is read too.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from polyvae._outputs import atomic_output
from polyvae._version import __version__

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "save_archive",
    "load_archive",
    "flatten_tree",
    "unflatten_tree",
]

FORMAT = "polyvae-model"
FORMAT_VERSION = 1


def flatten_tree(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts/lists of arrays to a flat ``{"a/0/w": array}`` mapping."""
    out: dict[str, np.ndarray] = {}
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list | tuple):
        items = ((str(i), v) for i, v in enumerate(tree))
    else:
        return {prefix: np.asarray(tree)}
    for k, v in items:
        if "/" in str(k):
            raise ValueError(f"parameter names may not contain '/': {k!r}")
        out.update(flatten_tree(v, f"{prefix}/{k}" if prefix else str(k)))
    return out


def unflatten_tree(flat: dict[str, np.ndarray], structure):
    """Inverse of :func:`flatten_tree` given a template ``structure`` (as saved in JSON)."""

    def build(node, prefix):
        if isinstance(node, dict):
            return {k: build(v, f"{prefix}/{k}" if prefix else k) for k, v in node.items()}
        if isinstance(node, list):
            return [build(v, f"{prefix}/{i}" if prefix else str(i)) for i, v in enumerate(node)]
        if prefix not in flat:
            raise ValueError(f"array {prefix!r} is missing from params.npz")
        return flat[prefix]

    return build(structure, "")


def tree_structure(tree):
    """JSON-ready skeleton of a params tree (leaves replaced by None)."""
    if isinstance(tree, dict):
        return {k: tree_structure(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [tree_structure(v) for v in tree]
    return None


def save_archive(path: str | os.PathLike, config: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``config`` (JSON-ready dict) and ``arrays`` into one zip file at ``path``.

    The file is written next to its destination under a unique temporary name and
    moved into place (:func:`polyvae._outputs.atomic_output`), so an interrupted save
    never leaves a half-written model behind, and saves to one path at once never mix.
    """

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "polyvae_version": __version__}
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    with (
        atomic_output(path) as fh,
        zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        zf.writestr("config.json", json.dumps({**header, **config}, indent=2, ensure_ascii=False))
        zf.writestr("params.npz", buf.getvalue())
    return path


def _read_members(path: Path) -> tuple[bytes, bytes]:
    if path.is_dir():
        cfg, arr = path / "config.json", path / "params.npz"
        if not (cfg.is_file() and arr.is_file()):
            raise ValueError(f"model folder {str(path)!r} must hold config.json and params.npz")
        return cfg.read_bytes(), arr.read_bytes()
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if not {"config.json", "params.npz"} <= names:
                raise ValueError(
                    f"model file {str(path)!r} is not a polyvae model: it lacks config.json "
                    f"and params.npz (found {sorted(names)[:5]})"
                )
            return zf.read("config.json"), zf.read("params.npz")
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(
            f"model file {str(path)!r} is corrupt, truncated or not a polyvae model file ({exc})"
        ) from exc


def load_archive(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check a model file; return its config dict and arrays."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    raw_cfg, raw_arr = _read_members(path)
    try:
        config = json.loads(raw_cfg.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"model file {str(path)!r}: config.json is not valid JSON ({exc})"
        ) from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(
            f"model file {str(path)!r} is not a polyvae model file "
            f"(format {config.get('format') if isinstance(config, dict) else None!r}, expected {FORMAT!r})"
        )
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(
            f"model file {str(path)!r}: format_version must be an integer; got {version!r} "
            f"({type(version).__name__}): the file is damaged or not written by polyvae"
        )
    if version > FORMAT_VERSION:
        raise ValueError(
            f"model file {str(path)!r} has format version {version!r}; this polyvae reads "
            f"versions up to {FORMAT_VERSION}: upgrade polyvae"
        )
    if not zipfile.is_zipfile(io.BytesIO(raw_arr)):
        raise ValueError(
            f"model file {str(path)!r}: params.npz is corrupt (not an npz archive): "
            "the file is damaged"
        )
    try:
        with np.load(io.BytesIO(raw_arr), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays, refused by allow_pickle=False
            raise ValueError(
                f"model file {str(path)!r}: params.npz is unreadable: it holds object arrays, which "
                "polyvae never writes and does not load: the file is damaged or not written by "
                "polyvae"
            ) from exc
        raise ValueError(
            f"model file {str(path)!r}: params.npz is corrupt ({exc}): the file is damaged"
        ) from exc
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise ValueError(
            f"model file {str(path)!r}: params.npz is corrupt ({exc}): the file is damaged"
        ) from exc
    for name, arr in arrays.items():
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise ValueError(
                f"model file {str(path)!r}: array {name!r} holds NaN or inf values: "
                "the file is damaged"
            )
    return config, arrays
