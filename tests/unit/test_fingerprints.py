"""Every preset's jobs keep their run fingerprints (`config.config_fingerprint`): a store written before a change
still skips, resumes and reuses its runs. A file of its own: composing every preset job takes most of a minute,
and pytest-xdist runs a file on one worker, beside the rest of tests/unit/test_config.py."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from mixup_sweeps.config import config_fingerprint
from tests.helpers import CONF, ROOT, compose_config


def preset_jobs() -> dict[str, list[str]]:
    """Every job of every preset under conf/experiment (its grid crossed with its variants, as the variants
    sweeper expands them) and a few single runs, each as the overrides that compose it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mixup_sweeps.sweeps.overrides import expand_jobs

    singles = [[], ["aug=none"], ["aug=cutmix"], ["backend=jax"], ["trainer.precision=mixed_bfloat16"],
               ["model=wide_cnn"], ["model=flat_cnn"], ["dataset.label_noise=0.2"], ["model=resnet20"]]  # fmt: skip
    jobs = {" ".join(s) or "(defaults)": s for s in singles}
    for preset in sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")):
        sweeper = compose_config([f"experiment={preset}"], return_hydra_config=True).hydra.sweeper
        params = dict(sweeper.params or {})
        overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
        for job in expand_jobs(overrides, OmegaConf.to_container(sweeper.variants) or []):  # as the sweeper does
            jobs[f"experiment={preset} " + " ".join(job)] = [f"experiment={preset}", *job]
    return jobs


def test_every_preset_job_keeps_its_run_fingerprint():
    """Runs recorded before a refactor are still skipped, resumed and reused: tests/data/preset_fingerprints.json
    holds every preset job's fingerprint as computed before issue 26 (one training core, the augmentation
    registry); a job added since (a new variant) is new, every recorded one must be unchanged."""
    recorded = json.loads((ROOT / "tests" / "data" / "preset_fingerprints.json").read_text())["fingerprints"]
    jobs = preset_jobs()
    assert set(recorded) <= set(jobs)  # no recorded job went missing
    changed = {name: fp for name, fp in recorded.items() if config_fingerprint(compose_config(jobs[name])) != fp}
    assert not changed
