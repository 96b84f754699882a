"""The dataset registry's members on small files written here in the exact published formats: MNIST and KMNIST
(IDX), CIFAR-10/100 (pickle batches), your own .npz and image folder; each bad input is one line."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mixup_sweeps.data import datasets
from mixup_sweeps.data.datasets import DataError
from mixup_sweeps.data.datasets.folder import cache_dir
from tests.helpers import dataset_config, write_fake_dataset
from tests.published_formats import write_cifar10, write_cifar100, write_folder


@pytest.fixture(autouse=True)
def no_ambient_data(monkeypatch, tmp_path):
    """Search only where each test says: no environment variable, an empty home and cache."""
    for var in ("FASHION_MNIST_DIR", "MNIST_DIR", "KMNIST_DIR", "CIFAR10_DIR", "CIFAR100_DIR", "KERAS_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def images(n: int, shape: tuple, seed: int = 0) -> np.ndarray:
    """Images whose first pixel is their index (mod 256): orders and splits can be read off them."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    out[:, 0, 0, :] = (np.arange(n) % 256)[:, None]
    return out


KMNIST_NAMES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")


@pytest.mark.parametrize("group, names", [("mnist", tuple("0123456789")), ("kmnist", KMNIST_NAMES)])
def test_the_mnist_family_reads_its_idx_files_with_its_class_names(tmp_path, group, names):
    directory = write_fake_dataset(tmp_path / group, n_train=120, n_test=30)
    ds = datasets.load(dataset_config(directory, group, val_size=20))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (100, 20, 30) and ds.image_shape == (28, 28, 1)
    assert ds.class_names == names and ds.name == group and ds.origin.startswith("http")


@pytest.mark.parametrize("group, env, looked", [
    ("mnist", "MNIST_DIR", ".keras/datasets/mnist-idx"), ("kmnist", "KMNIST_DIR", ".keras/datasets/kmnist"),
    ("cifar10", "CIFAR10_DIR", "cifar-10-batches-py-target/cifar-10-batches-py"),
    ("cifar100", "CIFAR100_DIR", "cifar-100-python"),
])  # fmt: skip
def test_no_files_and_no_download_is_one_line_naming_what_to_put_where(group, env, looked, tmp_path, monkeypatch):
    cfg = dataset_config(tmp_path / "x", group)
    source = datasets.of({**cfg, "path": None, "download": False})
    with pytest.raises(DataError) as info:
        source.locate()
    message = str(info.value)
    assert looked in message and env in message and source.origin.split("/")[2] in message and "\n" not in message
    monkeypatch.setenv(env, str(tmp_path / "elsewhere"))
    assert str(tmp_path / "elsewhere") in str(pytest.raises(DataError, source.locate).value)


def test_cifar10_batches_read_channels_last_with_the_meta_names(tmp_path):
    train, test = images(50, (32, 32, 3)), images(10, (32, 32, 3), seed=1)
    directory = write_cifar10(tmp_path / "cifar-10-batches-py", (train, np.arange(50) % 10), (test, np.arange(10)))
    ds = datasets.load(dataset_config(directory, "cifar10", val_size=10))
    np.testing.assert_array_equal(ds.val.images, train[:10])  # R, G, B planes back to (32, 32, 3)
    np.testing.assert_array_equal(ds.train.images, train[10:])
    np.testing.assert_array_equal(ds.test.images, test)
    assert list(ds.train.labels) == list(np.arange(10, 50) % 10) and ds.class_names[0] == "airplane"
    assert sorted(ds.sha256) == sorted([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"])


@pytest.mark.parametrize("mode, classes", [("fine", 100), ("coarse", 20)])
def test_cifar100_has_fine_or_coarse_labels_and_as_many_classes(tmp_path, mode, classes):
    fine = np.arange(60) % 100
    directory = write_cifar100(tmp_path / "c100", (images(60, (32, 32, 3)), fine), (images(8, (32, 32, 3)), fine[:8]))
    ds = datasets.load(dataset_config(directory, "cifar100", val_size=10, label_mode=mode))
    assert ds.num_classes == classes and ds.class_names[1] == f"{mode}1"
    assert list(ds.train.labels) == list(fine[10:] if mode == "fine" else fine[10:] // 5)


def test_a_cifar_batch_that_would_run_code_or_is_cut_short_is_one_line(tmp_path):
    train, test = (images(10, (32, 32, 3)), np.arange(10)), (images(2, (32, 32, 3)), [0, 1])
    directory = write_cifar10(tmp_path / "c10", train, test)
    blob = (directory / "test_batch").read_bytes()
    (directory / "test_batch").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="test_batch: not a CIFAR python batch"):
        datasets.load(dataset_config(directory, "cifar10", val_size=2))

    class Gadget:
        def __reduce__(self):
            return (print, ("this must not run",))

    (directory / "test_batch").write_bytes(pickle.dumps({b"data": Gadget()}, protocol=2))
    with pytest.raises(DataError, match=r"refusing (__builtin__|builtins)\.print"):
        datasets.load(dataset_config(directory, "cifar10", val_size=2))


def test_npz_arrays_load_with_channels_classes_inferred_and_their_names(tmp_path):
    path = tmp_path / "mine.npz"
    x_train, x_test = images(40, (20, 24, 1))[..., 0], images(6, (20, 24, 1))[..., 0]
    np.savez(path, x_train=x_train, y_train=np.arange(40) % 3, x_test=x_test, y_test=np.arange(6) % 3,
             class_names=np.array(["cat", "dog", "eel"]))  # fmt: skip
    ds = datasets.load(dataset_config(path, "npz", val_size=10))
    assert ds.image_shape == (20, 24, 1) and ds.num_classes == 3 and ds.class_names == ("cat", "dog", "eel")
    np.testing.assert_array_equal(ds.train.images[..., 0], x_train[10:])
    assert list(ds.sha256) == ["mine.npz"]
    np.savez(path, x_train=x_train, y_train=np.arange(40) % 3, x_test=x_test, y_test=np.arange(6) % 3)
    assert datasets.load(dataset_config(path, "npz", val_size=10, num_classes=5)).num_classes == 5  # given


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(4, int)}, "missing arrays x_test, y_test"),
    ({"x_train": np.zeros((4, 8, 8)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 8, 8), np.uint8),
      "y_test": np.zeros(2, int)}, "x_train must be uint8 images"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(3, int), "x_test": np.zeros((2, 8, 8), np.uint8),
      "y_test": np.zeros(2, int)}, "x_train has 4 images but y_train 3 labels"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 2, 7]),
      "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.zeros(2, int)}, "label 7 is not below dataset.num_class"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 0, 1]),
      "x_test": np.zeros((2, 9, 8), np.uint8), "y_test": np.zeros(2, int)}, "test images are"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 0, 1]),
      "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.array(["a", "b"], dtype=object)}, "not a NumPy .npz file"),
])  # fmt: skip
def test_a_bad_npz_is_one_line_naming_the_file_and_what_is_wanted(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as info:
        datasets.load(dataset_config(path, "npz", val_size=1, num_classes=3 if "below" in message else "null"))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_an_image_folder_is_read_in_file_name_order_cached_and_read_again_when_changed(tmp_path, monkeypatch):
    grey = images(12, (10, 10, 1))
    labels = np.arange(12) % 3
    tree = write_folder(tmp_path / "tree", {"train": (grey[:9], labels[:9]), "test": (grey[9:], labels[9:])},
                        ["cat", "dog", "eel"])  # fmt: skip
    ds = datasets.load(dataset_config(tree, "folder", val_size=3))
    assert ds.class_names == ("cat", "dog", "eel") and ds.image_shape == (10, 10, 1)
    np.testing.assert_array_equal(ds.val.images, grey[:3])  # numbered files: the order they were written in
    np.testing.assert_array_equal(ds.train.labels, labels[3:9])
    assert list(ds.sha256) == ["tree"] and len(list(cache_dir().glob("*.npz"))) == 1
    import PIL.Image

    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: pytest.fail("decoded again instead of the cache"))
    datasets.read_splits.__globals__["_READ"].clear()  # not this process's copy: the cache on disk
    np.testing.assert_array_equal(datasets.load(dataset_config(tree, "folder", val_size=3)).val.images, grey[:3])
    monkeypatch.undo()
    write_folder(tree, {"train": (np.flip(grey[:1], 1), labels[:1])}, ["cat", "dog", "eel"])  # 00000.png changed
    again = datasets.load(dataset_config(tree, "folder", val_size=3))
    np.testing.assert_array_equal(again.val.images[0], np.flip(grey[0], 0))


def test_colour_and_resizing_in_a_folder(tmp_path):
    colour, grey = images(4, (12, 12, 3)), images(4, (8, 8, 1))
    tree = write_folder(tmp_path / "t", {"train": (colour, [0, 1, 0, 1]), "test": (colour[:2], [0, 1])}, ["a", "b"])
    write_folder(tmp_path / "t", {"train": (grey, [0, 1, 0, 1])}, ["a", "b"], digits=6)
    with pytest.raises(DataError, match="images of several sizes .*set dataset.image_size"):
        datasets.load(dataset_config(tree, "folder", val_size=2))
    ds = datasets.load(dataset_config(tree, "folder", val_size=2, image_size="[16,16]"))
    assert ds.image_shape == (16, 16, 3) and len(ds.train) + len(ds.val) == 8  # grey ones became RGB


@pytest.mark.parametrize("make, message", [
    (lambda t: (t / "train" / "c").mkdir(parents=True), "train/c: no PNG or JPEG images"),
    (lambda t: (t / "test" / "z").mkdir(parents=True), "test/z: a class train/ does not have"),
    (lambda t: __import__("shutil").rmtree(t / "test"), "no test/ folder"),
    (lambda t: (t / "train" / "a" / "99999.png").write_bytes(b"not a png"), "99999.png: not a readable image"),
])  # fmt: skip
def test_a_bad_folder_is_one_line(tmp_path, make, message):
    tree = write_folder(tmp_path / "t", {"train": (images(4, (8, 8, 1)), [0, 1, 0, 1]),
                                         "test": (images(2, (8, 8, 1)), [0, 1])}, ["a", "b"])  # fmt: skip
    make(tree)
    with pytest.raises(DataError, match=message):
        datasets.load(dataset_config(tree, "folder", val_size=1))


@pytest.mark.parametrize("group", ["npz", "folder"])
def test_your_own_data_needs_a_path(group):
    from mixup_sweeps.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset.path.*set it to"):
        datasets.of(dataset_config("null", group)).check()


@pytest.mark.parametrize("name", ["cutmix", "fmix"])
def test_the_masks_fit_images_of_any_size(name):
    """What an augmentation draws takes the image size from the data: CutMix boxes inside 32x32 (and 20x24),
    FMix masks of 32x32 pixels keeping round(λ·1024) of them."""
    from mixup_sweeps.data import augmentations
    from tests.helpers import compose_config

    aug = augmentations.of(compose_config([f"aug={name}"]).aug)
    for size in ((32, 32), (20, 24)):
        rng = np.random.default_rng
        mixing = aug.draw(rng(0), rng(1), np.arange(256), 64, size)
        assert np.all((mixing.own_share >= 0) & (mixing.own_share <= 1))
        if name == "cutmix":
            box = mixing.masks["box"]
            assert box.shape == (256, 4) and (box[:, :2] <= size[0]).all() and (box[:, 2:] <= size[1]).all()
        else:
            pasted = mixing.masks["pasted"]
            assert pasted.shape == (256, *size)
            np.testing.assert_allclose(mixing.own_share, 1 - pasted.reshape(256, -1).mean(axis=1), atol=1e-6)


def test_a_splits_mlflow_digest_is_its_files_and_its_split_rule_not_where_it_was_found(tmp_path):
    """Issue 39: the digest MLflow shows for each split names the files read (their sha256) and how the split was
    cut from them; the same files elsewhere give the same digests, another split rule or noise seed others."""
    one, two = write_fake_dataset(tmp_path / "one"), write_fake_dataset(tmp_path / "two")
    cfg = dataset_config(one, val_size=20)
    digests = datasets.split_digests(cfg, datasets.load(cfg), seed=0)
    assert set(digests) == {"train", "val", "test"} and len(set(digests.values())) == 3
    assert all(len(d) == 16 for d in digests.values())
    moved = dataset_config(two, val_size=20)
    assert datasets.split_digests(moved, datasets.load(moved), seed=0) == digests  # the path is not the data
    assert datasets.split_digests(cfg, datasets.load(cfg), seed=1) == digests  # no noise: the seed cuts nothing
    other = dataset_config(one, val_size=30)
    assert datasets.split_digests(other, datasets.load(other), seed=0)["train"] != digests["train"]
    noisy = dataset_config(one, val_size=20, label_noise=0.2)
    by_seed = [datasets.split_digests(noisy, datasets.load(noisy, seed), seed) for seed in (0, 1)]
    assert by_seed[0]["train"] != by_seed[1]["train"] and by_seed[0]["test"] == by_seed[1]["test"]
    changed = write_fake_dataset(tmp_path / "three", seed=1)
    cfg3 = dataset_config(changed, val_size=20)
    assert datasets.split_digests(cfg3, datasets.load(cfg3), seed=0)["test"] != digests["test"]  # other files


def test_a_path_typed_with_a_line_break_is_still_one_line(tmp_path):
    """Found by the config fuzzer: `dataset.path='\n'` was echoed as typed, a two-line error."""
    with pytest.raises(DataError, match=r"dataset.path='\\n': no such file") as info:
        datasets.load(dataset_config("'\n'", "npz", val_size=1))  # quoted, as the fuzzer typed it
    assert "\n" not in str(info.value)
