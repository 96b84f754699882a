"""Which process owns a run, and whether it still lives.

A run that is RUNNING in the store may belong to a process that died by `kill -9`: nobody will end it.
Every run (and sweep parent) carries `host`, `pid` and `process_start` (boot time + the process's start
time, so a reused pid is not taken for the owner); the next job or report on that host ends such ghosts
KILLED. (The file locks that name their holder are `files.file_lock`.)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time

import psutil
from mlflow.tracking import MlflowClient

from mixup_sweeps.store import tags

log = logging.getLogger(__name__)

# A RUNNING run of another host whose heartbeat is older than max(floor, HEARTBEAT_EPOCHS x its last epoch's
# seconds) is taken for dead; the floor is `tracking.heartbeat_timeout_s` (it covers start-up and compiling).
HEARTBEAT_EPOCHS = 3


def process_start(pid: int) -> str | None:
    """Boot time + start time of process `pid`, None if there is no such living process (gone or a zombie).

    A pid alone can be reused by another process after a kill or a reboot; pid + boot + start time cannot.
    """
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None  # dead, only not yet waited for by its parent
        return f"{psutil.boot_time():.0f}:{process.create_time():.2f}"
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return "alive"  # it exists; its start time is not ours to read


def owner_tags() -> dict[str, str]:
    """Which process this is (host, pid, process_start): the owner of a run, a claim, a sweep participant."""
    return {
        tags.HOST: socket.gethostname(),
        tags.PID: str(os.getpid()),
        tags.PROCESS_START: process_start(os.getpid()) or "",
    }


def process_tags() -> dict[str, str]:
    """Tags that say which process runs a run: a later job on the same host can tell a ghost from a live run,
    and one on any host a run whose heartbeat stopped."""
    return {**owner_tags(), tags.HEARTBEAT: f"{time.time():.0f}"}


def last_heartbeat(run_tags: dict[str, str]) -> float | None:
    """Epoch seconds of a run's last heartbeat; None for a run that never sent one."""
    beat = run_tags.get(tags.HEARTBEAT, "")
    return float(beat) if beat.replace(".", "", 1).isdigit() else None


def alive(owner: dict[str, str]) -> bool:
    """Whether the process named by `owner`'s tags (host, pid, process_start) still runs; one on another host is
    taken as alive (from here only its heartbeats can tell)."""
    if owner.get(tags.HOST) != socket.gethostname():
        return True
    pid, started = str(owner.get(tags.PID, "")), owner.get(tags.PROCESS_START, "")
    now = process_start(int(pid)) if pid.isdigit() else None
    return now is not None and (not started or now in ("alive", started))


def hand_over(client: MlflowClient, run_id: str, owner: dict[str, str]) -> None:
    """Make another live process the owner of a RUNNING run (a sweep parent whose last worker is not this one)."""
    for key in (tags.HOST, tags.PID, tags.PROCESS_START):
        if key in owner:
            client.set_tag(run_id, key, str(owner[key]))


def heartbeat_limit(last_epoch_seconds: float | None, floor_s: float) -> float:
    """How long a run may stay silent: HEARTBEAT_EPOCHS of its own last epoch, at least `floor_s`."""
    return max(floor_s, HEARTBEAT_EPOCHS * (last_epoch_seconds or 0.0))


def claim_run(client: MlflowClient, run_id: str) -> None:
    """This process takes over a run (a resumed job, a continued sweep): RUNNING, with this process's tags. Why it
    stopped before (the `error` and `failure_reason` a ghost or a failure left) becomes history in
    `interrupted_at`: the run is no longer failed, so it must not read as failed once it finishes."""
    held = client.get_run(run_id).data.tags
    if tags.ERROR in held or tags.FAILURE_REASON in held:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entry = f"{stamp} {held.get(tags.FAILURE_REASON, 'stopped')}: {held.get(tags.ERROR, '')}".strip()
        history = "\n".join(filter(None, [held.get(tags.INTERRUPTED_AT, ""), entry]))
        client.set_tag(run_id, tags.INTERRUPTED_AT, history[-5000:])  # MLflow's tag limit: the latest kept
        for key in (tags.ERROR, tags.FAILURE_REASON):
            if key in held:
                client.delete_tag(run_id, key)
    client.update_run(run_id, status="RUNNING")
    for key, value in process_tags().items():
        client.set_tag(run_id, key, value)


def end_ghost_runs(client: MlflowClient, experiment_id: str, heartbeat_timeout_s: float | None = None) -> list[str]:
    """End KILLED the RUNNING runs whose owner is gone: on this host, a process that no longer exists (kill -9,
    a crash); on any other host (a Ray or SLURM node), a job whose heartbeat is older than `heartbeat_limit`
    with the floor `heartbeat_timeout_s` (`tracking.heartbeat_timeout_s`; None: other hosts are left alone).

    A ghost run keeps its backup, so running its command again still resumes it in the same run.
    """
    host = socket.gethostname()
    ghosts = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        held = run.data.tags
        if held.get(tags.PARENT) == "true" and any(
            alive(json.loads(v)) for k, v in held.items() if k.startswith(tags.PARTICIPANT)
        ):
            continue  # a sweep some process still works on (its maker may be gone: another carries it on)
        if held.get(tags.HOST) == host:
            pid = held.get(tags.PID, "")
            if not pid.isdigit() or int(pid) == os.getpid() or alive(held):
                continue  # alive, and the same process (not a reused pid)
            message = f"process {pid} on {host} ended without closing the run (kill -9, out of memory, a crash)"
            reason = "process_gone"
        else:
            beat = last_heartbeat(held)
            if heartbeat_timeout_s is None or held.get(tags.PARENT) == "true" or beat is None:
                continue  # a sweep parent has no epochs; a run without heartbeats: nobody can tell from here
            silent = time.time() - beat
            limit = heartbeat_limit(run.data.metrics.get("epoch_seconds"), heartbeat_timeout_s)
            if silent <= limit:
                continue
            message = (f"no heartbeat from {held.get(tags.HOST, 'its host')} for {silent:.0f} s (limit {limit:.0f} s: "
                       "tracking.heartbeat_timeout_s or 3 of its epochs); its job died there")  # fmt: skip
            reason = "heartbeat_lost"
        client.set_tag(run.info.run_id, tags.ERROR, message)
        client.set_tag(run.info.run_id, tags.FAILURE_REASON, reason)
        client.set_terminated(run.info.run_id, "KILLED")
        log.warning("run %s (%s) marked KILLED: %s", run.info.run_id, run.info.run_name, message)
        ghosts.append(run.info.run_id)
    return ghosts
