"""JAX's persistent compilation cache, on for every caller of the package: where it goes,
how it is switched off, and that a cache set up through JAX wins."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from polyvae import _compile_cache
from polyvae._compile_cache import MIN_COMPILE_SECONDS, keep_compiled_code

_SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_enable_compilation_cache",
)
_ENV = (
    "JAX_COMPILATION_CACHE_DIR",
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
    "JAX_ENABLE_COMPILATION_CACHE",
    _compile_cache.COMPILE_CACHE_ENV,
)


@pytest.fixture
def fresh_jax(tmp_path, monkeypatch):
    """JAX's cache settings as a process without any has them (restored afterwards; no
    program compiles in between), and a user cache folder under ``tmp_path``."""
    saved = {name: getattr(jax.config, name) for name in _SETTINGS}
    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_enable_compilation_cache", True)
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    yield tmp_path / "xdg" / "polyvae" / "jax"
    for name, value in saved.items():
        jax.config.update(name, value)


def test_the_cache_goes_to_the_users_cache_folder(fresh_jax):
    assert keep_compiled_code() == fresh_jax
    assert fresh_jax.is_dir()
    assert jax.config.jax_compilation_cache_dir == str(fresh_jax)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == MIN_COMPILE_SECONDS


def test_the_variable_names_another_folder_or_switches_the_cache_off(
    fresh_jax, tmp_path, monkeypatch
):
    monkeypatch.setenv("POLYVAE_COMPILE_CACHE", str(tmp_path / "mine"))
    assert keep_compiled_code() == tmp_path / "mine"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("POLYVAE_COMPILE_CACHE", "0")
    assert keep_compiled_code() is None
    assert jax.config.jax_compilation_cache_dir is None
    assert not fresh_jax.exists()


def test_a_cache_set_up_through_jax_is_left_as_it_is(fresh_jax, tmp_path):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
    assert keep_compiled_code() is None
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "theirs")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0
    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_enable_compilation_cache", False)
    assert keep_compiled_code() is None
    assert jax.config.jax_compilation_cache_dir is None
    assert not fresh_jax.exists()


def test_a_chosen_minimum_compile_time_is_kept(fresh_jax):
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.5)
    assert keep_compiled_code() == fresh_jax
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.5


def test_a_folder_that_cannot_be_made_leaves_the_cache_off(fresh_jax, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("POLYVAE_COMPILE_CACHE", str(tmp_path / "a_file" / "jax"))
    assert keep_compiled_code() is None
    assert jax.config.jax_compilation_cache_dir is None


def _run(tmp_path, *scripts, **env):
    """Run ``scripts`` (one after the other) in a new Python process whose environment has
    no JAX cache settings, with HOME and XDG_CACHE_HOME under ``tmp_path`` and ``env``
    added; its stdout lines."""
    clean = {k: v for k, v in os.environ.items() if k not in _ENV}
    clean.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"), **env)
    proc = subprocess.run(
        [sys.executable, "-c", "".join(textwrap.dedent(s) for s in scripts)],
        env=clean,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split("\n")


_SETTINGS_SHOWN = """
    import jax
    print(jax.config.jax_compilation_cache_dir)
    print(jax.config.jax_persistent_cache_min_compile_time_secs)
"""


def test_a_python_caller_trains_with_the_cache_on_by_default(tmp_path):
    script = """
        import numpy as np
        import polyvae

        rng = np.random.default_rng(0)
        steps = rng.normal(size=(64, 6, 2))
        chain = np.cumsum(steps / np.linalg.norm(steps, axis=-1, keepdims=True), axis=1)
        polyvae.train(chain, epochs=1, batch_size=16, hidden=(8,), decoder="cartesian",
                      progress=False)
    """
    folder = tmp_path / "xdg" / "polyvae" / "jax"
    shown = _run(tmp_path, script, _SETTINGS_SHOWN)
    assert shown[:2] == [str(folder), str(MIN_COMPILE_SECONDS)]
    assert any(folder.iterdir())  # the training's programs are kept


@pytest.mark.parametrize(
    "env, before, cache",
    [
        ({"POLYVAE_COMPILE_CACHE": "0"}, "", None),
        ({"JAX_COMPILATION_CACHE_DIR": "{tmp}/theirs"}, "", "{tmp}/theirs"),
        ({}, 'jax.config.update("jax_compilation_cache_dir", "{tmp}/theirs")', "{tmp}/theirs"),
    ],
    ids=["switched-off", "jax-variable", "jax-config"],
)
def test_switched_off_or_set_up_through_jax_polyvae_leaves_the_cache_alone(
    tmp_path, env, before, cache
):
    script = f"""
        import jax
        {before.format(tmp=tmp_path)}
        import polyvae

        jax.jit(lambda x: 2 * x)(1.0)
    """
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    shown = _run(tmp_path, script, _SETTINGS_SHOWN, **env)
    assert shown[:2] == [str(cache).format(tmp=tmp_path), "1.0"]  # JAX's own default time
    assert not (tmp_path / "xdg" / "polyvae").exists()
