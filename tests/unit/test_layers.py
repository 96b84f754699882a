"""The package's shape holds: thin plugins, modules of a readable size, one home for each name.

The layer contract itself (no upward import, no import circle in a folder) is `lint-imports` in `make lint`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "mixup_sweeps"
PLUGINS = sorted((ROOT / "hydra_plugins").glob("mixup_sweeps_*/*.py"))
MODULES = sorted(PACKAGE.rglob("*.py"))


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


@pytest.mark.parametrize("plugin", [p for p in PLUGINS if p.name.endswith(("_sweeper.py", "_launcher.py"))],
                         ids=lambda p: p.parent.name)  # fmt: skip
def test_each_plugin_class_is_thin(plugin):
    """A config dataclass beside it and a class that hands its work to `mixup_sweeps.multirun`."""
    assert lines(plugin) <= 60, f"{plugin.relative_to(ROOT)}: {lines(plugin)} lines"
    assert (plugin.parent / "config.py").is_file()


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_over_400_lines(module):
    assert lines(module) <= 400, f"{module.relative_to(ROOT)}: {lines(module)} lines"


def _assigned_strings(path: Path) -> dict[str, str]:
    """Module-level NAME = "text" assignments (tuples too) of one file."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = []
                if isinstance(target, ast.Name):
                    pairs = [(target, node.value)]
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts))
                for name, value in pairs:
                    if isinstance(name, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
                        found[name.id] = value.value
    return found


def test_every_tag_name_and_the_seed_key_are_defined_once():
    """A tag name read back by another part (a resumed job, the report) has one home, `store/tags.py`; the seed
    key is `config.SEED`. No other module assigns a constant named *_TAG or SEED."""
    tag_values = set(_assigned_strings(PACKAGE / "store" / "tags.py").values())
    for module in [*MODULES, *PLUGINS]:
        if module == PACKAGE / "store" / "tags.py":
            continue
        for name, value in _assigned_strings(module).items():
            where = module.relative_to(ROOT)
            assert not name.endswith("_TAG"), f"{where}: {name} belongs in store/tags.py"
            assert name != "SEED" or module == PACKAGE / "config.py", f"{where}: SEED is config.SEED"
            assert not (name.isupper() and value in tag_values and value not in ("search", "race")), (
                f"{where}: {name} = {value!r} repeats a tag of store/tags.py"
            )
