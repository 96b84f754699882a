"""Claims (`store.claims`) on a real SQLite store: of processes claiming at once exactly one wins; an owner that
died is followed by the next generation; a claim never shows among the experiments."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from mixup_sweeps.store import claims
from tests.helpers import sqlite_store


def _claim_at(uri: str, experiment_id: str, at: float, won: multiprocessing.Queue) -> None:
    client = MlflowClient(tracking_uri=uri)
    while time.time() < at:  # every process starts its claim in the same millisecond
        time.sleep(0.0005)
    won.put(claims.claim(client, experiment_id, "job-x", held=lambda claim: True).mine())


def test_of_six_processes_claiming_at_once_exactly_one_wins(tmp_path):
    uri = sqlite_store(tmp_path)
    experiment_id = MlflowClient(tracking_uri=uri).create_experiment("e")
    won: multiprocessing.Queue = multiprocessing.Queue()
    at = time.time() + 3
    workers = [multiprocessing.Process(target=_claim_at, args=(uri, experiment_id, at, won)) for _ in range(6)]
    for worker in workers:
        worker.start()
    results = [won.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(60)
    assert sorted(results) == [False] * 5 + [True]


def test_a_claim_whose_owner_died_is_taken_by_the_next_generation_and_none_is_listed(tmp_path):
    uri = sqlite_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("e")
    code = (
        "from mlflow.tracking import MlflowClient; from mixup_sweeps.store import claims; "
        f"claims.claim(MlflowClient(tracking_uri={uri!r}), {experiment_id!r}, 'job-y', lambda c: True)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)  # it claims and ends: its owner is gone
    (dead,) = claims.claims_of(client, experiment_id, "job-y")
    assert not dead.mine() and not dead.owner_alive(None, 900)
    held_while_alive = claims.claim(client, experiment_id, "job-y", held=lambda claim: claim.owner_alive(None, 900))
    assert held_while_alive.mine() and held_while_alive.generation == 1
    again = claims.claim(client, experiment_id, "job-y", held=lambda claim: False)
    assert again == held_while_alive  # this process's own claim stays its own
    names = [e.name for e in client.search_experiments()]  # what the UI lists: active experiments
    assert names and not any(name.startswith(claims.PREFIX) for name in names)
    deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY)
    assert sorted(e.name for e in deleted) == [f"{claims.PREFIX}{experiment_id}/job-y/{g}" for g in (0, 1)]


def test_an_owner_on_another_host_lives_as_long_as_its_heartbeat():
    """Another host's process cannot be asked: its claim holds while its run's heartbeat (else the claim's own
    time) is younger than the limit (`tracking.heartbeat_timeout_s`, or 3 of its epochs)."""
    now = time.time()
    claim = claims.Claim("job-z", 0, {"host": "another-host", "pid": "1", "claimed_at": f"{now - 1000:.3f}"})
    assert not claim.mine()
    assert claim.owner_alive(heartbeat=now - 10, floor_s=900)
    assert not claim.owner_alive(heartbeat=now - 1000, floor_s=900)
    assert not claim.owner_alive(heartbeat=None, floor_s=900)  # claimed 1000 s ago, no run opened since
    assert claims.Claim("job-z", 1, {**claim.owner, "claimed_at": f"{now:.3f}"}).owner_alive(None, 900)


def test_a_sweep_parent_made_while_another_process_looked_is_joined_not_made_again(tmp_path, monkeypatch):
    """Two processes start one sweep at once (`resume=true`): process A (here: on another host, claimed just now)
    holds the claim on making the parent and makes it just after process B last looked for one. B must join A's
    parent, not take the claim's next generation and make a second parent (found by a fresh clone's run of
    tests/e2e/test_tracking_server.py: two FINISHED parents of one race, the second under claim generation 1)."""
    from omegaconf import OmegaConf

    from mixup_sweeps.multirun import parent as parent_module
    from mixup_sweeps.store import tags, tracking

    uri = sqlite_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("e")
    fingerprint = "f" * 16
    subject = f"{claims.PREFIX}{experiment_id}/{parent_module.SWEEP_SUBJECT}{fingerprint}/0"
    owner = {tags.HOST: "another-host", tags.PID: "1", claims.CLAIMED_AT: f"{time.time():.3f}"}
    client.delete_experiment(client.create_experiment(subject, tags=owner))  # A's claim, as `claims` makes one
    a_parent: list[str] = []
    real_find_parent = tracking.find_parent

    def find_parent_then_a_makes_it(*args, **kwargs):  # B looks, finds none; A makes its parent right then
        found = real_find_parent(*args, **kwargs)
        if not a_parent:
            run = client.create_run(experiment_id, tags={tags.PARENT: "true", tags.SWEEP_FINGERPRINT: fingerprint})
            a_parent.append(run.info.run_id)
        return found

    monkeypatch.setattr(tracking, "find_parent", find_parent_then_a_makes_it)
    monkeypatch.setattr(parent_module.sharing, "POLL_S", 0.01)
    b = parent_module.SweepParentCallback()
    b.client, b.experiment_id = client, experiment_id
    made: list[str] = []
    monkeypatch.setattr(b, "_new_parent", lambda *args, **kwargs: made.append("B's parent"))
    config = OmegaConf.create({"tracking": {"heartbeat_timeout_s": 900}})
    joined = b._shared_parent(config, fingerprint, str(tmp_path / "b"))
    assert made == [] and joined is not None and joined.info.run_id == a_parent[0]
    assert [
        c.generation for c in claims.claims_of(client, experiment_id, parent_module.SWEEP_SUBJECT + fingerprint)
    ] == [0]
