"""The packed launcher's work (`hydra/launcher=packed`): the jobs of a launch that share a program shape, trained
as one vmapped program.

Hydra composes every job of the launch as the basic launcher does (its own job directory, `.hydra/` files,
callbacks). Jobs whose compiled program is the same (`config.program_shape_key`: everything but seed,
aug, dataset.label_noise and trainer.learning_rate) are grouped, at most `pack_size` per pack; each job is
checked and opened as usual (skip / resume / start, its own MLflow child run), then the pack trains its
members at once (`job.execute`) and each member is recorded as an ordinary run. A job that fits
no pack, or cannot be packed (a TensorFlow job, another Hydra app's job), runs as the basic launcher runs it.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from mixup_sweeps.config import program_shape_key
from mixup_sweeps.errors import ConfigError
from mixup_sweeps.job.context import Job, Outcome
from mixup_sweeps.job.execute import execute
from mixup_sweeps.job.open import open_job
from mixup_sweeps.multirun import in_process
from mixup_sweeps.train.backends import gpu_count, gpu_ids  # light: no Keras, no backend

log = logging.getLogger(__name__)


def pack_workers(processes: int | None) -> int:
    """Worker processes for packs: `processes`, else one per GPU on a machine with two or more, else 0."""
    if processes is not None:
        return int(processes)
    gpus = gpu_count()
    return gpus if gpus > 1 else 0


def packable(config: DictConfig) -> bool:
    """A job this launcher can pack: one of this harness's jobs on the JAX backend. Anything else (a TensorFlow
    job, another Hydra app's job) runs as Hydra's basic launcher would run it."""
    return config.get("backend") == "jax" and "trainer" in config and "dataset" in config


def _packs_in_worker(payload: bytes, env: dict[str, str]) -> bytes:
    """Packs trained in a worker process (one of `processes`, or a Ray task): the launcher's state unpickled,
    Hydra's globals set up as a launched job expects, then each pack as the local launcher trains it."""
    import os

    from hydra.core.singleton import Singleton

    os.environ.update(env)  # e.g. CUDA_VISIBLE_DEVICES: this worker's GPU, before JAX starts
    state, hydra_context, config, task_function, pack_size, chunks = pickle.loads(payload)
    setup_globals()
    Singleton.set_state(state)
    launch = PackedLaunch(hydra_context, task_function, config, pack_size=pack_size)
    from joblib.externals import cloudpickle

    return cloudpickle.dumps(launch._run_chunks(chunks))  # the job returns hold config classes Hydra re-imported


class PackedLaunch:
    """One launcher's packs: grouping, then each pack in this process, in worker processes, or as Ray tasks."""

    def __init__(
        self,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
        pack_size: int,
        processes: int | None = None,
        ray: bool = False,
        ray_init: Any = None,
        ray_remote: Any = None,
    ) -> None:
        if not (isinstance(pack_size, int) and pack_size >= 1):
            raise ConfigError(f"Invalid value hydra.launcher.pack_size={pack_size!r}: must be an integer >= 1")
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config
        self.pack_size, self.processes, self.ray = pack_size, processes, ray
        self.ray_init = dict(ray_init or {})
        self.ray_remote = dict(ray_remote if ray_remote is not None else {"num_gpus": 1})

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            configs.append((idx, in_process.job_config(self.hydra_context, self.config, overrides, idx)))
        packs: dict[str, list[tuple[int, DictConfig]]] = {}
        for idx, sweep_config in configs:  # a job that cannot be packed is a pack of its own (run as basic)
            key = program_shape_key(sweep_config) if packable(sweep_config) else f"alone-{idx}"
            packs.setdefault(key, []).append((idx, sweep_config))
        size = self.pack_size
        chunks = [members[i : i + size] for members in packs.values() for i in range(0, len(members), size)]
        log.info("Launching %d jobs as %d packed programs (pack_size %d)", len(configs), len(chunks), self.pack_size)
        for chunk in chunks:
            for idx, sweep_config in chunk:
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(sweep_config.hydra.overrides.task)))
        workers = pack_workers(self.processes)
        if self.ray:
            returns = self._on_ray(chunks)
        elif workers > 1 and len(chunks) > 1:
            returns = self._in_processes(chunks, workers)
        else:
            returns = self._run_chunks(chunks)
        return [returns[idx] for idx, _ in configs]

    def _run_chunks(self, chunks: list[list[tuple[int, DictConfig]]]) -> dict[int, JobReturn]:
        """Each pack in this process, one after another (a lone job as the basic launcher runs it)."""
        returns: dict[int, JobReturn] = {}
        for chunk in chunks:
            returns.update(self._run_single(chunk[0]) if len(chunk) == 1 else self._run_pack(chunk))
        return returns

    def _payload(self, chunks: list[list[tuple[int, DictConfig]]]) -> bytes:
        from hydra.core.singleton import Singleton
        from joblib.externals import cloudpickle

        state = Singleton.get_state()
        return cloudpickle.dumps((state, self.hydra_context, self.config, self.task_function, self.pack_size, chunks))

    def _in_processes(self, chunks: list[list[tuple[int, DictConfig]]], workers: int) -> dict[int, JobReturn]:
        """Packs spread over `workers` fresh processes (spawned: each starts its own JAX), at once; on a machine
        with GPUs worker i sees GPU i only. Each worker trains its packs one after another."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        workers = min(workers, len(chunks))
        ids = gpu_ids()  # the GPUs this process may use, as it numbers them
        gpus = len(ids)
        shares = [chunks[i::workers] for i in range(workers)]
        log.info("Training %d packs in %d processes%s", len(chunks), workers, f" over {gpus} GPUs" if gpus else "")
        context = multiprocessing.get_context("spawn")
        pools = [ProcessPoolExecutor(max_workers=1, mp_context=context) for _ in shares]
        try:
            futures = [
                pool.submit(
                    _packs_in_worker, self._payload(share), {"CUDA_VISIBLE_DEVICES": ids[i % gpus]} if gpus else {}
                )
                for i, (pool, share) in enumerate(zip(pools, shares))
            ]
            returns: dict[int, JobReturn] = {}
            for future in futures:
                returns.update(pickle.loads(future.result()))
            return returns
        finally:
            for pool in pools:
                pool.shutdown(cancel_futures=True)

    def _on_ray(self, chunks: list[list[tuple[int, DictConfig]]]) -> dict[int, JobReturn]:
        """Each pack a Ray task (`ray_remote`, by default one GPU each) on RAY_ADDRESS's cluster or a local one."""
        import ray

        if not ray.is_initialized():
            ray.init(**self.ray_init)
        task = ray.remote(**self.ray_remote)(_packs_in_worker)
        log.info("Training %d packs as Ray tasks (%s)", len(chunks), self.ray_remote)
        futures = [task.remote(self._payload([chunk]), {}) for chunk in chunks]
        returns: dict[int, JobReturn] = {}
        for result in ray.get(futures):
            returns.update(pickle.loads(result))
        return returns

    def _in_job_context(self, task_function: TaskFunction, config: DictConfig) -> JobReturn:
        """`task_function(config)` as Hydra runs a job: its directory, `.hydra/` files, logging, callbacks."""
        return in_process.run_here(self.hydra_context, self.config, task_function, config)

    def _run_single(self, job: tuple[int, DictConfig]) -> dict[int, JobReturn]:
        """A job that fits no pack: the task function, as the basic launcher runs it."""
        return {job[0]: self._in_job_context(self.task_function, job[1])}

    def _run_pack(self, chunk: list[tuple[int, DictConfig]]) -> dict[int, JobReturn]:
        """Open every member in its own Hydra job context, train the open ones as one program, record each."""
        opened = {idx: self._in_job_context(open_job, config) for idx, config in chunk}
        jobs = {idx: ret.return_value for idx, ret in opened.items() if ret.status == JobStatus.COMPLETED}
        training = {idx: job for idx, job in jobs.items() if isinstance(job, Job)}  # the rest were skipped
        if training:
            log.info("Training %d jobs as one packed program", len(training))
            try:
                outcomes: list[Outcome | BaseException] = execute(list(training.values()))
            except Exception as exc:  # the program failed: every member's run has ended FAILED with it
                outcomes = [exc] * len(training)
            for idx, outcome in zip(training, outcomes):
                if isinstance(outcome, BaseException):
                    opened[idx].status, opened[idx].return_value = JobStatus.FAILED, outcome
                else:
                    opened[idx].return_value = outcome
        return opened
