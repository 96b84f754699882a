"""`hydra/launcher=packed`: the jobs of a launch that share a program shape, trained as one vmapped program.

Hydra composes every job of the launch as the basic launcher does (its own job directory, `.hydra/` files,
callbacks). Jobs whose compiled program is the same (`mixup_sweeps.config.program_key`: everything but seed,
aug, dataset.label_noise and trainer.learning_rate) are grouped, at most `pack_size` per pack; each job is
checked and opened as usual (skip / resume / start, its own MLflow child run), then the pack trains its
members at once (`mixup_sweeps.run.execute`) and each member is recorded as an ordinary run. A job that fits
no pack, or cannot be packed (a TensorFlow job, another Hydra app's job), runs as the basic launcher runs it.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from mixup_sweeps.config import ConfigError, program_key

log = logging.getLogger(__name__)


@dataclass
class PackedLauncherConf:
    """`hydra/launcher=packed` (a Hydra plugin's config, in the ConfigStore: any Hydra app can select it)."""

    _target_: str = "hydra_plugins.mixup_sweeps_packed.packed_launcher.PackedLauncher"
    # Members per program. On an H100 the vmapped CNN's throughput levels off at 64 members (12.4 model-epochs/s,
    # 13.0 at 256), measured with the shared probe vmap_pack_probe.py that lives beside this repository (in the
    # workplace's shared/probes/, not in it), while memory grows with each member; 64 leaves most of a GPU free.
    # On a CPU a pack is as fast per model-epoch as its members one by one (docs/benchmarks.md).
    pack_size: int = 64


ConfigStore.instance().store(group="hydra/launcher", name="packed", node=PackedLauncherConf, provider="mixup_sweeps")


def packable(config: DictConfig) -> bool:
    """A job this launcher can pack: one of this harness's jobs on the JAX backend. Anything else (a TensorFlow
    job, another Hydra app's job) runs as Hydra's basic launcher would run it."""
    return config.get("backend") == "jax" and "trainer" in config and "dataset" in config


class PackedLauncher(Launcher):
    def __init__(self, pack_size: int) -> None:
        super().__init__()
        self.pack_size = pack_size
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def jobs_at_once(self) -> int:
        """At most one pack trains at a time, and a pack trains all its members at once."""
        return self.pack_size

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        if not (isinstance(self.pack_size, int) and self.pack_size >= 1):
            raise ConfigError(f"Invalid value hydra.launcher.pack_size={self.pack_size!r}: must be an integer >= 1")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            configs.append((idx, sweep_config))
        packs: dict[str, list[tuple[int, DictConfig]]] = {}
        for idx, sweep_config in configs:  # a job that cannot be packed is a pack of its own (run as basic)
            key = program_key(sweep_config) if packable(sweep_config) else f"alone-{idx}"
            packs.setdefault(key, []).append((idx, sweep_config))
        size = self.pack_size
        chunks = [members[i : i + size] for members in packs.values() for i in range(0, len(members), size)]
        log.info("Launching %d jobs as %d packed programs (pack_size %d)", len(configs), len(chunks), self.pack_size)
        returns: dict[int, JobReturn] = {}
        for chunk in chunks:
            for idx, sweep_config in chunk:
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(sweep_config.hydra.overrides.task)))
            returns.update(self._run_single(chunk[0]) if len(chunk) == 1 else self._run_pack(chunk))
        return [returns[idx] for idx, _ in configs]

    def _in_job_context(self, task_function: TaskFunction, config: DictConfig) -> JobReturn:
        """`task_function(config)` as Hydra runs a job: its directory, `.hydra/` files, logging, callbacks."""
        assert self.hydra_context is not None and self.config is not None
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def _run_single(self, job: tuple[int, DictConfig]) -> dict[int, JobReturn]:
        """A job that fits no pack: the task function, as the basic launcher runs it."""
        assert self.task_function is not None
        return {job[0]: self._in_job_context(self.task_function, job[1])}

    def _run_pack(self, chunk: list[tuple[int, DictConfig]]) -> dict[int, JobReturn]:
        """Open every member in its own Hydra job context, train the open ones as one program, record each."""
        from mixup_sweeps import run

        opened = {idx: self._in_job_context(run.open_job, config) for idx, config in chunk}
        jobs = {idx: ret.return_value for idx, ret in opened.items() if ret.status == JobStatus.COMPLETED}
        training = {idx: job for idx, job in jobs.items() if isinstance(job, run.Job)}  # the rest were skipped
        if training:
            log.info("Training %d jobs as one packed program", len(training))
            try:
                outcomes: list[run.Outcome | BaseException] = run.execute(list(training.values()))
            except Exception as exc:  # the program failed: every member's run has ended FAILED with it
                outcomes = [exc] * len(training)
            for idx, outcome in zip(training, outcomes):
                if isinstance(outcome, BaseException):
                    opened[idx].status, opened[idx].return_value = JobStatus.FAILED, outcome
                else:
                    opened[idx].return_value = outcome
        return opened
