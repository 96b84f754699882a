"""Every config group composes; types and keys are checked by Hydra, values by `validate`."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from mixup_sweeps.config import ConfigError, config_fingerprint, flatten, validate
from tests.conftest import CONF, compose_config, mlflow_runs, run_cli

GROUPS = ["dataset", "model", "aug", "trainer", "tracking", "experiment"]


@pytest.mark.parametrize(
    "group,option",
    [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))],
)
def test_every_group_option_composes(group, option, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    cfg = compose_config([f"{group}={option}"])
    OmegaConf.resolve(cfg)
    validate(cfg)
    if group != "experiment":
        assert cfg[group].get("name", option) == option or group in ("trainer", "tracking")


def test_defaults_match_the_seed_recipe():
    cfg = compose_config()
    assert cfg.dataset.name == "fashion_mnist" and cfg.dataset.val_size == 2000 and cfg.dataset.num_classes == 10
    assert cfg.model.name == "seed_cnn" and list(cfg.model.conv_filters) == [16, 32] and cfg.model.kernel_size == 5
    assert cfg.aug.name == "mixup" and cfg.aug.alpha == 0.2
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.learning_rate) == (10, 64, 0.001)
    assert cfg.trainer.shuffle_buffer == 6400 and cfg.trainer.deterministic is False
    assert cfg.seed == 0 and cfg.tracking.experiment == "mixup-fashion-mnist"
    assert cfg.tracking.uri == "sqlite:////tmp/mixup-sweeps-test/mlflow.db"


@pytest.mark.parametrize(
    "override",
    [
        "trainer.epochs=ten",  # a non-number where a number belongs
        "aug.alpha=abc",
        "trainer.batch_sise=64",  # unknown key
        "aug=cutmixx",  # unknown group option
        "model.conv_filters=5",
    ],
)
def test_schema_rejects_bad_types_and_keys_at_compose_time(override):
    with pytest.raises(ConfigCompositionException):
        compose_config([override])


def test_baseline_has_no_alpha():
    cfg = compose_config(["aug=none"])
    assert "alpha" not in cfg.aug
    with pytest.raises(ConfigCompositionException):
        compose_config(["aug=none", "aug.alpha=0.2"])


@pytest.mark.parametrize(
    "override,key",
    [
        ("aug.alpha=0", "aug.alpha"),
        ("aug.alpha=-0.5", "aug.alpha"),
        ("aug.alpha=nan", "aug.alpha"),
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("trainer.learning_rate=-1", "trainer.learning_rate"),
        ("dataset.train_size=0", "dataset.train_size"),
        ("dataset.val_size=0", "dataset.val_size"),
        ("model.dropout=1.0", "model.dropout"),
    ],
)
def test_validate_rejects_bad_values_with_one_line_naming_the_key(override, key):
    cfg = compose_config([override])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert key in message and "\n" not in message


def test_server_tracking_without_uri_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
        validate(compose_config(["tracking=server"]))


def test_flat_params_and_fingerprint():
    base = compose_config(["aug.alpha=0.2"])
    flat = flatten(base)
    assert flat["aug.alpha"] == 0.2 and flat["aug.name"] == "mixup" and flat["trainer.epochs"] == 10
    assert flat["seed"] == 0 and "paths.output_dir" in flat
    moved = compose_config(["aug.alpha=0.2"], output_dir="/tmp/elsewhere")
    assert config_fingerprint(moved) == config_fingerprint(base)  # where results go is not what is computed
    assert config_fingerprint(compose_config(["aug.alpha=0.4"])) != config_fingerprint(base)


@pytest.mark.parametrize(
    "override,key",
    [
        ("aug.alpha=-1", "aug.alpha"),
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("dataset.val_size=60000", "dataset.val_size"),
        ("dataset.train_size=0", "dataset.train_size"),
    ],
)
def test_cli_bad_value_one_line_error_nonzero_exit_no_run(override, key, tmp_path, real_data_dir):
    result = run_cli("dataset.train_size=256", f"paths.output_dir={tmp_path}", override, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and key in lines[0] and "Invalid value" in lines[0], result.stderr
    _, runs = mlflow_runs(tmp_path)
    assert runs == []  # nothing recorded, so nothing recorded as successful


def test_cli_unknown_option_fails_with_hydras_message(tmp_path):
    result = run_cli("aug=cutmixx", f"paths.output_dir={tmp_path}", timeout=60)
    assert result.returncode != 0
    assert "aug" in result.stderr and "Available options" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()
