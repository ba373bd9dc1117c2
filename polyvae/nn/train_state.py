"""What continuing a training run needs, kept in the model file.

Every model :func:`polyvae.train` writes carries its training state: the epochs done,
the current parameters and Adam's moments, the PRNG key of the next epoch, and the
early-stopping record (best validation loss, its epoch and parameters). The arrays go
under ``resume/`` in ``params.npz``, the numbers under ``"resume"`` in ``config.json``
(with a version of their own); nothing is pickled. Training continued from this state
gives the same parameters, bit for bit on one CPU, as one run of the same length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from polyvae.nn.checkpoint import flatten_tree, tree_structure, unflatten_tree

__all__ = ["STATE_VERSION", "TrainState", "TrainingInterrupted"]

STATE_VERSION = 1


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT, SIGTERM or SIGHUP after a whole epoch; ``saved_to`` names the
    resumable model file written then (None when nothing was written)."""

    def __init__(self, epoch: int, saved_to=None, several: bool = False):
        self.epoch, self.saved_to = epoch, saved_to
        if saved_to is None:
            where = " (nothing saved: no output file was given)"
        elif several:
            where = (
                f"; every model and its training state are saved in {saved_to}: continue one "
                f"with resume={saved_to}/NAME.npz"
            )
        else:
            where = (
                f"; the model and its training state are saved in {saved_to}: continue the run "
                f"with resume={saved_to}"
            )
        super().__init__(f"training interrupted after epoch {epoch}{where}")


@dataclass
class TrainState:
    """The state of a training run after ``epoch`` whole epochs.

    ``opt_state`` is the optimizer's state pytree, or, as read from a file, the list of
    its leaves until :meth:`bind` gives it the optimizer's structure.
    """

    epoch: int
    params: Any
    opt_state: Any
    key: Any
    best_loss: float = math.inf
    best_epoch: int = 0
    best_params: Any = None

    def to_archive(self, model_params: Any = None) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-ready dict, arrays keyed ``resume/...``) for the model file; parameters
        that are ``model_params`` (the model's own) are not stored twice."""
        params, best = jax.device_get((self.params, self.best_params))
        shared = self.params is model_params
        arrays = {}
        if not shared:
            arrays.update({f"resume/params/{k}": v for k, v in flatten_tree(params).items()})
        if best is not None:
            arrays.update({f"resume/best/{k}": v for k, v in flatten_tree(best).items()})
        leaves = jax.device_get(jax.tree_util.tree_leaves(self.opt_state))
        arrays.update({f"resume/opt/{i}": np.asarray(v) for i, v in enumerate(leaves)})
        arrays["resume/key"] = np.asarray(jax.device_get(self.key))
        config = {
            "version": STATE_VERSION,
            "epoch": int(self.epoch),
            "best_loss": None if not math.isfinite(self.best_loss) else float(self.best_loss),
            "best_epoch": int(self.best_epoch),
            "has_best": best is not None,
            "params_are_the_model's": shared,
            "n_opt_leaves": len(leaves),
            "params_structure": tree_structure(params),
        }
        return config, arrays

    @classmethod
    def from_archive(
        cls, config: dict, arrays: dict[str, np.ndarray], model_params: Any = None
    ) -> TrainState:
        """The state :meth:`to_archive` wrote (``opt_state`` as a list of leaves)."""
        version = config.get("version")
        if version != STATE_VERSION:
            raise ValueError(
                f"training state version {version!r}; this polyvae resumes version {STATE_VERSION}"
            )
        structure = config["params_structure"]

        def tree(prefix):
            flat = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            return jax.tree.map(jnp.asarray, unflatten_tree(flat, structure))

        n = int(config["n_opt_leaves"])
        leaves = [jnp.asarray(arrays[f"resume/opt/{i}"]) for i in range(n)]
        best_loss = config.get("best_loss")
        return cls(
            epoch=int(config["epoch"]),
            params=model_params if config.get("params_are_the_model's") else tree("resume/params/"),
            opt_state=leaves,
            key=jnp.asarray(arrays["resume/key"]),
            best_loss=math.inf if best_loss is None else float(best_loss),
            best_epoch=int(config.get("best_epoch", 0)),
            best_params=tree("resume/best/") if config.get("has_best") else None,
        )

    def bind(self, optimizer) -> Any:
        """The optimizer state with its structure (from ``optimizer.init(params)``)."""
        if not isinstance(self.opt_state, list):
            return self.opt_state
        template = optimizer.init(self.params)
        leaves, treedef = jax.tree_util.tree_flatten(template)
        saved = self.opt_state
        if len(saved) != len(leaves) or any(
            np.shape(a) != np.shape(b) for a, b in zip(saved, leaves, strict=True)
        ):
            raise ValueError(
                "the saved optimizer state does not fit this model's optimizer "
                f"({len(saved)} arrays saved, {len(leaves)} expected)"
            )
        return jax.tree_util.tree_unflatten(
            treedef, [jnp.asarray(a, dtype=b.dtype) for a, b in zip(saved, leaves, strict=True)]
        )
