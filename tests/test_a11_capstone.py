"""Proofs for a11-capstone: plausible wrong assemblies lose points on the test that names the
mistake (losses cut from the graph, no NMS, unsorted or unclipped detections, a box loss that
divides by zero without objects, torchvision's own detector); a detector assembled differently
(another backbone, other anchors, ROI pooling instead of ROI Align, class-wise NMS in a loop)
earns full marks. That the reference earns full marks and the stub none is proved for every
assignment by tests/test_assignments_graded.py; bench/capstone.py compares the reference with
torchvision's Faster R-CNN."""
import re
import types

import pytest

from coursetools.reference import load_reference
from odcourse.checks import CheckFailed
from odcourse.checks import capstone as visible
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
@pytest.mark.parametrize("grade_id", sorted(DIFFERENT_BUT_RIGHT))
def test_right_answers_written_differently_earn_full_marks(tmp_path, grade_id):
    """Each right answer on its own, with the reference's other cells: together, a stride-16 backbone
    and ROI pooling's coarser regions learn the tiny batch less well than the suite asks on some CPUs
    (13 confident detections for 7 objects on one), a weaker detector, not a wrong one."""
    assert_full_marks(ASSIGNMENT, tmp_path, {grade_id: DIFFERENT_BUT_RIGHT[grade_id]})


# The notebook's stage checks (odcourse.checks.capstone, not graded): each passes on the reference and
# stops a typical mistake of its stage, naming it. -------------------------------------------------------

def variant(grade_id: str, *replacements: tuple[str, str]):
    """The reference with its cell `grade_id` changed; the other cells' code sees the change."""
    namespace = {k: v for k, v in vars(REF).items() if not k.startswith("_")}
    exec(compile(changed(grade_id, *replacements), f"<a11 {grade_id} changed>", "exec"), namespace)
    return types.SimpleNamespace(**namespace)


def stage_problems(check, *args) -> str:
    with pytest.raises(CheckFailed) as failed:
        check(*args)
    return str(failed.value)


def test_stage_checks_pass_on_the_reference(capsys):
    visible.parts(REF.generate_anchors, REF.encode_boxes, REF.decode_boxes, REF.match_anchors, REF.sample_anchors)
    visible.region_proposal_network(REF.RegionProposalNetwork)
    visible.roi_heads(REF.RoIHeads)
    out = capsys.readouterr().out
    assert all(f"{stage}: " in out and "visible checks passed" in out
               for stage in ("stage 1: the parts", "stage 2: the region proposal network", "stage 3: the ROI heads"))


def test_stage_1_names_anchors_out_of_order_unweighted_encoding_and_an_uncapped_sample():
    def by_shape(*args):  # the right anchors, shape by shape instead of location by location
        anchors = REF.generate_anchors(*args)
        return anchors.view(-1, 9, 4).transpose(0, 1).reshape(-1, 4)

    parts = (REF.generate_anchors, REF.encode_boxes, REF.decode_boxes, REF.match_anchors, REF.sample_anchors)
    out_of_order = stage_problems(visible.parts, by_shape, *parts[1:])
    assert "not in torchvision's order" in out_of_order
    unweighted = stage_problems(visible.parts, parts[0], lambda b, p, w: REF.encode_boxes(b, p, (1.0,) * 4),
                                *parts[2:])
    assert "encode_boxes with weights (10.0, 10.0, 5.0, 5.0) differs" in unweighted
    uncapped = stage_problems(visible.parts, *parts[:4], lambda labels, n, fraction, g: REF.sample_anchors(
        labels, n, 1.0, g))
    assert "128 of each" in uncapped


def test_stage_2_names_proposals_outside_their_image():
    unclipped = variant("rpn", (
        "boxes = clip_boxes_to_image(decode_boxes(bbox_deltas[top], anchors[top]), image_size)",
        "boxes = decode_boxes(bbox_deltas[top], anchors[top])"))
    assert "proposals leave its" in stage_problems(visible.region_proposal_network, unclipped.RegionProposalNetwork)


def test_stage_3_names_class_agnostic_box_deltas_and_labels_of_every_proposal():
    agnostic = variant("roi-heads", ("self.bbox_pred = nn.Linear(in_features, 4 * num_classes)",
                                     "self.bbox_pred = nn.Linear(in_features, 4)"))
    assert "the box deltas of 5 regions" in stage_problems(visible.roi_heads, agnostic.RoIHeads)
    unsampled = variant("roi-heads", ("labels.append(image_labels[keep])", "labels.append(image_labels)"))
    assert "one label and one regression target each" in stage_problems(visible.roi_heads, unsampled.RoIHeads)


@pytest.mark.slow
def test_overfit_one_batch_passes_on_the_reference_and_names_losses_that_do_not_fall(capsys):
    visible.overfit_one_batch(REF.build_detector)
    assert "overfit one batch: " in capsys.readouterr().out
    frozen = variant("build-detector", (
        "return {**head_losses, **rpn_losses} if self.training else detections",
        "return {k: v.detach().requires_grad_() for k, v in {**head_losses, **rpn_losses}.items()} "
        "if self.training else detections"))
    problems = stage_problems(visible.overfit_one_batch, frozen.build_detector)
    assert all(f"{name} went from" in problems for name in visible.LOSS_KEYS), problems
