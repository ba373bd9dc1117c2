"""A check of XTC frame headers before MDAnalysis' reader sees the file.

MDAnalysis decodes XTC frames in C (xdrfile). A damaged frame header does not raise
there: a zero or negative coordinate range (``maxint - minint + 1 <= 0``) or a
``smallidx`` outside the table of magic integers makes the process die of SIGFPE or
SIGSEGV while reading, taking the caller with it. :func:`check_xtc` reads every
frame's header (92 bytes, then skips the compressed data) and raises ``ValueError``
naming the file, the frame and the field instead. A header that does not fit in the
file is left to the reader's truncation handling. Damage inside the compressed data
itself cannot be seen without decoding it; the ``polyvae`` command reads in a child
process and reports such a crash in one line.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

__all__ = ["check_xtc"]

_MAGIC = 1995
_FIRSTIDX, _LASTIDX = 9, 73  # xdrfile's magicints: entries 9..72 are the usable ones
_HEAD = struct.Struct(">iiif9fi")  # magic, natoms, step, time, box, natoms again
_COMP = struct.Struct(">f3i3iii")  # precision, minint, maxint, smallidx, bytecount
_INT_MAX = 2**31 - 1


def check_xtc(path: str | os.PathLike) -> int:
    """Check the header of every frame of an XTC file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    int
        Number of whole frame headers checked.

    Raises
    ------
    ValueError
        A header field that would crash the XTC decoder: wrong magic number, an atom
        count that changes or is not positive, a precision that is not a positive
        number, an empty or overflowing coordinate range, or ``smallidx`` out of range.
    """
    path = Path(path)
    size = path.stat().st_size
    n_atoms, offset, frame = None, 0, 0
    with open(path, "rb") as fh:
        while offset + _HEAD.size <= size:
            fh.seek(offset)
            head = _HEAD.unpack(fh.read(_HEAD.size))
            magic, natoms, natoms2 = head[0], head[1], head[-1]

            def bad(what: str, frame: int = frame, offset: int = offset) -> ValueError:
                return ValueError(
                    f"XTC file {str(path)!r} is corrupt: frame {frame} (byte {offset}) has "
                    f"{what}; the file is damaged"
                )

            if magic != _MAGIC:
                raise bad(f"magic number {magic} instead of {_MAGIC}")
            if natoms <= 0 or natoms2 != natoms:
                raise bad(f"atom counts {natoms} and {natoms2} (expected one positive count)")
            if n_atoms is None:
                n_atoms = natoms
            elif natoms != n_atoms:
                raise bad(f"{natoms} atoms but frame 0 has {n_atoms}")
            body = offset + _HEAD.size
            if natoms <= 9:  # stored uncompressed
                offset = body + 12 * natoms
                frame += 1
                continue
            if body + _COMP.size > size:
                break
            fh.seek(body)
            comp = _COMP.unpack(fh.read(_COMP.size))
            precision, minint, maxint = comp[0], comp[1:4], comp[4:7]
            smallidx, nbytes = comp[7], comp[8]
            if not (math.isfinite(precision) and precision > 0):
                raise bad(f"precision {precision!r} (expected a positive number)")
            for k in range(3):
                span = maxint[k] - minint[k] + 1
                if not 1 <= span <= _INT_MAX:
                    raise bad(
                        f"coordinate range {minint[k]}..{maxint[k]} in {'xyz'[k]} "
                        "(expected minint <= maxint)"
                    )
            if not _FIRSTIDX <= smallidx < _LASTIDX:
                raise bad(f"smallidx {smallidx} (expected {_FIRSTIDX} to {_LASTIDX - 1})")
            if nbytes < 0:
                raise bad(f"a negative byte count {nbytes}")
            offset = body + _COMP.size + nbytes + (-nbytes % 4)
            if offset > size:
                break
            frame += 1
    return frame
