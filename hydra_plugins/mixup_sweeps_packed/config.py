"""`hydra/launcher=packed`'s schema and defaults (a Hydra plugin's config, in the ConfigStore: any Hydra app can
select it)."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class PackedLauncherConf:
    """`hydra/launcher=packed` (a Hydra plugin's config, in the ConfigStore: any Hydra app can select it)."""

    _target_: str = "hydra_plugins.mixup_sweeps_packed.packed_launcher.PackedLauncher"
    # Members per program. On an H100 the vmapped CNN's throughput levels off at 64 members (12.4 model-epochs/s,
    # 13.0 at 256), measured with the shared probe vmap_pack_probe.py that lives beside this repository (in the
    # workplace's shared/probes/, not in it), while memory grows with each member; 64 leaves most of a GPU free.
    # On a CPU a pack is as fast per model-epoch as its members one by one (docs/benchmarks.md).
    pack_size: int = 64
    # Packs trained at once, each in a worker process of its own: None = one per GPU on a machine with two or
    # more (each process sees one GPU), else every pack in this process, one after another.
    processes: int | None = None
    # Packs as Ray tasks (on RAY_ADDRESS's cluster, or a local instance): ray.init's and each task's options.
    ray: bool = False
    ray_init: dict[str, Any] = field(default_factory=dict)
    ray_remote: dict[str, Any] = field(default_factory=lambda: {"num_gpus": 1})


ConfigStore.instance().store(group="hydra/launcher", name="packed", node=PackedLauncherConf, provider="mixup_sweeps")
