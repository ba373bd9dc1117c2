"""TorchScript export of the encoder mean (PLUMED PYTORCH_MODEL): values, gradients, sidecar."""

import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="the TorchScript export needs torch (pip install torch==2.13.0)"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import polyvae  # noqa: E402
from polyvae.export import torchscript as ts  # noqa: E402
from polyvae.export.spec import ExportError, encoder_spec  # noqa: E402
from polyvae.features.pipeline import align_to_reference  # noqa: E402
from polyvae.nn.model import encode  # noqa: E402

# torch >= 2.10 deprecates TorchScript; PLUMED's LibTorch still reads only TorchScript
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit:DeprecationWarning")

ACTIVATIONS = ["relu", "tanh", "elu", "softplus"]
KINDS = ["distances", "positions"]
INDICES = [3, 4, 5, 10, 11, 17]  # 0-based topology indices of the model's 6 atoms


def _frames(seed=0, n=40):
    return (2.0 * np.random.default_rng(seed).normal(size=(n, 6, 3))).astype(np.float32)


def _train(kind, activation, atoms=True):
    align = "kabsch" if kind == "positions" else "principal"
    model = polyvae.train(
        _frames(),
        hidden=(16, 16),
        epochs=2,
        features=kind,
        align=align,
        activation=activation,
        progress=False,
    )
    if atoms:
        model.metadata["atoms"] = {"indices": INDICES, "names": [f"C{i}" for i in INDICES]}
    return model


@pytest.fixture(
    scope="module",
    params=[(k, a) for k in KINDS for a in ACTIVATIONS],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def exported(request, tmp_path_factory):
    kind, activation = request.param
    model = _train(kind, activation)
    path = ts.write_torchscript(model, tmp_path_factory.mktemp("ts") / "model.ptc")
    return model, encoder_spec(model), path


def _raw_features(spec, frames):
    """The module's inputs: distances in the spec's pair order, or superposed positions."""
    x = np.asarray(frames, np.float64)
    if spec.kind == "distances":
        pairs = np.array([(i, j) for _, i, j in spec.features])
        return np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1).astype(np.float32)
    aligned = align_to_reference(x, spec.reference, spec.masses)
    return aligned.reshape(len(x), -1).astype(np.float32)


def _jax_jacobian(model, raw):
    """d(CV)/d(raw features) (T, L, F) of the model's own encoder after standardization."""
    pipe = model.pipeline
    if pipe.features == "distances":
        mean, scale = pipe.in_mean, pipe.in_scale
    else:
        mean, scale = pipe.mean, pipe.scale
    mean, scale = jnp.asarray(mean, jnp.float32), jnp.asarray(scale, jnp.float32)

    def cv(x):
        return encode(model.params, (x - mean) / scale, model.config)[0]

    return np.asarray(jax.vmap(jax.jacobian(cv))(jnp.asarray(raw)))


def test_values_match_jax(exported):
    model, spec, path = exported
    frames = _frames(seed=1, n=25)
    raw = _raw_features(spec, frames)
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        out = loaded(torch.from_numpy(raw)).numpy()
    assert out.dtype == np.float32 and out.shape == (25, spec.latent_dim)
    np.testing.assert_allclose(out, model.encode(frames)[0], rtol=1e-5, atol=1e-5)
    # (F,) in, (L,) out
    np.testing.assert_allclose(loaded(torch.from_numpy(raw[3])).detach().numpy(), out[3], atol=1e-6)


def test_gradients_match_jax(exported):
    model, spec, path = exported
    raw = _raw_features(spec, _frames(seed=2, n=10))
    x = torch.from_numpy(raw).requires_grad_(True)
    out = torch.jit.load(str(path))(x)
    grads = np.stack(
        [
            torch.autograd.grad(out[:, k].sum(), x, retain_graph=True)[0].numpy()
            for k in range(spec.latent_dim)
        ],
        axis=1,
    )
    expected = _jax_jacobian(model, raw)
    assert grads.shape == expected.shape == (10, spec.latent_dim, len(spec.features))
    np.testing.assert_allclose(grads, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_plumed_style_call(exported):
    """As PYTORCH_MODEL: eval, freeze, optimize, a (1, n_args) float32 input with grad."""
    model, spec, path = exported
    frames = _frames(seed=3, n=3)
    raw = _raw_features(spec, frames)
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.load(str(path)).eval()))
    jac = _jax_jacobian(model, raw)
    for t in range(len(raw)):
        x = torch.tensor(raw[t].tolist(), dtype=torch.float32).view(1, -1).requires_grad_(True)
        out = frozen(x)
        assert out.dtype == torch.float32 and tuple(out.shape) == (1, spec.latent_dim)
        np.testing.assert_allclose(
            out.detach().numpy()[0], model.encode(frames[t : t + 1])[0][0], rtol=1e-5, atol=1e-5
        )
        for j in range(spec.latent_dim):
            (g,) = torch.autograd.grad(out[:, j : j + 1], x, torch.ones(1, 1), retain_graph=True)
            np.testing.assert_allclose(
                g.numpy()[0], jac[t, j], rtol=1e-4, atol=1e-4 * np.abs(jac[t, j]).max()
            )


def test_sidecar(exported):
    model, spec, path = exported
    side = path.with_suffix(".json")
    info = json.loads(side.read_text(encoding="utf-8"))
    assert info["unit"] == "Å" and info["latent_dim"] == 2 and info["dtype"] == "float32"
    assert info["kind"] == model.pipeline.features and info["model_file"] == "model.ptc"
    assert info["outputs"] == ["node-0", "node-1"] and info["activation"] == spec.activation
    assert info["atoms"] == {
        "numbers": [i + 1 for i in INDICES],
        "names": [f"C{i}" for i in INDICES],
    }
    numbers = [i + 1 for i in INDICES]
    if info["kind"] == "distances":
        expected = [
            {"kind": "distance", "atoms": [numbers[i], numbers[j]]} for i, j in model.pipeline.pairs
        ]
        assert len(expected) == 15 and "reference" not in info
    else:
        expected = [
            {"kind": "position", "atom": numbers[i], "component": c}
            for i in range(6)
            for c in "xyz"
        ]
        np.testing.assert_allclose(info["reference"], spec.reference)
        np.testing.assert_allclose(info["masses"], spec.masses)
    assert info["inputs"] == expected
    assert info["n_inputs"] == len(expected) and info["input_shape"] == [1, len(expected)]
    # the same JSON travels inside the module file
    extra = {"polyvae.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["polyvae.json"]) == info


def test_module_from_spec_matches_spec_evaluate():
    model = _train("distances", "tanh")
    spec = encoder_spec(model)
    module = ts.to_torch_module(spec)
    assert not module.training and not any(p.requires_grad for p in module.parameters())
    assert all(p.dtype == torch.float32 for p in module.parameters())
    raw = _raw_features(spec, _frames(seed=4, n=8))
    with torch.no_grad():
        out = module(torch.from_numpy(raw)).numpy()
    np.testing.assert_allclose(out, spec.evaluate(raw), rtol=1e-5, atol=1e-5)


def test_errors(tmp_path, monkeypatch):
    model = _train("distances", "relu", atoms=False)
    with pytest.raises(ExportError, match="the model file has no atom indices"):
        ts.to_torch_module(model)
    with pytest.raises(ExportError, match="the model file has no atom indices"):
        ts.write_torchscript(model, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()
    principal = polyvae.train(_frames(), hidden=(8,), epochs=1, progress=False)
    principal.metadata["atoms"] = {"indices": INDICES}
    with pytest.raises(ExportError, match="align='kabsch'"):
        ts.write_torchscript(principal, tmp_path / "p.pt")
    with pytest.raises(
        TypeError, match="spec_or_model must be an EncoderSpec or a trained VAEModel"
    ):
        ts.to_torch_module({"layers": []})
    model.metadata["atoms"] = {"indices": INDICES}
    with pytest.raises(ValueError, match="path must be the module file"):
        ts.write_torchscript(model, tmp_path / "m.json")
    module = torch.jit.script(ts.to_torch_module(model))
    with pytest.raises(torch.jit.Error, match=r"x must have shape \(B, F\) or \(F,\) with F = 15"):
        module(torch.zeros(1, 14))
    # without torch: an ImportError that says how to install it
    monkeypatch.setitem(sys.modules, "torch", None)
    ts._module_class.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
            ts.to_torch_module(model)
    finally:
        ts._module_class.cache_clear()
