"""A training compiles a handful of programs, and a second one of the same molecule (other
seed) none: each program costs its tracing and lowering (and its compilation, or a
read of the disk cache) in every new process."""

from contextlib import contextmanager

import jax
import numpy as np
import pytest
from helpers import random_chain

import polyvae

_LOWERED = "/jax/core/compile/jaxpr_to_mlir_module_duration"  # once per new program


@contextmanager
def lowered_programs():
    """The names of the programs lowered (new to this process) inside the block."""
    names = []

    def listen(event, duration_secs, **kwargs):
        if event == _LOWERED:
            names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def test_the_listener_sees_a_new_program():
    with lowered_programs() as names:
        jax.jit(lambda x: x * 3.0 + 1.0)(np.ones(7, np.float32))
    assert len(names) == 1


@pytest.mark.parametrize("decoder", ["internal", "cartesian"])
def test_a_second_training_of_the_molecule_compiles_nothing(decoder, monkeypatch):
    from polyvae.training import finishing

    monkeypatch.setattr(finishing, "SCAN_ATOMS", 32 * 7)  # the fewest structures per weight
    chain = random_chain(np.random.default_rng(3), n_frames=96, n_atoms=7)
    options = dict(epochs=2, batch_size=16, hidden=(8, 8), decoder=decoder, progress=False)
    with lowered_programs() as first:
        polyvae.train(chain, seed=0, **options)
    with lowered_programs() as second:
        polyvae.train(chain, seed=1, **options)
    assert second == []
    if decoder == "cartesian":  # seeding, initial state, epoch, validation, codes...
        assert len(first) <= 10, first
