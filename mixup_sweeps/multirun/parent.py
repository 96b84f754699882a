"""The sweep's parent run: a Hydra callback that makes it before any job starts and ends it after the last.

One parent per multirun: the jobs nest under it (the MLflow UI's tree), find it by the sweep directory, and
share the initial weights through it; the same command again (`resume=true`) finds it by the sweep's
fingerprint and continues it. Its last lines say how the sweep ended and what its procedure answered.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE
from omegaconf import DictConfig

from mixup_sweeps import errors
from mixup_sweeps.errors import ConfigError
from mixup_sweeps.multirun.preflight import check_sweeper
from mixup_sweeps.store import claims, liveness, tags, tracking
from mixup_sweeps.sweeps import identity, sharing
from mixup_sweeps.sweeps.overrides import task_overrides
from mixup_sweeps.sweeps.until import describe_seeds_until

log = logging.getLogger(__name__)
# a search stopping a hopeless trial is no failure, nor a race's arm diverging (a result about that arm)
ENDED_WELL = {"FINISHED", "PRUNED", "DIVERGED"}


class SweepParentCallback(Callback):
    """Hydra callback: one parent run per multirun, created before any job starts, ended after the last.

    It is ended FINISHED only when every child finished; a sweep that raised (a job failed) or was
    interrupted ends it FAILED from an atexit hook, so the parent is never left RUNNING either.
    """

    def __init__(self) -> None:
        self.client: MlflowClient | None = None
        self.experiment_id = ""
        self.parent_run_id: str | None = None
        self.ui_link = ""
        self.racing = False  # a race: a diverged job is a result about its arm, not a failure of the sweep

    def status(self, run: Run) -> str:
        """A child's status for the sweep's summary: DIVERGED for a race's job whose loss became NaN."""
        return "DIVERGED" if self.racing and tracking.diverged(run) else tracking.run_status(run)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = str(Path(config.hydra.sweep.dir).resolve())
        self.racing = identity.races(config.hydra.sweeper)
        try:
            self.client, self.experiment_id = client, experiment_id = tracking.connect(config.tracking)
            check_sweeper(config)
        except (tracking.StoreUnreachable, ConfigError) as exc:  # once, before any run; Hydra would only warn
            print(f"Error: {exc}", file=sys.stderr)
            sys.exit(2)
        fingerprint = identity.sweep_fingerprint(config)
        parent = tracking.find_parent(client, experiment_id, sweep_dir)
        if parent is None and config.get("resume", False):
            parent = self._shared_parent(config, fingerprint, sweep_dir)
        if self.parent_run_id is not None:  # made just now by this process
            sweep_id = client.get_run(self.parent_run_id).data.tags[tags.SWEEP_ID]
        elif parent is not None:  # the same sweep again, or at once in another process: one parent collects its runs
            self.parent_run_id = parent.info.run_id
            client.set_tag(self.parent_run_id, tracking.sweep_dir_tag(sweep_dir), sweep_dir)  # this session's jobs
            if parent.info.status != "RUNNING":  # continued after it ended: this process runs it now
                liveness.claim_run(client, self.parent_run_id)
            sweep_id = parent.data.tags[tags.SWEEP_ID]
            log.info("sweep %s continues (resume=true): finished jobs are skipped, claimed ones waited for", sweep_id)
        else:
            sweep_id = self._new_parent(config, sweep_dir, fingerprint)
        assert self.parent_run_id is not None
        client.set_tag(self.parent_run_id, _participant_tag(), json.dumps(liveness.owner_tags()))
        log.info("sweep %s: parent run %s in %s", sweep_id, self.parent_run_id, config.tracking.uri)
        self.ui_link = tracking.ui_runs_link(experiment_id, tracking.ui_url_for(config.tracking.uri))
        log.info("runs in the MLflow UI (`mlflow ui`, see README): %s", self.ui_link)
        atexit.register(self._finish, completed=False)

    def _new_parent(self, config: DictConfig, sweep_dir: str, fingerprint: str, claim: str = "") -> str:
        assert self.client is not None
        sweep_id = f"{Path(sweep_dir).name}-{uuid.uuid4().hex[:6]}"
        parent_tags = _parent_tags(config, sweep_id, sweep_dir, fingerprint)
        if claim:
            parent_tags[tags.CLAIM] = claim
        self.parent_run_id = self.client.create_run(
            self.experiment_id, run_name=f"sweep {sweep_id}", tags=parent_tags
        ).info.run_id
        return sweep_id

    def _shared_parent(self, config: DictConfig, fingerprint: str, sweep_dir: str) -> Run | None:
        """The parent of the same sweep command (resume), or None once this process made it: two processes
        that start one sweep at once claim making its parent (`store.claims`); the other waits for it."""
        assert self.client is not None
        client, floor = self.client, config.tracking.heartbeat_timeout_s

        def held(claim: claims.Claim) -> bool:
            """Its maker made the parent (this process then joins it, on the loop's next look) or still lives.
            Only a maker that died without a parent lets the next generation make one: a parent made after
            this process last looked must not make the claim look free (two parents of one sweep)."""
            made = tracking.find_parent(client, self.experiment_id, fingerprint=fingerprint) is not None
            return made or claim.owner_alive(None, floor)

        while (parent := tracking.find_parent(client, self.experiment_id, fingerprint=fingerprint)) is None:
            claim = claims.claim(client, self.experiment_id, SWEEP_SUBJECT + fingerprint, held)
            if claim.mine():
                self._new_parent(config, sweep_dir, fingerprint, claim.name)
                return None
            time.sleep(sharing.POLL_S)
        return parent

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._finish(completed=True)

    def _finish(self, completed: bool) -> None:
        try:
            self._end(completed)
        except Exception as exc:  # the disk filled: the parent stays for the next command to end, as a ghost
            if errors.disk_full(exc) is None:
                raise

    def _end(self, completed: bool) -> None:
        if self.client is None or self.parent_run_id is None:
            return
        client, run_id, self.parent_run_id = self.client, self.parent_run_id, None
        latest: dict[str, Run] = {}  # a job run again supersedes its earlier attempt
        for run in sorted(tracking.child_runs(client, self.experiment_id, run_id), key=lambda r: r.info.start_time):
            latest[run.data.tags.get(tags.FINGERPRINT, run.info.run_id)] = run
        children = list(latest.values())
        client.delete_tag(run_id, _participant_tag())
        others = _live_participants(client.get_run(run_id).data.tags)
        if others:  # another process still works on this sweep: the last one to end decides its status
            liveness.hand_over(client, run_id, others[0])
            log.info("sweep parent run %s stays RUNNING: process %s on %s still works on this sweep", run_id,
                     others[0].get(tags.PID), others[0].get(tags.HOST))  # fmt: skip
            for line in _answer_lines(client.get_run(run_id).data.tags):
                log.info("%s", line)
            return
        counts = Counter(self.status(r) for r in children)
        ok = completed and set(counts) <= ENDED_WELL
        liveness.claim_run(client, run_id)  # a kill -9 of an earlier process: history (interrupted_at), not error
        client.set_terminated(run_id, "FINISHED" if ok else "FAILED")
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no runs"
        log.info("sweep parent run %s ended %s: %s", run_id, "FINISHED" if ok else "FAILED", summary)
        for run in children:
            if self.status(run) not in ENDED_WELL:
                log.error("  %s %s: %s", run.info.status, run.info.run_name, run.data.tags.get(tags.ERROR, "")[:200])
        log.info("runs in the MLflow UI (`mlflow ui`, see README): %s", self.ui_link)
        lines = _answer_lines(client.get_run(run_id).data.tags)
        for line in lines:
            log.info("%s", line)
        if lines:  # the run's description in the UI (the report replaces it with report.md's opening)
            client.set_tag(run_id, MLFLOW_RUN_NOTE, "\n".join(["## Answer", "", *(f"- {line}" for line in lines)]))


SWEEP_SUBJECT = "sweep-"  # + the sweep fingerprint: the claim on making a sweep's parent


def _participant_tag() -> str:
    return f"{tags.PARTICIPANT}{socket.gethostname()}.{os.getpid()}"


def _live_participants(parent_tags: dict[str, str]) -> list[dict[str, str]]:
    """The other processes that work on this sweep now (their participant tags; on another host taken as live:
    a process there that died is found by its jobs' heartbeats)."""
    found = [json.loads(v) for k, v in parent_tags.items() if k.startswith(tags.PARTICIPANT)]
    return [p for p in found if liveness.alive(p)]


def _parent_tags(config: DictConfig, sweep_id: str, sweep_dir: str, fingerprint: str) -> dict[str, str]:
    """A new parent's tags: what the sweep is (its keys, overrides, fingerprint, procedure settings), who runs it."""
    parent_tags = {
        tags.PARENT: "true",
        tags.SWEEP_DIR: sweep_dir,
        tags.SWEEP_ID: sweep_id,
        tags.SWEEP_KEYS: json.dumps(identity.sweep_keys(config)),
        tags.SWEEP_FINGERPRINT: fingerprint,
        tags.SWEEP_OVERRIDES: " ".join(task_overrides(config.hydra)),
        **liveness.process_tags(),
        **tracking.source_tags(),
    }
    if until := identity.seeds_until(config):
        parent_tags[tags.SEEDS_UNTIL] = json.dumps(until, sort_keys=True)
    if settings := identity.race_settings(config):
        parent_tags[tags.RACE] = json.dumps(settings, sort_keys=True)
    if settings := identity.search_settings(config):
        parent_tags[tags.SEARCH] = json.dumps(settings, sort_keys=True)
    return parent_tags


def _answer_lines(parent_tags: dict[str, str]) -> list[str]:
    """The sweep's last lines: what seeds-until-precise reached, the race's outcome, or the search's answer."""
    lines = []
    if tags.SEEDS_UNTIL_RESULT in parent_tags:
        until = json.loads(parent_tags[tags.SEEDS_UNTIL])
        outcome = json.loads(parent_tags[tags.SEEDS_UNTIL_RESULT])
        lines.append(f"seeds until precise: {describe_seeds_until(outcome, until['half_width'])}")
    if tags.RACE_RESULT in parent_tags:
        lines += [f"race: {line}" for line in json.loads(parent_tags[tags.RACE_RESULT])["lines"]]
    if tags.SEARCH_RESULT in parent_tags:
        lines += json.loads(parent_tags[tags.SEARCH_RESULT])
    return lines
