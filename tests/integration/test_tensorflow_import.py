"""TensorFlow's import in a job process leaves out what it loads for features the harness never uses
(`backends.NOT_FOR_TENSORFLOW`: scikit-learn for Keras's wrappers, JAX for TF Lite), and both still import
afterwards for whoever needs them (a JAX job of the same process, MLflow)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from mixup_sweeps.train import backends
backends.prepare("tensorflow")
backends.set_threads(1, "tensorflow")
import keras
assert keras.backend.backend() == "tensorflow"
print(sorted(name for name in backends.NOT_FOR_TENSORFLOW if name in sys.modules))
import sklearn, jax
print(jax.numpy.add(1, 2), sklearn.__name__)
"""


def test_tensorflow_starts_without_sklearn_and_jax_and_both_import_afterwards():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:2] == ["[]", "3 sklearn"]
