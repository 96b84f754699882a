"""A warm parent for the suite's command lines (`helpers.run_cli`, `helpers.start_cli`): it imports what a
`python -m mixup_sweeps.run` imports (MLflow with its SQL store, Hydra and its plugins, pandas, matplotlib, the
harness's modules; TensorFlow and MLflow's Keras flavour too in `python tests/warm_cli.py tensorflow`), then forks
one child per command. The child is the command: it takes the command's working directory, environment,
arguments and output files, and runs its module (`mixup_sweeps.run`, or `mixup_sweeps.report`) as `python -m`
does (`runpy`, as `__main__`), exiting through the interpreter's own shutdown. It only skips the imports: ~4.5
CPU-s of a command on TensorFlow on the suite's 2-core machine, ~2 of one on JAX.

Nothing has run in this process when it forks: no TensorFlow op, no Keras model, no MLflow client, no thread but
the main one and the allocator's (fork-safe). What an import reads from the environment is read here once, so
`run_cli` forks only for a command whose environment differs from the suite's in variables read at run time.
Importing TensorFlow loads Keras on its TensorFlow backend: the `tensorflow` parent serves the commands whose
first job trains on TensorFlow (as theirs would be loaded), the other parent (no Keras, no JAX, no TensorFlow,
no Ray) the rest, and the commands whose stderr a test reads line by line: nothing its imports wrote to stderr
is missing from a child's (the ready line says they wrote nothing), and a TensorFlow the command imports writes
its start-up lines into the child's stderr as in a fresh process.

Several commands may run at once (two sweeps on one store, a killed sweep beside its rerun): each has a
supervisor, forked from here, that forks the command, says its pid and then its exit code, so that this loop
only forks. Protocol, one line of JSON each: in {"id", "module", "args", "cwd", "env", "stdout", "stderr", "session",
"line_buffered"}; out {"ready", "stderr"} once, then per command {"id", "pid"} and {"id", "returncode"}.
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as mixup_sweeps.run sets it before anything imports TensorFlow

# What the imports write to stderr, kept to say in the ready line (a child's stderr would lack it)
_imports_stderr = tempfile.TemporaryFile()
_stderr = os.dup(2)
os.dup2(_imports_stderr.fileno(), 2)

# What a command imports before and while its jobs run (read from sys.modules at the end of a real tiny sweep):
import git  # noqa: E402,F401  (MLflow's source tags)
import hydra  # noqa: E402,F401
import matplotlib.pyplot  # noqa: E402,F401
import mlflow  # noqa: E402,F401
import mlflow.store.model_registry.sqlalchemy_store  # noqa: E402,F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: E402,F401
import mlflow.system_metrics.system_metrics_monitor  # noqa: E402,F401
import opentelemetry.sdk.trace  # noqa: E402,F401  (MLflow's tracing)
import pandas  # noqa: E402,F401
from hydra.core.plugins import Plugins  # noqa: E402

import mixup_sweeps.job.execute  # noqa: E402,F401
import mixup_sweeps.job.open  # noqa: E402,F401
import mixup_sweeps.multirun.parent  # noqa: E402,F401
import mixup_sweeps.multirun.preflight  # noqa: E402,F401
import mixup_sweeps.report.cli  # noqa: E402,F401
from mixup_sweeps.train.backends import import_tensorflow  # noqa: E402

Plugins.instance()  # Hydra's plugin discovery: it imports every hydra_plugins module, as a command's Hydra does
if sys.argv[1:] == ["tensorflow"]:
    import_tensorflow()  # first: as a job does (`backends.set_threads`), without JAX and scikit-learn
    import mlflow.keras  # noqa: F401  (it imports Keras, hence a backend: after TensorFlow)
else:
    loaded = {"keras", "jax", "tensorflow", "ray"} & set(sys.modules)
    assert not loaded, f"a backend-neutral parent loaded {loaded}"  # Ray: its RAY_ variables are read at run time

sys.stderr.flush()
os.dup2(_stderr, 2)
os.close(_stderr)
_imports_stderr.seek(0)


def say(message: dict) -> None:
    """One line to the suite (a pipe: a line under 4 KiB is written whole, whichever process writes it)."""
    os.write(1, json.dumps(message).encode() + b"\n")


say({"ready": os.getpid(), "stderr": _imports_stderr.read().decode(errors="replace")})
_imports_stderr.close()
# What the imports made never needs collecting: frozen, the garbage collector of a child skips it. Otherwise a
# child's collections (the last one at its exit) walk the parent's whole heap, and writing the collector's marks
# copies every page it shares with the parent: ~0.9 s of a one-line-error command's 1.2 s here (Python's advice
# for a parent that forks without exec: gc.freeze's documentation).
gc.freeze()
supervisors: set[int] = set()
while True:
    line = sys.stdin.readline()
    if not line:  # the suite's process has gone; a command still running goes on alone, as a Popen's would
        sys.exit(0)
    request = json.loads(line)
    supervisor = os.fork()
    if supervisor == 0:
        child = os.fork()
        if child == 0:
            break
        say({"id": request["id"], "pid": child})
        _, status = os.waitpid(child, 0)
        say({"id": request["id"], "returncode": os.waitstatus_to_exitcode(status)})
        os._exit(0)
    supervisors.add(supervisor)
    for pid in list(supervisors):  # the supervisors of commands that ended
        if os.waitpid(pid, os.WNOHANG)[0]:
            supervisors.discard(pid)

# The child: the command, from here on as `python -m MODULE ARGS` would run it.
if request["session"]:
    os.setsid()  # as Popen(start_new_session=True): its group can be killed whole
os.chdir(request["cwd"])
stdout = request["stdout"] or os.devnull
stderr = stdout if request["stderr"] == "stdout" else request["stderr"] or os.devnull
for fd, (path, flags) in enumerate([(os.devnull, os.O_RDONLY), (stdout, os.O_WRONLY), (stderr, os.O_WRONLY)]):
    opened = os.open(path, flags | (os.O_APPEND if fd else 0))  # stdout and stderr may be one file
    os.dup2(opened, fd)
    os.close(opened)
if request["line_buffered"]:  # PYTHONUNBUFFERED=1 in its environment: each line reaches the file when printed
    sys.stdout.reconfigure(line_buffering=True, write_through=True)
os.environ.clear()
os.environ.update(request["env"])
sys.path[0] = request["cwd"]  # `python -m` puts the working directory first
sys.argv = [sys.argv[0], *request["args"]]  # runpy replaces the first with the module's file, as -m does
runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
