"""Who does a piece of shared work now: claims, atomic in any MLflow store.

Two processes that need the same job at once (the same sweep command on two machines, two sweeps that share a
job, a sweep and a single run) must not both train it, and two that start the same sweep must not make two
parents. MLflow has no compare-and-set, but an experiment's name is unique in every store it runs on (SQLite,
PostgreSQL, a tracking server in front of either): of two processes creating one name, exactly one succeeds.
A claim is such an experiment, `.claims/<experiment id>/<subject>/<generation>`, created with its owner in its
tags (`liveness.owner_tags`) and deleted at once: a deleted experiment keeps its name, so the claim still
holds, and the UI lists it only among deleted experiments. Taking over from an owner that died is the next
generation, which again exactly one process can create. What counts as "still held" is the caller's rule
(`claim`'s `held`): a job's claim is held while its owner lives and the run it opened has not ended.

`mlflow gc` purges deleted experiments, and with them old claims: harmless between sweeps, not during one.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mixup_sweeps.store import liveness, tags

PREFIX = ".claims/"
CLAIMED_AT = "claimed_at"  # epoch seconds, by the owner's clock


@dataclass(frozen=True)
class Claim:
    """One generation of a claim on `subject`, and who made it."""

    subject: str
    generation: int
    owner: dict[str, str]  # host, pid, process_start, claimed_at

    @property
    def name(self) -> str:
        """The tag a run opened under this claim carries (`tags.CLAIM`): which claim it belongs to."""
        return f"{self.subject}/{self.generation}"

    def mine(self) -> bool:
        return all(self.owner.get(key) == value for key, value in liveness.owner_tags().items())

    def owner_alive(self, heartbeat: float | None, floor_s: float) -> bool:
        """Whether the owner still lives: on this host, its process (pid + start time); on another, a heartbeat
        (its run's, else the claim's own time) younger than `floor_s`."""
        if self.owner.get(tags.HOST) == socket.gethostname():
            return liveness.alive(self.owner)
        beat = heartbeat if heartbeat is not None else float(self.owner.get(CLAIMED_AT, "0") or 0)
        return time.time() - beat <= floor_s

    def describe(self) -> str:
        return f"process {self.owner.get(tags.PID, '?')} on {self.owner.get(tags.HOST, '?')}"


def _prefix(experiment_id: str, subject: str) -> str:
    return f"{PREFIX}{experiment_id}/{subject}/"


def claims_of(client: MlflowClient, experiment_id: str, subject: str) -> list[Claim]:
    """Every generation of the claims on `subject` in the experiment, oldest first."""
    prefix = _prefix(experiment_id, subject)
    found = client.search_experiments(view_type=ViewType.ALL, filter_string=f"name LIKE '{prefix}%'")
    claims = []
    for experiment in found:
        generation = experiment.name[len(prefix) :]
        if generation.isdigit():
            claims.append(Claim(subject, int(generation), dict(experiment.tags)))
    return sorted(claims, key=lambda c: c.generation)


def _create(client: MlflowClient, experiment_id: str, subject: str, generation: int) -> Claim | None:
    """Generation `generation` of the claim on `subject`, made by this process; None if another made it first."""
    owner = {**liveness.owner_tags(), CLAIMED_AT: f"{time.time():.3f}"}
    try:
        claim_id = client.create_experiment(f"{_prefix(experiment_id, subject)}{generation}", tags=owner)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_ALREADY_EXISTS":
            return None
        raise
    client.delete_experiment(claim_id)  # out of the UI's experiment list; the name stays taken
    return Claim(subject, generation, owner)


def claim(client: MlflowClient, experiment_id: str, subject: str, held: Callable[[Claim], bool]) -> Claim:
    """The claim on `subject` that holds now: this process's (`mine()`) if it won, or another owner's that
    `held` says still holds. A claim no longer held (its owner died, its work ended) is followed by the next
    generation, which this process tries to make; of several trying, one wins and the others get its claim."""
    while True:
        existing = claims_of(client, experiment_id, subject)
        last = existing[-1] if existing else None
        if last is not None and (last.mine() or held(last)):
            return last
        made = _create(client, experiment_id, subject, last.generation + 1 if last else 0)
        if made is not None:
            return made


def set_shared_tag(client: MlflowClient, run_id: str, key: str, value: str) -> None:
    """Set a tag that other processes of the same sweep may set at the same moment (a race's or a search's
    outcome on the shared parent: each process computes the same one). MLflow's SQL store writes a new tag as
    select-then-insert, so two first writers collide on the tag's key (PostgreSQL: UniqueViolation, seen
    through a tracking server, the sweep then ending FAILED); the loser finds the tag written and sets it
    again, which is then an update. Any other failure is raised."""
    try:
        client.set_tag(run_id, key, value)
    except MlflowException:
        if key not in client.get_run(run_id).data.tags:
            raise
        client.set_tag(run_id, key, value)
