"""The fast part (no training, no subprocess) of these tests (beside them: tests/integration/test_config.py).

Every config group composes; types and keys are checked by Hydra, values by `validate`."""

from __future__ import annotations

import hashlib
import json

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps.config import FINGERPRINT_DEFAULTS, PLUMBING_PREFIXES, config_fingerprint, flatten
from mixup_sweeps.errors import ConfigError
from mixup_sweeps.job.compose import validate
from mixup_sweeps.sweeps import until
from mixup_sweeps.sweeps.overrides import without_seed
from tests.helpers import CONF, compose_config
from tests.unit.test_fingerprints import RECORDED, job_name

GROUPS = ["dataset", "model", "aug", "trainer", "tracking", "experiment"]


@pytest.mark.parametrize(
    "group,option",
    [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))],
)
def test_every_group_option_composes(group, option, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    needs = {"npz": ["dataset.path=/data/mine.npz"], "folder": ["dataset.path=/data/images"]}  # your own data
    cfg = compose_config([f"{group}={option}", *(needs.get(option, []) if group == "dataset" else [])])
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
    assert cfg.backend == "tensorflow" and cfg.trainer.deterministic is False
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
        ("trainer.steps_per_execution=0", "trainer.steps_per_execution"),
        ("aug.lam=per_epoch", "aug.lam"),
        ("aug.pairing=shuffle", "aug.pairing"),
        ("dataset.label_noise=1.5", "dataset.label_noise"),
        ("dataset.label_noise=-0.1", "dataset.label_noise"),
        ("aug=cutmix aug.alpha=2.0", "aug.alpha"),
        ("trainer.precision=half", "trainer.precision"),
        ("seed=-1", "seed"),
        ("model.kernel_size=13", "model.kernel_size"),
    ],
)
def test_validate_rejects_bad_values_with_one_line_naming_the_key(override, key):
    cfg = compose_config(override.split())
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert key in message and "\n" not in message


def test_variant_defaults_stay_the_seeds():
    cfg = compose_config()
    assert (cfg.aug.lam, cfg.aug.pairing, cfg.dataset.label_noise) == ("per_sample", "two_streams", 0.0)
    cutmix = compose_config(["aug=cutmix"])
    assert dict(cutmix.aug) == {"name": "cutmix", "alpha": 1.0}


PRESETS = {  # preset -> number of jobs it runs
    "seed_reproduction": 10,
    "alpha_grid": 15,
    "label_noise": 27,
    "variants": 21,  # 18 before FMix joined (issue 26)
    "default_sweep": 6,
    "data_efficiency": 36,  # issue 37
    "cifar10_quick": 6,
    "paper_cifar10": 10,  # issue 38
    "paper_cifar100": 10,
    "recipe_fashion_mnist": 9,
}


@pytest.mark.parametrize("preset,jobs", sorted(PRESETS.items()))
def test_each_preset_expands_to_jobs_that_compose_and_validate(preset, jobs):
    """The preset's sweeper params x variants, each job composed with its overrides exactly as Hydra would (a
    group's config composed once, each job's seed set on a copy as Hydra's override sets it: the same config,
    resolved or not, for all 150 jobs when this was written, at a third of the composes); a job recorded in
    tests/data/preset_fingerprints.json keeps its run fingerprint (a store from before resumes)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.mixup_sweeps_variants.variants_sweeper import VariantsSweeper

    cfg = compose_config([f"experiment={preset}"], return_hydra_config=True)
    sweeper_cfg = cfg.hydra.sweeper
    assert sweeper_cfg._target_.endswith("VariantsSweeper")
    sweeper = VariantsSweeper(max_batch_size=None, params=sweeper_cfg.params, variants=sweeper_cfg.variants)
    params = [f"{k}={v}" for k, v in (sweeper_cfg.params or {}).items()]
    parser = OverridesParser.create()
    (batch,) = sweeper.split_arguments(parser.parse_overrides(params), None)
    assert len(batch) == jobs
    fingerprints, names, changed = set(), set(), []
    group_configs: dict[tuple[str, ...], DictConfig] = {}  # a group's jobs differ only in their seed
    for job in batch:
        overrides = [f"experiment={preset}", *job]
        group = without_seed(job)
        if group not in group_configs:  # one compose per group, not per job (~0.15 s each, 150 jobs)
            group_configs[group] = compose_config([f"experiment={preset}", *group])
        job_cfg = group_configs[group].copy()
        for override in set(job) - set(group):  # the seed, set as Hydra sets it: typed by the schema
            parsed = parser.parse_override(override)
            OmegaConf.update(job_cfg, parsed.key_or_group, parsed.value(), merge=False)
        validate(job_cfg)
        fingerprints.add(fingerprint := config_fingerprint(job_cfg))
        name = job_name([o for o in overrides if not o.startswith("++hydra.")])  # without the sweeper's plumbing
        names.add(name)
        if RECORDED.get(name, fingerprint) != fingerprint:
            changed.append(name)
    assert len(fingerprints) == jobs  # no two jobs compute the same thing
    assert {name for name in RECORDED if name.split(" ")[0] == f"experiment={preset}"} <= names  # each one checked
    assert not changed


def test_variants_sweeper_command_line_replaces_preset_params_and_until_needs_a_baseline():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.mixup_sweeps_variants.variants_sweeper import VariantsSweeper

    sweeper = VariantsSweeper(max_batch_size=None, params={"seed": "0,1,2"}, variants=[["aug=none"], ["aug=mixup"]])
    overrides = OverridesParser.create().parse_overrides(["seed=0,1,2", "seed=5"])  # params first, then the CLI
    (jobs,) = sweeper.split_arguments(overrides, None)
    assert [job[:2] for job in jobs] == [["seed=5", "aug=none"], ["seed=5", "aug=mixup"]]
    assert all(job[2].startswith("++hydra.job.env_set.MIXUP_SWEEP_JOBS=2") for job in jobs)  # progress count
    with pytest.raises(ConfigError, match="add aug=none"):
        until.pair_with_baselines([("aug=mixup", "aug.alpha=0.4"), ("aug=mixup",)], None)
    paired = until.pair_with_baselines([("x=1", "aug=mixup"), ("x=1", "aug=none")], None)
    assert paired[("x=1", "aug=mixup")] == ("x=1", "aug=none")


def test_seeds_until_pairs_with_any_baseline_the_report_accepts():
    """`hydra.sweeper.until.baseline` uses the report's rule (sweeps.baseline): here float32 vs bfloat16."""
    groups = [(f"trainer.precision={p}", a) for p in ("float32", "mixed_bfloat16") for a in ("aug=none", "aug=mixup")]
    paired = until.pair_with_baselines(groups, "trainer.precision=float32")
    assert paired[groups[3]] == groups[1]  # bf16 mixup <- float32 mixup, not <- none
    assert paired[groups[2]] == groups[0]
    assert paired[groups[0]] is None
    with pytest.raises(ConfigError, match="add trainer.precision=float32"):
        until.pair_with_baselines(groups[2:], "trainer.precision=float32")
    with pytest.raises(ConfigError, match="hydra.sweeper.until.baseline 'precision': expected KEY=VALUE"):
        until.pair_with_baselines(groups, "precision")


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
    "override",
    [
        "trainer.precision=mixed_bfloat16",
        "trainer.test_every_epoch=true",
        "trainer.memorization_probe=100",
        "dataset.noisy_validation=true",
        "model.pooling=flatten",
        "trainer.optimizer=sgd",  # issue 38: the recipe's keys
        "trainer.weight_decay=0.0001",
        "trainer.schedule=cosine",
        "trainer.warmup_epochs=2",
        "trainer.input_aug=crop_flip",
        "trainer.crop_padding=2",
        "model.architecture=resnet",
    ],
)
def test_keys_added_later_are_in_the_fingerprint_except_at_the_value_every_earlier_run_used(override):
    default = compose_config()
    flat = {k: v for k, v in flatten(default).items() if not k.startswith(PLUMBING_PREFIXES)}
    for key, value in FINGERPRINT_DEFAULTS.items():
        assert flat.pop(key) == value  # a config from before the key existed
    before = hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]
    assert config_fingerprint(default) == before  # earlier runs are still skipped and reused
    key, value = override.split("=")
    changed = compose_config([override])
    assert config_fingerprint(changed) != before and str(flatten(changed)[key]).lower() == value


@pytest.mark.parametrize("launcher", sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml")))
def test_launcher_presets_compose_and_instantiate(launcher, monkeypatch):
    """The Ray and SLURM presets are valid for the installed plugins (SLURM itself cannot run here)."""
    from hydra.utils import instantiate

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("SLURM_PARTITION", "cpu")
    cfg = compose_config([f"hydra/launcher={launcher}"], return_hydra_config=True)
    launcher_cfg = cfg.hydra.launcher
    instance = instantiate(launcher_cfg)
    if launcher.startswith("ray"):
        init = launcher_cfg.ray.init
        assert init.address is None and init.object_store_memory is None  # RAY_ADDRESS or local; hydra#2893
        assert init.runtime_env.env_vars.MLFLOW_TRACKING_URI == "http://127.0.0.1:5000"
        assert type(instance).__name__ == "RayLauncher" and launcher_cfg.ray.remote.num_cpus == 1
        assert launcher_cfg.ray.remote.get("num_gpus") == (0.25 if launcher == "ray_gpu" else None)
    if launcher == "slurm":
        assert type(instance).__name__ == "SlurmLauncher" and launcher_cfg.partition == "cpu"
        assert launcher_cfg.cpus_per_task >= 1 and launcher_cfg.timeout_min >= 10
