"""`hydra/launcher=local`'s schema and defaults (a Hydra plugin's config, in the ConfigStore)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from mixup_sweeps.multirun.local import LAUNCHER_TARGET

THREADS_PER_JOB = 1  # measured best on this CNN (docs/benchmarks.md, "Sweeps that fill the machine")


@dataclass
class LocalLauncherConf:
    _target_: str = LAUNCHER_TARGET
    jobs: int | None = None  # jobs at once; None: the cores this process may use // threads (1 with an NVIDIA GPU)
    threads: int = THREADS_PER_JOB  # threads of each job's TensorFlow / XLA pools (trainer.threads overrides it)


ConfigStore.instance().store(group="hydra/launcher", name="local", node=LocalLauncherConf, provider="mixup_sweeps")
