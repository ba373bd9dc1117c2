"""Iterate in a background thread, a few items ahead of the consumer.

Reading a trajectory chunk or gathering a block of training rows (NumPy, I/O) then
overlaps with the JAX work on the previous one: :meth:`polyvae.VAEModel.encode_chunks`
and the streamed trainer in :mod:`polyvae.training.trainer` use it.
"""

from __future__ import annotations

import queue
import threading

__all__ = ["prefetch"]


def prefetch(iterable, depth: int = 2):
    """Iterate ``iterable`` in a background thread, up to ``depth`` items ahead.

    Exceptions raised by the iterable are re-raised here, after the items before them.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in iterable:
                if stop.is_set():
                    return
                items.put((item, None))
        except BaseException as exc:  # handed over to the consumer
            items.put((None, exc))
            return
        items.put((done, None))

    thread = threading.Thread(target=work, name="polyvae-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = items.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
