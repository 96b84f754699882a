"""`mlflow ui` on a store made by a tiny real sweep, browsed in headless Chromium (Debian's) via Playwright."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import EXPERIMENT, mlflow_runs, run_cli

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"  # Debian's chromium; `make test` installs it, Playwright downloads nothing
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory, real_data_dir):
    out = tmp_path_factory.mktemp("ui_sweep")
    result = run_cli("-m", "aug.alpha=0.1,0.4", "dataset.train_size=256", "trainer.epochs=1", f"paths.output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow), "ui", "--backend-store-uri", f"sqlite:///{out}/mlflow.db", "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
            time.sleep(0.5)
    try:
        yield url, out
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_ui_shows_the_sweep_its_children_and_test_accuracy(ui, tmp_path):
    url, out = ui
    client, runs = mlflow_runs(out)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    child = next(r for r in runs if r.info.run_name == "aug.alpha=0.4")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{url}/#/experiments/{experiment_id}/runs", wait_until="domcontentloaded")
        page.get_by_text(EXPERIMENT).first.wait_for(timeout=60_000)
        page.get_by_text("sweep ").first.wait_for(timeout=60_000)
        page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()  # expand the parent
        page.get_by_text("aug.alpha=0.1").first.wait_for(timeout=30_000)
        page.get_by_text("aug.alpha=0.4").first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "runs.png"))

        page.goto(f"{url}/#/experiments/{experiment_id}/runs/{child.info.run_id}", wait_until="domcontentloaded")
        page.get_by_text("test_accuracy").first.wait_for(timeout=60_000)
        value = repr(child.data.metrics["test_accuracy"])  # the run page shows the full value
        page.get_by_text(value).first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "run.png"))
        body = page.inner_text("body")
        browser.close()
    assert "aug.alpha=0.4" in body and "test_accuracy" in body and value in body
    assert (tmp_path / "runs.png").stat().st_size > 10_000
