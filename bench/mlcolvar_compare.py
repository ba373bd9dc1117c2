"""Seconds per training epoch: polyvae's compiled epoch vs mlcolvar's VariationalAutoEncoderCV.

The same settings on both sides: 2048 frames of the 12-bead 2D polymer (the chapter's
``long_paths.npz`` when present, otherwise ``polyvae/data/polymer2d.npz``), aligned and
standardized with ``polyvae.Pipeline``; encoder 24-256-256-256-2 (mlcolvar: hidden
layers [24, 256, 256, 256] and its two 256 -> 2 heads), decoder mirrored, relu, Adam
(learning rate 1e-3), batch 32, every frame in the training set (no validation split).

mlcolvar is trained the way its documentation trains it: a ``lightning.Trainer`` over
the library's ``DictModule``/``DictDataset`` (logger, checkpointing, progress bar
and model summary switched off, which only makes it faster). The seconds per epoch
are read from a callback (the time between the starts of consecutive epochs, so the
Trainer's per-epoch work is in, its one-off setup is not). For reference the same
model is also trained with a plain PyTorch loop over the library's ``DictLoader``,
calling ``encode_decode`` and ``loss_fn`` directly.

The runners take turns in the same process (the machine's speed drifts); the minimum
over the repeats is compared. Prints one JSON object; when mlcolvar, lightning or
torch cannot be imported it prints a JSON object saying why and exits 0.
Run from the repository root: ``python bench/mlcolvar_compare.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from epoch_time import load_features, polyvae_epoch  # noqa: E402

from polyvae.nn.model import VAEConfig  # noqa: E402

TORCH_VERSION = "2.13.0"


def _import_mlcolvar():
    try:
        import lightning
        import mlcolvar
        import torch
        from mlcolvar.cvs import VariationalAutoEncoderCV
        from mlcolvar.data import DictDataset, DictModule
    except Exception as exc:  # ImportError, or a broken install raising something else
        return None, f"{type(exc).__name__}: {exc}"
    return {
        "torch": torch,
        "lightning": lightning,
        "mlcolvar": mlcolvar,
        "VAE": VariationalAutoEncoderCV,
        "DictDataset": DictDataset,
        "DictModule": DictModule,
    }, None


def _make_model(m, n_features: int, seed: int):
    m["torch"].manual_seed(seed)
    model = m["VAE"](n_cvs=2, encoder_layers=[n_features, 256, 256, 256])
    model.optimizer_kwargs = {"lr": 1e-3}  # Adam is mlcolvar's default optimizer
    return model


def lightning_runner(m, x, batch_size: int, epochs_per_fit: int):
    """Each call runs ``Trainer.fit`` for a few epochs; returns the per-epoch seconds."""
    torch, lightning = m["torch"], m["lightning"]
    model = _make_model(m, x.shape[1], seed=0)
    dataset = m["DictDataset"]({"data": torch.tensor(x)})
    datamodule = m["DictModule"](dataset, lengths=(1.0,), batch_size=batch_size, shuffle=True)

    class EpochClock(lightning.Callback):
        def __init__(self):
            self.marks = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.marks.append(time.perf_counter())

        def on_train_end(self, trainer, pl_module):
            self.marks.append(time.perf_counter())

    def run() -> list[float]:
        clock = EpochClock()
        trainer = lightning.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=epochs_per_fit,
            callbacks=[clock],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        trainer.fit(model, datamodule)
        return [b - a for a, b in zip(clock.marks[:-1], clock.marks[1:], strict=True)]

    return run


def torch_loop_runner(m, x, batch_size: int):
    """A plain PyTorch loop over mlcolvar's DictLoader and loss; returns [seconds]."""
    torch = m["torch"]
    model = _make_model(m, x.shape[1], seed=0)
    datamodule = m["DictModule"](
        m["DictDataset"]({"data": torch.tensor(x)}), lengths=(1.0,), batch_size=batch_size
    )
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    if model.norm_in is not None:  # what the Trainer's setup does
        model.initialize_transforms(datamodule)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def run() -> list[float]:
        t0 = time.perf_counter()
        for batch in loader:
            data = batch["data"]
            mean, log_variance, x_hat = model.encode_decode(data)
            loss = model.loss_fn(
                target=data, output=x_hat, mean=mean, log_variance=log_variance, beta=model.beta
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return [time.perf_counter() - t0]

    return run


def polyvae_runner(x, batch_size: int):
    config = VAEConfig(n_features=x.shape[1], latent_dim=2, hidden=(256, 256, 256))
    run_epoch = polyvae_epoch(x, config, batch_size)

    def run() -> list[float]:
        t0 = time.perf_counter()
        run_epoch()
        return [time.perf_counter() - t0]

    return run


def interleaved(runners: dict, repeats: int) -> dict:
    """Take turns ``repeats`` times after one warm-up call each; every call returns epoch times."""
    for run in runners.values():
        run()
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            times[name].extend(run())
    return {
        name: {"min": min(t), "median": statistics.median(t), "n": len(t)}
        for name, t in times.items()
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=2048)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs-per-fit", type=int, default=3)
    a = ap.parse_args(argv)
    m, why = _import_mlcolvar()
    if m is None:
        result = {
            "benchmark": "mlcolvar_compare",
            "skipped": True,
            "reason": f"mlcolvar, lightning or torch cannot be imported ({why})",
            "install": f"pip install torch=={TORCH_VERSION} lightning pandas && "
            "pip install --no-deps mlcolvar",
        }
        print(json.dumps(result, indent=2))
        return result
    torch = m["torch"]
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "GPU available: ..." on every fit
    x, source = load_features(a.frames)
    x = x.astype("float32")
    per_batch = {}
    for b in a.batch_sizes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lightning's advice (workers, logging) on every fit
            t = interleaved(
                {
                    "polyvae_compiled_epoch": polyvae_runner(x, b),
                    "mlcolvar_lightning_trainer": lightning_runner(m, x, b, a.epochs_per_fit),
                    "mlcolvar_plain_torch_loop": torch_loop_runner(m, x, b),
                },
                a.repeats,
            )
        best = {name: v["min"] for name, v in t.items()}
        per_batch[str(b)] = {
            "seconds_per_epoch_min": {k: round(v, 5) for k, v in best.items()},
            "seconds_per_epoch_median": {k: round(v["median"], 5) for k, v in t.items()},
            "epochs_timed": {k: v["n"] for k, v in t.items()},
            "ratio_mlcolvar_lightning_over_polyvae": round(
                best["mlcolvar_lightning_trainer"] / best["polyvae_compiled_epoch"], 1
            ),
            "ratio_mlcolvar_plain_loop_over_polyvae": round(
                best["mlcolvar_plain_torch_loop"] / best["polyvae_compiled_epoch"], 1
            ),
        }
    result = {
        "benchmark": "mlcolvar_compare",
        "data": source,
        "frames": int(x.shape[0]),
        "architecture": f"{x.shape[1]}-256-256-256-2 (decoder mirrored), relu, Adam 1e-3",
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "lightning": m["lightning"].__version__,
        "mlcolvar": m["mlcolvar"].__version__,
        "differences": "polyvae learns a per-feature decoder sigma, mlcolvar's ELBO uses a fixed "
        "one (MSE); mlcolvar standardizes inputs in the model (norm_in, its default)",
        "batch_sizes": per_batch,
        "target_ratio_at_batch_32": 6,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
