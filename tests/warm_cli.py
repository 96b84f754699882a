"""A warm parent for the suite's command lines (`helpers.run_cli`): it imports what a `python -m mixup_sweeps.run`
imports (MLflow with its SQL store, Hydra and its plugins, pandas, matplotlib, the harness's modules; TensorFlow
and MLflow's Keras flavour too in `python tests/warm_cli.py tensorflow`), then forks one child per command. The
child is the command: it takes the command's working directory, environment, arguments and output files, and runs
`mixup_sweeps.run` as `python -m` does (`runpy`, as `__main__`), exiting through the interpreter's own shutdown.
It only skips the imports: ~4.5 CPU-s of a command on TensorFlow on the suite's 2-core machine, ~2 of one on JAX.

Nothing has run in this process when it forks: no TensorFlow op, no Keras model, no MLflow client, no thread but
the main one and the allocator's (fork-safe). What an import reads from the environment is read here once, so
`run_cli` forks only for a command whose environment is the suite's own. Importing TensorFlow loads Keras on its
TensorFlow backend: the `tensorflow` parent serves the commands whose first job trains on TensorFlow (as theirs
would be loaded), the other parent (no Keras, no JAX, no TensorFlow) the rest.

Protocol, one line of JSON each way per command: in {"args", "cwd", "env", "stdout", "stderr"}; out {"pid"},
then {"returncode"} when the command has ended.
"""

from __future__ import annotations

import json
import os
import runpy
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as mixup_sweeps.run sets it before anything imports TensorFlow

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
from mixup_sweeps.train.backends import import_tensorflow  # noqa: E402

Plugins.instance()  # Hydra's plugin discovery: it imports every hydra_plugins module, as a command's Hydra does
if sys.argv[1:] == ["tensorflow"]:
    import_tensorflow()  # first: as a job does (`backends.set_threads`), without JAX and scikit-learn
    import mlflow.keras  # noqa: F401  (it imports Keras, hence a backend: after TensorFlow)
else:
    assert not {"keras", "jax", "tensorflow"} & set(sys.modules), "a backend-neutral parent loaded a backend"

print(json.dumps({"ready": os.getpid()}), flush=True)
while True:
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)  # the suite's process has gone
    request = json.loads(line)
    child = os.fork()
    if child == 0:
        break
    print(json.dumps({"pid": child}), flush=True)
    _, status = os.waitpid(child, 0)
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)

# The child: the command, from here on as `python -m mixup_sweeps.run ARGS` would run it.
os.chdir(request["cwd"])
for fd, (path, flags) in enumerate(
    [(os.devnull, os.O_RDONLY), (request["stdout"], os.O_WRONLY), (request["stderr"], os.O_WRONLY)]
):
    opened = os.open(path, flags)
    os.dup2(opened, fd)
    os.close(opened)
os.environ.clear()
os.environ.update(request["env"])
sys.path[0] = request["cwd"]  # `python -m` puts the working directory first
sys.argv = [sys.argv[0], *request["args"]]  # runpy replaces the first with the module's file, as -m does
runpy.run_module("mixup_sweeps.run", run_name="__main__", alter_sys=True)
