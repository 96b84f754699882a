"""`mlflow ui` on a store made by a tiny real sweep, browsed in headless Chromium (Debian's) via Playwright."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from mixup_sweeps.store.tracking import UI_URL
from tests.e2e.conftest import QUIET_SERVER
from tests.helpers import EXPERIMENT, free_port, mlflow_runs, report_command, run_command

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium; `make test` installs it, Playwright downloads nothing
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@contextmanager
def mlflow_ui(out: Path) -> Iterator[str]:
    """`mlflow ui` on the SQLite store under `out` at a free loopback port; yields its URL."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow), "ui", "--backend-store-uri", f"sqlite:///{out}/mlflow.db", "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=QUIET_SERVER,
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
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def ui(shared_sweep):
    """`mlflow ui` on the session's shared sweep (aug.alpha=0.1,0.2,0.4: tests/e2e/conftest.py)."""
    with mlflow_ui(shared_sweep.out) as url:
        yield url, shared_sweep.out, shared_sweep.log


def printed_link(output: str, url: str) -> str:
    """The runs link the sweep printed (for `mlflow ui` on its default port), moved to this test's port."""
    found = re.search(r"runs in the MLflow UI \(`mlflow ui`, see README\): (\S+)", output)
    assert found, output[-3000:]
    return found.group(1).replace(UI_URL, url)


def test_ui_opens_on_the_training_runs_from_the_printed_link(ui, tmp_path):
    """Where a user starts: the link the sweep printed (the bare experiment link opens MLflow 3's GenAI page)."""
    url, out, output = ui
    client, runs = mlflow_runs(out)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    child = next(r for r in runs if r.info.run_name == "aug.alpha=0.4")
    link = printed_link(output, url)
    assert link == f"{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(link, wait_until="domcontentloaded")
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


def test_report_page_answers_first_and_links_each_group_to_its_runs(ui, tmp_path):
    """The HTML report in Chromium: rendered text (no Markdown), the answer, and run links that open in the UI."""
    url, out, _ = ui
    report = run_command(
        report_command("--output-dir", str(out), "--out", str(tmp_path / "r"), "--ui-url", url), timeout=300
    )
    assert report.returncode == 0, report.stderr[-2000:]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto((tmp_path / "r" / "report.html").as_uri())
        assert page.locator("h1").inner_text().startswith("Report: ")
        assert page.locator("h2").first.inner_text() == "Answer"
        text = page.inner_text("body")
        assert "`" not in text and "mixup α=0.1" in text and "mixup α=0.4" in text
        images = page.locator("img")
        assert images.count() == 2 and all(images.nth(i).bounding_box()["width"] > 800 for i in range(2))
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        run_links = page.locator(f'a[href*="{url}/#/experiments/"][href*="/runs/"]')
        assert run_links.count() == 3  # one per run: three groups of one seed each
        run_links.first.click()
        page.get_by_text("test_accuracy").first.wait_for(timeout=60_000)
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 20_000


def test_the_parent_row_shows_the_answer_without_opening_a_child(ui, tmp_path):
    """After the report, the sweep's parent run carries per-group metrics: picked under Columns (as a user
    does), the parent's row in the runs table shows them, children still folded away."""
    url, out, output = ui
    report = run_command(report_command("--output-dir", str(out)), timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    client, runs = mlflow_runs(out)
    parent = next(r for r in runs if r.data.tags.get("sweep_parent") == "true")
    expected = parent.data.metrics["acc mixup α_0.4"]
    child = next(r for r in runs if r.info.run_name == "aug.alpha=0.4")
    assert expected == pytest.approx(child.data.metrics["test_accuracy"])  # one seed: the mean is that run
    # no aug=none in this sweep: the best observed α is the baseline, and one seed says which command answers
    assert parent.data.tags["answer"].startswith("no aug=none in these runs: each group against the best observed")
    assert parent.data.tags["answer"].endswith("seed=0,1,2")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(printed_link(output, url), wait_until="domcontentloaded")
        page.get_by_text("sweep ").first.wait_for(timeout=60_000)
        page.get_by_role("button", name="Columns").click()
        page.get_by_placeholder("Search columns").fill("acc mixup α_0.4")
        title = page.locator(".du-bois-light-tree-title", has_text=re.compile(r"^acc mixup α_0\.4$"))
        page.locator(".du-bois-light-tree-treenode").filter(has=title).locator(".du-bois-light-tree-checkbox").click()
        page.keyboard.press("Escape")
        page.get_by_role("columnheader", name="acc mixup α_0.4").first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "parent-row.png"))
        first_row = " ".join(page.locator('[role="row"][row-index="0"]').all_inner_texts())
        browser.close()
    assert "sweep " in first_row and "aug.alpha=0.4" not in first_row  # the parent's row, children folded
    shown = [float(v) for v in re.findall(r"(?<![\w.])-?\d+\.\d+", first_row)]
    assert any(abs(v - expected) < 1e-3 for v in shown), (first_row, expected)
