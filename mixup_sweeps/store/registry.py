"""A sweep's winner in MLflow's model registry: one version of the registered model named after the
experiment, its alias `champion` or `candidate` (the rules: `sweeps.winner`), the sweep's answer its
description.

`mlflow.keras.load_model("models:/<experiment>@champion")` then gives the network that won the latest sweep
that decided with confidence. Registering is idempotent per sweep: the same sweep's winner registered again
(a resumed sweep, the report run twice) updates its version instead of adding one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mixup_sweeps.store import claims, liveness, networks, tags

log = logging.getLogger(__name__)


class Chosen(Protocol):
    """A sweep's winning group (`sweeps.winner.Winner`): which runs are its seeds, which seed to register."""

    @property
    def alias(self) -> str: ...  # champion | candidate

    @property
    def label(self) -> str: ...

    @property
    def why(self) -> str: ...

    @property
    def score(self) -> str: ...  # the metric that ranks the seeds (validation, never test)

    def selects(self, params: Mapping[str, Any]) -> bool: ...

    def ranked(self, scores: Mapping[str, float]) -> list[str]: ...


def register_winner(
    client: MlflowClient, parent: Run, runs: Iterable[Run], chosen: Chosen | None, answer: str
) -> ModelVersion | None:
    """Register the network of `chosen`'s best-validation seed among the sweep's FINISHED `runs` (None when no
    run of the group has a logged model: a store from before MLflow Models, or every seed failed)."""
    if chosen is None:
        return None
    seeds = [run for run in runs if run.info.status == "FINISHED" and chosen.selects(run.data.params)]
    model_ids = {run.info.run_id: model_id for run in seeds if (model_id := networks.logged_model_id(run))}
    scores = {run.info.run_id: run.data.metrics.get(chosen.score, float("nan")) for run in seeds}
    run_id = next((r for r in chosen.ranked(scores) if r in model_ids), None)
    if run_id is None:
        log.warning("no network registered: no finished run of %s has a logged model", chosen.label)
        return None
    name = client.get_experiment(parent.info.experiment_id).name
    sweep_id = parent.data.tags.get(tags.SWEEP_ID, parent.info.run_id)
    version_tags = {
        tags.SWEEP_ID: sweep_id,
        tags.WINNER_ALIAS: chosen.alias,
        tags.WINNER_GROUP: chosen.label,
        tags.WINNER_WHY: chosen.why,
        tags.WINNER_PARENT: parent.info.run_id,
    }
    description = f"**{chosen.alias}** of sweep {sweep_id} ({chosen.why}): {chosen.label}\n\n{answer}"[:5000]
    version = _version_of_sweep(client, name, sweep_id)
    if version is None or version.run_id != run_id:
        version = _made_elsewhere(client, parent.info.experiment_id, name, sweep_id, run_id)
    if version is None or version.run_id != run_id:
        _ensure_registered_model(client, name)
        model = client.get_logged_model(model_ids[run_id])
        # the model's own artifact location: a `models:/` source is resolved through the global tracking URI
        version = client.create_model_version(
            name, model.artifact_location, run_id=run_id, tags=version_tags, description=description,
            model_id=model.model_id,
        )  # fmt: skip
    else:
        for key, value in version_tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        client.update_model_version(name, version.version, description=description)
    client.set_registered_model_alias(name, chosen.alias, version.version)
    client.set_tag(parent.info.run_id, tags.REGISTERED_MODEL, f"{name}/{version.version}@{chosen.alias}")
    log.info("registered %s version %s (@%s): %s, run %s", name, version.version, chosen.alias, chosen.label, run_id)
    return version


def _made_elsewhere(
    client: MlflowClient, experiment_id: str, name: str, sweep_id: str, run_id: str
) -> ModelVersion | None:
    """The version another process of the same sweep (the same command at once) is registering for `run_id`,
    once it exists; None when this process is the one to make it (`store.claims`: one of them does)."""

    def made() -> ModelVersion | None:
        version = _version_of_sweep(client, name, sweep_id)
        return version if version is not None and version.run_id == run_id else None

    subject = f"register-{sweep_id}-{run_id}"
    while not claims.claim(client, experiment_id, subject, lambda claim: liveness.alive(claim.owner)).mine():
        if (version := made()) is not None:
            return version
        time.sleep(1.0)
    return made()


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name, description=f"The winners of the sweeps of experiment {name}.")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _version_of_sweep(client: MlflowClient, name: str, sweep_id: str) -> ModelVersion | None:
    try:
        found = client.search_model_versions(f"name = '{name}' and tags.{tags.SWEEP_ID} = '{sweep_id}'")
    except MlflowException:
        return None
    return max(found, key=lambda v: int(v.version)) if found else None
