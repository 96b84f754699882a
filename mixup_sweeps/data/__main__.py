"""`python -m mixup_sweeps.data`: where Fashion-MNIST is found, or how to get it (exit 1)."""

from mixup_sweeps.data.datasets import main

raise SystemExit(main())
