"""Hydra imports every plugin module to discover it (any `--help`, any run): that must not load the harness's
heavy parts. The plugins' classes load the work (`mixup_sweeps.multirun`) only when a sweep is made."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT

HEAVY = ("mlflow", "tensorflow", "keras", "jax", "optuna", "ray")


def test_importing_the_plugins_loads_no_mlflow_tensorflow_or_keras():
    code = (
        "import sys, json\n"
        "from hydra.core.plugins import Plugins\n"
        "Plugins.instance()  # Hydra's scan: imports every module under hydra_plugins\n"
        "import hydra_plugins.mixup_sweeps_variants.variants_sweeper\n"
        "import hydra_plugins.mixup_sweeps_search.search_sweeper\n"
        "import hydra_plugins.mixup_sweeps_local.local_launcher\n"
        "import hydra_plugins.mixup_sweeps_packed.packed_launcher\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
