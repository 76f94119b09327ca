"""Training smoke test on a real-data subset, resume, and the ONNX export contract."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from product_classifier.config import load_experiment_config
from product_classifier.constants import CLASS_NAMES
from product_classifier.data.fashion_mnist import load_fashion_mnist
from product_classifier.export.onnx_export import export_onnx, max_abs_difference
from product_classifier.preprocessing import to_model_input
from product_classifier.training.trainer import load_checkpoint, model_from_checkpoint, train

pytestmark = pytest.mark.slow


def _interrupt_after_epoch_2(epoch, metrics):
    if epoch == 2:
        raise KeyboardInterrupt  # what Ctrl-C or a killed job looks like to the loop


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The real baseline config, shrunk to 3 epochs on 3% of the data, interrupted once."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = load_experiment_config(
        "configs/baseline.yaml",
        ["train.epochs=3", "data.subset_fraction=0.03", "train.eval_batch_size=512"],
    )
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run_dir=run_dir, progress=False, callbacks=[_interrupt_after_epoch_2])
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1  # 0-based: two epochs done
    return cfg, run_dir, train(cfg, run_dir=run_dir, resume=True, progress=False)


def test_training_learns_something_on_real_data(tiny_run):
    _, _, result = tiny_run
    assert result.epochs_run == 3
    # 10 classes: chance is 0.10; three short epochs on 1.6k images reach well above it.
    assert result.best_val_accuracy > 0.5
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_an_interrupted_run_resumes_where_it_stopped(tiny_run):
    _, _, result = tiny_run
    assert [h["epoch"] for h in result.history] == [1, 2, 3]


def test_checkpoint_describes_itself(tiny_run):
    cfg, run_dir, result = tiny_run
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt["model"]["name"] == cfg.model.name
    assert ckpt["class_names"] == list(CLASS_NAMES)
    assert set(ckpt["data_checksums"]) == {
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    }
    assert ckpt["config"]["train"]["epochs"] == 3
    assert "torch" in ckpt["versions"]
    assert (run_dir / "config.yaml").exists()
    # Plain data all through (the optimiser and scheduler states included): loadable with
    # torch.load(weights_only=True), so nobody needs a trust switch for our own files.
    for name in ("best.pt", "last.pt"):
        assert torch.load(run_dir / name, map_location="cpu", weights_only=True)["epoch"] >= 0


@pytest.mark.parametrize("tta_flip", [False, True])
def test_onnx_export_follows_the_contract_and_matches_torch(tiny_run, tmp_path, tta_flip):
    _, _, result = tiny_run
    model, _ = model_from_checkpoint(result.best_checkpoint)
    path = export_onnx(model, tmp_path / "m.onnx", model_version="test-1", tta_flip=tta_flip)

    proto = onnx.load(str(path))
    (inp,) = proto.graph.input
    (out,) = proto.graph.output
    assert inp.name == "image" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[1:] == [1, 28, 28] and isinstance(dims[0], str)  # dynamic batch axis
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == list(CLASS_NAMES)
    assert meta["model_version"] == "test-1"

    images, _ = load_fashion_mnist("test")
    batch = to_model_input(images[:64])
    assert max_abs_difference(model, path, batch) < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):  # any batch size works
        (logits,) = session.run(None, {"image": batch[:n]})
        assert logits.shape == (n, 10) and logits.dtype == np.float32


@pytest.mark.parametrize("config", ["configs/robust.yaml", "configs/robust-icons.yaml"])
def test_the_robust_recipe_fine_tunes_the_release_with_its_batch_norms(tmp_path, config):
    """configs/robust.yaml (and the icon experiment's), shrunk: the released ONNX file rebuilt
    with its batch norms re-inflated, style augmentation and outlier exposure on; one short
    epoch keeps the release's accuracy (a from-scratch net would be near chance after 1.2k
    images)."""
    cfg = load_experiment_config(
        config,
        [
            "train.epochs=1",
            "data.subset_fraction=0.02",
            "optimizer.lr=0.002",
            "train.eval_batch_size=512",
        ],
    )
    assert cfg.train.outlier_exposure is not None and cfg.augment.style > 0
    result = train(cfg, run_dir=tmp_path, progress=False)
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt["transfer"]["reinflated_batch_norms"] == 21
    assert ckpt["model"]["params"]["batch_norm"] is True
    assert result.best_val_accuracy > 0.85


def test_a_picture_expert_is_exported_beside_the_release_and_loaded_with_it(tiny_run, tmp_path):
    """`product-classifier picture-expert`'s path, on a copy of the released files: the INT8
    file is written with its sha256 and version (one "+int8") in the card, and loading the
    release then loads and verifies it; a checkpoint split another way is refused."""
    import shutil
    from pathlib import Path

    from product_classifier.export.picture_expert import PictureExpertError, build_picture_expert
    from product_classifier.inference.model_card import load_verified_model
    from product_classifier.provenance import sha256_file

    _cfg, _run_dir, result = tiny_run
    for name in ("model.int8.onnx", "model_card.json"):
        shutil.copy(Path("artifacts") / name, tmp_path / name)
    entry = build_picture_expert(result.best_checkpoint, model=tmp_path / "model.int8.onnx")
    expert = tmp_path / entry["file"]
    assert entry["sha256"] == sha256_file(expert)
    assert entry["model_version"].endswith("+int8") and "+int8+int8" not in entry["model_version"]
    assert 0.5 < entry["validation_accuracy"] <= 1.0
    loaded = load_verified_model(tmp_path / "model.int8.onnx")
    assert loaded.expert is not None and loaded.expert.model_version == entry["model_version"]

    card = json.loads((tmp_path / "model_card.json").read_text())
    card["config"]["data"]["split_seed"] += 1
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(PictureExpertError, match="validation split"):
        build_picture_expert(result.best_checkpoint, model=tmp_path / "model.int8.onnx")
