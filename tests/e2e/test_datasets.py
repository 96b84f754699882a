"""The end-to-end part (real data, the command line; slow) of the dataset registry's tests; beside them:
tests/unit/test_datasets.py (each member on small files in its published format) and test_data.py.

The generic readers are proved on the real Fashion-MNIST written out in their forms: as an .npz and as an image
folder they load as the same images and labels as `dataset=fashion_mnist`, and the same seed then trains to
the same results on all three; the report keeps them apart. A 32x32x3 dataset (Fashion-MNIST padded and
coloured, written as CIFAR-10's pickle batches) trains in a packed JAX sweep."""

from __future__ import annotations

import numpy as np
import pytest

from mixup_sweeps.data import datasets
from mixup_sweeps.data.datasets.idx import FILES, IDX_UBYTE_IMAGES, IDX_UBYTE_LABELS, read_idx
from tests.e2e.test_packed import children, history
from tests.helpers import dataset_config, run_cli, run_report
from tests.published_formats import as_colour_32, write_cifar10, write_folder

SIZES = ["dataset.val_size=2000", "dataset.train_size=500"]  # the folder holds just these training images


@pytest.fixture(scope="module")
def written(real_data_dir, tmp_path_factory):
    """Fashion-MNIST's IDX files written out as an .npz (all of it) and as an image folder (the first 2,500
    training images and the whole test set), and a config directory naming each as a dataset of its own."""
    root = tmp_path_factory.mktemp("written")
    real = {part: read_idx(real_data_dir / name, IDX_UBYTE_IMAGES if "images" in part else IDX_UBYTE_LABELS)[0]
            for part, name in FILES.items()}  # fmt: skip
    names = list(datasets.FashionMNIST.class_names)
    npz = root / "fashion.npz"
    np.savez(npz, x_train=real["train_images"], y_train=real["train_labels"], x_test=real["test_images"],
             y_test=real["test_labels"], class_names=np.array(names))  # fmt: skip
    train = (real["train_images"][:2500, ..., None], real["train_labels"][:2500])
    tree = write_folder(root / "tree", {"train": train, "test": (real["test_images"][..., None], real["test_labels"])},
                        [f"{i}-{n.replace('/', '-')}" for i, n in enumerate(names)])  # fmt: skip  # in label order
    conf = root / "conf" / "dataset"
    conf.mkdir(parents=True)
    (conf / "fashion_npz.yaml").write_text(f"defaults:\n  - npz\n  - _self_\npath: {npz}\n")
    (conf / "fashion_folder.yaml").write_text(f"defaults:\n  - folder\n  - _self_\npath: {tree}\n")
    return {"npz": npz, "folder": tree, "searchpath": f"hydra.searchpath=[file://{root / 'conf'}]", "real": real}


def test_the_npz_and_the_folder_load_as_the_same_images_and_labels(written, real_data_dir):
    sizes = {"val_size": 2000, "train_size": 500}
    idx = datasets.load(dataset_config(real_data_dir, **sizes))
    for group in ("npz", "folder"):
        own = datasets.load(dataset_config(written[group], group, **sizes))
        for part in ("train", "val", "test"):
            np.testing.assert_array_equal(getattr(own, part).images, getattr(idx, part).images)
            np.testing.assert_array_equal(getattr(own, part).labels, getattr(idx, part).labels)
        assert own.image_shape == (28, 28, 1) and own.num_classes == 10
    assert datasets.load(dataset_config(written["npz"], "npz", **sizes)).class_names == idx.class_names


def test_one_seed_trains_the_same_on_all_three_and_the_report_keeps_them_apart(written, tmp_path):
    out = tmp_path / "out"
    result = run_cli("-m", written["searchpath"], "dataset=fashion_mnist,fashion_npz,fashion_folder", *SIZES,
                     "trainer.epochs=1", "trainer.deterministic=true", f"paths.output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    runs = {r.data.params["dataset.name"]: r for r in children(out)}
    assert set(runs) == {"fashion_mnist", "npz", "folder"} and all(r.info.status == "FINISHED" for r in runs.values())
    reference = history(client, runs["fashion_mnist"])
    for name in ("npz", "folder"):
        assert history(client, runs[name]) == reference, name  # every epoch metric and the test accuracy, exactly
        assert runs[name].data.params["dataset.image_shape"] == "[28, 28, 1]"  # what the files hold, recorded
        assert runs[name].data.tags["dataset.origin"] == "your own files"
    assert runs["npz"].data.tags["dataset.dir"] == str(written["npz"])
    assert set(runs["npz"].data.tags) >= {"dataset.sha256.fashion.npz"}
    assert runs["folder"].data.tags["dataset.sha256.tree"] and runs["fashion_mnist"].data.tags["dataset.origin"]
    assert len({r.data.tags["config_fingerprint"] for r in runs.values()}) == 3
    assert run_report("--output-dir", out, "--out", tmp_path / "report") == 0
    report = (tmp_path / "report" / "report.md").read_text()
    for name in ("fashion_mnist", "npz", "folder"):
        assert f"## dataset.name={name} / model.name=seed_cnn" in report  # a table each, never averaged together


def test_a_packed_jax_sweep_on_32x32_colour_images(real_data_dir, tmp_path, written):
    """CIFAR-10's format and shape (Fashion-MNIST padded to 32x32 and coloured): both members of one pack land."""
    real = written["real"]
    train = (as_colour_32(real["train_images"][:1200, ..., None]), real["train_labels"][:1200])
    test = (as_colour_32(real["test_images"][:300, ..., None]), real["test_labels"][:300])
    directory = write_cifar10(tmp_path / "cifar-10-batches-py", train, test)
    out = tmp_path / "out"
    data = ["dataset=cifar10", f"dataset.path={directory}", "dataset.val_size=200"]
    result = run_cli("-m", "hydra/launcher=packed", "backend=jax", *data, "aug=none,mixup", "trainer.epochs=1",
                     f"paths.output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = children(out)
    assert sorted(r.data.params["aug.name"] for r in runs if r.info.status == "FINISHED") == ["mixup", "none"]
    assert {r.data.tags["pack_members"] for r in runs} == {"2"}
    assert {r.data.params["dataset.image_shape"] for r in runs} == {"[32, 32, 3]"}
    assert {r.data.tags["dataset.origin"] for r in runs} == {datasets.DATASETS["cifar10"].origin}
    assert all(r.data.tags["dataset.sha256.data_batch_1"] for r in runs)
