import sys

from mixup_sweeps.report.cli import main

sys.exit(main())
