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
