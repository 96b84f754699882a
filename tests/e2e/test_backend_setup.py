"""The backend set-up of a job, each in a fresh Python process (slow: a process each; moved out of the edit loop's
tests/integration); beside them: tests/e2e/test_backends.py (sweeps across backends).

`backend=tensorflow|jax`: a JAX job needs no TensorFlow, a sweep may cross backends, and every job is set
up to share a GPU before its backend starts (checked here without a GPU: what the job sets, and when)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import ROOT, TEST_SIZE, mlflow_runs

TINY = ["dataset.train_size=512", "trainer.epochs=2", TEST_SIZE]


# `import tensorflow` fails in the job's process as if TensorFlow were not installed (Keras probes for it too).
WITHOUT_TENSORFLOW = """
import runpy, sys
class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_cpu", "tf_keras"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, NoTensorFlow())
sys.argv = ["mixup_sweeps.run", *sys.argv[1:]]
try:
    runpy.run_module("mixup_sweeps.run", run_name="__main__")
finally:
    print("tensorflow loaded:", any(m.split(".")[0] == "tensorflow" for m in sys.modules))
"""


PREPARED = """
import json, os, sys
from mixup_sweeps.train import backends
backends.prepare(sys.argv[1], deterministic=sys.argv[2] == "true")
import keras
keys = ("KERAS_BACKEND", "TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_FLAGS")
print(json.dumps({"backend": keras.backend.backend(), **{k: os.environ.get(k) for k in keys}}))
"""


def prepared(backend: str, deterministic: bool, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "TF_FORCE", "XLA_"))}
    out = subprocess.run(
        [sys.executable, "-c", PREPARED, backend, str(deterministic).lower()],
        cwd=ROOT, capture_output=True, text=True, env={**clean, **env}, timeout=300, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_each_job_is_set_up_to_share_a_gpu_before_its_backend_starts():
    assert prepared("jax", False) == {
        "backend": "jax", "KERAS_BACKEND": "jax", "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_FLAGS": None,
    }  # fmt: skip
    # deterministic JAX asks XLA for deterministic GPU ops, keeping the user's own flags; a user's own choice
    # of GPU memory handling wins (e.g. preallocation with a memory fraction)
    own = prepared("jax", True, XLA_FLAGS="--xla_dump_to=/tmp/x", XLA_PYTHON_CLIENT_PREALLOCATE="true")
    assert own["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_gpu_deterministic_ops=true"
    assert own["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true" and own["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_the_default_backend_without_tensorflow_installed_is_one_line_exit_2_and_records_nothing(tmp_path):
    job = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, *TINY, f"paths.output_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert job.returncode == 2
    assert job.stderr.strip().splitlines()[-1] == (
        "Error: backend=tensorflow: tensorflow is not installed here; "
        "pip install -e '.[cpu]' (or '.[gpu]' on a GPU machine), or run with backend=jax"
    )
    assert not [r for r in mlflow_runs(tmp_path)[1] if r.info.status == "FINISHED"]


def test_mixed_images_are_bit_for_bit_what_they_were_on_jax_too():
    """tests/integration/test_augment.py's golden digests, computed on the JAX backend (a process has one backend)."""
    code = (
        "from mixup_sweeps.train import backends; backends.prepare('jax'); import json; "
        "from tests.integration.test_augment import golden_digests; print(json.dumps(golden_digests()))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    recorded = json.loads((ROOT / "tests" / "data" / "golden_mixing.json").read_text())
    assert json.loads(out.stdout.strip().splitlines()[-1]) == recorded["backends"]["jax"]


def test_a_backend_switch_reloads_every_module_holding_keras_in_any_folder():
    """Switching a process's backend re-imports the harness's modules that hold Keras, wherever they live: the
    training stream (data/) as well as the engines (train/). A module left out keeps the old backend's layers
    (`KerasTensor cannot be used as input to a JAX function` in the next job's model)."""
    code = (
        "from mixup_sweeps.train import backends; backends.prepare('tensorflow')\n"
        "from mixup_sweeps.data import training_stream; from mixup_sweeps.train import fit, packed\n"
        "print(' '.join(backends.modules_holding_keras()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    held = result.stdout.split()
    assert {"mixup_sweeps.data.training_stream", "mixup_sweeps.train.fit", "mixup_sweeps.train.packed"} <= set(held)
