"""Files written atomically: a reader sees the old file or the new one, never a part;
writers to one path at once all finish; an output folder is probed before work."""

import threading

import numpy as np
import pytest

import polyvae
from polyvae._outputs import atomic_output, check_output, probe_output, savez, write_text


def test_atomic_output_replaces_only_on_success(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "old\n")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(path, "w") as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temporary left
    savez(tmp_path / "b.npz", x=np.arange(3))
    assert np.load(tmp_path / "b.npz")["x"].tolist() == [0, 1, 2]
    assert (tmp_path / "b.npz").stat().st_mode & 0o777 == path.stat().st_mode & 0o777


def test_probe_output_names_the_argument(tmp_path):
    probe_output(tmp_path / "new" / "x.npz", "-o")  # the nearest existing folder is probed
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"^-o '/proc/x/y.npz' cannot be written: no file "):
        probe_output("/proc/x/y.npz", "-o")
    with pytest.raises(ValueError, match=r"^output '/proc/m.polyvae' cannot be written"):
        check_output("/proc/m.polyvae")


def test_simultaneous_saves_and_a_reader_never_see_a_corrupt_model(small_model, tmp_path):
    model, _ = small_model
    path = tmp_path / "m.polyvae"
    model.save(path)
    failures, loads = [], [0]
    stop = threading.Event()

    def write():
        try:
            model.save(path)
        except Exception as exc:  # noqa: BLE001 - any failure counts
            failures.append(f"save: {exc}")

    def read():
        while not stop.is_set():
            try:
                polyvae.load_model(path)
                loads[0] += 1
            except Exception as exc:  # noqa: BLE001
                failures.append(f"load: {exc}")

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(100):
        writers = [threading.Thread(target=write) for _ in range(2)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
    stop.set()
    reader.join()
    assert failures == [] and loads[0] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.polyvae"]
    assert polyvae.load_model(path).metadata == model.metadata
