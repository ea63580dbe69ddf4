"""Chapter 8's helpers (odcourse.yolo): grid targets, the four loss terms, decoding, NMS step by step,
soft-NMS, and the two explorers, checked against hand-computed cases, plain-Python oracles and
torchvision.ops (nms, batched_nms, box_iou)."""
import math

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.ops import batched_nms, box_iou, nms

from odcourse import yolo
from odcourse.data import SyntheticShapes
from tests.explorers import set_controls, shown_statically

matplotlib.use("Agg")


def random_boxes(generator, count, scale=1.0, dtype=torch.float64):
    corners = torch.rand(count, 2, generator=generator, dtype=dtype) * 0.8 * scale
    sizes = 0.02 * scale + torch.rand(count, 2, generator=generator, dtype=dtype) * 0.4 * scale
    return torch.cat([corners, corners + sizes], dim=1)


def gids(figure, prefix, axes_index=0):
    """The suffixes of the gids "prefix-..." of the Rectangles drawn on one axes."""
    return [p.get_gid()[len(prefix) + 1:] for p in figure.axes[axes_index].patches
            if isinstance(p, Rectangle) and (p.get_gid() or "").startswith(prefix + "-")]


# --- targets -----------------------------------------------------------------------------------

def test_responsible_cells_are_floor_of_the_centre_times_s():
    generator = torch.Generator().manual_seed(0)
    boxes = random_boxes(generator, 200)
    for S in (1, 3, 7, 13):
        cells = yolo.responsible_cells(boxes, S)
        for (x1, y1, x2, y2), (i, j) in zip(boxes.tolist(), cells.tolist()):
            assert (i, j) == (min(math.floor((y1 + y2) / 2 * S), S - 1), min(math.floor((x1 + x2) / 2 * S), S - 1))
    # A centre on the right or bottom image edge belongs to the last cell.
    assert yolo.responsible_cells(torch.tensor([[0.8, 0.9, 1.2, 1.1]]), 4).tolist() == [[3, 3]]


def test_yolo_target_by_hand():
    # S = 4 (cells of 0.25), C = 3. Box 0: centre (0.3, 0.6) -> cell (2, 1), offsets (0.2, 0.4).
    # Box 1: centre (0.875, 0.125) -> cell (0, 3), offsets (0.5, 0.5).
    boxes = torch.tensor([[0.2, 0.5, 0.4, 0.7], [0.8, 0.0, 0.95, 0.25]], dtype=torch.float64)
    target = yolo.yolo_target(boxes, torch.tensor([2, 0]), S=4, C=3)
    assert target.shape == (4, 4, 8) and target.dtype == torch.float64
    assert target[2, 1].tolist() == pytest.approx([0.2, 0.4, 0.2, 0.2, 1, 0, 0, 1], abs=1e-12)
    assert target[0, 3].tolist() == pytest.approx([0.5, 0.5, 0.15, 0.25, 1, 1, 0, 0], abs=1e-12)
    others = torch.ones(4, 4, dtype=torch.bool)
    others[2, 1] = others[0, 3] = False
    assert torch.all(target[others] == 0)


def test_yolo_target_keeps_the_first_object_of_a_shared_cell():
    boxes = torch.tensor([[0.05, 0.05, 0.35, 0.3], [0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.9, 0.9]])
    target = yolo.yolo_target(boxes, torch.tensor([1, 2, 0]), S=2, C=3)
    assert target[0, 0, 2:4].tolist() == pytest.approx([0.3, 0.25])  # object 0's size, not object 1's
    assert target[0, 0, 5:].tolist() == [0, 1, 0]
    assert target[:, :, 4].sum() == 2
    reversed_target = yolo.yolo_target(boxes.flip(0), torch.tensor([0, 2, 1]), S=2, C=3)
    assert reversed_target[0, 0, 5:].tolist() == [0, 0, 1]  # now object 1 comes first


def test_yolo_target_of_no_object_is_zeros():
    target = yolo.yolo_target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), S=5, C=3)
    assert target.shape == (5, 5, 8) and not target.any()


def test_image_target_converts_pixels_and_labels():
    image, annotation = SyntheticShapes(3, size=96, seed=0)[1]
    target = yolo.image_target(annotation, 96, S=6)
    boxes = annotation["boxes"].double() / 96
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    for g in range(len(boxes)):
        i, j = int(centres[g, 1] * 6), int(centres[g, 0] * 6)
        assert target[i, j, 4] == 1 and int(target[i, j, 5:].argmax()) + 1 in annotation["labels"].tolist()


# --- loss --------------------------------------------------------------------------------------

def test_cell_boxes_to_corners_by_hand():
    cell_boxes = torch.zeros(1, 2, 2, 1, 4, dtype=torch.float64)
    cell_boxes[0, 1, 0, 0] = torch.tensor([0.5, 0.25, 0.2, 0.4], dtype=torch.float64)  # row 1, column 0: centre (0.25, 0.625)
    corners = yolo.cell_boxes_to_corners(cell_boxes)
    assert corners.shape == (1, 2, 2, 1, 4)
    assert corners[0, 1, 0, 0].tolist() == pytest.approx([0.15, 0.425, 0.35, 0.825], abs=1e-12)
    assert corners[0, 0, 1, 0].tolist() == pytest.approx([0.5, 0.0, 0.5, 0.0], abs=1e-12)


def test_paired_box_iou_is_the_diagonal_of_box_iou():
    generator = torch.Generator().manual_seed(1)
    a, b = random_boxes(generator, 300), random_boxes(generator, 300)
    assert torch.allclose(yolo.paired_box_iou(a, b), box_iou(a, b).diagonal(), atol=1e-12)
    assert yolo.paired_box_iou(torch.zeros(1, 4), torch.zeros(1, 4)).tolist() == [0.0]


def loss_by_loops(pred, target, B, lambda_coord, lambda_noobj):
    """The four YOLOv1 terms with plain Python loops over cells and boxes (an independent oracle)."""
    N, S = pred.shape[0], pred.shape[1]
    C = target.shape[-1] - 5
    terms = dict.fromkeys(yolo.LOSS_TERMS, 0.0)

    def corners(i, j, x, y, w, h):
        cx, cy = (j + x) / S, (i + y) / S
        return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
        return iw * ih / union if union > 0 else 0.0

    for n in range(N):
        for i in range(S):
            for j in range(S):
                p, t = pred[n, i, j].tolist(), target[n, i, j].tolist()
                responsible = None
                if t[4] == 1:
                    ious = [iou(corners(i, j, *p[5 * b:5 * b + 4]), corners(i, j, *t[:4])) for b in range(B)]
                    responsible = ious.index(max(ious))
                    x, y, w, h, c = p[5 * responsible:5 * responsible + 5]
                    terms["coordinate"] += lambda_coord * ((x - t[0]) ** 2 + (y - t[1]) ** 2
                                                           + (math.sqrt(w) - math.sqrt(t[2])) ** 2
                                                           + (math.sqrt(h) - math.sqrt(t[3])) ** 2)
                    terms["object"] += (c - 1) ** 2
                    terms["class"] += sum((p[5 * B + k] - t[5 + k]) ** 2 for k in range(C))
                for b in range(B):
                    if b != responsible:
                        terms["no_object"] += lambda_noobj * p[5 * b + 4] ** 2
    return {name: value / N for name, value in terms.items()}


def random_batch(generator, N=3, S=4, B=2, C=3):
    pred = torch.rand(N, S, S, B * 5 + C, generator=generator, dtype=torch.float64) * 0.98 + 0.01
    targets = []
    for _ in range(N):
        boxes = random_boxes(generator, 4)
        labels = torch.randint(0, C, (4,), generator=generator)
        targets.append(yolo.yolo_target(boxes, labels, S, C))
    return pred, torch.stack(targets)


@pytest.mark.parametrize("B,lambdas", [(2, (5.0, 0.5)), (1, (5.0, 0.5)), (3, (1.0, 2.0))])
def test_loss_terms_match_a_loop_over_cells(B, lambdas):
    generator = torch.Generator().manual_seed(B)
    pred, target = random_batch(generator, B=B)
    got = yolo.yolo_loss_terms(pred, target, B, *lambdas)
    expected = loss_by_loops(pred, target, B, *lambdas)
    assert list(got) == list(yolo.LOSS_TERMS)
    for name in yolo.LOSS_TERMS:
        assert got[name].item() == pytest.approx(expected[name], rel=1e-12, abs=1e-12), name


def test_loss_by_hand_on_one_cell_with_two_boxes():
    # S = 1, C = 2: the target box fills the centre half of the image; box 1 matches it exactly.
    target = torch.tensor([[[[0.5, 0.5, 0.5, 0.5, 1.0, 0.0, 1.0]]]], dtype=torch.float64)
    pred = torch.tensor([[[[0.5, 0.5, 0.25, 0.25, 0.6,   0.5, 0.5, 0.5, 0.5, 0.9,   0.2, 0.7]]]],
                        dtype=torch.float64)
    assert yolo.responsible_predictors(pred, target, 2).tolist() == [[[1]]]
    terms = yolo.yolo_loss_terms(pred, target, 2)
    assert terms["coordinate"].item() == pytest.approx(0.0)
    assert terms["object"].item() == pytest.approx(0.01)  # (0.9 - 1)^2
    assert terms["no_object"].item() == pytest.approx(0.5 * 0.36)  # box 0's confidence 0.6
    assert terms["class"].item() == pytest.approx(0.04 + 0.09)


def test_equal_ious_make_the_lowest_box_responsible():
    target = torch.tensor([[[[0.5, 0.5, 0.4, 0.4, 1.0, 1.0]]]], dtype=torch.float64)
    pred = torch.tensor([[[[0.5, 0.5, 0.2, 0.2, 0.3,   0.5, 0.5, 0.2, 0.2, 0.8,   0.9]]]], dtype=torch.float64)
    assert yolo.responsible_predictors(pred, target, 2).tolist() == [[[0]]]
    assert yolo.yolo_loss_terms(pred, target, 2)["object"].item() == pytest.approx(0.49)


def test_gradient_reaches_only_the_responsible_boxs_coordinates():
    generator = torch.Generator().manual_seed(5)
    pred, target = random_batch(generator, N=2)
    pred.requires_grad_(True)
    terms = yolo.yolo_loss_terms(pred, target, 2)
    sum(terms.values()).backward()
    chosen = yolo.responsible_predictors(pred, target, 2)
    has_object = target[..., 4] > 0
    for b in range(2):
        coords = pred.grad[..., 5 * b:5 * b + 4]
        responsible = has_object & (chosen == b)
        assert torch.all(coords[~responsible] == 0)
        assert torch.all(coords[responsible].abs().sum(-1) > 0)
        # d/dc of (c - 1)^2 / N or of lambda_noobj c^2 / N
        c = pred[..., 5 * b + 4].detach()
        expected = torch.where(responsible, 2 * (c - 1), 2 * 0.5 * c) / 2
        assert torch.allclose(pred.grad[..., 5 * b + 4], expected, atol=1e-12)
    assert torch.all(pred.grad[..., 10:][~has_object] == 0)


# --- decoding and NMS ---------------------------------------------------------------------------

def test_decode_predictions_by_hand_and_against_batched_nms():
    S, B, C = 2, 2, 3
    pred = torch.zeros(S, S, B * 5 + C, dtype=torch.float64)
    pred[0, 0] = torch.tensor([0.5, 0.5, 0.4, 0.4, 0.9,  0.6, 0.5, 0.4, 0.4, 0.8,  0.1, 0.7, 0.7])
    pred[1, 1] = torch.tensor([0.5, 0.5, 0.6, 0.6, 0.5,  0.5, 0.5, 0.1, 0.1, 0.1,  0.9, 0.2, 0.0])
    boxes, scores, labels = yolo.decode_predictions(pred, B, conf_threshold=0.2, iou_threshold=0.5)
    # Cell (0, 0): scores 0.63 and 0.56, label 1 (the first of two equal maxima); the two boxes
    # (centres x = 0.25 and 0.3, 0.4 wide and high) overlap with IoU 0.14 / 0.18 = 0.78 > 0.5: the second goes.
    # Cell (1, 1): box 0 scores 0.45, label 0, corners (0.45, 0.45, 1.05, 1.05) clipped; box 1 scores 0.09.
    assert scores.tolist() == pytest.approx([0.63, 0.45])
    assert labels.tolist() == [1, 0]
    assert boxes.reshape(-1).tolist() == pytest.approx([0.05, 0.05, 0.45, 0.45, 0.45, 0.45, 1.0, 1.0])
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        pred = torch.rand(5, 5, B * 5 + C, generator=generator, dtype=torch.float64)
        boxes, scores, labels = yolo.decode_predictions(pred, B, 0.3, 0.4)
        cells = pred[..., :10].reshape(5, 5, 2, 5)
        all_scores = (cells[..., 4] * pred[..., 10:].max(-1, keepdim=True).values).reshape(-1)
        all_labels = pred[..., 10:].argmax(-1, keepdim=True).expand(-1, -1, 2).reshape(-1)
        corners = yolo.cell_boxes_to_corners(cells[..., :4]).reshape(-1, 4).clamp(0, 1)
        passing = all_scores > 0.3
        keep = batched_nms(corners[passing], all_scores[passing], all_labels[passing], 0.4)
        assert torch.equal(boxes, corners[passing][keep]) and torch.equal(labels, all_labels[passing][keep])
        assert torch.all(scores[:-1] >= scores[1:])


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_steps_keep_what_torchvision_nms_keeps(threshold):
    generator = torch.Generator().manual_seed(int(threshold * 10))
    for _ in range(10):
        boxes = random_boxes(generator, 40, scale=100.0)
        scores = torch.rand(40, generator=generator, dtype=torch.float64)
        steps = yolo.nms_steps(boxes, scores, threshold)
        assert [kept for kept, _ in steps] == nms(boxes, scores, threshold).tolist()
        decided = [kept for kept, _ in steps] + [k for _, gone in steps for k in gone]
        assert sorted(decided) == list(range(40))  # every box decided once
        iou = box_iou(boxes, boxes)
        for kept, gone in steps:
            assert all(iou[kept, k] > threshold and scores[k] <= scores[kept] for k in gone)


def test_nms_state_partitions_the_boxes():
    image, _, boxes, scores = yolo.example_detections()
    for step in range(len(scores) + 1):
        state = yolo.nms_state(boxes, scores, 0.1, 0.5, step)
        groups = state["ignored"] + state["kept"] + state["suppressed"] + state["candidates"]
        assert sorted(groups) == list(range(len(scores)))
        assert state["ignored"] == [k for k in range(len(scores)) if scores[k] <= 0.1]
        passing = torch.tensor([k for k in range(len(scores)) if scores[k] > 0.1])
        assert state["kept"] == passing[nms(boxes[passing], scores[passing], 0.5)].tolist()[:step]


def test_example_detections_hold_the_slides_small_confidences():
    image, target, boxes, scores = yolo.example_detections()
    assert image.shape == (3, 128, 128) and len(target["boxes"]) == 3
    assert boxes.shape == (len(scores), 4) and torch.all(boxes[:, 2:] > boxes[:, :2])
    assert 0.02 in [round(s, 2) for s in scores.tolist()] and 0.05 in [round(s, 2) for s in scores.tolist()]


# --- soft-NMS -----------------------------------------------------------------------------------

def test_soft_nms_by_hand_on_two_boxes():
    # Two 1 x 1 squares shifted by d overlap with IoU (1 - d) / (1 + d); d = 0.268 gives 0.5774.
    d = (1 - 0.5774) / (1 + 0.5774)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [d, 0.0, 1.0 + d, 1.0]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    keep, kept_scores = yolo.soft_nms(boxes, scores, sigma=0.5)
    assert keep.tolist() == [0, 1]
    assert kept_scores.tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.5774 ** 2 / 0.5)], abs=1e-4)
    keep, kept_scores = yolo.soft_nms(boxes, scores, method="linear", iou_threshold=0.5)
    assert kept_scores.tolist() == pytest.approx([0.9, 0.8 * (1 - 0.5774)], abs=1e-4)
    assert nms(boxes, scores, 0.5).tolist() == [0]  # hard NMS at 0.5 loses the second object
    assert scores.tolist() == [0.9, 0.8]  # the input is not modified


def test_soft_nms_with_a_huge_sigma_keeps_everything_in_score_order():
    generator = torch.Generator().manual_seed(7)
    boxes = random_boxes(generator, 30)
    scores = torch.rand(30, generator=generator, dtype=torch.float64)
    keep, kept_scores = yolo.soft_nms(boxes, scores, sigma=1e12, score_threshold=0.0)
    assert keep.tolist() == torch.argsort(scores, descending=True).tolist()
    assert torch.allclose(kept_scores, scores[keep], rtol=1e-9)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_linear_soft_nms_is_hard_nms_when_decayed_scores_fall_below_the_threshold(threshold):
    # With scores in (max (1 - Nt), max], a box decayed by 1 - IoU < 1 - Nt falls below
    # score_threshold = max (1 - Nt) and is dropped; the others keep their scores: greedy NMS at Nt.
    generator = torch.Generator().manual_seed(11)
    for _ in range(10):
        boxes = random_boxes(generator, 40)
        scores = 1 - threshold + 1e-6 + torch.rand(40, generator=generator, dtype=torch.float64) * (threshold - 2e-6)
        keep, kept_scores = yolo.soft_nms(boxes, scores, method="linear", iou_threshold=threshold,
                                          score_threshold=1 - threshold)
        assert keep.tolist() == nms(boxes, scores, threshold).tolist()
        assert torch.equal(kept_scores, scores[keep])


@pytest.mark.parametrize("method", ["gaussian", "linear"])
def test_soft_nms_scores_never_increase_and_come_out_in_order(method):
    generator = torch.Generator().manual_seed(13)
    boxes = random_boxes(generator, 60, scale=50.0)
    scores = torch.rand(60, generator=generator, dtype=torch.float64)
    keep, kept_scores = yolo.soft_nms(boxes, scores, method=method, score_threshold=0.05)
    assert len(set(keep.tolist())) == len(keep)
    assert torch.all(kept_scores <= scores[keep] + 1e-15)
    assert torch.all(kept_scores[:-1] >= kept_scores[1:])
    assert torch.all(kept_scores >= 0.05)
    assert keep[0] == scores.argmax()
    empty_keep, empty_scores = yolo.soft_nms(torch.zeros(0, 4), torch.zeros(0))
    assert empty_keep.shape == (0,) and empty_keep.dtype == torch.int64 and empty_scores.shape == (0,)
    with pytest.raises(ValueError, match="method"):
        yolo.soft_nms(boxes, scores, method="hard")


# --- explorers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("index,S", [(0, 7), (4, 3), (9, 13), (21, 1)])
def test_grid_explorer_highlights_the_cells_holding_the_centres(index, S):
    explorer = yolo.YoloGridExplorer()
    explorer.redraw()
    set_controls(explorer, index=index, S=S)
    figure = explorer.figure
    _, annotation = explorer.data[index]
    expected = {(min(math.floor((y1 + y2) / 2 / 128 * S), S - 1), min(math.floor((x1 + x2) / 2 / 128 * S), S - 1))
                for x1, y1, x2, y2 in annotation["boxes"].tolist()}
    drawn = {tuple(map(int, suffix.split("-"))) for suffix in gids(figure, "responsible")}
    assert drawn == expected
    step = 128 / S
    for patch in figure.axes[0].patches:
        if (patch.get_gid() or "").startswith("responsible-"):
            i, j = map(int, patch.get_gid().split("-")[1:])
            assert patch.get_xy() == pytest.approx((j * step, i * step)) and patch.get_width() == pytest.approx(step)
    assert sorted(gids(figure, "box")) == [str(g) for g in range(len(annotation["boxes"]))]
    assert explorer.controls["row"].max == S - 1 and explorer.controls["column"].max == S - 1


def test_grid_explorer_prints_the_selected_cells_target():
    explorer = yolo.YoloGridExplorer(index=2, S=5, B=3)
    _, annotation = explorer.data[2]
    boxes = annotation["boxes"].double() / 128
    i, j = yolo.responsible_cells(boxes, 5)[0].tolist()
    set_controls(explorer, row=i, column=j)
    text = next(t.get_text() for t in explorer.figure.axes[1].texts if t.get_gid() == "target")
    cx, cy = ((boxes[0, :2] + boxes[0, 2:]) / 2).tolist()
    assert f"x             {cx * 5 - j:.3f}" in text and f"y             {cy * 5 - i:.3f}" in text
    assert f"w             {boxes[0, 2] - boxes[0, 0]:.3f}" in text
    assert "conf          1.000" in text
    assert "B x 5 + C = 3 x 5 + 3 = 18" in text and "5 x 5 x 18 = 450" in text
    selected = [p for p in explorer.figure.axes[0].patches if p.get_gid() == "selected"]
    assert len(selected) == 1 and selected[0].get_xy() == pytest.approx((j * 128 / 5, i * 128 / 5))
    empty = next((r, c) for r in range(5) for c in range(5) if (r, c) not in
                 {tuple(cell) for cell in yolo.responsible_cells(boxes, 5).tolist()})
    set_controls(explorer, row=empty[0], column=empty[1])
    text = next(t.get_text() for t in explorer.figure.axes[1].texts if t.get_gid() == "target")
    assert "all zeros" in text


def test_grid_explorer_marks_a_dropped_object():
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0], [20.0, 20.0, 40.0, 40.0]])  # same centre, (30, 30)

    class TwoObjects:
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return torch.zeros(3, 128, 128), {"boxes": boxes, "labels": torch.tensor([1, 2])}

    figure = yolo.YoloGridExplorer(TwoObjects(), index=0, S=4).redraw()
    markers = {line.get_gid(): line.get_marker() for line in figure.axes[0].lines}
    assert markers == {"centre-0": "o", "centre-1": "X"}
    assert gids(figure, "responsible") == ["0-0"]  # 30 / 32 pixels per cell -> cell (0, 0)
    text = next(t.get_text() for t in figure.axes[1].texts if t.get_gid() == "target")
    assert "dropped (cell taken)" in text


@pytest.mark.parametrize("conf,iou", [(0.01, 0.5), (0.1, 0.3), (0.5, 0.7), (0.0, 0.05)])
def test_nms_explorer_keeps_what_torchvision_nms_keeps(conf, iou):
    explorer = yolo.NmsExplorer()
    explorer.redraw()
    set_controls(explorer, conf_threshold=conf, iou_threshold=iou, step=explorer.controls["step"].max)
    boxes, scores = explorer.boxes, explorer.scores
    passing = torch.nonzero(scores > conf).reshape(-1)
    expected = passing[nms(boxes[passing], scores[passing], iou)].tolist()
    figure = explorer.figure
    assert sorted(map(int, gids(figure, "kept"))) == sorted(expected)
    assert sorted(map(int, gids(figure, "ignored"))) == torch.nonzero(scores <= conf).reshape(-1).tolist()
    assert gids(figure, "candidate") == []
    assert len(gids(figure, "suppressed")) == len(passing) - len(expected)
    for step in range(len(expected) + 1):  # part way: the first `step` boxes of NMS's order
        set_controls(explorer, step=step)
        assert sorted(map(int, gids(explorer.figure, "kept"))) == sorted(expected[:step])
        overlap = box_iou(boxes, boxes)
        for k in map(int, gids(explorer.figure, "suppressed")):
            assert any(overlap[m, k] > iou for m in expected[:step])


def test_nms_explorer_table_and_static_figure(monkeypatch):
    explorer = yolo.NmsExplorer(conf_threshold=0.01, iou_threshold=0.5, step=20)
    figure = explorer.redraw()
    table = next(t.get_text() for t in figure.axes[1].texts if t.get_gid() == "table")
    assert "0.02   kept (#" in table  # kept "for the sake of the explanation", as on the slide
    set_controls(explorer, conf_threshold=0.03)
    figure = explorer.figure
    table = next(t.get_text() for t in figure.axes[1].texts if t.get_gid() == "table")
    assert "0.02   ignored (low confidence)" in table and "0.05   kept (#" in table
    assert table.count("kept (#") == len(gids(figure, "kept"))
    shown = shown_statically(monkeypatch, lambda: (explorer.show(), yolo.YoloGridExplorer().show()))
    assert len(shown) == 2 and all(isinstance(item, Figure) for item in shown)
