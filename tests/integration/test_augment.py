"""The integration part (real Hydra, MLflow, Keras in this process or one subprocess) of these tests; beside them:
tests/unit/test_augment.py.

The training stream: lambda's distribution, convex combinations, pairings, CutMix boxes, and that epoch e's
batches are a function of (seed, e, config) alone."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops
from omegaconf import OmegaConf

from mixup_sweeps.data import training_stream
from mixup_sweeps.data.datasets import Split
from tests.unit.test_augment import CUTMIX, MIXUP, _split


def epoch_batches(stream: training_stream.TrainingStream, epoch: int):
    """(model inputs, mixed float images as the train step makes them, soft labels) for each batch of an epoch."""
    for index in range(stream.num_batches):
        inputs, labels = stream.batch(epoch, index)
        yield inputs, ops.convert_to_numpy(training_stream.MixImages(stream.form)(list(inputs))), labels


def test_plain_stream_visits_every_image_once_per_epoch_in_a_new_order_with_one_hot_labels():
    stream = training_stream.TrainingStream(_split(200), OmegaConf.create({"name": "none"}), 64, 10, seed=0)
    assert stream.num_batches == 4
    orders = []
    for epoch in range(2):
        seen = []
        for (raw,), images, labels in epoch_batches(stream, epoch):
            assert raw.dtype == np.uint8 and images.dtype == np.float32 and images.max() <= 1.0
            ids = np.round(images[:, 0, 0, 0] * 255).astype(int)
            np.testing.assert_array_equal(np.argmax(labels, 1), ids % 10)
            np.testing.assert_allclose(labels.max(1), 1.0)
            seen += ids.tolist()
        assert sorted(seen) == list(range(200))  # a full permutation: every image exactly once
        orders.append(seen)
    assert orders[0] != orders[1]


def test_mixup_stream_pairs_two_independent_shuffles_with_the_same_lambda_on_images_and_labels():
    split = _split(200)
    stream = training_stream.TrainingStream(split, OmegaConf.create(MIXUP), 50, 10, seed=0)
    mixed = 0
    for (first, second, lam), images, labels in epoch_batches(stream, 0):
        assert first.dtype == np.uint8 and lam.shape == (50,) and images.shape == (50, 28, 28, 1)
        np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
        expected = lam[:, None, None, None] * (first / 255.0) + (1 - lam[:, None, None, None]) * (second / 255.0)
        np.testing.assert_allclose(images, expected, atol=1e-6)
        one_hot = np.eye(10)[split.labels]
        ids_one, ids_two = first[:, 0, 0, 0], second[:, 0, 0, 0]
        np.testing.assert_allclose(
            labels, lam[:, None] * one_hot[ids_one] + (1 - lam[:, None]) * one_hot[ids_two], atol=1e-6
        )
        mixed += int(np.sum(labels.max(1) < 0.99))
    assert mixed > 100  # most samples are real mixtures of two different images


@pytest.mark.parametrize("pairing", ["two_streams", "permute"])
def test_per_batch_lambda_is_one_draw_shared_by_the_whole_batch(pairing):
    aug = OmegaConf.create({**MIXUP, "lam": "per_batch", "pairing": pairing})
    stream, draws = training_stream.TrainingStream(_split(200), aug, 50, 10, seed=7), []
    for epoch in range(2):
        for (_, _, lam), _, labels in epoch_batches(stream, epoch):
            np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
            assert len(set(lam.tolist())) == 1
            draws.append(float(lam[0]))
    assert len(set(draws)) == len(draws)  # a new lambda for every batch and every epoch


@pytest.mark.parametrize("aug", [{**MIXUP, "pairing": "permute"}, CUTMIX], ids=["permute", "cutmix"])
def test_partners_are_a_permutation_of_the_batch_itself(aug):
    stream = training_stream.TrainingStream(_split(200), OmegaConf.create(aug), 50, 10, seed=3)
    for epoch in range(2):
        for (first, second, _), _, _ in epoch_batches(stream, epoch):
            assert sorted(first[:, 0, 0, 0].tolist()) == sorted(second[:, 0, 0, 0].tolist())
            assert np.mean(first[:, 0, 0, 0] != second[:, 0, 0, 0]) > 0.8


def test_cutmix_pastes_a_box_of_a_batch_member_and_weights_labels_by_its_pixels():
    n = 64  # one class per image, pixel value = class: every output pixel says where it came from
    split = Split(
        images=np.stack([np.full((28, 28, 1), i, np.uint8) for i in range(n)]), labels=np.arange(n, dtype=np.uint8)
    )
    stream = training_stream.TrainingStream(split, OmegaConf.create(CUTMIX), n, n, seed=1)
    smaller_parts = []
    for epoch in range(3):
        for _, mixed, soft in epoch_batches(stream, epoch):
            for image, label in zip(np.round(mixed * 255).astype(int), soft):
                values, counts = np.unique(image, return_counts=True)
                assert len(values) <= 2  # own pixels and one partner's box, nothing blended
                np.testing.assert_allclose(label.sum(), 1.0, atol=1e-5)
                np.testing.assert_allclose(label[values], counts / image.size, atol=1e-6)  # exact pixel shares
                if len(values) == 2:
                    smaller_parts.append(counts.min() / image.size)
    # the box area ratio is Beta(1, 1) = uniform, so the smaller part averages E[min(U, 1 - U)] = 0.25
    assert len(smaller_parts) > 150 and 0.2 < np.mean(smaller_parts) < 0.3


@pytest.mark.parametrize("aug", [{"name": "none"}, MIXUP, {**MIXUP, "lam": "per_batch", "pairing": "permute"}, CUTMIX])
def test_a_batch_is_a_function_of_seed_epoch_and_index_only(aug):
    """Fetched in any order, by any number of streams, after any other epochs: the same bytes."""
    aug, split = OmegaConf.create(aug), _split(300)
    forward = training_stream.TrainingStream(split, aug, 64, 10, seed=5)
    batches = {(e, i): forward.batch(e, i) for e in range(3) for i in range(forward.num_batches)}
    backward = training_stream.TrainingStream(split, aug, 64, 10, seed=5)
    for (epoch, index), (inputs, labels) in reversed(list(batches.items())):
        again_inputs, again_labels = backward.batch(epoch, index)
        assert (
            all(a.tobytes() == b.tobytes() for a, b in zip(inputs, again_inputs))
            and labels.tobytes() == again_labels.tobytes()
        )
    other_seed = training_stream.TrainingStream(split, aug, 64, 10, seed=6).batch(1, 0)
    assert other_seed[0][0].tobytes() != batches[(1, 0)][0][0].tobytes()
    assert batches[(0, 0)][0][0].tobytes() != batches[(1, 0)][0][0].tobytes()


def test_worker_threads_fetching_at_once_get_the_same_batches():
    """Keras's PyDataset workers call `__getitem__` from several threads: the plan is drawn once per epoch."""
    from concurrent.futures import ThreadPoolExecutor

    aug, split = OmegaConf.create(MIXUP), _split(640)
    expected = training_stream.TrainingStream(split, aug, 64, 10, seed=2)
    shared = training_stream.TrainingStream(split, aug, 64, 10, seed=2, workers=4)
    keys = [(e, i) for e in (3, 4) for i in range(shared.num_batches)] * 2
    with ThreadPoolExecutor(max_workers=8) as pool:
        fetched = list(pool.map(lambda key: shared.batch(*key), keys))
    for (epoch, index), (inputs, labels) in zip(keys, fetched):
        again_inputs, again_labels = expected.batch(epoch, index)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(inputs, again_inputs))
        assert labels.tobytes() == again_labels.tobytes()


GOLDEN = {
    "none": {"name": "none"},
    "mixup": {"name": "mixup", "alpha": 0.2, "lam": "per_sample", "pairing": "two_streams"},
    "mixup_per_batch": {"name": "mixup", "alpha": 0.4, "lam": "per_batch", "pairing": "two_streams"},
    "mixup_permute": {"name": "mixup", "alpha": 1.0, "lam": "per_sample", "pairing": "permute"},
    "cutmix": {"name": "cutmix", "alpha": 1.0},
    "cutmix_half": {"name": "cutmix", "alpha": 0.5},
}


def golden_digests() -> dict[str, dict[str, str]]:
    """sha256[:16] of epoch plans and mixed images (fit's form and a pack's (lam, box) form), as recorded in
    tests/data/golden_mixing.json before the augmentation registry: 150 random uint8 images, batch 64, seed 3."""
    import hashlib

    def digest(array: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]

    source = np.random.default_rng(123)
    split = Split(images=source.integers(0, 256, (150, 28, 28, 1)).astype(np.uint8),
                  labels=source.integers(0, 10, 150).astype(np.uint8))  # fmt: skip
    pack_form = ("lam", "box")  # what every pack took before: (images, partners, lambda, box)
    found = {}
    for name, aug in GOLDEN.items():
        aug = OmegaConf.create(aug)
        for epoch in (0, 1):
            plan = training_stream.epoch_plan(split, aug, 64, 10, 3, epoch)
            stream = training_stream.TrainingStream(split, aug, 64, 10, seed=3)
            fit = [
                ops.convert_to_numpy(training_stream.MixImages(stream.form)(list(stream.batch(epoch, i)[0])))
                for i in range(stream.num_batches)
            ]
            order, partner, lam, box, _ = plan.arrays(pack_form)
            packed = training_stream.MixImages(pack_form)([split.images[order], split.images[partner], lam, box])
            found[f"{name}/{epoch}"] = {
                "order": digest(plan.order), "partner": digest(partner), "labels": digest(plan.labels),
                "fit": digest(np.concatenate(fit)), "packed": digest(ops.convert_to_numpy(packed)),
            }  # fmt: skip
    return found


def test_mixed_images_of_mixup_and_cutmix_are_bit_for_bit_what_they_were():
    """The one mixing formula (x·k + y·(1 - k)) gives the bytes the per-augmentation code gave, on this backend
    (the JAX backend: tests/e2e/test_backend_setup.py), for fit's input form and the pack's."""
    import json

    import keras

    from tests.helpers import ROOT

    recorded = json.loads((ROOT / "tests" / "data" / "golden_mixing.json").read_text())
    assert golden_digests() == recorded["backends"][keras.backend.backend()]


@pytest.mark.parametrize("aug", [{"name": "none"}, MIXUP, {"name": "fmix", "alpha": 1.0, "decay_power": 3.0}])
def test_the_tensorflow_pipeline_serves_the_streams_batches_epoch_by_epoch(aug):
    """`TrainingStream.tf_dataset` (what the TensorFlow engine trains on) gives exactly `batch(epoch, i)`, epoch
    after epoch, as Keras iterates it: a new iterator per epoch, made after the epoch was announced or at the end
    of the one before; a resumed fit starts at its epoch; nothing is served past the last epoch."""
    import tensorflow as tf

    def served(dataset) -> list:
        return [tuple(np.asarray(x) for x in (*inputs, labels)) for inputs, labels in dataset]

    def expected(stream, epoch: int) -> list:
        batches = (stream.batch(epoch, i) for i in range(stream.num_batches))
        return [(*inputs, labels) for inputs, labels in batches]

    def same(a: list, b: list) -> bool:
        return len(a) == len(b) and all(len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y))
                                        for x, y in zip(a, b))  # fmt: skip

    stream = training_stream.TrainingStream(_split(150), OmegaConf.create(aug), 64, 10, seed=1, last_epoch=3)
    stream.epoch = 1  # a fit resumed after epoch 0: Keras announces epoch 1, then makes the first iterator
    dataset = stream.tf_dataset()
    assert dataset.cardinality() == stream.num_batches == 3
    assert same(served(dataset), expected(stream, 1))
    assert same(served(dataset), expected(stream, 2))  # made at the end of epoch 1, before epoch 2 is announced
    stream.epoch = 3
    assert same(served(dataset), expected(stream, 3))  # made after epoch 3 was announced
    with pytest.raises(tf.errors.FailedPreconditionError, match="contained only 0 elements"):
        next(iter(dataset))  # the iterator Keras makes at the end of the last epoch (never read) has no epoch 4
    stream.close()


def test_the_engines_pipelines_run_without_autotuning():
    """The training stream's pipeline and the validation batches run without tf.data's autotuning: with it, an
    epoch of two one-thread jobs side by side waited seconds at its start for the dropped iterator's threads
    (docs/benchmarks.md, issue 40). The validation batches are the arrays cut in order, the last one short."""
    split = _split(150)
    stream = training_stream.TrainingStream(split, OmegaConf.create(MIXUP), 64, 10, seed=1, last_epoch=0)
    assert stream.tf_dataset().options().autotune.enabled is False
    stream.close()
    inputs = training_stream.unmixed_inputs(split.images, stream.form)
    labels = np.eye(10, dtype=np.float32)[split.labels]
    validation = training_stream.tf_batches((inputs, labels), 64)
    assert validation.options().autotune.enabled is False
    batches = [(tuple(np.asarray(x) for x in xs), np.asarray(y)) for xs, y in validation]
    assert [len(y) for _, y in batches] == [64, 64, 22]
    for part, array in enumerate(inputs):
        assert np.array_equal(np.concatenate([xs[part] for xs, _ in batches]), array)
    assert np.array_equal(np.concatenate([y for _, y in batches]), labels)
