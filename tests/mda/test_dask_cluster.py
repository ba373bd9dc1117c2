"""LatentCV on a dask.distributed cluster (two local worker processes) equals the serial run.

MDAnalysis 2.11's ``run(backend="dask")`` always computes with dask's local
``scheduler="processes"`` and takes no client; polyvae's ``LatentCV.run(client=...)``
reaches a cluster through :class:`polyvae.mda.DaskClientBackend`.
"""

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("MDAnalysisTests")

import MDAnalysis as mda  # noqa: E402
from MDAnalysisTests.datafiles import DCD, PSF  # noqa: E402

import polyvae  # noqa: E402
from polyvae.mda import DaskClientBackend, LatentCV  # noqa: E402


@pytest.fixture(scope="module")
def adk_model(tmp_path_factory):
    u = mda.Universe(PSF, DCD)
    ca = u.select_atoms("name CA")
    positions = np.array([ca.positions.copy() for _ in u.trajectory], dtype=np.float32)
    frames = polyvae.Frames(positions, masses=ca.masses)
    path = tmp_path_factory.mktemp("dask") / "adk.polyvae"
    polyvae.train(frames, hidden=(16,), epochs=2, decoder="cartesian", progress=False, output=path)
    return path


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_latent_cv_on_distributed_cluster_equals_serial(adk_model, client):
    u = mda.Universe(PSF, DCD)
    ca = u.select_atoms("name CA")
    serial = LatentCV(ca, adk_model, chunk_size=16).run()
    backend = DaskClientBackend(client)
    assert backend.n_workers == 2
    remote = LatentCV(ca, adk_model, chunk_size=16).run(backend=backend, unsupported_backend=True)
    assert remote.results.latent.shape == (u.trajectory.n_frames, 2)
    np.testing.assert_allclose(remote.results.latent, serial.results.latent, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        remote.results.latent_std, serial.results.latent_std, rtol=0, atol=1e-6
    )
    np.testing.assert_array_equal(remote.results.frames, serial.results.frames)
    np.testing.assert_allclose(remote.results.times, serial.results.times)
    # the parts ran in the cluster's worker processes, not in this one
    assert backend.workers_used and backend.workers_used <= set(client.scheduler_info()["workers"])


def test_more_parts_than_workers_and_a_frame_range(adk_model, client):
    u = mda.Universe(PSF, DCD)
    ca = u.select_atoms("name CA")
    serial = LatentCV(ca, adk_model).run(start=5, stop=90, step=3)
    remote = LatentCV(ca, adk_model).run(
        start=5,
        stop=90,
        step=3,
        backend=DaskClientBackend(client),
        n_parts=5,
        unsupported_backend=True,
    )
    np.testing.assert_array_equal(remote.results.frames, np.arange(5, 90, 3))
    np.testing.assert_allclose(remote.results.latent, serial.results.latent, rtol=0, atol=1e-6)


def test_run_with_client_keyword(adk_model, client):
    """``LatentCV.run(client=...)`` is the short way to the cluster backend."""
    u = mda.Universe(PSF, DCD)
    ca = u.select_atoms("name CA")
    serial = LatentCV(ca, adk_model).run()
    remote = LatentCV(ca, adk_model).run(client=client)
    np.testing.assert_allclose(remote.results.latent, serial.results.latent, rtol=0, atol=1e-6)
    np.testing.assert_allclose(remote.results.latent_std, serial.results.latent_std, atol=1e-6)
