"""Seconds per epoch of the training path, side by side: the Keras example's recipe, the harness's earlier
tf.data stream, and the harness's stream on each Keras backend; and several jobs at once on one device.

Arms (every run trains the seed CNN from the same initial weights on the real data at batch 64):
- `seed`: the example's recipe as written there (float images in `from_tensor_slices`, two shuffled streams
  with 6,400-element buffers, `zip`, `map(mix_up)` with the direct Gamma ratio, one step per call);
- `tfdata`: the harness's stream until the one-stream change (`benchmarks/tfdata_stream.py`: uint8 images,
  gather + scale + mix in the tf.data graph, prefetch) with `steps_per_execution: 32`, the reference;
- `stream-tensorflow`, `stream-jax`: what the fit engine (`mixup_sweeps.train.fit`) does now:
  `training_stream.TrainingStream` (an epoch's plan drawn in NumPy, uint8 batches; on TensorFlow through
  `TrainingStream.tf_dataset`, one host call an epoch) -> `training_stream.training_model` (scale + mix in the
  compiled step) with `steps_per_execution: 32`, on that Keras backend (`stream-jax` needs no TensorFlow);
  `pydataset-tensorflow`: the same stream as Keras's `PyDataset` (a host call every batch), the path before.
Each run is a fresh process (a process has one Keras backend); the arms alternate (seed 0: every arm, then
seed 1, ...) so machine noise hits all alike. The first epoch (tracing, compiling) is left out of min/median.
`--jobs-at-once 1 2 4 8` instead starts that many runs of one arm together (a sweep's jobs sharing one GPU
or CPU) and prints the images per second of all of them together. `--packed 1 4 16 64` instead trains N
jobs (seeds 0..N-1) as one packed program (`mixup_sweeps.train.packed`, what `hydra/launcher=packed` and every JAX
job run) beside the `stream-jax` arm (Keras's fit on JAX, one job), in one run: seconds per epoch (training
only, as the fit arms) and model-epochs per second. `--train-size` trains on fewer images (CPU runs).
`--model-epoch` instead puts a model-epoch of the default sweep beside the machine: NumPy's float32 GEMM rate at
all cores, the Keras example's recipe alone on all cores, and the harness as `make run`'s sweep trains
(`stream-tensorflow`, one job per core at one thread each, as `hydra/launcher=local`): seconds per model-epoch
(a job's median epoch / jobs at once), GFLOP/s (5.87 MFLOP per training image: forward, weight gradients, input
gradients but the first layer's) and that as % of the GEMM rate; `--with-pydataset` adds the same jobs on the
input path before (`pydataset-tensorflow`), `--with-autotuning` the same jobs with tf.data's autotuning on (the
pipeline before issue 40); `--rounds N` runs the jobs N times, the arms alternated round by round. Beside the
median, the mean s/model-epoch and the slow epochs (over 1.5x the arm's fastest: an epoch that waited).

    .venv/bin/python benchmarks/train_throughput.py --epochs 5 --seeds 0 1
    .venv/bin/python benchmarks/train_throughput.py --arms stream-tensorflow --precision float32 mixed_bfloat16
    python benchmarks/train_throughput.py --arms stream-jax --epochs 4 --jobs-at-once 1 2 4 8
    .venv/bin/python benchmarks/train_throughput.py --packed 1 4 16 64 --epochs 3 --train-size 4096
    .venv/bin/python benchmarks/train_throughput.py --model-epoch --aug mixup --epochs 4 --with-pydataset
    .venv/bin/python benchmarks/train_throughput.py --model-epoch --aug mixup --epochs 4 --with-autotuning --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from mixup_sweeps.config import PRECISIONS  # noqa: E402 (trainer.precision; config imports no Keras)
from mixup_sweeps.data.augmentations import AUGMENTATIONS  # noqa: E402 (NumPy only)

BATCH_SIZE = 64
THREADS_ENV = "BENCH_JOB_THREADS"  # a worker's pool size (unset: TensorFlow's default, every core)
FLOP_PER_IMAGE = 2 * (24 * 24 * 16 * 25 * 2 + 8 * 8 * 32 * 400 * 3 + 32 * 128 * 3 + 128 * 10 * 3)  # a training step
# packed: `--packed N...` (default 1 4 16 64)
ARMS = ("seed", "tfdata", "stream-tensorflow", "pydataset-tensorflow", "stream-jax", "packed")
AUTOTUNED = "autotuned-tensorflow"  # --model-epoch --with-autotuning: `stream-tensorflow` with tf.data autotuning


def seed_recipe_stream(x_train, y_train, aug: str):
    """The Keras example's pipeline, as written there."""
    import keras
    import tensorflow as tf

    def sample_beta_distribution(size, concentration_0=0.2, concentration_1=0.2):
        gamma_1_sample = tf.random.gamma(shape=[size], alpha=concentration_1)
        gamma_2_sample = tf.random.gamma(shape=[size], alpha=concentration_0)
        return gamma_1_sample / (gamma_1_sample + gamma_2_sample)

    def mix_up(ds_one, ds_two, alpha=0.2):
        images_one, labels_one = ds_one
        images_two, labels_two = ds_two
        batch_size = keras.ops.shape(images_one)[0]
        lam = sample_beta_distribution(batch_size, alpha, alpha)
        x_l = keras.ops.reshape(lam, (batch_size, 1, 1, 1))
        y_l = keras.ops.reshape(lam, (batch_size, 1))
        return images_one * x_l + images_two * (1 - x_l), labels_one * y_l + labels_two * (1 - y_l)

    train_ds_one = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(BATCH_SIZE * 100).batch(BATCH_SIZE)
    if aug == "none":
        return train_ds_one
    train_ds_two = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(BATCH_SIZE * 100).batch(BATCH_SIZE)
    train_ds = tf.data.Dataset.zip((train_ds_one, train_ds_two))
    return train_ds.map(lambda one, two: mix_up(one, two, alpha=0.2), num_parallel_calls=tf.data.AUTOTUNE)


def run_packed(members: int, aug: str, epochs: int, precision: str, cache: Path, spe: int, train_size: int) -> dict:
    """`members` jobs (seeds 0..members-1) as one packed program; seconds of each epoch's training."""
    from mixup_sweeps.train import backends

    backends.prepare("jax")
    import jax

    from mixup_sweeps.data import datasets
    from mixup_sweeps.job.compose import load_config
    from mixup_sweeps.train import models, packed, training

    pack = []
    for seed in range(members):
        overrides = [f"seed={seed}", f"aug={aug}", f"trainer.epochs={epochs}", f"trainer.precision={precision}",
                     f"trainer.steps_per_execution={spe}", f"dataset.train_size={train_size or 'null'}"]  # fmt: skip
        cfg = load_config(cache, overrides)
        weights = models.create_initial_weights(cache, cfg.model, (28, 28, 1), 10, seed)
        backup = cache / f"packed-{members}-{seed}"
        pack.append(training.Member(cfg, datasets.load(cfg.dataset, seed), weights, lambda e, m: None, backup, print))
    program = packed.PackedProgram(pack)
    seconds = []
    for epoch in range(epochs):
        started = time.perf_counter()
        program._train_epoch(epoch)
        jax.block_until_ready(program.state)
        seconds.append(time.perf_counter() - started)
    return {"seconds": seconds, "images": len(pack[0].dataset.train), "members": members,
            "batched": program.batched, "device": backends.accelerator()}  # fmt: skip


def run_arm(
    arm: str, aug: str, seed: int, epochs: int, precision: str, cache: Path, spe: int = 32, train_size: int = 0
) -> dict:
    """One training run in this process; returns per-epoch seconds, epoch end times and test accuracy."""
    from mixup_sweeps.train import backends

    backend = "jax" if arm == "stream-jax" else "tensorflow"
    backends.prepare(backend)
    if os.environ.get(THREADS_ENV):  # a job's pools as the default launcher sizes them (--model-epoch)
        backends.set_threads(int(os.environ[THREADS_ENV]), backend)
    import keras
    import numpy as np
    from omegaconf import OmegaConf

    from mixup_sweeps.data import augmentations, datasets, training_stream
    from mixup_sweeps.job.compose import load_config
    from mixup_sweeps.train import models, optimizers

    ds = datasets.load(load_config(cache, [f"dataset.train_size={train_size or 'null'}"]).dataset)
    model_cfg = OmegaConf.load(ROOT / "conf" / "model" / "seed_cnn.yaml")
    weights = models.create_initial_weights(cache, model_cfg, (28, 28, 1), 10, seed)
    keras.utils.set_random_seed(seed)
    network = models.build_model(model_cfg, (28, 28, 1), 10, precision=precision)
    network.load_weights(weights)
    aug_cfg = load_config(cache, [f"aug={aug}"]).aug  # conf/aug/<aug>.yaml: mixup's alpha is the seed's 0.2
    callbacks = []
    if arm == "seed":
        model, steps_per_execution = network, 1
        x = training_stream.scaled(ds.train)
        stream = seed_recipe_stream(x, np.eye(10, dtype="float32")[ds.train.labels], aug)
    elif arm == "tfdata":
        import tfdata_stream

        model, steps_per_execution = network, spe
        stream = tfdata_stream.training_stream(ds.train, aug, BATCH_SIZE, 10, seed)
    else:
        model, steps_per_execution = training_stream.training_model(network, augmentations.of(aug_cfg).inputs, aug), spe
        stream = training_stream.TrainingStream(ds.train, aug_cfg, BATCH_SIZE, 10, seed, last_epoch=epochs - 1)
        callbacks.append(stream.epoch_callback())
        if arm == AUTOTUNED:  # the pipeline as it was before issue 40: tf.data's autotuning on
            training_stream.without_autotuning = lambda dataset: dataset
        if arm in ("stream-tensorflow", AUTOTUNED):  # as the fit engine trains (`pydataset-tensorflow`: PyDataset)
            stream = stream.tf_dataset()
    seed_recipe = OmegaConf.create({"learning_rate": 0.001, "precision": precision})  # Adam, constant rate
    model.compile(optimizer=optimizers.make(seed_recipe), loss="categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=steps_per_execution)  # fmt: skip
    timer = EpochTimer()
    model.fit(stream, epochs=epochs, callbacks=[*callbacks, timer], shuffle=False, verbose=0)
    probabilities = network.predict(training_stream.scaled(ds.test), batch_size=BATCH_SIZE, verbose=0)
    accuracy = float(np.mean(probabilities.argmax(1) == ds.test.labels))
    return {"seconds": timer.seconds, "ends": timer.ends, "accuracy": accuracy, "images": len(ds.train),
            "device": backends.accelerator(), **backends.versions()}  # fmt: skip


def epoch_timer_class():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.ends: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)
            self.ends.append(time.time())

    return EpochTimer


def EpochTimer():  # noqa: N802 - a class made once Keras is imported on the arm's backend
    return epoch_timer_class()()


def start_worker(
    arm: str, aug: str, seed: int, epochs: int, precision: str, cache: Path, spe: int = 32, train_size: int = 0,
    threads: int = 0,
) -> subprocess.Popen:  # fmt: skip
    """`arm` is an arm's name, or `packed-N` (N jobs as one packed program; `seed` unused)."""
    command = [sys.executable, __file__, "--worker", arm, aug, str(seed), str(epochs), precision, str(cache),
               str(spe), str(train_size)]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **({THREADS_ENV: str(threads)} if threads else {})}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def result_of(worker: subprocess.Popen) -> dict:
    out, err = worker.communicate()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if worker.returncode != 0 or not lines:
        raise SystemExit(f"benchmark run failed ({worker.args[3:8]}):\n{err[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def steady(seconds: list[float]) -> list[float]:
    """Epochs after the first (which includes tracing and compiling)."""
    return seconds[1:] if len(seconds) > 1 else seconds


def cpu_flags() -> str:
    """The processor and the flags that decide whether 16-bit math is fast on it (Linux /proc/cpuinfo)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = sorted(f for f in flags if "bf16" in f or "fp16" in f or f.startswith("amx") or f == "avx512f")
    return f"{model}; flags: {' '.join(wanted) or 'no avx512f/bf16/fp16/amx'}"


def side_by_side(args: argparse.Namespace, cache: Path) -> None:
    arms = [(arm, precision) for arm in args.arms for precision in args.precision]
    results: dict[tuple[str, str, str], list[dict]] = {}
    for seed in args.seeds:
        for aug in args.aug:
            for arm, precision in arms:  # alternate the arms
                result = result_of(
                    start_worker(arm, aug, seed, args.epochs, precision, cache, args.steps_per_execution)
                )
                results.setdefault((aug, arm, precision), []).append(result)
                print(f"  seed={seed} aug={aug:5s} {arm:17s} {precision:14s} on {result['device']:5s} epochs(s)="
                      f"{' '.join(f'{s:.2f}' for s in result['seconds'])} test_acc={result['accuracy']:.4f}",
                      flush=True)  # fmt: skip
    n = next(iter(results.values()))[0]["images"]
    print("\naug    arm               precision       min s/epoch  median s/epoch  images/s (median)  "
          "test acc (mean)   vs first arm (min / median)")  # fmt: skip
    for aug in args.aug:
        reference = None
        for arm, precision in arms:
            runs = results[(aug, arm, precision)]
            secs = [s for r in runs for s in steady(r["seconds"])]
            fastest, median = min(secs), statistics.median(secs)
            reference = reference or (fastest, median)
            acc = statistics.mean(r["accuracy"] for r in runs)
            print(f"{aug:6s} {arm:17s} {precision:15s} {fastest:11.2f} {median:15.2f} {n / median:18.0f} "
                  f"{acc:16.4f}   {fastest / reference[0]:.2f}x / {median / reference[1]:.2f}x time")  # fmt: skip


def jobs_at_once(args: argparse.Namespace, cache: Path) -> None:
    """k runs of one arm started together: the images per second of all k, against one run alone."""
    arm, aug, precision = args.arms[0], args.aug[-1], args.precision[0]
    spe = args.steps_per_execution
    result_of(start_worker(arm, aug, 0, 1, precision, cache, spe))  # initial weights, caches: not in the timings
    print(f"\n{arm}, aug={aug}, {precision}, batch {BATCH_SIZE}, steps_per_execution {spe}, {args.epochs} epochs "
          "per job; images/s of a job = training images / its median epoch after the first")  # fmt: skip
    print("jobs at once  median s/epoch (per job)  images/s (all jobs)  vs 1 job  wall s")
    single = None
    for k in args.jobs_at_once:
        started = time.perf_counter()
        workers = [start_worker(arm, aug, seed, args.epochs, precision, cache, spe) for seed in range(k)]
        results = [result_of(w) for w in workers]
        wall = time.perf_counter() - started
        medians = [statistics.median(steady(r["seconds"])) for r in results]
        total = sum(r["images"] / m for r, m in zip(results, medians))
        single = single or total / k
        print(f"{k:12d}  {statistics.median(medians):22.2f}  {total:19.0f}  {total / single:7.2f}x  {wall:6.0f}"
              f"   on {results[0]['device']}", flush=True)  # fmt: skip


def sgemm_rate() -> float:
    """GFLOP/s of NumPy's float32 matmul (OpenBLAS) on every core, 4096 x 4096, best of 5."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
    a @ a
    best = min(_timed_matmul(a) for _ in range(5))
    return 2 * 4096**3 / best / 1e9


def _timed_matmul(a) -> float:
    started = time.perf_counter()
    a @ a
    return time.perf_counter() - started


def model_epoch(args: argparse.Namespace, cache: Path) -> None:
    """A model-epoch of the default sweep beside the GEMM rate and the Keras example's recipe, in one run."""
    aug, precision, spe, size = args.aug[-1], args.precision[0], args.steps_per_execution, args.train_size
    cores = len(os.sched_getaffinity(0))
    result_of(start_worker("stream-tensorflow", aug, 0, 1, precision, cache, spe, size))  # weights, caches
    gemm = sgemm_rate()
    seed = result_of(start_worker("seed", aug, 0, args.epochs, precision, cache, spe, size))
    job_arms = [("stream-tensorflow", "the harness, make run's sweep (local: 1 thread a job)")]
    if args.with_autotuning:  # the pipeline before issue 40's change, alternated with it round by round
        job_arms.append((AUTOTUNED, "  the same, tf.data autotuning on (before)"))
    if args.with_pydataset:  # the input path before `TrainingStream.tf_dataset`
        job_arms.append(("pydataset-tensorflow", "  the same, Keras's PyDataset input (before)"))
    runs: dict[str, list[dict]] = {arm: [] for arm, _ in job_arms}
    walls: dict[str, list[float]] = {arm: [] for arm, _ in job_arms}
    for _ in range(args.rounds):
        for arm, _ in job_arms:
            started = time.perf_counter()
            workers = [start_worker(arm, aug, s, args.epochs, precision, cache, spe, size, threads=1)
                       for s in range(cores)]  # fmt: skip
            runs[arm] += [result_of(w) for w in workers]
            walls[arm].append(time.perf_counter() - started)
    images = seed["images"]
    print(f"{cores} cores; {cpu_flags()}; float32 GEMM (NumPy, 4096², {cores} threads) {gemm:.0f} GFLOP/s")
    print(f"aug={aug}, {precision}, batch {BATCH_SIZE}, {images} training images, {args.epochs} epochs a run, "
          f"{FLOP_PER_IMAGE / 1e6:.2f} MFLOP per training image; the first epoch left out")  # fmt: skip
    print(f"{'arm':<44} {'jobs':>4} {'s/epoch':>8} {'s/model-epoch':>13} {'GFLOP/s':>8} {'% of GEMM':>9} "
          f"{'vs seed':>8} {'mean s/model-epoch':>18} {'slow epochs':>11}")  # fmt: skip
    rows = [("the Keras example's recipe (every core)", 1, steady(seed["seconds"]))]
    rows += [(name, cores, [s for r in runs[arm] for s in steady(r["seconds"])]) for arm, name in job_arms]
    for name, at_once, seconds in rows:
        model_epoch_s = statistics.median(seconds) / at_once
        rate = FLOP_PER_IMAGE * images / model_epoch_s / 1e9
        speed_up = statistics.median(rows[0][2]) / model_epoch_s
        slow = sum(s > 1.5 * min(seconds) for s in seconds)  # an epoch that waited: ~2x the others
        print(f"{name:<44} {at_once:>4} {statistics.median(seconds):>8.2f} {model_epoch_s:>13.2f} {rate:>8.1f} "
              f"{rate / gemm:>9.0%} {speed_up:>7.2f}x {statistics.mean(seconds) / at_once:>18.2f} "
              f"{slow:>5} of {len(seconds):<3}", flush=True)  # fmt: skip
    for arm, name in job_arms:
        print(f"({name.strip()}: {args.rounds} x {cores} jobs together, {statistics.mean(walls[arm]):.0f} s wall "
              f"a round; test accuracy {' '.join(format(r['accuracy'], '.4f') for r in runs[arm])})")  # fmt: skip
    print(f"(the recipe's test accuracy {seed['accuracy']:.4f})")


def packed_side_by_side(args: argparse.Namespace, cache: Path) -> None:
    """N jobs as one packed program against one job with Keras's fit on JAX, in one run, for each --aug."""
    for aug in args.aug:
        packed_beside_fit(args, cache, aug)


def packed_beside_fit(args: argparse.Namespace, cache: Path, aug: str) -> None:
    precision, spe, size = args.precision[0], args.steps_per_execution, args.train_size
    fit = result_of(start_worker("stream-jax", aug, 0, args.epochs, precision, cache, spe, size))
    fit_median = statistics.median(steady(fit["seconds"]))
    images = fit["images"]
    print(f"aug={aug}, {precision}, batch {BATCH_SIZE}, {images} training images, {args.epochs} epochs, training "
          f"time per epoch (first epoch left out), on {fit['device']}")  # fmt: skip
    print("program                     members  median s/epoch  model-epochs/s  s per model-epoch  vs fit")
    name = "Keras fit, backend=jax"
    print(f"{name:27s} {1:7d} {fit_median:15.2f} {1 / fit_median:15.2f} {fit_median:18.2f}    1.00x")
    for members in args.packed:
        result = result_of(start_worker(f"packed-{members}", aug, 0, args.epochs, precision, cache, spe, size))
        median = statistics.median(steady(result["seconds"]))
        kind = "packed (vmap + scan)" if result["batched"] else "packed (one by one)"
        print(f"{kind:27s} {members:7d} {median:15.2f} {members / median:15.2f} {median / members:18.2f}"
              f"    {fit_median / (median / members):.2f}x", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--aug", nargs="+", default=["none", "mixup"], choices=sorted(AUGMENTATIONS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS[:-1]), choices=ARMS)
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=PRECISIONS)
    parser.add_argument("--jobs-at-once", type=int, nargs="+", metavar="K")
    parser.add_argument("--steps-per-execution", type=int, default=32, help="harness arms (trainer's default: 32)")
    parser.add_argument("--packed", type=int, nargs="+", metavar="N", help="packs of N jobs vs one fit job")
    parser.add_argument("--train-size", type=int, default=0, help="training images (default 0: all 58,000)")
    parser.add_argument("--model-epoch", action="store_true", help="a model-epoch beside the GEMM rate and the seed")
    parser.add_argument("--with-pydataset", action="store_true", help="--model-epoch: the input path before, too")
    parser.add_argument(
        "--with-autotuning",
        action="store_true",
        help="--model-epoch: the same jobs with tf.data's autotuning on (before issue 40), too",
    )
    parser.add_argument("--rounds", type=int, default=1, help="--model-epoch: rounds of the jobs, arms alternated")
    parser.add_argument("--worker", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (args.packed or args.worker) and set(args.arms) & {"seed", "tfdata"} and set(args.aug) - {"none", "mixup"}:
        parser.error("the seed and tfdata arms know aug none and mixup only; use the stream-* arms for the others")
    if args.worker:
        arm, aug, seed, epochs, precision, cache, spe, size = args.worker
        if arm.startswith("packed-"):
            result = run_packed(int(arm.split("-")[1]), aug, int(epochs), precision, Path(cache), int(spe), int(size))
        else:
            result = run_arm(arm, aug, int(seed), int(epochs), precision, Path(cache), int(spe), int(size))
        print("RESULT " + json.dumps(result), flush=True)
        return
    print(f"{os.cpu_count()} CPUs ({cpu_flags()}); batch {BATCH_SIZE}, {args.epochs} epochs, seeds {args.seeds}; "
          f"Fashion-MNIST training images: {args.train_size or 'all (58,000)'}")  # fmt: skip
    if "packed" in args.arms:  # the packed arm runs beside stream-jax, as `--packed` does
        args.packed = args.packed or [1, 4, 16, 64]
    with tempfile.TemporaryDirectory() as cache:
        if args.model_epoch:
            model_epoch(args, Path(cache))
        elif args.packed:
            packed_side_by_side(args, Path(cache))
        elif args.jobs_at_once:
            jobs_at_once(args, Path(cache))
        else:
            side_by_side(args, Path(cache))


if __name__ == "__main__":
    main()
