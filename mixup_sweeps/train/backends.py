"""The Keras backend a job runs on (`backend: tensorflow | jax`) and how it shares an accelerator.

Keras reads its backend once, when it is imported, and the backends read their GPU settings once, when
they start; so `prepare` runs first in a job, before anything imports Keras. Every job is set up to share
a GPU with the other jobs of a sweep (a tiny CNN leaves a GPU mostly idle): TensorFlow grows its memory
instead of taking the whole GPU, JAX does not preallocate 75 % of it. A process whose Keras already runs
another backend (a sweep over `backend=tensorflow,jax` in one process) is switched with
`keras.config.set_backend`, and the package's modules that hold Keras (or its backend) are imported anew:
they are found by what they hold, so this module names none of them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import os
import sys
from types import ModuleType

from mixup_sweeps.errors import ConfigError

# What each job sets unless the user has set it: share a GPU with the sweep's other jobs.
GPU_SHARING_ENV = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
XLA_DETERMINISTIC = "--xla_gpu_deterministic_ops=true"  # JAX on a GPU (XLA on a CPU is deterministic anyway)
BACKEND_LIBRARIES = ("keras", "jax", "tensorflow")  # a module holding one of these is imported anew on a switch

log = logging.getLogger(__name__)
# TensorFlow's op determinism is process-wide and has no public switch back; kept here, in the module a
# backend switch does not import anew, so a later job of the process still knows it is on.
_TF_OP_DETERMINISM = {"on": False}
INSTALL_HINT = {
    "tensorflow": "pip install -e '.[cpu]' (or '.[gpu]' on a GPU machine), or run with backend=jax",
    "jax": "pip install -e . (JAX is a dependency; '.[gpu]' for CUDA), or run with backend=tensorflow",
}


def installed(library: str) -> bool:
    try:
        return importlib.util.find_spec(library) is not None
    except ImportError:
        return False


def prepare(backend: str, deterministic: bool = False) -> None:
    """Make `backend` the Keras backend of this process, with GPU sharing (and determinism) set up first."""
    if not installed(backend):
        raise ConfigError(f"backend={backend}: {backend} is not installed here; {INSTALL_HINT[backend]}")
    for key, value in GPU_SHARING_ENV.items():
        os.environ.setdefault(key, value)
    if deterministic and backend == "jax" and XLA_DETERMINISTIC not in os.environ.get("XLA_FLAGS", ""):
        if "jax" in sys.modules:
            log.warning("JAX has started in this process: trainer.deterministic cannot set %s now", XLA_DETERMINISTIC)
        add_xla_flag(XLA_DETERMINISTIC)
    os.environ["KERAS_BACKEND"] = backend
    if "keras" not in sys.modules:
        return
    import keras

    if keras.backend.backend() != backend:
        log.info("switching Keras from %s to %s in this process", keras.backend.backend(), backend)
        stale = modules_holding_keras()
        keras.config.set_backend(backend)
        for name in stale:
            sys.modules.pop(name, None)
            parent, attribute = name.rsplit(".", 1)
            if hasattr(sys.modules.get(parent), attribute):
                delattr(sys.modules[parent], attribute)
        for name in stale:
            importlib.import_module(name)


JOB_THREADS_ENV = "MIXUP_JOB_THREADS"  # set by hydra/launcher=local: the threads each of its jobs may use
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"  # XLA's CPU pool off
_THREADS: dict[str, int] = {}  # what this process's pools were set to (TensorFlow's cannot change after start)


def job_threads(configured: int | None) -> tuple[int, str]:
    """(threads, where the number came from) for this job's pools: `trainer.threads` when set; else what the
    launcher gave the job: hydra/launcher=local's threads per job, Ray's CPUs for the task, SLURM's
    cpus_per_task, an OMP_NUM_THREADS set for the process; else every core it may use."""
    if configured:
        return int(configured), "trainer.threads"
    if os.environ.get(JOB_THREADS_ENV):
        return int(os.environ[JOB_THREADS_ENV]), "hydra/launcher=local"
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized() and (cpus := ray.get_runtime_context().get_assigned_resources().get("CPU")):
            return max(1, int(cpus)), "ray num_cpus"
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        return int(os.environ["SLURM_CPUS_PER_TASK"]), "slurm cpus_per_task"
    if os.environ.get("OMP_NUM_THREADS"):
        return int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    return cpu_cores(), "cores"


def add_xla_flag(flag: str) -> None:
    """Add `flag` to XLA_FLAGS once (XLA reads it when JAX starts)."""
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


def gpu_ids() -> list[str]:
    """The NVIDIA GPUs this process may use, as CUDA numbers them for it: CUDA_VISIBLE_DEVICES where it is set,
    else every device file of the machine; [] on a machine without one."""
    import glob

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = len(glob.glob("/dev/nvidia[0-9]*"))
    if visible is None or not devices:
        return [str(i) for i in range(devices)]
    return [] if visible.strip() in ("", "-1") else visible.split(",")


def gpu_count() -> int:
    """How many GPUs this process may use (`gpu_ids`)."""
    return len(gpu_ids())


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or a batch system's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(threads: int, backend: str) -> None:
    """Size the job's compute pools before its backend starts: TensorFlow's intra- and inter-op pools, XLA's CPU
    pool (one thread: off), OpenMP's. A process whose TensorFlow already started keeps its pools (a worker
    reused by the next job: the launcher gives every job the same threads)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if backend == "jax" and threads == 1 and "jax" not in sys.modules:
        add_xla_flag(XLA_ONE_THREAD)
    if backend == "tensorflow" and installed("tensorflow"):
        tf = import_tensorflow()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow started in this process: its pools stay as they are
            pass
    _THREADS["threads"] = threads


# What TensorFlow's import loads for features a job never uses, when it finds them installed: Keras's
# scikit-learn wrappers import scikit-learn, TF Lite's JAX converter imports JAX. Both imports are optional
# (`try: import ... except ImportError`), and on the 2-core machine of docs/benchmarks.md they were 0.9 and 0.5 s
# of TensorFlow's 5.2 s import, paid by every job process and every worker of a sweep.
NOT_FOR_TENSORFLOW = ("sklearn", "jax")


class _Unavailable(importlib.abc.MetaPathFinder):
    """A finder that says the top-level packages `names` (and their modules) are not installed."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (not loaded with TensorFlow)", name=fullname)


def import_tensorflow() -> ModuleType:
    """TensorFlow, imported (the first time in a process) without `NOT_FOR_TENSORFLOW`: while it loads, those
    packages look uninstalled to it; afterwards they import as usual for whoever asks (the harness's JAX jobs,
    MLflow). Keras's scikit-learn wrappers are then unavailable in this process; the harness has no use for them."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    blocker = _Unavailable(tuple(name for name in NOT_FOR_TENSORFLOW if name not in sys.modules))
    sys.meta_path.insert(0, blocker)
    try:
        import tensorflow
    finally:
        sys.meta_path.remove(blocker)
    return tensorflow


def thread_tags(backend: str) -> dict[str, str]:
    """Tags: the pools this job ran with, read back from the libraries (what a test checks)."""
    tags = {"threads": str(_THREADS.get("threads", "")), "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "")}
    if hasattr(os, "sched_getaffinity"):  # the cores the job may run on (a container's or batch system's share)
        tags["cpu_affinity"] = ",".join(str(core) for core in sorted(os.sched_getaffinity(0)))
    if backend == "tensorflow":
        import tensorflow as tf

        tags["tf_intra_op_threads"] = str(tf.config.threading.get_intra_op_parallelism_threads())
        tags["tf_inter_op_threads"] = str(tf.config.threading.get_inter_op_parallelism_threads())
    else:
        tags["xla_cpu_one_thread"] = str(XLA_ONE_THREAD in os.environ.get("XLA_FLAGS", "")).lower()
    return tags


PACKAGE = __name__.split(".")[0]  # the whole harness: modules holding Keras live in several of its folders


def modules_holding_keras() -> list[str]:
    """The package's loaded modules that hold Keras or a backend library (or a module of the package that
    does) at module level: their classes and functions belong to the Keras a backend switch replaces."""
    loaded = {name: module for name, module in list(sys.modules.items()) if name.startswith(f"{PACKAGE}.")}

    def holds(module: ModuleType, names: set[str]) -> bool:
        values = [v for v in vars(module).values() if isinstance(v, ModuleType)]
        return any(v.__name__.split(".")[0] in BACKEND_LIBRARIES or v.__name__ in names for v in values)

    stale: set[str] = set()
    while True:  # a module holding a stale module is stale too (e.g. the engine holding `augment`)
        more = {name for name, module in loaded.items() if name not in stale and holds(module, stale)}
        if not more:
            return sorted(stale)
        stale |= more


def op_determinism(deterministic: bool) -> None:
    """Deterministic ops for this job (slower), once Keras runs: TensorFlow's public op-determinism switch.

    JAX needs nothing here: XLA on a CPU is deterministic, and on a GPU `prepare` has set XLA's
    deterministic-ops flag before JAX started. Once on, TensorFlow's op determinism stays on for later jobs of
    the same process (the same results, a little slower): TensorFlow has no public switch to turn it off.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    if deterministic and not _TF_OP_DETERMINISM["on"]:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        _TF_OP_DETERMINISM["on"] = True
    elif not deterministic and _TF_OP_DETERMINISM["on"]:
        log.info("TensorFlow op determinism stays on in this process (an earlier job turned it on)")


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed(seed)`; first, in a job of another backend where TensorFlow has not started,
    Keras is told that TensorFlow is not there, so that it stays unstarted.

    Keras asks "is TensorFlow installed?" by importing it (its `module_utils.tensorflow.available`): to seed it
    here, and again whenever it serializes a layer (saving the logged model) to rule out TensorFlow shapes. In a
    JAX job that costs ~7 CPU-seconds of imports a process, for a seed nothing reads and shapes that cannot exist:
    no object of an unstarted TensorFlow does. The answer is Keras's private state; a backend switch imports Keras
    anew and so asks again.
    """
    import keras

    if keras.backend.backend() != "tensorflow" and "tensorflow" not in sys.modules:
        from keras.src.utils import module_utils

        module_utils.tensorflow._available = False
    keras.utils.set_random_seed(seed)


def versions() -> dict[str, str]:
    """Tags: Keras, its backend, and the backend library's version."""
    import keras

    backend = keras.backend.backend()
    library = importlib.import_module(backend)
    return {"keras_backend": backend, "keras_version": keras.__version__, f"{backend}_version": library.__version__}


def accelerator() -> str:
    """What the backend computes on: the GPU's name (e.g. `NVIDIA H100 80GB HBM3`), or `cpu`."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return "cpu" if device.platform == "cpu" else str(device.device_kind)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu"
    return str(tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu"))
