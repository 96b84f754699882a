"""The local launcher's work (`hydra/launcher=local`, the default of every multirun): the jobs of a launch side by
side on this machine's cores.

One tiny CNN cannot use a machine's cores (measured in docs/benchmarks.md: on a 2-core machine two jobs of one
thread each train about 1.4x the model-epochs per second of one job on both cores), so this launcher runs
`jobs` jobs at once (default: the cores this process may use, divided by `threads`): one after another in this
process (as Hydra's basic launcher), the others each in a worker process (joblib's loky pool, as Hydra's joblib
launcher: the same `run_job`, job directories, `.hydra/` files and callbacks), all taking the next job from one
queue, with TensorFlow / XLA pools of `threads` threads (`backends.job_threads` reads it from
`MIXUP_JOB_THREADS`). Workers are reused by later jobs (a race's rounds, a search's batches), so a sweep pays
TensorFlow's start-up once per process.
Workers are not pinned to cores: a TensorFlow job with one intra-op thread still keeps more than one thread
busy (the calling thread runs kernels beside the pool's), and pinned to one core they take turns; unpinned,
the scheduler lends a job the core another job is not using (between epochs, at the end of a sweep). Measured
in docs/benchmarks.md: the same sweep 1.12x job after job with each worker pinned, 1.38x unpinned.
A launch of one job, one job at a time (`jobs: 1`) or a machine with an NVIDIA GPU (where a pack or `ray_gpu`
shares the device better) runs the jobs in this process, one after another, as Hydra's basic launcher does.
The sweep's parent run, the progress lines and the ETA are the sweeper's: each job logs one line when it
starts and one when it ends; Keras's per-epoch lines are off in side-by-side jobs, so the console stays readable.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from mixup_sweeps.errors import ConfigError
from mixup_sweeps.multirun import in_process
from mixup_sweeps.train.backends import JOB_THREADS_ENV, cpu_cores, gpu_count  # light: no Keras, no backend

log = logging.getLogger(__name__)
LAUNCHER_TARGET = "hydra_plugins.mixup_sweeps_local.local_launcher.LocalLauncher"  # hydra/launcher=local
_STARTED_EARLY: list[int] = []  # the workers `start_early` started, until `stop_early`


def check_settings(jobs: object, threads: object) -> None:
    """`hydra.launcher.jobs` and `.threads` (null: chosen for the machine): integers >= 1, else one `ConfigError`
    line. The command's preflight calls it before the sweep's parent run opens; the launch again."""
    for name, value in (("jobs", jobs), ("threads", threads)):
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ConfigError(f"Invalid value hydra.launcher.{name}={value!r}: must be an integer >= 1 (or null)")


def jobs_at_once(jobs: int | None, threads: int) -> int:
    """`jobs`, or as many as the cores allow at `threads` each; 1 on a machine with an NVIDIA GPU."""
    if jobs is not None:
        return max(1, int(jobs))
    if gpu_count() > 0:
        return 1
    return max(1, cpu_cores() // max(1, int(threads)))


def _in_worker(threads: int, *args: Any) -> JobReturn:
    """One job in a worker process: its pools' size in the environment, then Hydra's job (as joblib's launcher)."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    os.environ[JOB_THREADS_ENV] = str(threads)
    return execute_job(*args)


def launch(
    hydra_context: HydraContext,
    config: DictConfig,
    task_function: TaskFunction,
    jobs: int | None,
    threads: int,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> Sequence[JobReturn]:
    """The launch: side by side (here and in reusable worker processes), or here one after another (one at a
    time)."""
    setup_globals()
    check_settings(jobs, threads)
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    at_once = min(jobs_at_once(jobs, threads), len(job_overrides))
    log.info("Launching %d jobs, %d at once (%d threads each)", len(job_overrides), at_once,
             threads if at_once > 1 else cpu_cores())  # fmt: skip
    numbered = list(enumerate(job_overrides, start=initial_job_idx))
    for idx, overrides in numbered:
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
    if at_once <= 1:
        return [
            in_process.run_numbered(hydra_context, config, task_function, overrides, idx) for idx, overrides in numbered
        ]
    return _side_by_side(hydra_context, config, task_function, threads, numbered, at_once)


def _side_by_side(
    hydra_context: HydraContext, config: DictConfig, task_function: TaskFunction, threads: int,
    numbered: list[tuple[int, Sequence[str]]], at_once: int,
) -> list[JobReturn]:  # fmt: skip
    """`at_once` jobs at a time from one queue: this process takes one job after another, `at_once - 1` worker
    processes the others. This process is one of the slots because it has started already: on a small sweep the
    workers' start (interpreter, Hydra, MLflow, TensorFlow: ~6 CPU-s each on the machine of docs/benchmarks.md)
    ate the gain of jobs side by side, and a worker fewer is one start fewer. A feeder thread keeps the
    workers busy while this process trains."""
    queue = deque(numbered)
    lock = threading.Lock()

    def take() -> tuple[int, Sequence[str]] | None:
        with lock:
            return queue.popleft() if queue else None

    state = Singleton.get_state()
    executor = _workers(at_once - 1)
    in_workers: dict[int, Future] = {}

    def feed() -> None:
        running: set[Future] = set()
        while True:
            while len(running) < at_once - 1 and (job := take()) is not None:
                idx, overrides = job
                future = executor.submit(
                    _in_worker, threads, idx, overrides, hydra_context, config, task_function, state
                )
                in_workers[idx] = future
                running.add(future)
            if not running:
                return
            running = wait(running, return_when=FIRST_COMPLETED).not_done

    feeder = threading.Thread(target=feed, name="local-launcher-feeder", daemon=True)
    feeder.start()
    here: dict[int, JobReturn] = {}
    try:
        with _as_a_worker(threads):  # the same pools and quiet console as the workers' jobs
            while (job := take()) is not None:
                here[job[0]] = in_process.run_numbered(hydra_context, config, task_function, job[1], job[0])
    except BaseException:  # stopped here (a signal, a full disk): the workers start nothing more
        with lock:
            queue.clear()
        raise
    feeder.join()
    return [here[idx] if idx in here else in_workers[idx].result() for idx, _ in numbered]


@contextmanager
def _as_a_worker(threads: int) -> Iterator[None]:
    """This process's jobs as a worker's: `threads` threads (TensorFlow keeps the pools its first job set) and no
    per-epoch lines (`backends.JOB_THREADS_ENV`)."""
    before = os.environ.get(JOB_THREADS_ENV)
    os.environ[JOB_THREADS_ENV] = str(threads)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(JOB_THREADS_ENV, None)
        else:
            os.environ[JOB_THREADS_ENV] = before


def start_early(config: DictConfig, jobs: int | None) -> None:
    """Start the workers a multirun's launches will use now, while this process still checks the command line,
    opens the sweep's parent run and composes the first jobs (~8 CPU-s on the machine of docs/benchmarks.md):
    each imports the harness, MLflow and, for a TensorFlow sweep, TensorFlow (`_warm_up`), so that its first job
    starts at once. Only for `hydra/launcher=local` with more than one job at once; `jobs`: the sweep's job
    count where known (None: a search, one batch after another). `stop_early` ends them if the command is
    refused after all."""
    launcher = OmegaConf.select(config, "hydra.launcher")
    if launcher is None or OmegaConf.select(config, "hydra.launcher._target_") != LAUNCHER_TARGET:
        return
    check_settings(launcher.get("jobs"), launcher.get("threads"))
    at_once = jobs_at_once(launcher.get("jobs"), int(launcher.get("threads") or 1))
    workers = min(at_once, jobs or at_once) - 1  # this process is a slot of its own (`_side_by_side`)
    if workers < 1:
        return
    executor = _workers(workers)
    _STARTED_EARLY.append(workers)
    for _ in range(workers):
        executor.submit(_warm_up, str(OmegaConf.select(config, "backend", default="")))


def stop_early() -> None:
    """End the workers `start_early` started (the command was refused: nothing will run)."""
    if _STARTED_EARLY:
        _workers(_STARTED_EARLY.pop()).shutdown(wait=False, kill_workers=True)


def _warm_up(backend: str) -> None:
    """A worker's imports before its first job: what every job loads, and TensorFlow for a TensorFlow sweep
    (its pools are sized later, by the job: importing starts no pool)."""
    import mixup_sweeps.job.execute  # noqa: F401  (MLflow, matplotlib, the engines' shared code)
    import mixup_sweeps.job.open  # noqa: F401

    if backend == "tensorflow":
        from mixup_sweeps.train.backends import import_tensorflow

        import_tensorflow()


def _workers(count: int) -> Any:
    """joblib's loky pool of `count` workers, kept for the sweep's later launches (a search's batches, a
    race's rounds). Not pinned to cores: see the module's docstring. Each worker starts with
    `_keep_the_worker` (loky's `initializer`)."""
    from joblib.externals.loky import get_reusable_executor

    return get_reusable_executor(max_workers=count, timeout=3600, initializer=_keep_the_worker)


def _keep_the_worker() -> None:
    """In a new worker: loky's memory-leak check off. It takes a worker's memory after its first call (the
    warm-up's imports) as the reference and replaces a worker grown 300 MB past it; a TensorFlow job leaves
    that much (its data, the runtime's caches), so every worker was replaced after its first job: TensorFlow
    imported again mid-sweep, and loky's "A worker stopped while some jobs were given to the executor" in
    `make run`'s output. A job frees what it loaded; what stays is the runtime, not a leak. `_USE_PSUTIL` is
    loky's switch for that check (a module global its worker loop reads each time); without it loky runs
    `gc.collect()` now and then instead, as it does where psutil is not installed."""
    from joblib.externals.loky import process_executor

    process_executor._USE_PSUTIL = False
