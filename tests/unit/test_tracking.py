"""The fast part (no training, no subprocess) of these tests (beside them: tests/integration/test_tracking.py).

Ghost runs: a RUNNING run whose process died (kill -9) is ended KILLED by the next job or report on its host."""

from __future__ import annotations

import time

from mixup_sweeps.store import liveness, tags, tracking
from tests.helpers import compose_config


def test_a_run_of_another_host_whose_heartbeat_stopped_is_ended_killed(tmp_path):
    """Heartbeats written by hand: silent longer than max(tracking.heartbeat_timeout_s, 3 of its epochs)."""
    cfg = compose_config(["tracking.heartbeat_timeout_s=60"], output_dir=str(tmp_path))
    client, experiment_id = tracking.connect(cfg.tracking)
    now = time.time()

    def remote(name: str, silent_s: float, epoch_seconds: float | None = None, **extra: str) -> str:
        owner = {tags.HOST: "node-7", tags.PID: "4242", tags.HEARTBEAT: f"{now - silent_s:.0f}"}
        run_id = client.create_run(experiment_id, run_name=name, tags={**owner, **extra}).info.run_id
        if epoch_seconds is not None:
            tracking.log_metrics(client, run_id, {"epoch_seconds": epoch_seconds}, step=1)
            client.set_tag(run_id, tags.HEARTBEAT, f"{now - silent_s:.0f}")  # logging beat: set it back
        return run_id

    runs = {
        "stale": remote("stale", 3600, epoch_seconds=10),
        "stale before its first epoch": remote("stale before its first epoch", 120),  # floor 60 s
        "fresh": remote("fresh", 5, epoch_seconds=10),
        "long epochs": remote("long epochs", 2000, epoch_seconds=1000),  # 3 epochs: 3000 s
        "sweep parent": remote("sweep parent", 3600, sweep_parent="true"),
    }
    client, experiment_id = tracking.connect(cfg.tracking)  # the next job, whatever host it is on
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {"stale": "KILLED", "stale before its first epoch": "KILLED", "fresh": "RUNNING",
                      "long epochs": "RUNNING", "sweep parent": "RUNNING"}  # fmt: skip
    stale = client.get_run(runs["stale"]).data.tags
    assert stale["failure_reason"] == "heartbeat_lost" and "no heartbeat from node-7" in stale["error"]
    assert liveness.heartbeat_limit(1000, 60) == 3000 and liveness.heartbeat_limit(None, 900) == 900


def test_every_epoch_and_the_start_beat(tmp_path):
    cfg = compose_config(output_dir=str(tmp_path))
    client, experiment_id = tracking.connect(cfg.tracking)
    run_id = tracking.start_job_run(client, experiment_id, cfg, "job", None, {})
    started = float(client.get_run(run_id).data.tags[tags.HEARTBEAT])
    assert abs(started - time.time()) < 60
    client.set_tag(run_id, tags.HEARTBEAT, "1000")
    tracking.log_metrics(client, run_id, {"loss": 1.0}, step=1)
    assert float(client.get_run(run_id).data.tags[tags.HEARTBEAT]) >= started
