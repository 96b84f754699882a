"""What issue 39's MLflow-native records add to a `make run` job, measured beside that job's own cost in one run.

A `make run` job trains the seed CNN on the full Fashion-MNIST (58,000 training images, 10 epochs, batch 64,
TensorFlow). The reference here is one such epoch timed on this machine (Keras's `fit`, after an untimed
warm-up epoch), times 10. Beside it, on a throw-away SQLite store, what each job now also does:

- `log_network`: the trained network as an MLflow Model (a clone without its optimizer, the signature from 8
  test images, the `.keras` file, the MLmodel, the logged model and its metrics row);
- `log_datasets`: its three splits as MLflow datasets (digests from the files' sha256, no hashing of images);
- the system-metrics monitor: started and stopped once per process, and its CPU seconds per 10 s sample.

Each is timed `--repeats` times on new runs; `first` is the first call, which also imports what it needs (a
job pays it once per process).

    .venv/bin/python benchmarks/mlflow_native.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from mlflow.tracking import MlflowClient

    from mixup_sweeps.data import datasets, training_stream
    from mixup_sweeps.job.compose import load_config
    from mixup_sweeps.store import networks
    from mixup_sweeps.train import models, training

    cfg = load_config("outputs")
    data = datasets.load(cfg.dataset, 0)
    network = models.build_model(cfg.model, data.image_shape, data.num_classes)
    training.compile_for_training(network, cfg.trainer)
    x, y = training_stream.scaled(data.train), np.eye(data.num_classes, dtype=np.float32)[data.train.labels]
    network.fit(x[:6400], y[:6400], batch_size=cfg.trainer.batch_size, epochs=1, verbose=0)  # warm-up, compile
    started = time.perf_counter()
    network.fit(x, y, batch_size=cfg.trainer.batch_size, epochs=1, verbose=0)
    epoch_s = time.perf_counter() - started
    job_s = epoch_s * cfg.trainer.epochs

    with tempfile.TemporaryDirectory() as tmp:
        client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
        experiment = client.create_experiment("bench", artifact_location=f"file://{tmp}/mlartifacts")
        images = training_stream.scaled(datasets.Split(data.test.images[:8], data.test.labels[:8]))
        digests = datasets.split_digests(cfg.dataset, data, 0)
        timings: dict[str, list[float]] = {"log_network": [], "log_datasets": [], "monitor start+stop": []}
        for _ in range(args.repeats):
            run_id = client.create_run(experiment).info.run_id
            started = time.perf_counter()
            networks.log_network(client, run_id, network, images, "tensorflow")
            timings["log_network"].append(time.perf_counter() - started)
            started = time.perf_counter()
            networks.log_datasets(client, run_id, data, digests)
            timings["log_datasets"].append(time.perf_counter() - started)
            started = time.perf_counter()
            monitor = networks.SystemMetrics()
            monitor.start(client, run_id)
            monitor.stop()
            timings["monitor start+stop"].append(time.perf_counter() - started)
        # the monitor's own CPU per sample: sample every 0.5 s for 5 s, CPU seconds of this (otherwise idle) process
        run_id = client.create_run(experiment).info.run_id
        os.environ["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "0.5"
        cpu = time.process_time()
        monitor = networks.SystemMetrics()
        monitor.start(client, run_id)
        time.sleep(5)
        monitor.stop()
        per_sample = (time.process_time() - cpu) / 10
        samples_per_job = job_s / networks.SYSTEM_METRICS_INTERVAL_S

    print(f"machine: {os.cpu_count()} cores, {args.threads} threads; a make-run job (seed CNN, 58,000 images, "
          f"{cfg.trainer.epochs} epochs): {epoch_s:.2f} s/epoch -> {job_s:.1f} s")  # fmt: skip
    print(f"{'added per job':<34} {'median s':>9} {'first s':>8} {'% of the job':>13}")
    total = 0.0
    for name, values in timings.items():
        median = statistics.median(values)
        total += median
        print(f"{name:<34} {median:>9.3f} {values[0]:>8.3f} {100 * median / job_s:>12.2f}%")
    monitor_cpu = per_sample * samples_per_job
    total += monitor_cpu
    print(f"{'monitor CPU (' + f'{samples_per_job:.0f} samples of 10 s)':<34} {monitor_cpu:>9.3f} {'':>8} "
          f"{100 * monitor_cpu / job_s:>12.2f}%")  # fmt: skip
    print(f"{'total (medians)':<34} {total:>9.3f} {'':>8} {100 * total / job_s:>12.2f}%")


if __name__ == "__main__":
    main()
