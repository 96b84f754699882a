"""Every preset's jobs keep their run fingerprints (`config.config_fingerprint`): a store written before a change
still skips, resumes and reuses its runs. tests/data/preset_fingerprints.json holds them; this file checks the
single runs and that no recorded job went missing, tests/unit/test_config.py's
`test_each_preset_expands_to_jobs_that_compose_and_validate` each preset job's fingerprint as it composes the job
(one compose a job: ~0.13 CPU-s each, 150 of them)."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from mixup_sweeps.config import config_fingerprint
from tests.helpers import CONF, ROOT, compose_config

RECORDED: dict[str, str] = json.loads((ROOT / "tests" / "data" / "preset_fingerprints.json").read_text())[
    "fingerprints"
]  # job name (its overrides, space-separated) -> the fingerprint it had


def job_name(overrides: list[str]) -> str:
    """A job's name in RECORDED."""
    return " ".join(overrides) or "(defaults)"


def preset_jobs() -> dict[str, list[str]]:
    """Every job of every preset under conf/experiment (its grid crossed with its variants, as the variants
    sweeper expands them) and a few single runs, each as the overrides that compose it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mixup_sweeps.sweeps.overrides import expand_jobs

    singles = [[], ["aug=none"], ["aug=cutmix"], ["backend=jax"], ["trainer.precision=mixed_bfloat16"],
               ["model=wide_cnn"], ["model=flat_cnn"], ["dataset.label_noise=0.2"], ["model=resnet20"]]  # fmt: skip
    jobs = {job_name(s): s for s in singles}
    for preset in sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")):
        sweeper = compose_config([f"experiment={preset}"], return_hydra_config=True).hydra.sweeper
        params = dict(sweeper.params or {})
        overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
        for job in expand_jobs(overrides, OmegaConf.to_container(sweeper.variants) or []):  # as the sweeper does
            jobs[job_name([f"experiment={preset}", *job])] = [f"experiment={preset}", *job]
    return jobs


def test_every_recorded_job_still_exists_and_the_single_runs_keep_their_fingerprints():
    """Runs recorded before a refactor are still skipped, resumed and reused: RECORDED holds every preset job's
    fingerprint as computed before issue 26 (one training core, the augmentation registry); a job added since (a
    new variant) is new, every recorded one must still be a job and unchanged (the preset jobs: test_config.py)."""
    jobs = preset_jobs()
    assert set(RECORDED) <= set(jobs)  # no recorded job went missing
    singles = {name: fp for name, fp in RECORDED.items() if not name.startswith("experiment=")}
    assert len(singles) >= 9
    changed = {name: fp for name, fp in singles.items() if config_fingerprint(compose_config(jobs[name])) != fp}
    assert not changed
