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
import importlib.util
import logging
import os
import sys
from types import ModuleType

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
        from mixup_sweeps.config import ConfigError

        raise ConfigError(f"backend={backend}: {backend} is not installed here; {INSTALL_HINT[backend]}")
    for key, value in GPU_SHARING_ENV.items():
        os.environ.setdefault(key, value)
    if deterministic and backend == "jax" and XLA_DETERMINISTIC not in os.environ.get("XLA_FLAGS", ""):
        if "jax" in sys.modules:
            log.warning("JAX has started in this process: trainer.deterministic cannot set %s now", XLA_DETERMINISTIC)
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_DETERMINISTIC}".strip()
    os.environ["KERAS_BACKEND"] = backend
    if "keras" not in sys.modules:
        return
    import keras

    if keras.backend.backend() != backend:
        log.info("switching Keras from %s to %s in this process", keras.backend.backend(), backend)
        stale = modules_holding_keras()
        keras.config.set_backend(backend)
        package = sys.modules[PACKAGE]
        for name in stale:
            sys.modules.pop(name, None)
            if hasattr(package, attribute := name.rsplit(".", 1)[1]):
                delattr(package, attribute)
        for name in stale:
            importlib.import_module(name)


PACKAGE = __name__.rsplit(".", 1)[0]


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
