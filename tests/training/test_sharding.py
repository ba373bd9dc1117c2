"""Data-parallel training: two (forced) CPU devices give the one-device result."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = """
import json, sys
import jax, numpy as np
from polyvae.nn.model import VAEConfig
from polyvae.nn.steps import data_mesh
from polyvae.training.trainer import TrainConfig, fit
x = np.random.default_rng(0).normal(size=(512, 24)).astype(np.float32)
cfg = VAEConfig(n_features=24, hidden=(64, 64))
params, history = fit(x, cfg, TrainConfig(epochs=5, batch_size=32, seed=3), progress=False)
np.savez(sys.argv[1], *[np.asarray(leaf) for leaf in jax.tree.leaves(params)])
print(json.dumps({"devices": jax.device_count(), "mesh": data_mesh(32).size,
                  "loss": history["train_loss"], "val": history["val_elbo"]}))
"""


def _run(out: Path, n_devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_devices_match_one(tmp_path):
    one = _run(tmp_path / "one.npz", 1)
    two = _run(tmp_path / "two.npz", 2)
    assert (one["devices"], one["mesh"]) == (1, 1)
    assert (two["devices"], two["mesh"]) == (2, 2)  # the batch really was split
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
    np.testing.assert_allclose(two["val"], one["val"], rtol=1e-4)
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    for key in a.files:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-3, atol=1e-4)


def test_batch_not_divisible_falls_back_to_one_device(caplog):
    import jax

    from polyvae.nn.steps import data_mesh

    devices = [jax.devices()[0]] * 3  # stand-ins: only the count matters here
    assert data_mesh(32, devices).size == 1
    assert "does not divide among 3 devices" in caplog.text
    assert data_mesh(33, devices).size == 3
