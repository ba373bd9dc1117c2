"""Where an epoch's time goes, read from JAX's profiler rather than guessed.

Traces ``--epochs`` epochs of polyvae's training (chapter architecture, 2048 frames, the
compiled steps of ``polyvae.nn.steps.make_steps``) at each batch size, then attributes the
time of every XLA kernel (a thunk: one fused loop, one matrix product, ...) to

- a phase, from the kernel's HLO metadata: ``forward`` (under ``jvp``), ``backward``
  (under ``transpose(jvp)``) or ``update`` (the Adam step and the loop around it);
- a kind: ``matmul_ynnpack`` and ``matmul_eigen`` (which library XLA handed the product
  to), ``elementwise`` (fused loops), ``copy``, ``thread_pool_wait``, ``other``.

It also reports the concurrency: the summed kernel time over the wall time of the
epochs (1.0: one kernel at a time; up to the core count when kernels overlap). The
profiler itself adds a few microseconds per kernel, so the wall times here are longer
than ``epoch_time.py``'s; the split is what this script is for.

Prints one JSON object. Run from the repository root: ``python bench/profile_epoch.py``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from epoch_time import load_features  # noqa: E402

from polyvae.nn.model import VAEConfig, init_params  # noqa: E402
from polyvae.nn.steps import epoch_plan, make_steps  # noqa: E402

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+) = .*?op_name=\"([^\"]*)\"", re.M)


def hlo_phases(hlo_text: str) -> dict[str, str]:
    """Instruction name -> phase, from the op_name metadata XLA keeps on each instruction."""
    phases = {}
    for name, op_name in _INSTRUCTION.findall(hlo_text):
        if "transpose(jvp" in op_name:
            phases[name] = "backward"
        elif "jvp(" in op_name:
            phases[name] = "forward"
        else:
            phases[name] = "update"
    return phases


def kernel_kind(name: str) -> str:
    if name.startswith("ynn_fusion"):
        return "matmul_ynnpack"
    if re.match(r"(dot|dot_general|xnn_fusion|onednn)", name):
        return "matmul_eigen" if name.startswith("dot") else "matmul_other"
    if name.startswith("copy"):
        return "copy"
    if "Await" in name or "wait" in name.lower():
        return "thread_pool_wait"
    if "fusion" in name or name.startswith("wrapped_"):
        return "elementwise"
    return "other"


def profile(x, config: VAEConfig, batch_size: int, epochs: int) -> dict:
    optimizer, steps = make_steps(config, 1e-3)
    params = init_params(config, key=jax.random.PRNGKey(0))
    opt_state = optimizer.init(params)
    data = (jnp.asarray(x),)
    plan = jax.device_put(epoch_plan(jax.random.PRNGKey(1), x.shape[0], batch_size, 2))
    compiled = steps.lower(params, opt_state, data, *plan).compile()
    phases = hlo_phases(compiled.as_text())
    state = [params, opt_state]

    def run():
        state[0], state[1], metrics, _ = compiled(state[0], state[1], data, *plan)
        jax.block_until_ready(metrics)

    for _ in range(3):
        run()
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for _ in range(epochs):
                run()
        trace = next(Path(tmp).rglob("*.xplane.pb"))
        data_ = jax.profiler.ProfileData.from_file(str(trace))

    by_kind = collections.Counter()
    by_phase = collections.Counter()
    by_both = collections.Counter()
    counts = collections.Counter()
    wall_ns = 0
    for plane in data_.planes:
        for line in plane.lines:
            for ev in line.events:
                if "wait for completion" in ev.name:
                    wall_ns += ev.duration_ns
                    continue
                if ev.name == "ThunkExecutor::Execute" or ev.name.startswith("end:"):
                    continue
                if not line.name.startswith("tf_XLA"):
                    continue
                kind = kernel_kind(ev.name)
                phase = phases.get(ev.name, "runtime" if kind == "thread_pool_wait" else "other")
                by_kind[kind] += ev.duration_ns
                by_phase[phase] += ev.duration_ns
                by_both[f"{phase}/{kind}"] += ev.duration_ns
                counts[phase] += 1
    total = sum(by_kind.values())
    n_steps = x.shape[0] // batch_size

    def ms_per_epoch(counter):
        return {k: round(v / 1e6 / epochs, 3) for k, v in counter.most_common()}

    return {
        "steps_per_epoch": n_steps,
        "wall_ms_per_epoch_profiled": round(wall_ns / 1e6 / epochs, 3),
        "kernel_ms_per_epoch": round(total / 1e6 / epochs, 3),
        "concurrency": round(total / wall_ns, 2) if wall_ns else None,
        "kernel_events_per_step": round(sum(counts.values()) / epochs / n_steps, 1),
        "ms_per_epoch_by_kind": ms_per_epoch(by_kind),
        "ms_per_epoch_by_phase": ms_per_epoch(by_phase),
        "share_by_phase_and_kind": {k: round(v / total, 3) for k, v in by_both.most_common(12)},
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=2048)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256, 1024])
    ap.add_argument("--epochs", type=int, default=10)
    a = ap.parse_args(argv)
    x, source = load_features(a.frames)
    config = VAEConfig(n_features=x.shape[1], latent_dim=2, hidden=(256, 256, 256))
    result = {
        "benchmark": "profile_epoch",
        "data": source,
        "frames": int(x.shape[0]),
        "architecture": f"{x.shape[1]}-256-256-256-2 (decoder mirrored), learned sigma, relu",
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "batch_sizes": {str(b): profile(x, config, b, a.epochs) for b in a.batch_sizes},
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
