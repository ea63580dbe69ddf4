"""Chapter 9's helpers (odcourse.ssd): default boxes, matching, offsets, the loss, detection, mAP@0.5
and the default-box explorer, checked against torchvision (DefaultBoxGenerator, SSDMatcher,
BoxCoder, SSD.compute_loss, batched_nms), torch.nn.functional and hand-computed cases.
Everything in float64 unless a test says otherwise; tolerances are stated where used."""
import math
from types import SimpleNamespace

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.models.detection._utils import BoxCoder, SSDMatcher
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD
from torchvision.ops import batched_nms, box_iou

from odcourse import ssd
from odcourse.data import make_scene
from tests.explorers import set_controls, shown_statically

matplotlib.use("Agg")

SMALL = {"feature_map_sizes": [(12, 12), (6, 6), (3, 3)], "scales": ssd.paper_scales(3, 0.15, 0.45),
         "aspect_ratios": [[2], [2, 3], [2, 3]]}


def random_boxes(generator, count, scale=1.0):
    corners = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 0.7 * scale
    sizes = 0.05 * scale + torch.rand(count, 2, generator=generator, dtype=torch.float64) * 0.4 * scale
    return torch.cat([corners, corners + sizes], dim=1)


def torchvision_default_boxes(config, image_size, clip=True):
    """DefaultBoxGenerator's boxes for the config, divided by the image size: fractions, float64."""
    generator = DefaultBoxGenerator(config["aspect_ratios"], scales=config["scales"], steps=config.get("steps"),
                                    clip=clip)
    height, width = image_size
    maps = [torch.zeros(1, 1, rows, columns, dtype=torch.float64) for rows, columns in config["feature_map_sizes"]]
    pixels = generator(ImageList(torch.zeros(1, 3, height, width), [(height, width)]), maps)[0]
    return pixels / torch.tensor([width, height, width, height], dtype=torch.float64)


# --- default boxes -----------------------------------------------------------------------------

def test_ssd300_has_8732_default_boxes_equal_to_torchvisions():
    boxes = ssd.make_default_boxes(**ssd.SSD300, dtype=torch.float64)
    assert boxes.shape == (8732, 4) and boxes.dtype == torch.float64
    assert sum(ssd.boxes_per_level(ssd.SSD300["feature_map_sizes"], ssd.SSD300["aspect_ratios"])) == 8732
    # torchvision keeps its (w, h) pairs in float32: agreement to 1e-6 of the image
    assert torch.allclose(boxes, torchvision_default_boxes(ssd.SSD300, (300, 300)), atol=1e-6)


@pytest.mark.parametrize("clip", [True, False])
def test_default_boxes_without_steps_match_torchvision(clip):
    config = {"feature_map_sizes": [(4, 6), (2, 3), (1, 1)], "scales": [0.3, 0.6, 0.9, 1.2],
              "aspect_ratios": [[2], [2, 3], [3]]}
    boxes = ssd.make_default_boxes(**config, clip=clip, dtype=torch.float64)
    assert torch.allclose(boxes, torchvision_default_boxes(config, (64, 96), clip=clip), atol=1e-6)
    assert len(boxes) == 4 * 6 * 4 + 2 * 3 * 6 + 4
    sizes = boxes[:, 2:] - boxes[:, :2]
    assert (sizes.max() <= 1 + 1e-12) == clip


def test_paper_scales_are_the_generators_scales():
    for m, low, high in [(6, 0.2, 0.9), (3, 0.15, 0.45), (2, 0.1, 0.5), (1, 0.2, 0.9)]:
        assert ssd.paper_scales(m, low, high) == pytest.approx(
            DefaultBoxGenerator([[2]] * m, min_ratio=low, max_ratio=high).scales, abs=1e-12)


def test_a_cells_boxes_by_hand():
    # One 2 x 2 map, scales 0.5 and 0.8, ratio 4: cell (1, 0) is centred at (0.25, 0.75).
    boxes = ssd.make_default_boxes([(2, 2)], [0.5, 0.8], [[4]], dtype=torch.float64)
    cell = boxes[2 * 4:3 * 4]  # row 1, column 0: the third cell, 4 boxes each
    s_prime = math.sqrt(0.4)
    expected_wh = [(0.5, 0.5), (s_prime, s_prime), (1.0, 0.25), (0.25, 1.0)]
    for (x1, y1, x2, y2), (w, h) in zip(cell.tolist(), expected_wh):
        assert [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1] == pytest.approx([0.25, 0.75, w, h], abs=1e-12)
    names = [name for _, _, name in ssd.box_shapes(0.5, 0.8, [4])]
    assert names == ["s_k", "s'_k", "ratio 4", "ratio 1/4"]


# --- matching and offsets ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_matching_is_torchvisions_ssd_matcher(seed):
    generator = torch.Generator().manual_seed(seed)
    defaults = ssd.make_default_boxes(**SMALL, dtype=torch.float64)
    truth = random_boxes(generator, 1 + seed)
    expected = SSDMatcher(0.5)(box_iou(truth, defaults))
    got = ssd.match_to_defaults(truth, defaults, 0.5)
    assert got.dtype == torch.int64 and torch.equal(got, expected)


def test_matching_forces_each_objects_best_box_and_the_later_object_wins():
    defaults = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0]], dtype=torch.float64)
    # Object 0 overlaps box 0 with IoU 0.25 / 0.3125 = 0.8; object 1, inside box 0, has IoU 0.04 with it
    # and nothing with the others: both have box 0 as their best, and the later one, object 1, gets it.
    truth = torch.tensor([[0.0, 0.0, 0.5, 0.625], [0.1, 0.1, 0.2, 0.2]], dtype=torch.float64)
    assert ssd.match_to_defaults(truth, defaults).tolist() == [1, -1, -1]
    # An object with low IoU everywhere still gets its best box.
    low = torch.tensor([[0.55, 0.55, 0.65, 0.65]], dtype=torch.float64)
    assert ssd.match_to_defaults(low, defaults).tolist() == [-1, 0, -1]
    assert ssd.match_to_defaults(torch.zeros(0, 4), defaults).tolist() == [-1, -1, -1]


def test_offsets_are_boxcoders_and_decode_inverts_them():
    generator = torch.Generator().manual_seed(3)
    truth, defaults = random_boxes(generator, 200), random_boxes(generator, 200)
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    offsets = ssd.encode_offsets(truth, defaults)
    assert torch.allclose(offsets, coder.encode_single(truth, defaults), atol=1e-10)
    assert torch.allclose(ssd.decode_offsets(offsets, defaults), truth, atol=1e-12)
    assert torch.allclose(ssd.decode_offsets(offsets, defaults), coder.decode_single(offsets, defaults), atol=1e-12)
    # by hand: default box centred at (0.5, 0.5), 0.2 x 0.4; object centred at (0.52, 0.46), 0.4 x 0.4
    by_hand = ssd.encode_offsets(torch.tensor([0.32, 0.26, 0.72, 0.66], dtype=torch.float64),
                                 torch.tensor([0.4, 0.3, 0.6, 0.7], dtype=torch.float64))
    assert by_hand.tolist() == pytest.approx([0.02 / 0.2 / 0.1, -0.04 / 0.4 / 0.1, math.log(2) / 0.2, 0.0], abs=1e-12)


def test_image_targets_label_and_encode_the_positives():
    defaults = ssd.make_default_boxes(**SMALL, dtype=torch.float64)
    _, annotation = make_scene(seed=0, index=4, size=96)
    truth = annotation["boxes"].double() / 96
    labels, offsets = ssd.image_targets(truth, annotation["labels"], defaults)
    matches = ssd.match_to_defaults(truth, defaults)
    assert torch.equal(labels > 0, matches >= 0)
    assert torch.equal(labels[matches >= 0], annotation["labels"][matches[matches >= 0]])
    assert torch.all(offsets[matches < 0] == 0)
    assert torch.allclose(ssd.decode_offsets(offsets[matches >= 0], defaults[matches >= 0]),
                          truth[matches[matches >= 0]], atol=1e-12)


# --- the loss ------------------------------------------------------------------------------------

def test_hard_negatives_by_hand():
    conf_loss = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.8, 0.2],
                              [0.4, 0.3, 0.2, 0.1, 0.9, 0.8],
                              [0.7, 0.6, 0.5, 0.4, 0.3, 0.2]], dtype=torch.float64)
    labels = torch.tensor([[0, 2, 0, 0, 0, 0],    # 1 positive: the 3 largest background losses 0.8, 0.5, 0.3
                           [1, 3, 0, 0, 0, 0],    # 2 positives, 4 background boxes: all 4
                           [0, 0, 0, 0, 0, 0]])   # no positive: no negative
    hard = ssd.select_hard_negatives(conf_loss, labels, 3)
    assert hard.tolist() == [[False, False, True, True, True, False],
                             [False, False, True, True, True, True],
                             [False] * 6]
    assert ssd.select_hard_negatives(conf_loss, labels, 1)[0].tolist() == [False, False, False, False, True, False]


def test_loss_terms_equal_torchvisions_ssd_loss():
    # torchvision's SSD.compute_loss, called with only what it reads from the model, is the oracle.
    generator = torch.Generator().manual_seed(8)
    defaults = ssd.make_default_boxes(**SMALL, dtype=torch.float64)
    N, D, K = 3, len(defaults), 4
    cls_logits = torch.randn(N, D, K, generator=generator, dtype=torch.float64)
    loc_pred = torch.randn(N, D, 4, generator=generator, dtype=torch.float64)
    targets, labels, offsets, matched = [], [], [], []
    for n in range(N):
        truth = random_boxes(generator, n + 1)
        classes = torch.randint(1, K, (n + 1,), generator=generator)
        targets.append({"boxes": truth, "labels": classes})
        image_labels, image_offsets = ssd.image_targets(truth, classes, defaults)
        labels.append(image_labels)
        offsets.append(image_offsets)
        matched.append(ssd.match_to_defaults(truth, defaults))
    labels, offsets = torch.stack(labels), torch.stack(offsets)
    terms = ssd.ssd_loss_terms(cls_logits, loc_pred, labels, offsets)
    model = SimpleNamespace(box_coder=BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)), neg_to_pos_ratio=3)
    expected = SSD.compute_loss(model, targets, {"bbox_regression": loc_pred, "cls_logits": cls_logits},
                                [defaults] * N, matched)
    assert terms["localisation"].item() == pytest.approx(expected["bbox_regression"].item(), rel=1e-10)
    assert terms["confidence"].item() == pytest.approx(expected["classification"].item(), rel=1e-10)
    # by the formula, with F.smooth_l1_loss and F.cross_entropy
    positive = labels > 0
    ce = F.cross_entropy(cls_logits.reshape(-1, K), labels.reshape(-1), reduction="none").view(N, D)
    chosen = positive | ssd.select_hard_negatives(ce, labels)
    assert int(chosen.sum()) == 4 * int(positive.sum())  # 3 negatives per positive
    alpha_terms = ssd.ssd_loss_terms(cls_logits, loc_pred, labels, offsets, alpha=2.5)
    smooth = F.smooth_l1_loss(loc_pred[positive], offsets[positive], reduction="sum", beta=1.0)
    assert alpha_terms["localisation"].item() == pytest.approx(2.5 * smooth.item() / int(positive.sum()), rel=1e-12)
    assert alpha_terms["confidence"].item() == pytest.approx(ce[chosen].sum().item() / int(positive.sum()), rel=1e-12)


def test_loss_without_positives_is_zero_and_gradients_skip_easy_negatives():
    generator = torch.Generator().manual_seed(2)
    cls_logits = torch.randn(2, 10, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    loc_pred = torch.randn(2, 10, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.zeros(2, 10, dtype=torch.int64)
    terms = ssd.ssd_loss_terms(cls_logits, loc_pred, labels, torch.zeros(2, 10, 4, dtype=torch.float64))
    assert terms["localisation"].item() == 0 and terms["confidence"].item() == 0
    labels[0, 4] = 2
    terms = ssd.ssd_loss_terms(cls_logits, loc_pred, labels, torch.zeros(2, 10, 4, dtype=torch.float64))
    (terms["localisation"] + terms["confidence"]).backward()
    boxes_with_gradient = cls_logits.grad.abs().sum(-1) > 0
    assert boxes_with_gradient.sum() == 4 and boxes_with_gradient[0, 4] and not boxes_with_gradient[1].any()
    assert torch.nonzero(loc_pred.grad.abs().sum(-1)).tolist() == [[0, 4]]


# --- the model, training and detection ----------------------------------------------------------

def test_tiny_ssd_outputs_one_row_per_default_box_in_their_order():
    model = ssd.TinySSD((4, 6, 6), num_classes=4, seed=0).eval()
    with torch.no_grad():
        cls_logits, loc_pred = model(torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0)))
    assert cls_logits.shape == (2, 846, 4) and loc_pred.shape == (2, 846, 4)
    # Default box 5 of the 12 x 12 map is box 1 of cell (0, 1): channels 4..7 of the head at (row 0, column 1).
    with torch.no_grad():
        first_map = model.feature_maps(torch.zeros(1, 3, 96, 96))[0]
        head = model.class_heads[0](first_map)
        cls_logits, _ = model(torch.zeros(1, 3, 96, 96))
    assert torch.allclose(cls_logits[0, 5], head[0, 4:8, 0, 1], atol=1e-6)
    same = ssd.TinySSD((4, 6, 6), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))


def test_training_is_deterministic_and_lowers_the_loss():
    defaults = ssd.make_default_boxes(**SMALL)
    scenes = [make_scene(seed=0, index=k, size=96) for k in range(16)]
    images = torch.stack([image for image, _ in scenes])
    boxes = [target["boxes"] / 96 for _, target in scenes]
    labels = [target["labels"] for _, target in scenes]
    histories = []
    for _ in range(2):
        torch.manual_seed(123)  # the global state must not matter
        model = ssd.TinySSD(seed=1)
        histories.append(ssd.train_ssd(model, images, boxes, labels, defaults, steps=12, batch_size=8, seed=4))
    assert histories[0].shape == (12, 2)
    assert (histories[0] == histories[1]).all()
    assert histories[0][-3:].sum(1).mean() < histories[0][:3].sum(1).mean()


def test_detect_is_threshold_then_class_wise_nms_then_top_k():
    generator = torch.Generator().manual_seed(6)
    defaults = ssd.make_default_boxes(**SMALL, dtype=torch.float64)
    cls_logits = torch.randn(len(defaults), 4, generator=generator, dtype=torch.float64) * 3
    loc_pred = torch.randn(len(defaults), 4, generator=generator, dtype=torch.float64)
    boxes, scores, labels = ssd.detect(cls_logits, loc_pred, defaults, score_threshold=0.3, iou_threshold=0.45,
                                       top_k=25)
    probabilities = cls_logits.softmax(-1)
    decoded = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)).decode_single(loc_pred, defaults).clamp(0, 1)
    candidates = [(d, c) for d in range(len(defaults)) for c in range(1, 4) if probabilities[d, c] > 0.3]
    index = torch.tensor([d for d, _ in candidates])
    classes = torch.tensor([c for _, c in candidates])
    keep = batched_nms(decoded[index], probabilities[index, classes], classes, 0.45)[:25]
    assert len(boxes) == 25
    assert torch.allclose(boxes, decoded[index][keep], atol=1e-12)
    assert torch.equal(labels, classes[keep]) and torch.all(scores[:-1] >= scores[1:])
    assert torch.equal(scores, probabilities[index[keep], classes[keep]])


# --- mean average precision at IoU 0.5 -----------------------------------------------------------

def detections(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float64), "labels": torch.tensor(labels, dtype=torch.int64)}


def truths(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), "labels": torch.tensor(labels)}


def test_ap_by_hand_with_a_false_positive_between_two_hits():
    # Two objects; scores 0.9 (hit), 0.8 (miss), 0.7 (hit): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # All-point AP = 1/2 x 1 + 1/2 x 2/3 = 5/6 (the 1/2 at recall 1/2 is lifted to 2/3 and adds no recall).
    target = truths([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1])
    prediction = detections([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]], [0.9, 0.8, 0.7], [1, 1, 1])
    mean, per_class = ssd.mean_ap_50([prediction], [target], classes=(1,))
    assert per_class == {1: pytest.approx(5 / 6, abs=1e-12)} and mean == pytest.approx(5 / 6, abs=1e-12)


def test_ap_by_hand_duplicates_classes_and_missing_objects():
    # Image 0: one object of class 1 found twice (the second detection is a false positive) and one
    # object of class 2 detected as class 1 (a false positive of class 1, a miss of class 2).
    # Image 1: one object of class 1 found at IoU exactly 0.5 (50 / 100: counts), scored 0.6.
    targets = [truths([[0, 0, 10, 10], [40, 40, 50, 50]], [1, 2]), truths([[0, 0, 10, 10]], [1])]
    predictions = [detections([[0, 0, 10, 10], [0, 0, 10, 10], [40, 40, 50, 50]], [0.95, 0.9, 0.8], [1, 1, 1]),
                   detections([[0, 0, 10, 5]], [0.6], [1])]
    mean, per_class = ssd.mean_ap_50(predictions, targets, classes=(1, 2, 3))
    # class 1, by score: hit, duplicate, wrong class, hit -> precision 1, 1/2, 1/3, 1/2 at recall 1/2, 1/2, 1/2, 1:
    # AP = 1/2 x 1 + 1/2 x 1/2 = 3/4. Class 2: no detection, AP 0. Class 3: no object, left out of the mean.
    assert per_class == {1: pytest.approx(0.75, abs=1e-12), 2: 0.0}
    assert mean == pytest.approx(0.375, abs=1e-12)


def test_ap_matches_the_best_unmatched_object_and_is_one_when_perfect():
    # Two overlapping objects; the first detection fits object 1 best, the second fits object 0.
    target = truths([[0, 0, 10, 10], [2, 0, 12, 10]], [3, 3])
    prediction = detections([[2, 0, 12, 10], [0, 0, 10, 10]], [0.9, 0.8], [3, 3])
    assert ssd.mean_ap_50([prediction], [target], classes=(3,)) == (pytest.approx(1.0), {3: pytest.approx(1.0)})
    # A detection below IoU 0.5 with every object is a false positive, even with the highest score.
    prediction = detections([[6, 0, 16, 10], [2, 0, 12, 10], [0, 0, 10, 10]], [0.99, 0.9, 0.8], [3, 3, 3])
    _, per_class = ssd.mean_ap_50([prediction], [target], classes=(3,))
    # IoU 60 / 140 = 0.43 with object 1: precision 0, 1/2, 2/3 at recall 0, 1/2, 1; the 1/2 is lifted to 2/3
    assert per_class[3] == pytest.approx(2 / 3, abs=1e-12)
    assert ssd.mean_ap_50([detections([], [], [])], [truths([], [])]) == (0.0, {})


# --- the explorer --------------------------------------------------------------------------------

def drawn_defaults(figure):
    found = {}
    for patch in figure.axes[0].patches:
        gid = patch.get_gid() or ""
        if isinstance(patch, Rectangle) and gid.startswith("default-"):
            x, y = patch.get_xy()
            found[int(gid.split("-")[1])] = ([x, y, x + patch.get_width(), y + patch.get_height()],
                                             patch.get_linestyle())
    assert sorted(found) == list(range(len(found)))
    return [found[i] for i in range(len(found))]


@pytest.mark.parametrize("level,row,column", [(0, 37, 0), (1, 9, 12), (3, 4, 4), (5, 0, 0)])
def test_explorer_draws_the_generators_boxes_of_the_chosen_cell(level, row, column):
    explorer = ssd.DefaultBoxExplorer(level=2, row=6, column=2)
    explorer.redraw()
    set_controls(explorer, level=level, row=row, column=column)
    figure = explorer.figure
    rows, columns = ssd.SSD300["feature_map_sizes"][level]
    assert (explorer.controls["row"].max, explorer.controls["column"].max) == (rows - 1, columns - 1)
    k = 2 + 2 * len(ssd.SSD300["aspect_ratios"][level])
    every = torchvision_default_boxes(ssd.SSD300, (300, 300)) * 300
    first = sum(ssd.boxes_per_level(ssd.SSD300["feature_map_sizes"], ssd.SSD300["aspect_ratios"])[:level])
    first += (row * columns + column) * k
    drawn = drawn_defaults(figure)
    assert len(drawn) == k
    assert torch.allclose(torch.tensor([box for box, _ in drawn], dtype=torch.float64), every[first:first + k],
                          atol=1e-3)  # pixels; torchvision's sizes are float32
    # solid exactly when the box's IoU with an object is >= 0.5
    overlap = box_iou(every[first:first + k], explorer.objects).max(dim=1).values
    assert [style == "-" for _, style in drawn] == (overlap >= 0.5).tolist()
    step = ssd.SSD300["steps"][level]
    (cell,) = [p for p in figure.axes[0].patches if p.get_gid() == "cell"]
    assert cell.get_xy() == pytest.approx((column * step, row * step)) and cell.get_width() == pytest.approx(step)
    (centre,) = [line for line in figure.axes[0].lines if line.get_gid() == "centre"]
    assert (centre.get_xdata()[0], centre.get_ydata()[0]) == pytest.approx(((column + 0.5) * step, (row + 0.5) * step))
    (caption,) = [t.get_text() for t in figure.axes[1].texts if t.get_gid() == "caption"]
    assert f"{rows} x {columns} cells x {k} boxes" in caption and "(all maps: 8732)" in caption
    assert f"{int((overlap >= 0.5).sum())} of {k} would be positives" in caption


def test_explorer_keeps_the_cell_inside_a_smaller_map_and_shows_a_static_figure(monkeypatch):
    explorer = ssd.DefaultBoxExplorer(level=0, row=30, column=35)
    explorer.redraw()
    set_controls(explorer, level=4)  # 3 x 3 cells
    assert (explorer.controls["row"].value, explorer.controls["column"].value) == (2, 2)
    assert "map 4: 3 x 3 cells, cell (2, 2)" in explorer.figure.axes[0].get_title()
    image, target = make_scene(seed=1, index=0, size=96)
    small = ssd.DefaultBoxExplorer(image, target, config=SMALL, level=1, row=3, column=2)
    boxes = [box for box, _ in drawn_defaults(small.redraw())]
    expected = ssd.make_default_boxes(**SMALL, dtype=torch.float64)[576 + (3 * 6 + 2) * 6:576 + (3 * 6 + 3) * 6] * 96
    assert torch.allclose(torch.tensor(boxes, dtype=torch.float64), expected, atol=1e-9)
    shown = shown_statically(monkeypatch, explorer.show)
    assert len(shown) == 1 and isinstance(shown[0], Figure)
