"""A NumPy reading of the PLUMED input that ``polyvae export plumed`` writes.

The tests evaluate the CV a written ``plumed.dat`` defines, from the file alone (its
PDB reference, its DISTANCE/POSITION actions, its ANN weights), and compare it with
the model's encoder mean. The superposition here is Horn's quaternion method, as
PLUMED's RMSD does it, so the round trip also checks polyvae's SVD Kabsch against an
independent method.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from polyvae.nn.encoder_numpy import forward_numpy


def _hy36_decode(text: str, width: int = 5) -> int:
    s = text.strip()
    if s.lstrip("-").isdigit():
        return int(s)
    lower = 26 * 36 ** (width - 1) if s[0].islower() else 0
    return int(s, 36) - 10 * 36 ** (width - 1) + 10**width + lower


def _read_pdb(path: Path) -> dict:
    serials, coords, occupancy, beta = [], [], [], []
    for line in Path(path).read_text(encoding="ascii").splitlines():
        record = line[:6].strip()
        if record in ("END", "ENDMDL"):
            break
        if record in ("ATOM", "HETATM"):
            line = line.ljust(80)
            serials.append(_hy36_decode(line[6:11]))
            coords.append([float(line[30:38]), float(line[38:46]), float(line[46:54])])
            occupancy.append(float(line[54:60]))
            beta.append(float(line[60:66]))
    if not serials:
        raise ValueError(f"reference PDB {path} has no ATOM records")
    arrays = {"positions": coords, "occupancy": occupancy, "beta": beta}
    return {"atoms": serials} | {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}


def _optimal_rotation(p: np.ndarray, q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Rotations R (T, 3, 3) minimizing sum_i w_i |R p_ti - q_i|^2 (centred p, q), float64.

    Horn's quaternion method, as PLUMED's RMSD (not polyvae's SVD Kabsch, so the
    round trip checks one against the other).
    """
    s = np.swapaxes(p * w[:, None], 1, 2) @ q  # S[a, b] = sum_i w_i p_ia q_ib
    (xx, xy, xz), (yx, yy, yz), (zx, zy, zz) = np.moveaxis(s, 0, -1)
    n = np.array(
        [
            [xx + yy + zz, yz - zy, zx - xz, xy - yx],
            [yz - zy, xx - yy - zz, xy + yx, zx + xz],
            [zx - xz, xy + yx, yy - xx - zz, yz + zy],
            [xy - yx, zx + xz, yz + zy, zz - xx - yy],
        ]
    )
    a, b, c, d = np.linalg.eigh(np.moveaxis(n, -1, 0))[1][..., -1].T  # largest eigenvalue
    r = np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )
    return np.moveaxis(r, -1, 0)


def _actions(text: str) -> list[tuple[str | None, str, dict]]:
    """(label, action, {KEY: value}) of each action in a PLUMED input."""
    actions, block = [], None
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if block is not None:
            if words[0] == "...":
                words, block = block, None
            else:
                block += words
                continue
        elif words[-1] == "...":
            block = words[:-1]
            continue
        label = words.pop(0)[:-1] if words[0].endswith(":") else None
        name, keys = words[0], {}
        for word in words[1:]:
            key, _, value = word.partition("=")
            keys[key] = value
        actions.append((keys.pop("LABEL", label), name, keys))
    return actions


def read_plumed_ann(plumed_dat: str | os.PathLike) -> dict:
    """Parse a ``plumed.dat`` written by :func:`write_plumed`.

    Parameters
    ----------
    plumed_dat : str or path-like

    Returns
    -------
    dict
        ``unit``; ``atoms`` (GROUP ``polyvae_atoms``: engine numbers in the model's order);
        ``reference`` (FIT_TO_TEMPLATE PDB path or None) and ``fit_type``; ``positions``
        ({label: atom}); ``distances`` ({label: (atom, atom)}); ``ann`` (``label``,
        ``arg``, ``sizes``, ``activations``, ``weights`` (n_in, n_out) and ``biases``);
        ``print`` (``arg``, ``stride``, ``file``).
    """
    path = Path(plumed_dat)
    out: dict = {"unit": None, "atoms": None, "reference": None, "fit_type": None}
    out |= {"positions": {}, "distances": {}, "ann": None, "print": None}
    for label, name, keys in _actions(path.read_text(encoding="utf-8")):
        if name == "UNITS":
            out["unit"] = keys.get("LENGTH", "nm")
        elif name == "GROUP" and label == "polyvae_atoms":
            out["atoms"] = [int(a) for a in keys["ATOMS"].split(",")]
        elif name == "FIT_TO_TEMPLATE":
            out["reference"] = path.parent / keys["REFERENCE"]
            out["fit_type"] = keys.get("TYPE", "SIMPLE")
        elif name == "POSITION":
            out["positions"][label] = int(keys["ATOM"])
        elif name == "DISTANCE":
            out["distances"][label] = tuple(int(a) for a in keys["ATOMS"].split(","))
        elif name == "ANN":
            sizes = [int(n) for n in keys["NUM_NODES"].split(",")]
            ws = [np.array(keys[f"WEIGHTS{k}"].split(","), float) for k in range(len(sizes) - 1)]
            out["ann"] = {
                "label": label,
                "arg": keys["ARG"].split(","),
                "sizes": sizes,
                "activations": keys["ACTIVATIONS"].split(","),
                "weights": [
                    w.reshape(m, n).T for w, n, m in zip(ws, sizes[:-1], sizes[1:], strict=True)
                ],
                "biases": [np.array(keys[f"BIASES{k}"].split(","), float) for k in range(len(ws))],
            }
        elif name == "PRINT":
            stride, file = int(keys.get("STRIDE", 1)), keys.get("FILE")
            out["print"] = {"arg": keys["ARG"].split(","), "stride": stride, "file": file}
    if out["ann"] is None:
        raise ValueError(f"{path} defines no ANN action")
    return out


def evaluate_plumed(parsed: dict, positions: Any) -> np.ndarray:
    """The CV a parsed PLUMED input computes, with NumPy, on the file's own definitions.

    Parameters
    ----------
    parsed : dict
        From :func:`read_plumed_ann`.
    positions : array (T, N, 3)
        The model's atoms (in the order of the GROUP ``polyvae_atoms``), in Å, in any
        orientation and position (molecules whole).

    Returns
    -------
    ndarray (T, L), float64
    """
    x, atoms = np.asarray(positions, dtype=np.float64), parsed["atoms"]
    if atoms is None:
        raise ValueError("parsed holds no 'polyvae_atoms' GROUP (the atom order of positions)")
    if x.ndim != 3 or x.shape[1:] != (len(atoms), 3):
        raise ValueError(
            f"positions must have shape (T, {len(atoms)}, 3) (the file's atoms); got {x.shape}"
        )
    column = {a: k for k, a in enumerate(atoms)}
    if parsed["reference"] is not None:
        pdb = _read_pdb(parsed["reference"])
        w = pdb["occupancy"] / pdb["occupancy"].sum()
        centre = w @ pdb["positions"]
        sel = x[:, [column[a] for a in pdb["atoms"]]]
        com = w @ sel
        rot = _optimal_rotation(sel - com[:, None], pdb["positions"] - centre, w)
        x = (x - com[:, None]) @ np.swapaxes(rot, 1, 2) + centre
    inputs = []
    for arg in parsed["ann"]["arg"]:
        label, _, comp = arg.partition(".")
        if label in parsed["positions"]:
            inputs.append(x[:, column[parsed["positions"][label]], "xyz".index(comp)])
        else:
            a, b = (column[n] for n in parsed["distances"][label])
            inputs.append(np.linalg.norm(x[:, a] - x[:, b], axis=-1))
    ann = parsed["ann"]
    hidden, last = set(ann["activations"][:-1]), ann["activations"][-1]
    if not hidden <= {"Tanh"} or last != "Linear":
        raise ValueError(
            f"expected Tanh hidden layers and a Linear output; got {ann['activations']}"
        )
    layers = list(zip(ann["weights"], ann["biases"], strict=True))
    return forward_numpy(layers, np.stack(inputs, axis=1), "tanh")
