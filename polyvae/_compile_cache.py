"""JAX's compiled code kept on disk between processes, for every caller of polyvae.

A model's training step, its evaluation and the small programs around them (random
keys, initial parameters, encoding) take seconds to compile in each new process. With
JAX's persistent compilation cache they are compiled once per molecule and settings and
loaded from disk afterwards. :func:`keep_compiled_code` turns the cache on when
``polyvae`` is imported, in ``$XDG_CACHE_HOME/polyvae/jax`` (default
``~/.cache/polyvae/jax``):

- ``POLYVAE_COMPILE_CACHE=0`` switches it off; another value names the folder;
- a cache the caller set up already (``JAX_COMPILATION_CACHE_DIR``, or
  ``jax.config.update("jax_compilation_cache_dir", ...)`` before the import) wins, and
  so does ``JAX_ENABLE_COMPILATION_CACHE=false``: their settings are left as they are.

The cache keeps programs that took at least :data:`MIN_COMPILE_SECONDS` to compile,
unless the caller chose a threshold (``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``, or
``jax.config`` before the import).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["COMPILE_CACHE_ENV", "MIN_COMPILE_SECONDS", "compile_cache_folder", "keep_compiled_code"]

COMPILE_CACHE_ENV = "POLYVAE_COMPILE_CACHE"
"""Environment variable: ``0`` switches the cache off, another value names its folder."""

MIN_COMPILE_SECONDS = 0.0
"""Programs that compiled in at least this many seconds are kept: all of them. JAX's own
default (1 s) keeps 2 of the 8 programs of a training (its epoch and its initial
parameters), and a threshold such as 0.1 s leaves out more of them the faster the
machine; each program left out is compiled again in every process (0.1-0.6 s each on
2 CPU cores), where loading a kept one takes milliseconds."""

_JAX_DEFAULT_MIN_COMPILE_SECONDS = 1.0
_MIN_COMPILE_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"


def compile_cache_folder() -> Path | None:
    """The folder :func:`keep_compiled_code` would use, from the environment: the one
    ``POLYVAE_COMPILE_CACHE`` names, else ``polyvae/jax`` under ``$XDG_CACHE_HOME``
    (default ``~/.cache``); None where ``POLYVAE_COMPILE_CACHE=0``."""
    choice = os.environ.get(COMPILE_CACHE_ENV, "").strip()
    if choice == "0":
        return None
    if choice:
        return Path(choice).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "polyvae" / "jax"


def _caller_set_cache() -> bool:
    """Whether JAX's cache was set up (or switched off) before polyvae came to it."""
    return (
        jax.config.jax_compilation_cache_dir is not None
        or not jax.config.jax_enable_compilation_cache
    )


def _caller_set_threshold() -> bool:
    """Whether the minimum compile time was chosen before polyvae came to it."""
    chosen = jax.config.jax_persistent_cache_min_compile_time_secs
    return _MIN_COMPILE_ENV in os.environ or chosen != _JAX_DEFAULT_MIN_COMPILE_SECONDS


def keep_compiled_code() -> Path | None:
    """Turn JAX's persistent compilation cache on in :func:`compile_cache_folder`.

    Nothing changes where the caller set up JAX's cache already, where
    ``POLYVAE_COMPILE_CACHE=0``, or where the folder cannot be made (a read-only home):
    then every process compiles its programs.

    Returns
    -------
    Path or None
        The folder now in use, or None where this left JAX's settings as they were.
    """
    if _caller_set_cache():
        return None
    folder = compile_cache_folder()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    if not _caller_set_threshold():
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return folder
