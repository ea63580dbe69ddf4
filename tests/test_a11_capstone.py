"""Proofs for a11-capstone: plausible wrong assemblies lose points on the test that names the
mistake (losses cut from the graph, no NMS, unsorted or unclipped detections, a box loss that
divides by zero without objects, torchvision's own detector); a detector assembled differently
(another backbone, other anchors, ROI pooling instead of ROI Align, class-wise NMS in a loop)
earns full marks. That the reference earns full marks and the stub none is proved for every
assignment by tests/test_assignments_graded.py; bench/capstone.py compares the reference with
torchvision's Faster R-CNN."""
import re

import pytest

from coursetools.reference import load_reference
from tests.proofs import assert_full_marks, grade, scores

ASSIGNMENT = "a11-capstone"
REF = load_reference(ASSIGNMENT)


def changed(grade_id: str, *replacements: tuple[str, str]) -> str:
    """The reference's cell `grade_id` with each (old, new) replaced (each old must occur)."""
    source = REF.solution_source(grade_id)
    for old, new in replacements:
        assert old in source, f"{old!r} is not in the reference's {grade_id} cell any more"
        source = source.replace(old, new)
    return re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION\n", "", source, flags=re.M)


NMS_LINE = "keep = batched_nms(image_boxes, image_scores, labels, self.nms_thresh)[:self.detections_per_img]"
WRONG = {
    "losses cut from the graph": ("build-detector", changed("build-detector", (
        "return {**head_losses, **rpn_losses} if self.training else detections",
        "return {k: torch.tensor(v.item()) for k, v in {**head_losses, **rpn_losses}.items()} if self.training "
        "else detections")), "every loss must depend on the parameters"),
    "no NMS on the detections": ("roi-heads", changed("roi-heads", (
        NMS_LINE, "keep = image_scores.argsort(descending=True)[:self.detections_per_img]")),
        "duplicates that NMS should remove"),
    "detections in proposal order": ("roi-heads", changed("roi-heads", (
        NMS_LINE, NMS_LINE.replace("[:self.detections_per_img]", ".sort().values[:self.detections_per_img]"))),
        "highest score first"),
    "boxes not clipped to the image": ("roi-heads", changed("roi-heads", (
        "image_boxes = clip_boxes_to_image(image_boxes, size)[:, 1:].reshape(-1, 4)",
        "image_boxes = image_boxes[:, 1:].reshape(-1, 4)")), "must be clipped to the image"),
    "the RPN's box loss a mean over no positives": ("rpn", changed("rpn", (
        "beta=1 / 9, reduction=\"sum\") / count", "beta=1 / 9)")), "must give finite losses"),
    "torchvision's Faster R-CNN": ("build-detector", '''
def build_detector(num_classes):
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign
    backbone = tiny_backbone()
    return FasterRCNN(backbone, num_classes, rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
                      box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), min_size=128, max_size=128)
''', "which this exercise does not allow"),
}


@pytest.mark.slow
@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_wrong_answer_loses_points_where_named(tmp_path, mistake):
    # The cell replaced may be any part of the detector; build_detector is what loses points.
    grade_id, code, phrase = WRONG[mistake]
    result = grade(ASSIGNMENT, tmp_path, {grade_id: code})
    earned, possible = scores(result)["build_detector"]
    assert earned < possible, f"the wrong answer kept all its points: {result['tests']}"
    failed = [t["output"] for t in result["tests"] if t["score"] < t["max_score"]]
    assert any(phrase in output for output in failed), failed


DIFFERENT_BUT_RIGHT = {
    # a deeper backbone of stride 16 with four anchor sizes of one shape
    "build-detector": changed("build-detector", (
        "backbone = tiny_backbone()",
        "backbone = nn.Sequential(tiny_backbone(), nn.Conv2d(64, 96, 3, stride=2, padding=1), nn.ReLU())\n"
        "    backbone.out_channels = 96"),
        ("stride=8, sizes=(16, 32, 64), aspect_ratios=(0.5, 1.0, 2.0)", "stride=16, sizes=(16, 24, 32, 48), "
                                                                        "aspect_ratios=(1.0,)"),
        ("roi_heads = RoIHeads(backbone.out_channels, stride=8,", "roi_heads = RoIHeads(backbone.out_channels, stride=16,")),
    # ROI pooling instead of ROI Align, and NMS class by class in a Python loop
    "roi-heads": changed("roi-heads", (
        "pooled = roi_align(features, proposals, self.pooled_size, spatial_scale=1 / self.stride,\n"
        "                           sampling_ratio=self.sampling_ratio, aligned=False)",
        "pooled = torchvision.ops.roi_pool(features, proposals, self.pooled_size, spatial_scale=1 / self.stride)"),
        (NMS_LINE, "keep = torch.cat([torch.where(labels == c)[0][nms(image_boxes[labels == c], "
                   "image_scores[labels == c], self.nms_thresh)] for c in range(1, num_classes)])\n"
                   "            keep = keep[image_scores[keep].argsort(descending=True, stable=True)]"
                   "[:self.detections_per_img]")),
}
DIFFERENT_BUT_RIGHT["roi-heads"] = "import torchvision\n" + DIFFERENT_BUT_RIGHT["roi-heads"]


@pytest.mark.slow
def test_right_answers_written_differently_earn_full_marks(tmp_path):
    assert_full_marks(ASSIGNMENT, tmp_path, DIFFERENT_BUT_RIGHT)
