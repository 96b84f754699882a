"""`python -m mixup_sweeps.data [KEY]`: where a dataset (default Fashion-MNIST) is found, or how to get it (exit 1)."""

from mixup_sweeps.data.datasets import main

raise SystemExit(main())
