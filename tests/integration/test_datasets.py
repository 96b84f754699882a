"""The integration part (Keras's downloader in this process) of the dataset registry's tests; beside them:
tests/unit/test_datasets.py (each member on its published format) and tests/e2e/test_datasets.py (real data)."""

from __future__ import annotations

import logging

import pytest

from mixup_sweeps.data import datasets
from mixup_sweeps.data.datasets import DataError


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_a_download_that_cannot_reach_its_source_is_said_once_then_one_line(name, tmp_path, monkeypatch, caplog):
    """`dataset.download: true` on a machine that cannot reach the source (here: a port nothing listens on):
    Keras's downloader fails, the failure is one warning, and the error is one line naming what to put where."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    source = datasets.DATASETS[name](name=name, path=None, download=True)
    monkeypatch.setattr(type(source), "origin", "http://127.0.0.1:9/" + ("" if name == "mnist" else "c.tar.gz"))
    with caplog.at_level(logging.WARNING), pytest.raises(DataError) as info:
        source.locate()
    message = str(info.value)
    assert "tried to download it" in message and "\n" not in message and str(tmp_path) in message
    assert [r.message for r in caplog.records if "Downloading" in r.message][0].count("\n") == 0
