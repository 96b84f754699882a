"""Helpers every test file may use: Hydra compose on the real conf/, small IDX files, the CLI, the store,
loopback ports, and the small-run settings the end-to-end tests share. Fixtures live in conftest.py."""

from __future__ import annotations

import atexit
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from mixup_sweeps.config import CONF_DIR
from mixup_sweeps.data.datasets import FILES
from mixup_sweeps.job.compose import load_config
from mixup_sweeps.store import tracking

ROOT = Path(__file__).resolve().parents[1]
TESTS_DATA = ROOT / "tests" / "data"  # small committed files: golden values, fingerprints, tiny datasets
CONF = CONF_DIR
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds")  # every epoch
# The test split of the suite's runs: the first 1,000 of Fashion-MNIST's 10,000 test images (`dataset.test_size`):
# the test pass of 10,000 images was ~1 CPU-s of every tiny job, more than its training. A test that needs the
# whole test set says `dataset.test_size=null`.
TEST_IMAGES = 1000
TEST_SIZE = f"dataset.test_size={TEST_IMAGES}"
TINY = ["dataset.train_size=256", "trainer.epochs=2", TEST_SIZE]  # the smallest run that still has a second epoch


def compose_config(
    overrides: list[str] | None = None, output_dir: str = "/tmp/mixup-sweeps-test", return_hydra_config: bool = False
) -> DictConfig:
    """The config a job would get (without Hydra's runtime section), composed from the real conf/."""
    return load_config(output_dir, overrides or [], return_hydra_config)


EXPERIMENT = compose_config().tracking.experiment  # the default experiment, as conf/ names it


def sqlite_store(directory: Path) -> str:
    """The URI of a new SQLite store, `directory/mlflow.db`, made as a job makes one: a copy of the empty store
    MLflow's migrations made once (`tracking.new_sqlite_store`), not ~1 CPU-s of migrations each time."""
    db = Path(directory) / "mlflow.db"
    tracking.new_sqlite_store(db)
    return f"sqlite:///{db}"


def dataset_config(path: str | Path, group: str = "fashion_mnist", **values: object) -> DictConfig:
    """The `dataset=group` config with data from `path` and the given keys changed (`val_size=20`, ...)."""
    overrides = [f"dataset={group}", f"dataset.path={path}", *(f"dataset.{k}={v}" for k, v in values.items())]
    return compose_config(overrides).dataset


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> Path:
    """Write a gzipped IDX file of unsigned bytes (magic 0x0801 for labels, 0x0803 for images)."""
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))
    return path


def write_fake_dataset(directory: Path, n_train: int = 120, n_test: int = 30, seed: int = 0) -> Path:
    """Small Fashion-MNIST-shaped IDX files: images whose pixels encode the label, so splits are checkable."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (np.arange(n)[:, None, None] % 256 * np.ones((1, 28, 28))).astype(np.uint8)
        write_idx(directory / FILES[f"{part}_images"], images)
        write_idx(directory / FILES[f"{part}_labels"], labels)
    return directory


def cli(*args: str) -> list[str]:
    """The command line `python -m mixup_sweeps.run ARGS` as the suite runs it: a command that names neither
    `dataset.test_size` nor another dataset tests on the first `TEST_IMAGES` test images of Fashion-MNIST."""
    if not any(a.startswith(("dataset.test_size=", "dataset=")) for a in args):
        args = (*args, TEST_SIZE)
    return [sys.executable, "-m", "mixup_sweeps.run", *args]


def run_cli(
    *args: str, timeout: int = 600, env: dict | None = None, cwd: Path = ROOT, fresh_python: bool = False
) -> subprocess.CompletedProcess:
    """`python -m mixup_sweeps.run ARGS` as a user types it, from the repository root (or `cwd`).

    A multirun that names no launcher runs its jobs one after another in the command's own process
    (`hydra/launcher=basic`): the suite's pytest-xdist workers already fill the cores, and each worker process of
    the default launcher would import TensorFlow again. What the default launcher does is tested where a test
    names it (`hydra/launcher=local`: tests/e2e/conftest.py's shared sweep, tests/e2e/test_launchers.py).
    The test split: `cli`'s. The command runs as `start_cli` starts one; `fresh_python` for a test that reads its
    stderr line by line (a TensorFlow the command imports then writes its start-up lines there)."""
    if "-m" in args and not any(a.startswith(("hydra/launcher=", "hydra.launcher.")) for a in args):
        args = (*args, "hydra/launcher=basic")
    return run_command(cli(*args), timeout, env, cwd, fresh_python)


def run_command(
    command: list[str], timeout: float = 600, env: dict | None = None, cwd: Path = ROOT, fresh_python: bool = False
) -> subprocess.CompletedProcess:
    """A `cli()` command line run to its end as `start_cli` starts it (`subprocess.run` with captured text)."""
    process = start_cli(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        fresh_python=fresh_python)  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise subprocess.TimeoutExpired(process.args, timeout, out, err) from None
    return subprocess.CompletedProcess(process.args, process.wait(), out, err)


# Variables a command reads only when it runs, never while importing what the warm parents imported (MLflow reads
# its variables when it uses them; Ray is not imported there; the rest are the tests' own): a command whose `env`
# sets only these still runs as a warm child. PYTHONUNBUFFERED, read at a Python's start, is a line-buffered stdout.
READ_WHEN_RUN = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL",
                 "AWS_SECRET_ACCESS_KEY", "MIXUP_NAME", "PYTHONUNBUFFERED", "RAY_")  # fmt: skip


WARM_MODULES = ("mixup_sweeps.run", "mixup_sweeps.report")  # the commands (`python -m MODULE`) warm_cli.py runs


def report_command(*args: str) -> list[str]:
    """The command line `python -m mixup_sweeps.report ARGS`, for `run_command`."""
    return [sys.executable, "-m", "mixup_sweeps.report", *args]


def start_cli(
    command: list[str],
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    start_new_session: bool = False,
    fresh_python: bool = False,
) -> subprocess.Popen | WarmProcess:
    """`subprocess.Popen(command, ...)` of a `cli()` command line with text streams: `env` is what it adds to this
    process's environment, `stdout`/`stderr` PIPE, DEVNULL (or None: the same) or, for stderr, STDOUT.

    The command runs as a child of a warm parent (tests/warm_cli.py: the same command, without its imports), or as
    a fresh process where its `env` changes a variable an import may read; `fresh_python`: the parent without
    TensorFlow, whose imports wrote nothing to stderr, so that the command's stderr is a fresh process's."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR")
    module, args = command[2], tuple(command[3:])  # cli()'s [python, -m, mixup_sweeps.run, ARGS...], or report's
    assert module in WARM_MODULES, f"{module}: a command the warm parents do not run"
    on_tensorflow = module == "mixup_sweeps.run" and _first_job_on_tensorflow(args) and not fresh_python
    parent = WARM_PARENTS["tensorflow" if on_tensorflow else "neutral"]
    changed = [k for k, v in full_env.items() if os.environ.get(k) != v]
    if all(k.startswith(READ_WHEN_RUN) for k in changed) and (not fresh_python or parent.quiet()):
        return parent.start(command, module, args, cwd, full_env, stdout, stderr, start_new_session)
    pipe = {subprocess.PIPE: subprocess.PIPE, subprocess.STDOUT: subprocess.STDOUT}
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=full_env,
        text=True,
        start_new_session=start_new_session,
        stdout=pipe.get(stdout, subprocess.DEVNULL),
        stderr=pipe.get(stderr, subprocess.DEVNULL),
    )


def _stable(env: Mapping[str, str]) -> dict[str, str]:
    """An environment without what changes from test to test and nothing imports: pytest's PYTEST_CURRENT_TEST,
    the HYDRA_FULL_ERROR that start_cli drops."""
    return {k: v for k, v in env.items() if k not in ("PYTEST_CURRENT_TEST", "HYDRA_FULL_ERROR")}


# Presets whose jobs train on JAX (`backend: jax` in the preset)
JAX_PRESETS = {p.stem for p in (CONF / "experiment").glob("*.yaml") if "\nbackend: jax" in p.read_text()}


def _first_job_on_tensorflow(args: tuple[str, ...]) -> bool:
    """Whether a command's first job loads Keras on TensorFlow, as the `tensorflow` warm parent has (read from the
    command line: no JAX or packed-launcher argument, no JAX preset)."""
    presets = {a.removeprefix("+").removeprefix("experiment=") for a in args if "experiment=" in a}
    return not (presets & JAX_PRESETS or any("jax" in a or "launcher=packed" in a for a in args))


class WarmParent:
    """One tests/warm_cli.py of this test process (pytest-xdist worker), started at its first command; a thread
    reads what it says about each command (its pid, then its exit code)."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour  # "tensorflow": TensorFlow imported too
        self.process: subprocess.Popen | None = None
        self.started_env: dict[str, str] = {}
        self.imports_stderr = ""
        self.lock = threading.Lock()  # one request written at a time
        self.said = threading.Condition()
        self.commands: dict[int, dict] = {}  # request id -> what the parent said of it
        self.next_id = 0

    def _started(self) -> subprocess.Popen:
        """The parent, (re)started where it has not started, has died, or imported in another environment (a
        test changed this process's: what an import reads must be what the command would read)."""
        if self.process is not None and (self.process.poll() is not None or self.started_env != _stable(os.environ)):
            self._stop(self.process)
            self.process = None
        if self.process is None:
            self.started_env = _stable(os.environ)
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("warm_cli.py")), self.flavour],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
            )  # fmt: skip
            ready = json.loads(self.process.stdout.readline() or b'{"died": 1}')
            assert "ready" in ready, "warm_cli.py did not start"
            self.imports_stderr = ready["stderr"]
            threading.Thread(target=self._listen, args=(self.process,), daemon=True).start()
            atexit.register(self._stop, self.process)
        return self.process

    def _listen(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            message = json.loads(line)
            with self.said:
                self.commands[message["id"]].update(message)
                self.said.notify_all()

    def quiet(self) -> bool:
        """Whether the parent's imports wrote nothing to stderr (a child's stderr is then a fresh process's)."""
        with self.lock:
            self._started()
        return not self.imports_stderr

    def heard(self, request: int, key: str, timeout: float | None = None) -> int | None:
        """What the parent said of a command (`pid`, `returncode`), waited for up to `timeout` s (None if not yet)."""
        with self.said:
            self.said.wait_for(lambda: key in self.commands[request], timeout)
            return self.commands[request].get(key)

    @staticmethod
    def _stop(process: subprocess.Popen) -> None:
        """The parent exits at the end of its input (waited for: its CPU time is the suite's); a command a failed
        test left running goes on alone, as a `subprocess.Popen`'s would, and holds nothing up."""
        if process.poll() is None:
            process.stdin.close()
            process.wait(timeout=60)

    def start(self, command: list[str], module: str, args: tuple[str, ...], cwd: Path, env: dict[str, str],
              stdout: int | None, stderr: int | None, session: bool) -> WarmProcess:  # fmt: skip
        """`command` (`python -m module args`) as a child; its piped output goes to files in a directory of its
        own, removed once the command has ended."""
        files = Path(tempfile.mkdtemp(prefix="mixup-cli-")) if subprocess.PIPE in (stdout, stderr) else None
        out = files / "stdout" if files and stdout == subprocess.PIPE else None
        err = files / "stderr" if files and stderr == subprocess.PIPE else out if stderr == subprocess.STDOUT else None
        for path in {out, err} - {None}:
            path.touch()
        with self.lock:
            parent = self._started()
            request = self.next_id
            self.next_id += 1
            with self.said:
                self.commands[request] = {}
            message = {"id": request, "module": module, "args": list(args), "cwd": str(cwd), "env": env,
                       "session": session, "stdout": str(out) if out else None,
                       "stderr": "stdout" if err == out else str(err or ""),
                       "line_buffered": bool(env.get("PYTHONUNBUFFERED"))}  # fmt: skip
            parent.stdin.write(json.dumps(message).encode() + b"\n")
        return WarmProcess(self, request, command, files, out, err)


class WarmProcess:
    """A warm child as `subprocess.Popen` offers a process (pid, text streams, poll, wait, communicate, signals):
    its output goes to files that `stdout`/`stderr` read as they grow, to the end once the command has ended."""

    def __init__(self, parent: WarmParent, request: int, args: list[str], files: Path | None, out: Path | None,
                 err: Path | None) -> None:  # fmt: skip
        self.parent, self.request, self.args, self.files = parent, request, args, files
        self.pid: int = parent.heard(request, "pid", timeout=120)  # type: ignore[assignment]
        assert self.pid, "tests/warm_cli.py did not start the command"
        self.returncode: int | None = None
        self.stdout = _Growing(out.open(), self) if out else None
        self.stderr = _Growing(err.open(), self) if err and err != out else None

    def poll(self) -> int | None:
        return self._ended(timeout=0)

    def wait(self, timeout: float | None = None) -> int:
        returncode = self._ended(timeout)
        if returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return returncode

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        self.wait(timeout)
        output = tuple(stream.read() if stream else None for stream in (self.stdout, self.stderr))
        for stream in (self.stdout, self.stderr):
            if stream:
                stream.file.close()
        return output  # type: ignore[return-value]

    def _ended(self, timeout: float | None) -> int | None:
        """The exit code once the command has ended (waited for up to `timeout` s); its output files are then
        removed, the open streams still reading what it wrote."""
        if self.returncode is None:
            self.returncode = self.parent.heard(self.request, "returncode", timeout)
            if self.returncode is not None and self.files:
                shutil.rmtree(self.files, ignore_errors=True)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Growing:
    """A text file being written by a running command: lines as they come; `read()` the rest once it ended."""

    def __init__(self, file, process: WarmProcess) -> None:
        self.file, self.process, self.partial = file, process, ""

    def __iter__(self):
        while True:
            ended = self.process.poll() is not None  # before reading: all it wrote is then in the file
            self.partial += self.file.readline()
            if self.partial.endswith("\n") or (ended and self.partial):
                line, self.partial = self.partial, ""
                yield line
            elif ended:
                return
            else:
                time.sleep(0.05)

    def read(self) -> str:
        self.process.wait()
        rest, self.partial = self.partial + self.file.read(), ""
        return rest


WARM_PARENTS = {flavour: WarmParent(flavour) for flavour in ("tensorflow", "neutral")}


def run_report(*args: str | Path) -> int:
    """`python -m mixup_sweeps.report ARGS` in this process (its main, as the command calls it): a test that only
    reads the report's files saves the second interpreter's imports. The command itself, as a user runs it:
    tests/e2e/test_sweeps.py, test_cluster.py, test_mlflow_ui.py and tests/integration/test_report.py."""
    from mixup_sweeps.report.cli import main

    return main([str(a) for a in args])


def mlflow_runs(output_dir: Path) -> tuple[MlflowClient | None, list]:
    """All runs of the default experiment in the SQLite store under output_dir ([] when there is none)."""
    if not (output_dir / "mlflow.db").exists():  # check first: a client would create the store (1-2 s)
        return None, []
    client = MlflowClient(tracking_uri=f"sqlite:///{output_dir}/mlflow.db")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client, ([] if experiment is None else client.search_runs([experiment.experiment_id]))


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    """The steps (epochs) at which a run logged `key`, sorted: each epoch once means no gaps, no repeats."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f} s")


def logged_model(client: MlflowClient, run_id: str, into: Path) -> Path:
    """The run's logged network (an MLflow Model) downloaded into `into`; returns its folder (MLmodel, data/)."""
    import mlflow.artifacts

    (output,) = client.get_run(run_id).outputs.model_outputs  # one network per run
    location = client.get_logged_model(output.model_id).artifact_location  # `models:/` resolves globally
    return Path(mlflow.artifacts.download_artifacts(
        artifact_uri=location, dst_path=str(into / run_id), tracking_uri=client.tracking_uri
    ))  # fmt: skip


def network_weights(client: MlflowClient, run_id: str, into: Path) -> list[tuple[str, np.ndarray]]:
    """The trained weights of a run's logged network, by their path in the `.keras` file, read without Keras (the
    file is a zip holding `model.weights.h5`)."""
    import io
    import zipfile

    import h5py

    keras_file = logged_model(client, run_id, into) / "data" / "model.keras"
    arrays: list[tuple[str, np.ndarray]] = []
    with zipfile.ZipFile(keras_file) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as file:
        file.visititems(lambda name, node: arrays.append((name, node[()])) if isinstance(node, h5py.Dataset) else None)
    return arrays


LOAD_AND_PREDICT = """
import json, sys, mlflow.keras, numpy as np
network = mlflow.keras.load_model(sys.argv[1])  # before the harness is imported: the layers are Keras's own
harness = [m for m in sys.modules if m.startswith("mixup_sweeps")]
from mixup_sweeps.data.datasets import find_data_dir
from mixup_sweeps.data.datasets.idx import FILES, IDX_UBYTE_IMAGES, IDX_UBYTE_LABELS, read_idx
count = int(sys.argv[2])  # the run's test images: the first `count`
images = read_idx(find_data_dir() / FILES["test_images"], IDX_UBYTE_IMAGES)[0][:count, ..., None]
labels = read_idx(find_data_dir() / FILES["test_labels"], IDX_UBYTE_LABELS)[0][:count]
images = images.astype(np.float32) / 255
probabilities = network.predict(images, batch_size=1000, verbose=0)
print(json.dumps([float(np.mean(probabilities.argmax(axis=1) == labels)), harness]))
"""


def accuracy_in_fresh_python(
    model_uri: str, backend: str, tracking_uri: str, test_images: int = TEST_IMAGES
) -> tuple[float, list[str]]:
    """`mlflow.keras.load_model(model_uri)` in a fresh Python on `backend`: the network's accuracy on the first
    `test_images` of the Fashion-MNIST test set, and the harness modules that loading it imported (none, when it
    needs no code of ours)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "MLFLOW_TRACKING_URI": tracking_uri}
    loaded = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, model_uri, str(test_images)], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=300)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    accuracy, harness = json.loads(loaded.stdout.strip().splitlines()[-1])
    return accuracy, harness
