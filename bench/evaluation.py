"""Time the reference COCO box mAP (a10-evaluation) against pycocotools' COCOeval in one run, and
print the ratio (reference / pycocotools).

    .venv/bin/python bench/evaluation.py [--images N] [--threads N]

Workload: N images (default 500) of the course's random evaluation data (up to 5 ground truths and
40 detections per image, 3 classes, detections near the objects and elsewhere), COCO's ten IoU
thresholds. pycocotools' figure counts evaluate() and accumulate() on COCO objects already
built (its JSON loading is left out, in its favour); the results are checked equal first. Each
figure is the best of 3 runs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from autograder.suites.detections import data_set
from coursetools.coco import coco_evaluation, coco_map
from coursetools.reference import load_reference


def best_seconds(run, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (default 1, as graders run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ref = load_reference("a10-evaluation")
    predictions, targets = data_set(0, args.images, 3, False, max_detections=40)
    ours, theirs = ref.mean_average_precision(predictions, targets), coco_map(predictions, targets)
    assert all(abs(ours[k] - theirs[k]) < 1e-9 for k in theirs), (ours, theirs)
    evaluation = coco_evaluation(predictions, targets)  # COCO objects built once

    def pycocotools_run():
        evaluation.evaluate()
        evaluation.accumulate()

    detections = sum(len(p["boxes"]) for p in predictions)
    truths = sum(len(t["boxes"]) for t in targets)
    print(f"{args.images} images, {detections} detections, {truths} ground truths, 3 classes, 10 IoU thresholds; "
          f"mAP {ours['map']:.4f} (both)")
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress
        peer = best_seconds(pycocotools_run)
    mine = best_seconds(lambda: ref.mean_average_precision(predictions, targets))
    print(f"{'operation':36} {'reference':>10} {'pycocotools':>12} {'ratio':>7}")
    print(f"{'box mAP (evaluate + accumulate)':36} {mine:8.3f} s {peer:10.3f} s {mine / peer:7.2f}")


if __name__ == "__main__":
    main()
