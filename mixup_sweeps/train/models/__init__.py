"""The models, one object each (like the augmentations and the datasets): `model=<name>` picks a YAML, its
`architecture` the class that checks and builds it.

Members: `cnn` (cnn.py: seed_cnn, wide_cnn, flat_cnn), `resnet` (resnet20) and `preact_resnet`
(preact_resnet18) in resnet.py. Adding one is a registered class in a module here plus conf/model/<name>.yaml;
the registry and the shared initial weights are in `_base.py`. Importing this package imports no Keras.
"""

from mixup_sweeps.train.models import cnn, resnet  # noqa: F401  (each registers its members)
from mixup_sweeps.train.models._base import (
    DEFAULT_ARCHITECTURE,
    MODELS,
    Model,
    build_model,
    create_initial_weights,
    initial_weights_path,
    of,
    register,
    sha256_file,
)

__all__ = ["DEFAULT_ARCHITECTURE", "MODELS", "Model", "build_model", "create_initial_weights", "initial_weights_path",
           "of", "register", "sha256_file"]  # fmt: skip
