from pathlib import Path

import pytest

from product_classifier.config import ConfigError, load_experiment_config

CONFIGS = sorted(Path("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name != "search.yaml"], ids=str)
def test_shipped_experiment_configs_are_valid(path):
    cfg = load_experiment_config(path)
    assert cfg.train.epochs >= 1


def test_overrides_are_parsed_as_yaml():
    cfg = load_experiment_config(
        "configs/baseline.yaml", ["train.epochs=2", "augment.hflip=false", "optimizer.lr=1e-2"]
    )
    assert cfg.train.epochs == 2
    assert cfg.augment.hflip is False
    assert cfg.optimizer.lr == pytest.approx(0.01)


def test_typo_in_a_key_fails_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="epoch"):
        load_experiment_config(bad)


def test_unknown_model_fails_at_load(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: vgg\n")
    with pytest.raises(ConfigError, match="unknown model 'vgg'"):
        load_experiment_config(bad)


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_experiment_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment_config(broken)


# -- catalog configs ---------------------------------------------------------------------------


def test_the_catalog_config_loads_with_its_input_spec() -> None:
    from product_classifier.preprocessing import InputSpec

    cfg = load_experiment_config("configs/catalog.yaml", ["data.folder=some/folder"])
    assert cfg.input.spec() == InputSpec(size=64, channels=3, canonicalization="letterbox")
    assert cfg.data.use_fashion_mnist is False  # a folder alone: no Fashion-MNIST
    assert load_experiment_config("configs/baseline.yaml").data.use_fashion_mnist is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["input.size=64"], "fashion-mnist' means 28x28"),
        (["input.canonicalization=letterbox", "input.channels=4"], "1 .grey. or 3"),
        (["data.fashion_mnist=false"], "no folder is set"),
        (["data.folder=x", "data.val_fraction=0.5", "data.test_fraction=0.45"], "under 10%"),
        (["model.pretrained=true"], "needs a 'timm/<name>' model"),
        (
            [
                "input.canonicalization=letterbox",
                "input.size=64",
                "input.channels=3",
                "train.outlier_exposure={fraction: 0.25}",
            ],
            "outlier_exposure makes grey 28x28",
        ),
    ],
)
def test_wrong_catalog_settings_fail_at_load_with_the_reason(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_experiment_config("configs/baseline.yaml", overrides)


def test_default_configs_are_found_from_any_working_directory(tmp_path, monkeypatch) -> None:
    from product_classifier.cli.common import default_config

    monkeypatch.chdir(tmp_path)  # an empty folder, as a user's shop folder would be
    path = default_config("catalog")
    assert path.is_absolute() and path.name == "catalog.yaml"
    assert load_experiment_config(path).input.canonicalization == "letterbox"
