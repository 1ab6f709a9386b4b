"""`python -m train --config train/configs/def-m.yaml --features data/features --run runs/def-m [--resume]`

See train/run.py for the options and the run folder layout."""
import sys

from train.run import main

sys.exit(main())
