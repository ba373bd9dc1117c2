"""The command line's contract: outputs checked before any work, every error one line
with exit code 2, nothing on disk lost, hints in the user's own terms."""

import io
import json
import logging
import os
import re
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
from helpers import random_chain

import polyvae
from polyvae.cli import _atom_numbers, build_parser, cli_message, main

FAST = ["--epochs", "2", "--hidden", "8", "--batch-size", "16"]


def _env():
    root = os.path.dirname(os.path.dirname(os.path.abspath(polyvae.__file__)))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def _cli(*args, timeout=120):
    """The real entry point in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "polyvae.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
    )


def _one_line_error(err: str, message: str) -> None:
    assert err.startswith("polyvae: error:"), err
    assert err.count("\n") == 1, err
    assert re.search(message, err), err


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    d = tmp_path_factory.mktemp("contract")
    np.savez(d / "traj.npz", arr=random_chain(np.random.default_rng(1), 64, 5, 3))
    args = ["-q", "train", str(d / "traj.npz"), *FAST, "--activation", "tanh"]
    assert main([*args, "-o", str(d / "m.polyvae")]) == 0
    assert main([*args, "--features", "distances", "-o", str(d / "dist.polyvae")]) == 0
    return d


def _fail(capsys, args, message):
    assert main(["-q", *map(str, args)]) == 2
    _one_line_error(capsys.readouterr().err, message)


# ---- 1. outputs are checked before any work ------------------------------------------
def test_train_onto_an_existing_directory_fails_at_once(ws, tmp_path):
    (tmp_path / "out").mkdir()
    # at once: before the data is read (a missing file would be named first otherwise),
    # so long before 2000 epochs
    res = _cli("train", tmp_path / "missing.npz", "-o", tmp_path / "out", "--epochs", "2000")
    assert res.returncode == 2 and res.stdout == ""
    _one_line_error(res.stderr, r"-o '.*out' is an existing directory; expected a file name")
    assert list((tmp_path / "out").iterdir()) == []


def test_output_checks(ws, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    # a folder that is a regular file cannot be written, not even by root
    _fail(
        capsys,
        ["train", ws / "traj.npz", "-o", blocker / "m.polyvae", *FAST],
        r"-o '.*a_file/m.polyvae' cannot be written: '.*a_file' is a file, not a folder",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no stray .tmp
    _fail(
        capsys,
        ["optimize", ws / "m.polyvae", "-o", tmp_path / "x.dat"],
        r"-o '.*x.dat': unknown format '.dat'; expected a file ending in .npz, .pdb, .dcd, .xtc",
    )
    _fail(  # the output is refused before the (missing) trajectory is looked at
        capsys,
        ["encode", ws / "m.polyvae", tmp_path / "missing.npz", "-o", tmp_path / "cv.xyz"],
        r"unknown format '.xyz'; expected a file ending in .npz, .txt, .dat, .csv",
    )
    _fail(
        capsys,
        ["generate", ws / "m.polyvae", "-o", tmp_path],
        "is an existing directory; expected a file name",
    )
    _fail(
        capsys,
        ["marginals", ws / "m.polyvae", ws / "traj.npz", "-o", blocker],
        "is an existing file; expected a folder",
    )
    # root may write anywhere, so "not writable" is checked with os.access answering no
    monkeypatch.setattr("polyvae._outputs.os.access", lambda *a: False)
    _fail(
        capsys,
        ["encode", ws / "m.polyvae", ws / "traj.npz", "-o", tmp_path / "new" / "cv.npz"],
        r"cannot be written: folder above it '.*' is not writable",
    )


def test_an_output_that_is_the_commands_own_input_is_refused(ws, tmp_path, capsys):
    traj = tmp_path / "traj.npz"
    traj.write_bytes((ws / "traj.npz").read_bytes())
    model = tmp_path / "m.polyvae"
    model.write_bytes((ws / "m.polyvae").read_bytes())
    before = {p: p.read_bytes() for p in (traj, model)}
    _fail(
        capsys,
        ["train", traj, *FAST, "-o", traj],
        r"^polyvae: error: -o '.*traj.npz' is the command's own input \(TRAJ '.*traj.npz'\), "
        r"which writing it would replace; choose another output path",
    )
    _fail(capsys, ["encode", model, traj, "-o", traj], r"own input \(TRAJ '.*traj.npz'\)")
    member = tmp_path / "member.npz"  # ensemble members are model files named .npz
    member.write_bytes(model.read_bytes())
    before[member] = member.read_bytes()
    _fail(capsys, ["encode", member, traj, "-o", member], r"own input \(MODEL '.*member.npz'\)")
    _fail(capsys, ["train", traj, *FAST, "--weights", traj, "-o", tmp_path / "." / "traj.npz"],
          r"own input \(TRAJ '.*traj.npz'\)")  # fmt: skip
    frames = polyvae.read_frames(traj)  # from Python: the frames know their file
    with pytest.raises(
        ValueError,
        match=r"^output '.*traj.npz' is a file the frames were read "
        "from, which saving the model would replace; choose another output path",
    ):
        polyvae.train(frames, epochs=1, progress=False, output=traj)  # fmt: skip
    assert {p: p.read_bytes() for p in before} == before


def test_an_output_folder_where_no_file_can_be_made_is_refused_before_work(ws, capsys, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr("polyvae.training.trainer.fit", no_training)
    # /proc: os.access says yes to root, yet no file can be made there
    _fail(
        capsys,
        ["train", ws / "traj.npz", *FAST, "--epochs", "2000", "-o", "/proc/x/m.polyvae"],
        r"-o '/proc/x/m.polyvae' cannot be written: (no file can be made in '/proc'|folder "
        r"above it '/proc' is not writable)",
    )
    _fail(
        capsys,
        ["encode", ws / "m.polyvae", ws / "traj.npz", "-o", "/proc/x/cv.npz"],
        r"-o '/proc/x/cv.npz' cannot be written",
    )


def test_encode_makes_a_missing_output_folder(ws, tmp_path):
    out = tmp_path / "a" / "b" / "cv.npz"
    assert main(["-q", "encode", str(ws / "m.polyvae"), str(ws / "traj.npz"), "-o", str(out)]) == 0
    assert out.is_file()


def test_a_failed_train_leaves_an_existing_model_untouched(ws, tmp_path, capsys):
    model = tmp_path / "keep.polyvae"
    model.write_bytes((ws / "m.polyvae").read_bytes())
    before = model.read_bytes()
    _fail(
        capsys,
        ["train", ws / "traj.npz", "-o", model, "--lr", "0", *FAST],
        "learning_rate must be a finite number > 0",
    )
    # a step this large sends the parameters to inf: training diverges for real
    _fail(
        capsys,
        ["train", ws / "traj.npz", "-o", model, "--lr", "1e30", *FAST],
        r"training diverged: .*saved to .*keep.diverged.polyvae and .*keep.polyvae was left as it",
    )
    assert model.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.diverged.polyvae", "keep.polyvae"]
    assert polyvae.load_model(tmp_path / "keep.diverged.polyvae").n_atoms == 5


# ---- 3. encode writes the file it names --------------------------------------------
@pytest.mark.parametrize("name, sep", [("cv.txt", " "), ("cv.dat", " "), ("cv.csv", ",")])
def test_encode_text_table(ws, tmp_path, capsys, name, sep):
    out = tmp_path / name
    assert main(["encode", str(ws / "m.polyvae"), str(ws / "traj.npz"), "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    lines = out.read_text().splitlines()
    assert lines[0] == "# " + sep.join(["time", "z0", "z1", "z0_std", "z1_std"])
    table = np.loadtxt(out, delimiter=sep if sep == "," else None)
    mean, std = polyvae.load_model(ws / "m.polyvae").encode(np.load(ws / "traj.npz")["arr"])
    np.testing.assert_allclose(table[:, 0], np.arange(64))
    np.testing.assert_allclose(table[:, 1:3], mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(table[:, 3:], std, rtol=1e-6, atol=1e-7)


def test_encode_npz_has_exactly_that_name(ws, tmp_path):
    out = tmp_path / "cv.npz"
    assert main(["-q", "encode", str(ws / "m.polyvae"), str(ws / "traj.npz"), "-o", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv.npz"]
    assert sorted(np.load(out).files) == ["latent", "latent_std", "times"]


def test_write_latent_refuses_an_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"unknown format '.xyz'; expected a file ending in .npz"):
        polyvae.io.write_latent(tmp_path / "cv.xyz", np.zeros((2, 1)), np.ones((2, 1)), [0, 1])


# ---- 4. every error is one line and exit code 2 --------------------------------------
def _rewrite(src, dst, config=None, params=None):
    with zipfile.ZipFile(src) as zf:
        cfg, arr = zf.read("config.json"), zf.read("params.npz")
    if config is not None:
        c = json.loads(cfg)
        config(c)
        cfg = json.dumps(c).encode()
    if params is not None:
        arr = params(arr)
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("config.json", cfg)
        zf.writestr("params.npz", arr)
    return dst


def _nan_params(raw):
    with np.load(io.BytesIO(raw)) as data:
        arrays = {k: data[k] for k in data.files}
    key = next(k for k in arrays if k.startswith("params/decoder"))
    arrays[key] = np.full_like(arrays[key], np.nan)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize(
    "config, params, message",
    [
        (
            lambda c: c["metadata"].update(atoms=5),
            None,
            r"metadata 'atoms' must be a JSON object; got 5",
        ),
        (
            lambda c: c["metadata"].update(names="B0"),
            None,
            r"metadata: 'names' must be a list of strings; got 'B0'",
        ),
        (
            lambda c: c["metadata"].update(atoms={"indices": [0, 1], "names": ["A"]}),
            None,
            "has 2 indices but 1 names",
        ),
        (
            lambda c: c.update(format_version="1"),
            None,
            r"format_version must be an integer; got '1'",
        ),
        (
            lambda c: c.update(format_version=1.0),
            None,
            r"format_version must be an integer; got 1.0",
        ),
        (None, lambda raw: b"\x00garbage" * 20, r"params.npz is corrupt \(not an npz archive\)"),
        (None, _nan_params, r"array 'params/decoder/.*' holds NaN or inf values: .*damaged"),
    ],
)
def test_damaged_model_files(ws, tmp_path, capsys, config, params, message):
    bad = _rewrite(ws / "m.polyvae", tmp_path / "bad.polyvae", config, params)
    with pytest.raises(ValueError, match=message):
        polyvae.load_model(bad)
    _fail(
        capsys,
        ["generate", bad, "-o", tmp_path / "g.npz"],
        f"model file '.*bad.polyvae'.*{message}",
    )
    assert not (tmp_path / "g.npz").exists()


def test_model_metadata_atoms_is_checked_at_load(ws, tmp_path, capsys):
    def bad_atoms(c):
        c["metadata"]["atoms"] = {"indices": "0 1", "names": ["A", "B"]}

    bad = _rewrite(ws / "m.polyvae", tmp_path / "x.polyvae", bad_atoms)
    _fail(
        capsys,
        ["encode", bad, ws / "traj.npz", "-o", tmp_path / "cv.npz"],
        r"x.polyvae'.*metadata 'atoms': 'indices' must be a list of integers; got '0 1'",
    )


def test_trajectory_errors(ws, tmp_path, capsys):
    datafiles = pytest.importorskip("MDAnalysisTests.datafiles")
    (tmp_path / "t.foo").write_text("1 2 3")
    _fail(
        capsys,
        ["train", tmp_path / "t.foo", "--top", datafiles.PSF, "-o", tmp_path / "m.polyvae"],
        r"trajectory '.*t.foo': unknown format '.foo'; polyvae reads .npz and what MDAnalysis",
    )
    (tmp_path / "dir.dcd").mkdir()
    _fail(
        capsys,
        ["train", tmp_path / "dir.dcd", "--top", datafiles.PSF, "-o", tmp_path / "m.polyvae"],
        r"trajectory '.*dir.dcd' is a directory; expected a file",
    )
    (tmp_path / "top.psf").mkdir()
    _fail(
        capsys,
        ["train", datafiles.DCD, "--top", tmp_path / "top.psf", "-o", tmp_path / "m.polyvae"],
        r"topology '.*top.psf' is a directory; expected a file",
    )
    # a folder without a format suffix, as a user types it
    (tmp_path / "runs").mkdir()
    _fail(
        capsys,
        ["encode", ws / "m.polyvae", tmp_path / "runs", "-o", tmp_path / "cv.npz"],
        r"trajectory '.*runs' is a directory; expected a file",
    )
    _fail(
        capsys,
        ["train", datafiles.DCD, "-o", tmp_path / "m.polyvae"],
        r"unsupported trajectory format '.dcd' without a topology.* with --top FILE",
    )


def test_chunk_size_zero_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["encode", "m", "t.npz", "-o", "x.npz", "--chunk-size", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --chunk-size: --chunk-size must be a positive integer; got '0'" in err


def _xtc_with(tmp_path, offset, value):
    datafiles = pytest.importorskip("MDAnalysisTests.datafiles")
    raw = bytearray(open(datafiles.XTC, "rb").read())
    raw[offset : offset + len(value)] = value
    path = tmp_path / f"bad{offset}.xtc"
    path.write_bytes(bytes(raw))
    return path


def test_corrupt_xtc_header_is_refused_before_reading(tmp_path, capsys):
    datafiles = pytest.importorskip("MDAnalysisTests.datafiles")
    assert polyvae.io.check_xtc(datafiles.XTC) == 10
    # smallidx 0 and an empty coordinate range make MDAnalysis' decoder die of SIGFPE
    smallidx = _xtc_with(tmp_path, 84, (0).to_bytes(4, "big"))
    with pytest.raises(ValueError, match=r"is corrupt: frame 0 \(byte 0\) has smallidx 0"):
        polyvae.io.check_xtc(smallidx)
    span = _xtc_with(tmp_path, 60, (2**31 - 1).to_bytes(4, "big"))
    with pytest.raises(ValueError, match=r"coordinate range 2147483647\.\.\d+ in x"):
        polyvae.io.check_xtc(span)
    atoms = _xtc_with(tmp_path, 4, (0).to_bytes(4, "big"))
    with pytest.raises(ValueError, match=r"atom counts 0 and 47681"):
        polyvae.io.check_xtc(atoms)
    args = ["train", smallidx, "--top", datafiles.GRO, "--select", "name CA", "-o", tmp_path / "m"]
    _fail(capsys, args, r"XTC file '.*bad84.xtc' is corrupt: frame 0 .* the file is damaged")


def test_corrupt_xtc_data_crash_is_reported(tmp_path):
    datafiles = pytest.importorskip("MDAnalysisTests.datafiles")
    # maxint 0 0 0 passes the header check; decoding the frame divides by zero (SIGFPE)
    bad = _xtc_with(tmp_path, 72, bytes(12))
    polyvae.io.check_xtc(bad)
    res = _cli(
        "-q", "train", bad, "--top", datafiles.GRO, "--select", "name CA", "-o", tmp_path / "m"
    )
    assert res.returncode == 2
    _one_line_error(res.stderr, r"crashed with SIG[A-Z]+ .*bad72.xtc.*probably corrupt")
    assert not (tmp_path / "m").exists()


# ---- 5. hints name what the user can type --------------------------------------------
def test_hints_are_flags_on_the_command_line(tmp_path, capsys):
    datafiles = pytest.importorskip("MDAnalysisTests.datafiles")
    with pytest.raises(ValueError, match=r"pass guess_bonds=True"):
        polyvae.io.read_frames(datafiles.GRO, select="protein", stop=1)
    _fail(
        capsys,
        ["train", datafiles.GRO, "--select", "protein", "-o", tmp_path / "m"],
        r"add --guess-bonds to guess them.*add --no-unwrap",
    )
    assert "guess_bonds" not in cli_message("pass guess_bonds=True to guess them")
    assert cli_message("pass topology=... (PSF)") == "give it with --top FILE (PSF)"
    raw = open(datafiles.DCD, "rb").read()
    (tmp_path / "cut.dcd").write_bytes(raw[: len(raw) // 2 + 100])
    with pytest.raises(ValueError, match=r"pass allow_truncated=True to go on"):
        polyvae.io.read_frames(tmp_path / "cut.dcd", topology=datafiles.PSF, select="name CA")
    _fail(
        capsys,
        ["train", tmp_path / "cut.dcd", "--top", datafiles.PSF, "-o", tmp_path / "m"],
        r"truncated: read \d+ frames .* add --allow-truncated to go on with them",
    )
    np.savez(tmp_path / "tiny.npz", arr=np.ones((8, 3, 3), np.float32))
    _fail(
        capsys,
        ["train", tmp_path / "tiny.npz", "--decoder", "internal", "-o", tmp_path / "t"],
        r"--decoder internal needs at least 4 atoms in 3D; got 3: use --decoder cartesian",
    )
    assert not (tmp_path / "t").exists()


# ---- 6. many atoms without a topology warn -------------------------------------------
def test_many_atoms_without_top_warn(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(20, 301, 3)).astype(np.float32)
    np.savez(tmp_path / "big.npz", arr=x)
    args = ["--epochs", "1", "--hidden", "4", "--batch-size", "8", "--decoder", "cartesian"]
    assert main(["-q", "train", str(tmp_path / "big.npz"), *args, "-o", str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "--top FILE" in line]
    assert len(warned) == 1
    assert "301 atoms read without --top: their names, masses and bonds" in warned[0]
    np.savez(tmp_path / "small.npz", arr=x[:, :300])
    assert main(["-q", "train", str(tmp_path / "small.npz"), *args, "-o", str(tmp_path / "s")]) == 0
    assert "--top" not in capsys.readouterr().err


# ---- 7. stdout, ELBO sign, -o everywhere, main leaves no trace -------------------------
def test_train_reports_minus_elbo(ws, tmp_path, capsys):
    assert main(["-q", "train", str(ws / "traj.npz"), *FAST, "-o", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    m = re.search(
        r"validation -ELBO (\S+) in epoch (\d+) of (\d+), kept; best (\S+) in epoch (\d+)", out
    )
    model = polyvae.load_model(tmp_path / "m")
    h = model.history
    assert int(m.group(2)) == int(m.group(3)) == len(h["val_elbo"])  # the last epoch is kept
    assert float(m.group(1)) == pytest.approx(-h["val_elbo"][-1], abs=1e-3)
    assert int(m.group(5)) == h["best_epoch"]
    assert float(m.group(4)) == pytest.approx(-max(h["val_elbo"]), abs=1e-3)


def test_toy_takes_o_and_out():
    parser = build_parser()
    assert parser.parse_args(["toy", "discrete", "-o", "a"]).output == "a"
    assert parser.parse_args(["toy", "discrete", "--output", "b"]).output == "b"
    assert parser.parse_args(["toy", "discrete", "--out", "c"]).output == "c"


def test_stream_flag():
    parser = build_parser()
    assert parser.parse_args(["train", "t.npz", "-o", "m"]).stream is None
    assert parser.parse_args(["train", "t.npz", "-o", "m", "--stream"]).stream is True
    assert parser.parse_args(["train", "t.npz", "-o", "m", "--no-stream"]).stream is False


def test_main_restores_logging_and_warnings(ws, tmp_path, capsys):
    log = logging.getLogger("polyvae")
    state = (list(log.handlers), log.level, logging.getLogger("MDAnalysis").level)
    shown = warnings.showwarning
    filters = list(warnings.filters)
    for _ in range(2):
        out = str(tmp_path / "cv.npz")
        assert main(["encode", str(ws / "m.polyvae"), str(ws / "traj.npz"), "-o", out]) == 0
        assert main(["-q", "generate", str(tmp_path / "none"), "-o", str(tmp_path / "g.npz")]) == 2
    assert (list(log.handlers), log.level, logging.getLogger("MDAnalysis").level) == state
    assert warnings.showwarning is shown and warnings.filters == filters


# ---- 9. exporting a model trained on .npz with engine atom numbers -------------------
def test_atom_numbers_parser(tmp_path):
    assert _atom_numbers("1-5,8,10-12") == [0, 1, 2, 3, 4, 7, 9, 10, 11]
    (tmp_path / "atoms.txt").write_text("3\n4 5\n 9\n")
    assert _atom_numbers(str(tmp_path / "atoms.txt")) == [2, 3, 4, 8]
    for bad in ("0-3", "5-2", "a,b", ""):
        with pytest.raises(Exception, match="--atoms"):
            _atom_numbers(bad)


def test_export_with_atom_numbers(ws, tmp_path, capsys):
    from polyvae.export import encoder_spec, write_colvars

    model = polyvae.load_model(ws / "dist.polyvae")
    with pytest.raises(ValueError, match=r"pass atoms=\[\.\.\.\] with the 0-based topology"):
        encoder_spec(model)
    with pytest.raises(ValueError, match=r"atoms must give one index per model atom \(5\); got 4"):
        encoder_spec(model, atoms=[0, 1, 2, 3])
    spec = encoder_spec(model, atoms=[10, 11, 12, 13, 14])
    assert spec.atom_indices.tolist() == [10, 11, 12, 13, 14]
    write_colvars(model, tmp_path / "py", atoms=range(10, 15))
    assert "atomNumbers 15" in (tmp_path / "py" / "polyvae.colvars").read_text()
    _fail(
        capsys,
        ["export", "colvars", ws / "dist.polyvae", "-o", tmp_path / "c"],
        r"give --atoms with the engine's 1-based atom numbers \(e.g. --atoms 1-12\)",
    )
    _fail(
        capsys,
        ["export", "colvars", ws / "dist.polyvae", "--atoms", "1-4", "-o", tmp_path / "c"],
        r"--atoms must give one number per model atom \(5\); got 4",
    )
    args = ["export", "colvars", ws / "dist.polyvae", "--atoms", "11-13,14,15"]
    assert main(["-q", *map(str, args), "-o", str(tmp_path / "c")]) == 0
    text = (tmp_path / "c" / "polyvae.colvars").read_text()
    assert "atomNumbers 11" in text and "atomNumbers 15" in text and "atomNumbers 1 " not in text


def test_encode_converts_the_unit_an_npz_states_and_checks_its_atom_names(tmp_path, capsys):
    from polyvae.io import read_npz, write_npz

    x = random_chain(np.random.default_rng(2), 64, 5, 3)
    names = ["N", "CA", "C", "O", "CB"]
    write_npz(tmp_path / "a.npz", polyvae.Frames(x, names=names))
    model = tmp_path / "m.polyvae"
    assert main(["-q", "train", str(tmp_path / "a.npz"), *FAST, "-o", str(model)]) == 0
    assert (
        main(
            ["-q", "encode", str(model), str(tmp_path / "a.npz"), "-o", str(tmp_path / "a_cv.npz")]
        )
        == 0
    )
    write_npz(tmp_path / "nm.npz", polyvae.Frames(x / 10, names=names, unit="nm"))
    assert read_npz(tmp_path / "nm.npz").unit == "nm"
    assert (
        main(
            [
                "-q",
                "encode",
                str(model),
                str(tmp_path / "nm.npz"),
                "-o",
                str(tmp_path / "nm_cv.npz"),
            ]
        )
        == 0
    )
    a, nm = np.load(tmp_path / "a_cv.npz")["latent"], np.load(tmp_path / "nm_cv.npz")["latent"]
    np.testing.assert_allclose(nm, a, atol=1e-4)  # the same frames, the same CVs
    write_npz(tmp_path / "pm.npz", polyvae.Frames(x * 100, names=names, unit="pm"))
    capsys.readouterr()
    _fail(
        capsys,
        ["encode", model, tmp_path / "pm.npz", "-o", tmp_path / "pm_cv.npz"],
        r"frames are in unit 'pm' but the model was trained in 'Å'; give the frames in 'Å'",
    )
    write_npz(tmp_path / "rev.npz", polyvae.Frames(x[:, ::-1], names=names[::-1]))
    _fail(
        capsys,
        ["encode", model, tmp_path / "rev.npz", "-o", tmp_path / "rev_cv.npz"],
        r"frames' atom 0 is named 'CB' where the model's atom 0 is 'N' \(4 of 5 names differ\); "
        "give the model's atoms in its order",
    )
    assert not (tmp_path / "pm_cv.npz").exists() and not (tmp_path / "rev_cv.npz").exists()


def test_frames_no_model_can_learn_are_refused_before_training(tmp_path, capsys, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr("polyvae.training.trainer.fit", no_training)
    x = random_chain(np.random.default_rng(3), 64, 6, 3)
    cases = {
        "constant": (np.repeat(x[:1], 64, axis=0), r"frames: all 64 frames show one structure "
                     r"\(after alignment no coordinate varies by more than .* Å\): there is "
                     "nothing to learn; train on a trajectory whose frames differ"),
        "one": (x[:1], "frames: one frame shows one structure"),
        "huge": (x * 1e30, r"frames: positions reach .*e\+30 Å, beyond 1e\+06, which float32 "
                 "training cannot use; check the unit and the file"),
    }  # fmt: skip
    for name, (data, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", arr=data)
        batch = ["--batch-size", "1"] if name == "one" else []
        _fail(capsys, ["train", tmp_path / f"{name}.npz", "--epochs", "2000", *batch,
                       "-o", tmp_path / f"{name}.polyvae"], message)  # fmt: skip
        assert not (tmp_path / f"{name}.polyvae").exists()


def test_absurd_sizes_are_refused_naming_the_option(ws, tmp_path, capsys):
    _fail(
        capsys,
        ["generate", ws / "m.polyvae", "-n", "100000000000", "-o", tmp_path / "g.npz"],
        r"^polyvae: error: -n must be at most \d+ for this model \(one call's array "
        r"is limited to 2\^31 numbers\); got 100000000000: generate in parts with other seeds",
    )
    _fail(
        capsys,
        ["train", ws / "traj.npz", *FAST, "--latent-dim", "100000", "-o", tmp_path / "m.polyvae"],
        r"--latent-dim must be at most the 15 coordinates of a frame; got 100000",
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "{traj}", "--patience", "-1", "-o", "{tmp}/x.polyvae"],
         r"^polyvae: error: --patience must be a number of epochs >= 1, or 0 to train all "
         r"--epochs; got -1$"),
        (["train", "{traj}", "--batch-size", "100000", "-o", "{tmp}/x.polyvae"],
         r"^polyvae: error: --batch-size 100000 is larger than the \d+ training frames left after "
         r"the validation split of 64 frames; use a smaller --batch-size or more frames$"),
        (["optimize", "{model}", "--steps", "-3", "-o", "{tmp}/o.npz"],
         r"^polyvae: error: --steps must be >= 4 \(at least one per penalty round\); got -3$"),
        (["encode", "{model}", "{traj}", "--start", "1000", "-o", "{tmp}/c.npz"],
         r"^polyvae: error: --start 1000 selects no frames of the 64-frame trajectory$"),
        (["encode", "{model}", "{traj}", "--start", "100", "--stop", "5", "-o", "{tmp}/c.npz"],
         r"^polyvae: error: --start 100, --stop 5 select no frames of the 64-frame trajectory$"),
        (["generate", "{model}", "-n", "-3", "-o", "{tmp}/g.npz"],
         r"^polyvae: error: -n must be >= 1; got -3$"),
        (["export", "torchscript", "{model}", "--atoms", "1-5", "-o", "{tmp}/m.pt"],
         r"^polyvae: error: a position-input encoder aligned by 'principal' cannot be reproduced "
         r"by an engine"),
    ],
    ids=["patience", "batch-size", "steps", "start", "start-stop", "generate-n", "torchscript-atoms"],
)  # fmt: skip
def test_messages_say_what_the_user_typed(ws, tmp_path, capsys, args, message):
    fill = {"traj": ws / "traj.npz", "model": ws / "m.polyvae", "tmp": tmp_path}
    _fail(capsys, [a.format(**fill) for a in args], message)


def test_the_cartesian_weight_scan_keeps_its_notes_to_itself(tmp_path, capsys):
    # unit bonds: rigid pairs, whose note the scan's four measurements printed four times
    np.savez(tmp_path / "t.npz", arr=random_chain(np.random.default_rng(1), 64, 5, 3))
    assert (
        main(["-q", "train", str(tmp_path / "t.npz"), *FAST, "-o", str(tmp_path / "m.polyvae")])
        == 0
    )
    assert "rigid training distance" not in capsys.readouterr().err
