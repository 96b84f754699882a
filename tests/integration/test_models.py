"""The seed CNN is the seed's, and runs with the same key start from byte-identical initial weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from mixup_sweeps.train import models
from tests.helpers import compose_config


def test_seed_cnn_is_exactly_the_keras_example():
    model = models.build_model(compose_config().model, (28, 28, 1), 10)
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Dropout", "GlobalAveragePooling2D", "Dense", "Dense",
    ]  # fmt: skip
    # 5x5x1x16+16, 5x5x16x32+32, 32x128+128, 128x10+10
    assert model.count_params() == 416 + 12832 + 4224 + 1290
    assert model.layers[-1].activation.__name__ == "softmax"


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_in_16_bits_with_float32_weights_softmax_and_initial_weights(precision, tmp_path):
    cfg = compose_config().model
    path = models.create_initial_weights(tmp_path, cfg, (28, 28, 1), 10, seed=0)
    float32 = models.build_model(cfg, (28, 28, 1), 10)
    mixed = models.build_model(cfg, (28, 28, 1), 10, precision=precision)
    for model in (float32, mixed):
        model.load_weights(path)  # the shared float32 initial weights load into both
    assert all(w.dtype == "float32" for w in mixed.weights)
    assert [a.tolist() == b.tolist() for a, b in zip(float32.get_weights(), mixed.get_weights())] == [True] * 8
    conv = mixed.layers[1]
    assert conv.compute_dtype == precision.removeprefix("mixed_") and conv.variable_dtype == "float32"
    assert mixed.layers[-1].compute_dtype == "float32"  # the softmax, so probabilities and loss stay float32
    images = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    probabilities = keras.ops.convert_to_numpy(mixed(images))
    assert probabilities.dtype == np.float32 and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    expected = keras.ops.convert_to_numpy(float32(images))
    assert np.abs(probabilities - expected).max() < 0.05  # the same function, computed in fewer bits


def test_wide_cnn_has_batch_norm():
    model = models.build_model(compose_config(["model=wide_cnn"]).model, (28, 28, 1), 10)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_same_key_same_bytes_other_seed_other_bytes(tmp_path):
    cfg = compose_config().model
    first = models.create_initial_weights(tmp_path, cfg, (28, 28, 1), 10, seed=0)
    digest = models.sha256_file(first)
    again = models.create_initial_weights(tmp_path, cfg, (28, 28, 1), 10, seed=0)
    assert again == first and models.sha256_file(again) == digest
    other_seed = models.create_initial_weights(tmp_path, cfg, (28, 28, 1), 10, seed=1)
    assert other_seed != first and models.sha256_file(other_seed) != digest
    wider = OmegaConf.merge(cfg, {"dense_units": 256})
    assert models.create_initial_weights(tmp_path, wider, (28, 28, 1), 10, seed=0) != first


def test_loaded_initial_weights_equal_the_saved_ones(tmp_path):
    cfg = compose_config().model
    path = models.create_initial_weights(tmp_path, cfg, (28, 28, 1), 10, seed=3)
    a = models.build_model(cfg, (28, 28, 1), 10)
    b = models.build_model(cfg, (28, 28, 1), 10)
    a.load_weights(path)
    b.load_weights(path)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert (wa == wb).all()


@pytest.mark.parametrize("name, expected", [("resnet20", 0.27e6), ("preact_resnet18", 11.17e6)])
def test_the_recipes_networks_have_their_published_sizes(name, expected):
    """Trainable weights (what PyTorch counts; batch norm's moving statistics are state, not parameters)."""
    model = models.build_model(compose_config([f"model={name}"]).model, (32, 32, 3), 10)
    count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert abs(count - expected) / expected < 0.01, count
    assert model.output_shape == (None, 10) and model.layers[-1].activation.__name__ == "softmax"


def test_resnet20_takes_fashion_mnist_and_starts_from_shared_weights(tmp_path):
    cfg = compose_config(["model=resnet20"]).model
    path = models.create_initial_weights(tmp_path, cfg, (28, 28, 1), 10, seed=0)
    one, two = (models.build_model(cfg, (28, 28, 1), 10) for _ in range(2))
    for model in (one, two):
        model.load_weights(path)
    images = np.random.default_rng(0).random((3, 28, 28, 1)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(one(images)), keras.ops.convert_to_numpy(two(images)))
    assert path.name.startswith("resnet20-28x28x1-c10-seed0-")
