"""PRNG keys, each derivation one compiled program.

``jax.random.split(jax.random.PRNGKey(seed), 3)`` run op by op compiles four programs
(the seed's conversion, the seeding, the split and the unpacking of its rows), each
traced and lowered again in every new process. :func:`seed_keys` and :func:`split_key`
give the same keys, bit for bit, from one program each, which every seed shares.
"""

from __future__ import annotations

from functools import partial

import jax
import numpy as np

__all__ = ["seed_keys", "split_key"]


def seed_keys(seed: int, n: int) -> tuple[jax.Array, ...]:
    """``n`` keys split from the key of ``seed``: ``jax.random.split(PRNGKey(seed), n)``.

    ``seed`` is a non-negative int; as ``jax.random.PRNGKey`` does with 32-bit
    numbers, only its low 32 bits count.
    """
    # PRNGKey keeps the low 32 bits of a Python int; the program takes them as an int32
    return _seed_keys(np.int64(seed).astype(np.int32), int(n))


@partial(jax.jit, static_argnums=1)
def _seed_keys(seed: jax.Array, n: int) -> tuple[jax.Array, ...]:
    return tuple(jax.random.split(jax.random.PRNGKey(seed), n))


@jax.jit
def split_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The two halves of ``jax.random.split(key)``: the key to carry on, and a new one."""
    first, second = jax.random.split(key)
    return first, second
