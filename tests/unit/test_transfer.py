"""Transfer learning from weights files made here (no hub is reachable, none is needed)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
import torch

from product_classifier.models import create_model
from product_classifier.models.transfer import PretrainedError, load_pretrained, read_weights


def _backbone(**params) -> torch.nn.Module:
    return create_model("resnet", depth=8, width=8, **params)


def test_a_fashion_mnist_backbone_starts_a_colour_catalog_model(tmp_path: Path) -> None:
    source = _backbone()  # 1 channel, 10 classes: a Fashion-MNIST model
    path = tmp_path / "fmnist.pt"
    torch.save(source.state_dict(), path)
    # The trainer sets a catalog's own pixel statistics (letterbox pages are white).
    target = _backbone(in_channels=3, num_classes=4, stem_stride=2, norm_mean=0.8, norm_std=0.3)
    report = load_pretrained(target, path)
    state = target.state_dict()
    # The stem's grey filters are spread over R, G and B: their sum is the grey filter.
    stem = "stem.0.weight"
    assert stem in report.adapted
    assert torch.allclose(state[stem].sum(dim=1), source.state_dict()[stem][:, 0], atol=1e-6)
    # Blocks load as they are; the 4-class head is new (its shape differs).
    block = next(k for k in state if k.startswith("stages.") and k.endswith("conv1.weight"))
    assert torch.equal(state[block], source.state_dict()[block])
    assert "head.3.weight" in report.skipped and "head.3.weight" in report.fresh
    # The graph's normalisation describes the new data, not the old.
    assert "normalize.mean" in report.fresh
    assert "loaded" in report.summary()


def test_a_project_checkpoint_gives_its_ema_weights(tmp_path: Path) -> None:
    model, ema = _backbone(), _backbone()
    path = tmp_path / "best.pt"
    torch.save(
        {"format": 1, "model_state": model.state_dict(), "ema_state": ema.state_dict()}, path
    )
    weights = read_weights(path)
    assert torch.equal(weights["stem.0.weight"], ema.state_dict()["stem.0.weight"])


def test_safetensors_files_load(tmp_path: Path) -> None:
    import safetensors.torch as safetensors

    path = tmp_path / "w.safetensors"
    source = _backbone()
    safetensors.save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    report = load_pretrained(_backbone(), path)
    assert len(report.loaded) > 10


def test_unusable_weights_say_why(tmp_path: Path) -> None:
    with pytest.raises(PretrainedError, match="not found"):
        load_pretrained(_backbone(), tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(PretrainedError, match="no tensor matches"):
        load_pretrained(_backbone(), other)
    pickled = tmp_path / "code.pt"
    torch.save({"config": PurePosixPath("runs")}, pickled)  # a class, not a tensor
    with pytest.raises(PretrainedError, match="not a plain weights file"):
        read_weights(pickled)


def test_timm_names_need_timm_and_say_so() -> None:
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(PretrainedError, match="pip install timm"):
            create_model("timm/resnet18", num_classes=3, in_channels=3)
    else:  # pragma: no cover - where timm is installed, the library's own loader runs
        model = create_model("timm/resnet18", num_classes=3, in_channels=3)
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_a_released_onnx_file_rebuilds_its_network_for_fine_tuning(tmp_path: Path) -> None:
    """Export a batch-norm ResNet (the exporter folds BN into the convolutions), load the ONNX
    file into its batch_norm=False twin: the twin computes the same logits."""
    from product_classifier.export.onnx_export import export_onnx

    original = _backbone()
    with torch.no_grad():  # non-trivial BN statistics, so folding matters
        for module in original.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    path = export_onnx(original.eval(), tmp_path / "m.onnx", model_version="t")
    twin = _backbone(batch_norm=False)
    report = load_pretrained(twin, path)
    assert not report.fresh and not report.skipped
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(twin.eval()(x), original(x), atol=1e-4)


def test_a_released_onnx_file_gets_its_batch_norms_back(tmp_path: Path) -> None:
    """The same file into a batch_norm=True model: the norms are re-inflated from calibration
    images, so eval mode computes the released logits exactly and train mode (batch
    statistics of similar images) nearly so; without re-inflation it would be far off."""
    from product_classifier.export.onnx_export import export_onnx
    from product_classifier.models.transfer import reinflate_batch_norm

    original = _backbone()
    with torch.no_grad():
        for module in original.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    path = export_onnx(original.eval(), tmp_path / "m.onnx", model_version="t")
    model = _backbone()
    report = load_pretrained(model, path)
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert sorted(report.folded) == sorted(convs)  # every conv is followed by a norm here
    assert report.to_dict()["reinflated_batch_norms"] == len(convs)
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert not torch.allclose(model.eval()(x), original(x), atol=1e-2)
        reinflate_batch_norm(model, report, torch.rand(256, 1, 28, 28))
        assert torch.allclose(model.eval()(x), original(x), atol=1e-4)
        train_mode = model.train()(torch.rand(256, 1, 28, 28))[:8]
    assert train_mode.shape == (8, 10)
    # An ordinary checkpoint has no folded biases: nothing to re-inflate, nothing changes.
    plain = _backbone()
    torch.save(original.state_dict(), tmp_path / "plain.pt")
    assert load_pretrained(plain, tmp_path / "plain.pt").folded == {}


def test_an_int8_file_gives_its_dequantised_weights(fashion_mnist) -> None:
    """The released cascade's first stage exists only as INT8 (QDQ): its weights come back
    dequantised under their module names and compute what onnxruntime computes, up to the
    quantised activations (on real training images; made-up inputs sit near decision
    boundaries, where that rounding flips answers)."""
    import numpy as np
    import onnxruntime as ort

    from product_classifier.data.fashion_mnist import load_fashion_mnist
    from product_classifier.models.transfer import reinflate_batch_norm
    from product_classifier.preprocessing import to_model_input

    root = Path(__file__).resolve().parents[2]
    path = root / "artifacts" / "model.student.int8.onnx"
    model = create_model("resnet", depth=20, width=16, batch_norm=True)
    report = load_pretrained(model, path)
    assert not report.skipped and len(report.folded) == 21
    images, _ = load_fashion_mnist("train", data_dir=fashion_mnist.directory)
    x = torch.from_numpy(to_model_input(images[:1024]))
    reinflate_batch_norm(model, report, x[:512])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x[512:].numpy()})[0]
    with torch.no_grad():
        got = model.eval()(x[512:]).numpy()
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.97
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.98
