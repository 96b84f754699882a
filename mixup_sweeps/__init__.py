"""mixup-sweeps: Hydra-composed, MLflow-tracked sweeps of mixup augmentation on Fashion-MNIST."""

__version__ = "0.1.0"
