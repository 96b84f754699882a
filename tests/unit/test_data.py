"""The IDX loader on small files written here: good, truncated, corrupt, missing; split and search order."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from omegaconf import OmegaConf

from mixup_sweeps.data import datasets
from mixup_sweeps.data.datasets import FILES, DataError
from tests.helpers import dataset_config, write_fake_dataset, write_idx


@pytest.fixture(autouse=True)
def no_ambient_data(monkeypatch, tmp_path):
    """Search only where each test says: no env var, an empty home, no Debian copy."""
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(datasets.FashionMNIST, "system_dirs", (tmp_path / "no-debian",))


def test_round_trip_and_seed_split(tmp_path):
    directory = write_fake_dataset(tmp_path / "fm", n_train=120, n_test=30)
    ds = datasets.load(dataset_config(directory, val_size=20))
    assert ds.source_dir == directory
    assert (len(ds.train), len(ds.val), len(ds.test)) == (100, 20, 30)
    assert ds.train.images.shape == (100, 28, 28, 1) and ds.train.images.dtype == np.uint8
    # pixels encode the original index: validation is the FIRST val_size training images
    assert [int(img[0, 0, 0]) for img in ds.val.images] == list(range(20))
    assert int(ds.train.images[0, 0, 0, 0]) == 20
    assert set(ds.sha256) == set(FILES.values()) and all(len(v) == 64 for v in ds.sha256.values())


def test_train_size_limits_the_training_split(tmp_path):
    directory = write_fake_dataset(tmp_path / "fm", n_train=120)
    ds = datasets.load(dataset_config(directory, val_size=20, train_size=50))
    assert len(ds.train) == 50 and len(ds.val) == 20 and int(ds.train.images[0, 0, 0, 0]) == 20
    with pytest.raises(DataError, match="dataset.train_size=101"):
        datasets.load(dataset_config(directory, val_size=20, train_size=101))


def test_test_size_takes_the_first_test_images_and_null_keeps_the_digest_of_runs_before_the_key(tmp_path):
    directory = write_fake_dataset(tmp_path / "fm", n_train=120, n_test=30)
    ds = datasets.load(dataset_config(directory, val_size=20, test_size=12))
    assert len(ds.test) == 12 and [int(img[0, 0, 0]) for img in ds.test.images] == list(range(12))
    with pytest.raises(DataError, match="dataset.test_size=31: at most the 30 test images"):
        datasets.load(dataset_config(directory, val_size=20, test_size=31))
    whole = dataset_config(directory, val_size=20)
    before_the_key = {k: v for k, v in OmegaConf.to_container(whole).items() if k != "test_size"}
    digests = datasets.split_digests(whole, datasets.load(whole), seed=0)
    assert digests == datasets.split_digests(before_the_key, datasets.load(whole), seed=0)
    fewer = datasets.split_digests(dataset_config(directory, val_size=20, test_size=12), ds, 0)
    assert fewer["test"] != digests["test"]


def test_val_size_must_be_smaller_than_training_set(tmp_path):
    directory = write_fake_dataset(tmp_path / "fm", n_train=120)
    with pytest.raises(DataError, match="dataset.val_size=120"):
        datasets.load(dataset_config(directory, val_size=120))


def test_truncated_file_is_an_error_naming_the_file(tmp_path):
    directory = write_fake_dataset(tmp_path / "fm")
    path = directory / FILES["train_images"]
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        datasets.load(dataset_config(directory, val_size=20))


def test_short_payload_in_valid_gzip_is_an_error(tmp_path):
    directory = write_fake_dataset(tmp_path / "fm")
    path = directory / FILES["test_images"]
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-28]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: header says \(30, 28, 28\)"):
        datasets.load(dataset_config(directory, val_size=20))


def test_corrupt_gzip_is_an_error(tmp_path):
    directory = write_fake_dataset(tmp_path / "fm")
    path = directory / FILES["train_labels"]
    blob = bytearray(path.read_bytes())
    blob[20:40] = b"\xff" * 20
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        datasets.load(dataset_config(directory, val_size=20))


def test_wrong_magic_number_is_an_error(tmp_path):
    directory = write_fake_dataset(tmp_path / "fm")
    write_idx(directory / FILES["train_labels"], np.zeros(120), magic=0x0803)  # images magic on labels
    with pytest.raises(DataError, match="magic"):
        datasets.load(dataset_config(directory, val_size=20))


def test_count_mismatch_and_bad_labels_are_errors(tmp_path):
    directory = write_fake_dataset(tmp_path / "fm")
    write_idx(directory / FILES["train_labels"], np.zeros(119))
    with pytest.raises(DataError, match="120 images but"):
        datasets.load(dataset_config(directory, val_size=20))
    write_idx(directory / FILES["train_labels"], np.full(120, 12))
    with pytest.raises(DataError, match="label 12"):
        datasets.load(dataset_config(directory, val_size=20))


def test_missing_everywhere_lists_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as info:
        datasets.find_data_dir(None, download=False)
    message = str(info.value)
    assert "no-debian" in message and ".keras/datasets/fashion-mnist" in message
    assert "apt-get install -y dataset-fashion-mnist" in message and "\n" not in message


def test_explicit_path_is_the_only_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(write_fake_dataset(tmp_path / "env")))
    partial = tmp_path / "partial"
    partial.mkdir()
    write_idx(partial / FILES["train_labels"], np.zeros(10))
    with pytest.raises(DataError, match="dataset.path=.*missing train-images-idx3-ubyte.gz"):
        datasets.find_data_dir(str(partial))


def test_search_order_env_then_keras_cache_then_debian(tmp_path, monkeypatch):
    debian = write_fake_dataset(tmp_path / "no-debian")
    assert datasets.find_data_dir() == debian
    keras_cache = write_fake_dataset(tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist")
    assert datasets.find_data_dir() == keras_cache
    env_dir = write_fake_dataset(tmp_path / "env")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(env_dir))
    assert datasets.find_data_dir() == env_dir
    assert datasets.find_data_dir(str(debian)) == debian


def test_real_fashion_mnist_loads_with_the_seed_split(real_data_dir):
    ds = datasets.load(dataset_config(real_data_dir))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (58000, 2000, 10000)
    assert sorted(np.unique(ds.train.labels)) == list(range(10))


def _noisy(tmp_path, fraction, seed, n_train=1020):
    directory = write_fake_dataset(tmp_path / "fm", n_train=n_train, n_test=30)
    clean = datasets.load(dataset_config(directory, val_size=20))
    return clean, datasets.with_label_noise(clean, fraction, 10, seed)


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.5, 1.0])
def test_label_noise_replaces_that_fraction_of_training_labels_with_other_classes(tmp_path, fraction):
    clean, noisy = _noisy(tmp_path, fraction, seed=0)
    changed = noisy.train.labels != clean.train.labels
    assert changed.sum() == round(fraction * 1000) and noisy.label_noise == pytest.approx(changed.mean())
    assert noisy.train.labels.max() < 10 and noisy.train.labels.dtype == clean.train.labels.dtype
    np.testing.assert_array_equal(noisy.train.images, clean.train.images)
    # validation and test labels are never touched
    np.testing.assert_array_equal(noisy.val.labels, clean.val.labels)
    np.testing.assert_array_equal(noisy.test.labels, clean.test.labels)


def test_label_noise_is_fixed_by_the_seed_and_uniform_over_the_other_classes(tmp_path):
    clean, first = _noisy(tmp_path, 0.5, seed=3, n_train=20020)
    _, again = _noisy(tmp_path, 0.5, seed=3, n_train=20020)
    _, other = _noisy(tmp_path, 0.5, seed=4, n_train=20020)
    np.testing.assert_array_equal(first.train.labels, again.train.labels)
    assert not np.array_equal(first.train.labels, other.train.labels)
    changed = first.train.labels != clean.train.labels
    shift = (first.train.labels[changed].astype(int) - clean.train.labels[changed]) % 10
    counts = np.bincount(shift, minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 0.8 * counts[1:].mean()  # every other class, about equally
