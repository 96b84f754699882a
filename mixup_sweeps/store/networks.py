"""A run's network and data the MLflow way: the trained network as an MLflow Model (the `keras` flavor), the
training, validation and test inputs as MLflow datasets, the machine's system metrics while it trains.

So `mlflow.keras.load_model("runs:/<run id>/model")` gives the network back in any Python with Keras (its
layers are Keras's own), the UI's *Models* page and dataset column are filled, and a winner can be registered
(`store.registry`). Keras is imported inside the functions: the job chose its backend before.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from mlflow.entities import DatasetInput, InputTag, Metric, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from mixup_sweeps.data.datasets import Dataset, Split

if TYPE_CHECKING:
    import keras

MODEL_NAME = "model"  # the logged model's name: `runs:/<run id>/model`
SIGNATURE_IMAGES = 8  # the signature is inferred from this many test images and their probabilities
SYSTEM_METRICS_INTERVAL_S = 10.0
# The requirements written into the MLmodel, so that MLflow infers nothing in a subprocess (seconds per run).
# Each is the first of its distribution names that is installed (TensorFlow's CPU build is `tensorflow-cpu`).
_REQUIREMENTS = {
    "tensorflow": (("keras",), ("tensorflow", "tensorflow-cpu")),
    "jax": (("keras",), ("jax",), ("jaxlib",)),
}
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}  # Dataset field -> MLflow input context


def pip_requirements(backend: str) -> list[str]:
    """Keras and the backend's libraries at the versions that trained the network."""
    found = []
    for names in _REQUIREMENTS[backend]:
        for name in names:
            try:
                found.append(f"{name}=={importlib.metadata.version(name)}")
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def portable(network: keras.Model) -> keras.Model:
    """The trained network without its optimizer: a clone holding the same weights (a compiled network would
    save the harness's optimizer class, which another Python cannot rebuild)."""
    import keras

    clone = keras.models.clone_model(network)
    clone.set_weights(network.get_weights())
    return clone


def log_network(client: MlflowClient, run_id: str, network: keras.Model, images: np.ndarray, backend: str) -> str:
    """Log the trained network as the run's MLflow Model (`.keras` format, a signature from `images` and their
    probabilities); returns its model id. Nothing is inferred in a subprocess: the requirements are given."""
    import mlflow
    import mlflow.keras
    from mlflow.models import Model, infer_signature

    network = portable(network)
    sample = images[:SIGNATURE_IMAGES]
    signature = infer_signature(sample, np.asarray(network.predict(sample, verbose=0)))
    with _global_store(client, run_id):
        info = Model.log(
            None,  # artifact_path: MLflow 3 names a logged model instead
            name=MODEL_NAME,
            flavor=mlflow.keras,
            run_id=run_id,
            model=network,
            signature=signature,
            pip_requirements=pip_requirements(backend),
            step=-1,  # no metric is at step -1: `link_metrics` links the test metrics themselves
        )
    return str(info.model_id)


@contextmanager
def _global_store(client: MlflowClient, run_id: str) -> Iterator[None]:
    """MLflow's global store and experiment set to the run's for `Model.log`, which finds both globally (else it
    writes to ./mlruns, experiment 0), then set back: `set_tracking_uri` also sets MLFLOW_TRACKING_URI in the
    environment, which a later job of this process (`tracking=server`) would read."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
        yield
    finally:
        mlflow.set_tracking_uri(before)  # type: ignore[arg-type]  # None: unset, the variable too


def link_metrics(
    client: MlflowClient, run_id: str, model_id: str, metrics: dict[str, float], step: int, test: DatasetRef
) -> None:
    """Log the run's final metrics linked to its logged model (MLflow 3: the model's page shows them); those
    measured on the test set (`test_*`) to the test dataset too, not throughput or the realised label noise."""
    now = int(time.time() * 1000)
    batch = []
    for key, value in metrics.items():
        on_test = {"dataset_name": test.name, "dataset_digest": test.digest} if key.startswith("test_") else {}
        batch.append(Metric(key, float(value), now, step, model_id=model_id, **on_test))
    client.log_batch(run_id, metrics=batch)


def logged_model_id(run: Run) -> str | None:
    """The id of the run's logged network (None for a run of the harness before MLflow Models). A run from
    `search_runs` carries its outputs: no request per run."""
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    return outputs[-1].model_id if outputs else None


# --- datasets ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetRef:
    """A split's MLflow dataset name and digest (what a metric links to)."""

    name: str
    digest: str


def split_refs(dataset: Dataset, digests: dict[str, str]) -> dict[str, DatasetRef]:
    return {field: DatasetRef(f"{dataset.name}-{field}", digests[field]) for field in CONTEXTS}


def log_datasets(client: MlflowClient, run_id: str, dataset: Dataset, digests: dict[str, str]) -> None:
    """The training, validation and test inputs of the run as MLflow datasets: named `<dataset>-<split>`, their
    digest the split rule's (`datasets.split_digests`: the files' digests and the split, not a sample's
    hash), their source the file or folder read."""
    from mlflow.data.numpy_dataset import from_numpy

    inputs = []
    for field, ref in split_refs(dataset, digests).items():
        split: Split = getattr(dataset, field)
        with warnings.catch_warnings():  # a local path "can be interpreted in multiple ways": all are the same
            warnings.simplefilter("ignore", UserWarning)
            data = from_numpy(split.images, str(dataset.source_dir), split.labels, ref.name, ref.digest)
        entity = data._to_mlflow_entity()
        inputs.append(DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS[field])]))
    try:
        client.log_inputs(run_id, datasets=inputs)
    except MlflowException as exc:
        # MLflow's SQL store looks for the (experiment, name, digest) row, then inserts it: two jobs logging the
        # same new split at once (jobs side by side, two processes of a sweep) race, and the second insert breaks
        # the table's unique key. The row exists now; logging again links it to this run.
        if "UNIQUE constraint failed: datasets" not in str(exc) and "duplicate key" not in str(exc):
            raise
        client.log_inputs(run_id, datasets=inputs)


# --- system metrics ---------------------------------------------------------------------------------------
class SystemMetrics:
    """MLflow's system-metrics monitor (CPU, memory, disk, network; NVIDIA GPUs with the `gpu` extra's
    nvidia-ml-py) on one run of this process, every `SYSTEM_METRICS_INTERVAL_S`: a pack samples the machine
    once, on its first member, not once per member."""

    def __init__(self) -> None:
        self.monitor: Any = None

    def start(self, client: MlflowClient, run_id: str) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines per job
        self.monitor = SystemMetricsMonitor(
            run_id,
            sampling_interval=SYSTEM_METRICS_INTERVAL_S,
            tracking_uri=client.tracking_uri,
            resume_logging=True,  # a resumed run goes on from its last step
        )
        self.monitor.start()

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.finish()
            self.monitor = None
