import os
import pathlib
import sys

# The tests run two at a time on two cores (pytest -n 2) and start notebook kernels that inherit
# this environment: one compute thread each keeps timing-based checks free of oversubscription.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
