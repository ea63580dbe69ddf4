"""Chapter 10's helpers (odcourse.detectors): the zoo's figures, the detector with torchvision's
interface, the wrappers and the detection panel, and the precision-recall / AP helpers behind the
page's figures, checked against pycocotools' COCOeval, chapter 9's mean_ap_50 and hand-computed
cases. Seeded; nothing is downloaded."""
import importlib.util
import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from odcourse import detectors, ssd
from odcourse.data import CLASSES, make_scene
from tests.explorers import set_controls, shown_statically

matplotlib.use("Agg")


class FixedDetector(nn.Module):
    """A stand-in detector: the same output for every image, and a count of its calls."""

    def __init__(self, output):
        super().__init__()
        self.output, self.calls, self.seen = output, 0, []

    def forward(self, images):
        self.calls += 1
        self.seen += [image.shape for image in images]
        return [{key: value.clone() for key, value in self.output.items()} for _ in images]


def fixed_output(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.int64)}


# --- the zoo -------------------------------------------------------------------------------------

def test_zoo_table_reads_torchvisions_published_figures():
    rows = {row["model"]: row for row in detectors.zoo_table()}
    assert set(rows) == set(detectors.TORCHVISION_ZOO)
    # torchvision's documentation: Faster R-CNN ResNet-50 FPN, box mAP 37.0, 41.8 M parameters, 134.38 GFLOPS
    first = rows["fasterrcnn_resnet50_fpn"]
    assert (first["box_map"], round(first["params"], 1), first["gflops"]) == (37.0, 41.8, 134.38)
    assert first["weights"] == "FasterRCNN_ResNet50_FPN_Weights.COCO_V1" and first["url"].startswith("https://")
    assert rows["maskrcnn_resnet50_fpn"]["mask_map"] == 34.6 and first["mask_map"] is None
    assert all(isinstance(row["box_map"], float) and row["gflops"] > 0 for row in rows.values())
    assert rows["ssdlite320_mobilenet_v3_large"]["params"] < 4 < rows["ssd300_vgg16"]["params"]


def test_time_forward_builds_without_downloading(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    milliseconds = detectors.time_forward("fasterrcnn_mobilenet_v3_large_320_fpn", size=128, repeats=1)
    assert 0 < milliseconds < 60_000
    assert list(tmp_path.rglob("*")) == []  # no weights file was fetched


def test_tf_zoo_is_the_slides_table():
    table = {name: (ms, mAP) for name, ms, mAP in detectors.TF_ZOO_2018}
    assert len(table) == 13 and table["faster_rcnn_nas"] == (1833, 43) and table["rfcn_resnet101_coco"] == (92, 30)
    assert sum(mAP is None for _, mAP in table.values()) == 3


# --- the detector with torchvision's interface ---------------------------------------------------

def test_shapes_detector_has_torchvisions_interface_and_scales_boxes_to_each_image():
    network = ssd.TinySSD(seed=3)
    detector = detectors.ShapesDetector(network, score_threshold=0.26)
    assert not detector.training
    image, _ = make_scene(seed=4, index=0, size=96)
    large = image.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # 192 x 192, nearest neighbour
    wide = torch.nn.functional.interpolate(image[None], size=(96, 160), mode="nearest")[0]
    with torch.no_grad():
        small_out, large_out, wide_out = detector([image, large, wide])
        logits, offsets = network.eval()(image[None])
    assert set(small_out) == {"boxes", "scores", "labels"} and small_out["labels"].dtype == torch.int64
    assert 0 < len(small_out["boxes"]) <= 100 and torch.all(small_out["scores"][:-1] >= small_out["scores"][1:])
    boxes, _, labels = ssd.detect(logits[0], offsets[0], detector.default_boxes, 0.26, 0.45, 100)
    assert torch.allclose(small_out["boxes"], boxes * 96) and torch.equal(small_out["labels"], labels)
    # a 2x nearest-neighbour enlargement resizes back to the same input: the same boxes, twice as large
    assert torch.allclose(large_out["boxes"], 2 * small_out["boxes"], atol=1e-4)
    assert torch.equal(large_out["labels"], small_out["labels"])
    assert wide_out["boxes"][:, [0, 2]].max() <= 160 and wide_out["boxes"][:, [1, 3]].max() <= 96
    assert detector([]) == []
    with pytest.raises(RuntimeError, match="eval"):
        detector.train()([image])


def colour_masks_of_the_truth(seed, index):
    image, target = make_scene(seed=seed, index=index, size=96)
    truth = {"boxes": target["boxes"], "scores": torch.ones(len(target["boxes"])), "labels": target["labels"]}
    detector = detectors.ColourMasks(FixedDetector(truth))
    (output,) = detector([image])
    assert output["masks"].shape == (len(target["boxes"]), 1, 96, 96)
    return detectors.mask_iou(output["masks"], target["masks"])


def test_colour_masks_fit_separate_shapes_and_mix_overlapping_ones():
    overlap = colour_masks_of_the_truth(1, 0)  # three shapes whose boxes do not overlap
    assert overlap.diagonal().min() > 0.99 and (overlap - torch.diag(overlap.diagonal())).max() == 0
    overlap = colour_masks_of_the_truth(1, 7)  # boxes overlapping: a mask takes in part of a neighbour
    assert overlap.diagonal().min() < 0.7 and (overlap - torch.diag(overlap.diagonal())).max() > 0.2
    image, _ = make_scene(seed=1, index=0, size=96)
    whole = detectors.ColourMasks(FixedDetector(fixed_output([[0, 0, 96, 96]], [1.0], [1])))([image])[0]
    assert whole["masks"].sum() == 0  # no ring around the box: no background colour, no mask


def test_mask_iou_by_hand():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2, :2] = True  # 4 pixels
    a[1, :, :] = True    # 16 pixels
    b = torch.zeros(1, 1, 4, 4)
    b[0, 0, 1:3, 1:3] = 1  # 4 pixels, one shared with a[0]
    assert detectors.mask_iou(a, b).tolist() == [[1 / 7], [4 / 16]]
    assert detectors.mask_iou(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)).tolist() == [[0.0]]
    assert detectors.mask_iou(torch.zeros(0, 1, 4, 4), b).shape == (0, 1)  # no detection: an empty table


# --- the wrappers -------------------------------------------------------------------------------

def test_load_image_from_a_file_a_url_and_a_tensor(tmp_path, monkeypatch):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "colour.png")
    Image.fromarray(pixels[..., 0]).save(tmp_path / "grey.png")
    colour = detectors.load_image(tmp_path / "colour.png")
    assert colour.shape == (3, 20, 30) and colour.dtype == torch.float32
    assert torch.equal((colour * 255).round().to(torch.uint8), torch.from_numpy(pixels).permute(2, 0, 1))
    grey = detectors.load_image(str(tmp_path / "grey.png"))
    assert grey.shape == (3, 20, 30) and torch.equal(grey[0], grey[2])
    assert torch.equal(detectors.load_image(torch.full((3, 2, 2), 255, dtype=torch.uint8)), torch.ones(3, 2, 2))

    class Response:
        content = (tmp_path / "colour.png").read_bytes()

        def raise_for_status(self):
            pass

    asked = []
    monkeypatch.setattr("requests.get", lambda url, **kwargs: asked.append(url) or Response())
    assert torch.equal(detectors.load_image("https://example.org/cat.png"), colour)
    assert asked == ["https://example.org/cat.png"]


def test_run_inference_returns_the_models_dict_on_the_cpu_in_eval_mode():
    model = FixedDetector(fixed_output([[1, 2, 3, 4]], [0.5], [2])).train()
    output = detectors.run_inference_for_single_image(model, torch.rand(3, 8, 8))
    assert not model.training and model.seen == [(3, 8, 8)]
    assert output["boxes"].tolist() == [[1, 2, 3, 4]] and output["boxes"].device.type == "cpu"


GREY = 0.5
BOXES = [[4, 4, 30, 30], [34, 6, 60, 28], [8, 36, 56, 60]]  # in a 64 x 64 image
SCORES = [0.9, 0.6, 0.3]
LABELS = [1, 2, 3]
FACTOR = 7  # render_detections enlarges a 64-pixel image to 448 pixels


def drawn_array(figure):
    (image,) = [artist for artist in figure.axes[0].images if artist.get_gid() == "detections"]
    return np.asarray(image.get_array())


def edge_colour(array, box):
    """The colour at the middle of a box's bottom edge, in the enlarged image (captions sit at the top)."""
    x1, _, x2, y2 = box
    return array[y2 * FACTOR - 1, (x1 + x2) // 2 * FACTOR]


def test_detect_draws_boxes_above_the_threshold_with_their_colour():
    model = FixedDetector(fixed_output(BOXES, SCORES, LABELS))
    figure = Figure()
    kept = detectors.detect(model, torch.full((3, 64, 64), GREY), CLASSES, score_threshold=0.5, ax=figure.subplots())
    assert kept["scores"].tolist() == pytest.approx([0.9, 0.6]) and kept["labels"].tolist() == [1, 2]
    array = drawn_array(figure)
    assert array.shape == (64 * FACTOR, 64 * FACTOR, 3)
    for box, label in zip(BOXES[:2], LABELS[:2]):
        assert edge_colour(array, box) == pytest.approx(to_rgb(detectors.PALETTE[label]), abs=1 / 255)
    assert edge_colour(array, BOXES[2]) == pytest.approx([GREY] * 3, abs=1 / 255)  # below the threshold: not drawn
    assert "2 detections with score >= 0.50 (of 3 returned)" in figure.axes[0].get_title()


def test_detect_draws_masks():
    output = fixed_output([[10, 10, 40, 40]], [0.8], [2])
    output["masks"] = torch.zeros(1, 1, 64, 64)
    output["masks"][0, 0, 20:30, 20:30] = 1.0
    figure = Figure()
    detectors.detect(FixedDetector(output), torch.full((3, 64, 64), GREY), CLASSES, ax=figure.subplots())
    array = drawn_array(figure)
    inside, outside = array[25 * FACTOR, 25 * FACTOR], array[15 * FACTOR, 15 * FACTOR]
    assert outside == pytest.approx([GREY] * 3, abs=1 / 255)
    assert np.abs(inside - GREY).max() > 0.1  # tinted by the mask's colour


def test_detection_panel_threshold_changes_what_is_drawn_without_rerunning_the_model():
    model = FixedDetector(fixed_output(BOXES, SCORES, LABELS))
    panel = detectors.DetectionPanel(model, CLASSES, {"grey": torch.full((3, 64, 64), GREY)}, score_threshold=0.5)
    panel.redraw()
    counts = {}
    for threshold in (0.95, 0.5, 0.25, 0.0):
        set_controls(panel, score_threshold=threshold)
        array = drawn_array(panel.figure)
        counts[threshold] = len(panel.shown["scores"])
        drawn = [edge_colour(array, box) != pytest.approx([GREY] * 3, abs=1 / 255) for box in BOXES]
        assert drawn == [score >= threshold for score in SCORES]
    assert counts == {0.95: 0, 0.5: 2, 0.25: 3, 0.0: 3}
    set_controls(panel, score_threshold=0.95)
    assert np.allclose(drawn_array(panel.figure), GREY, atol=1 / 255)  # nothing drawn over the image
    assert model.calls == 1
    set_controls(panel, size=11)
    assert tuple(panel.figure.get_size_inches()) == (11, 11) and panel.controls["size"].min == 5


def test_detection_panel_loads_a_typed_path_and_reports_a_bad_one(tmp_path, monkeypatch):
    from PIL import Image

    Image.fromarray(np.full((50, 80, 3), 128, dtype=np.uint8)).save(tmp_path / "photo.png")
    model = FixedDetector(fixed_output(BOXES[:1], SCORES[:1], LABELS[:1]))
    panel = detectors.DetectionPanel(model, CLASSES, {"a": torch.rand(3, 64, 64), "b": torch.rand(3, 32, 48)})
    panel.redraw()
    set_controls(panel, image="b")
    assert drawn_array(panel.figure).shape == (32 * 13, 48 * 13, 3)  # 32 pixels enlarged 13 times
    set_controls(panel, url=str(tmp_path / "photo.png"))
    assert drawn_array(panel.figure).shape == (50 * 8, 80 * 8, 3) and model.seen[-1] == (3, 50, 80)
    set_controls(panel, url=str(tmp_path / "missing.png"))
    (error,) = [t for t in panel.figure.axes[0].texts if t.get_gid() == "error"]
    assert "missing.png" in error.get_text() and panel.shown is None
    shown = shown_statically(monkeypatch, panel.show)
    assert len(shown) == 1 and isinstance(shown[0], Figure)


# --- precision, recall and AP --------------------------------------------------------------------

def truths(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), "labels": torch.tensor(labels)}


def found(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float64), "labels": torch.tensor(labels, dtype=torch.int64)}


def random_data(seed, images=14, classes=3):
    """Objects, and detections a detector might make: jittered copies, duplicates, misses, false boxes."""
    g = torch.Generator().manual_seed(seed)
    predictions, targets = [], []
    for _ in range(images):
        count = int(torch.randint(0, 6, (1,), generator=g))
        corners = torch.rand(count, 2, generator=g, dtype=torch.float64) * 80
        boxes = torch.cat([corners, corners + 8 + torch.rand(count, 2, generator=g, dtype=torch.float64) * 40], 1)
        labels = torch.randint(1, classes + 1, (count,), generator=g)
        copies = torch.cat([boxes, boxes[: count // 2]])  # some objects found twice
        copy_labels = torch.cat([labels, labels[: count // 2]])
        sides = (copies[:, 2:] - copies[:, :2]).repeat(1, 2)
        jitter = torch.randn(len(copies), 4, generator=g, dtype=torch.float64) * sides * 0.12
        kept = torch.rand(len(copies), generator=g) < 0.8
        extra = int(torch.randint(0, 4, (1,), generator=g))
        false_corners = torch.rand(extra, 2, generator=g, dtype=torch.float64) * 90
        false_boxes = torch.cat([false_corners, false_corners + 5 + torch.rand(extra, 2, generator=g) * 30], 1)
        pred_boxes = torch.cat([(copies + jitter)[kept], false_boxes])
        pred_labels = torch.cat([copy_labels[kept], torch.randint(1, classes + 1, (extra,), generator=g)])
        pred_boxes = torch.cat([pred_boxes[:, :2], torch.maximum(pred_boxes[:, 2:], pred_boxes[:, :2] + 1)], 1)
        predictions.append({"boxes": pred_boxes, "scores": torch.rand(len(pred_boxes), generator=g,
                                                                      dtype=torch.float64),
                            "labels": pred_labels})
        targets.append({"boxes": boxes, "labels": labels})
    return predictions, targets


def test_ranking_and_both_areas_by_hand():
    # Two objects; scores 0.9 (hit), 0.8 (false), 0.7 (hit): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    target = truths([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1])
    prediction = found([[20, 20, 30, 31], [50, 50, 60, 60], [0, 0, 10, 10]], [0.7, 0.8, 0.9], [1, 1, 1])
    ranking = detectors.rank_class([prediction], [target], 1, 0.5)
    assert ranking.scores.tolist() == pytest.approx([0.9, 0.8, 0.7]) and ranking.detection.tolist() == [2, 1, 0]
    assert ranking.hit.tolist() == [True, False, True] and ranking.truths == 2
    assert ranking.overlap.tolist() == pytest.approx([1.0, 0.0, 100 / 110])
    assert ranking.precision.tolist() == pytest.approx([1, 1 / 2, 2 / 3])
    assert ranking.recall.tolist() == pytest.approx([1 / 2, 1 / 2, 1])
    assert detectors.precision_envelope(ranking.precision).tolist() == pytest.approx([1, 2 / 3, 2 / 3])
    # VOC: 1/2 x 1 + 1/2 x 2/3. COCO: recall levels 0..0.50 (51 of them) read 1, 0.51..1 (50) read 2/3.
    assert detectors.pr_area(ranking, "voc") == pytest.approx(5 / 6, abs=1e-12)
    assert detectors.pr_area(ranking, "coco") == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)
    with pytest.raises(ValueError, match="voc"):
        detectors.pr_area(ranking, "11-point")
    # the hit at IoU 10/11 becomes a false positive above that threshold
    strict = detectors.rank_class([prediction], [target], 1, 0.95)
    assert strict.hit.tolist() == [True, False, False] and detectors.pr_area(strict, "voc") == pytest.approx(0.5)


def test_each_object_is_found_once_by_the_best_free_detection():
    # Two overlapping objects; the best detection fits object 1, the next one fits object 0 better
    # than object 1 (which is taken anyway); a duplicate of object 0 comes last and is false.
    target = truths([[0, 0, 10, 10], [2, 0, 12, 10]], [3, 3])
    prediction = found([[2, 0, 12, 10], [0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8, 0.7], [3, 3, 3])
    ranking = detectors.rank_class([prediction], [target], 3, 0.5)
    assert ranking.hit.tolist() == [True, True, False]
    assert detectors.rank_class([prediction], [target], 1, 0.5).truths == 0
    empty = detectors.rank_class([found([], [], [])], [truths([], [])], 1)
    assert len(empty.scores) == 0 and math.isnan(detectors.pr_area(empty))  # no object: AP is undefined
    unfound = detectors.rank_class([found([], [], [])], [target], 3)
    assert unfound.truths == 2 and detectors.pr_area(unfound, "voc") == detectors.pr_area(unfound, "coco") == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_coco_style_ap_agrees_with_pycocotools(seed):
    pytest.importorskip("pycocotools")
    predictions, targets = random_data(seed)
    mine = detectors.coco_style_ap(predictions, targets)
    theirs = detectors.cocoeval_summary(predictions, targets)
    assert mine["labels"] == theirs["labels"] == [1, 2, 3]
    assert np.allclose(mine["ap"], theirs["ap"], atol=1e-9, equal_nan=True)
    for key in ("map", "map_50", "map_75"):
        assert mine[key] == pytest.approx(theirs[key], abs=1e-9)
    assert 0.05 < mine["map"] < mine["map_50"] < 1  # the data are neither hopeless nor perfect


def test_equal_ious_go_to_the_later_object_as_in_cocoeval():
    # The first detection overlaps objects 0 and 1 equally (IoU 0.6); the second is object 0 itself.
    # Taking the later object (COCOeval's rule) leaves object 0 to the second: two hits, AP 1.
    target = truths([[0, 0, 10, 10], [5, 0, 15, 10]], [1, 1])
    prediction = found([[2.5, 0, 12.5, 10], [0, 0, 10, 10]], [0.9, 0.8], [1, 1])
    assert detectors.rank_class([prediction], [target], 1, 0.5).hit.tolist() == [True, True]
    assert detectors.coco_style_ap([prediction], [target], iou_thresholds=[0.5])["map_50"] == 1.0
    theirs = detectors.cocoeval_summary([prediction], [target]) if importlib.util.find_spec("pycocotools") else None
    if theirs is not None:
        assert theirs["map_50"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_coco_style_ap_agrees_with_pycocotools_on_boxes_of_a_coarse_grid(seed):
    """Boxes on a 4-pixel grid: equal IoUs and equal scores everywhere, where tie rules show."""
    pytest.importorskip("pycocotools")
    predictions, targets = random_data(seed + 20, images=20)
    for item in predictions + targets:
        item["boxes"] = (item["boxes"] / 4).round() * 4
        item["boxes"][:, 2:] = torch.maximum(item["boxes"][:, 2:], item["boxes"][:, :2] + 4)
    for prediction in predictions:
        prediction["scores"] = (prediction["scores"] * 4).round() / 4
    mine, theirs = detectors.coco_style_ap(predictions, targets), detectors.cocoeval_summary(predictions, targets)
    assert np.allclose(mine["ap"], theirs["ap"], atol=1e-9, equal_nan=True)
    for key in ("map", "map_50", "map_75"):
        assert mine[key] == pytest.approx(theirs[key], abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_voc_area_at_half_is_chapter_9s_map(seed):
    predictions, targets = random_data(seed + 10)
    table = detectors.coco_style_ap(predictions, targets, iou_thresholds=[0.5], rule="voc")
    mean, per_class = ssd.mean_ap_50(predictions, targets, classes=(1, 2, 3))
    assert table["ap"][0].tolist() == pytest.approx([per_class[c] for c in (1, 2, 3)], abs=1e-12)
    assert table["map_50"] == pytest.approx(mean, abs=1e-12) and math.isnan(table["map_75"])


def test_classes_without_objects_are_left_out_and_cocoeval_without_detections_is_zero():
    pytest.importorskip("pycocotools")
    targets = [truths([[0, 0, 10, 10]], [1])]
    predictions = [found([[0, 0, 10, 10], [5, 5, 9, 9]], [0.9, 0.8], [1, 2])]  # class 2 has no object
    table = detectors.coco_style_ap(predictions, targets, labels=[1, 2])
    assert table["ap"][:, 0].tolist() == [1.0] * 10 and np.isnan(table["ap"][:, 1]).all() and table["map"] == 1.0
    assert detectors.cocoeval_summary(predictions, targets)["map"] == pytest.approx(1.0)
    assert detectors.cocoeval_summary([found([], [], [])], targets)["map"] == 0.0


def test_max_per_image_keeps_each_images_best():
    target = truths([[0, 0, 10, 10]], [1])
    prediction = found([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.5], [1, 1])
    assert detectors.rank_class([prediction], [target], 1, max_per_image=1).hit.tolist() == [False]
    assert detectors.rank_class([prediction], [target], 1, max_per_image=2).hit.tolist() == [False, True]


# --- the precision-recall explorer --------------------------------------------------------------

def patches_by_kind(figure):
    kinds = {"hit": 0, "miss": 0, "truth": 0}
    for patch in figure.axes[0].patches:
        kind = (patch.get_gid() or "").split("-")[0]
        if isinstance(patch, Rectangle) and kind in kinds:
            kinds[kind] += 1
    return kinds


def test_pr_explorer_follows_the_iou_threshold_and_the_score_cut_off():
    pytest.importorskip("pycocotools")
    predictions, targets = random_data(5, images=10)
    images = [torch.full((3, 128, 128), 0.4) for _ in targets]
    image = max(range(len(targets)), key=lambda n: len(targets[n]["boxes"]))  # the busiest image
    label = int(targets[image]["labels"][0])
    explorer = detectors.PRExplorer(images, predictions, targets, CLASSES, label=label, iou_threshold=0.5,
                                    score=0.05, image=image)
    explorer.redraw()
    reference = detectors.cocoeval_summary(predictions, targets)
    column = reference["labels"].index(label)
    seen = {}
    for threshold, row in [(0.5, 0), (0.75, 5), (0.9, 8)]:
        set_controls(explorer, iou_threshold=threshold)
        kinds = patches_by_kind(explorer.figure)
        seen[threshold] = kinds
        title = explorer.figure.axes[1].get_title()
        assert f"COCO {reference['ap'][row, column]:.3f}" in title  # pycocotools' AP of the class at this IoU
        assert kinds["truth"] == int((targets[image]["labels"] == label).sum())
    mine = int((predictions[image]["labels"] == label).sum())
    assert all(kinds["hit"] + kinds["miss"] == mine for kinds in seen.values())
    assert seen[0.5]["hit"] >= seen[0.75]["hit"] >= seen[0.9]["hit"] and seen[0.5]["hit"] > seen[0.9]["hit"]
    # the cut-off removes detections from the image and moves the point along the curve
    set_controls(explorer, iou_threshold=0.5, score=1.0)
    assert patches_by_kind(explorer.figure)["hit"] + patches_by_kind(explorer.figure)["miss"] == 0
    assert not [line for line in explorer.figure.axes[1].lines if line.get_gid() == "operating-point"]


def test_pr_explorer_operating_point_by_hand(monkeypatch):
    target = truths([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1])
    prediction = found([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]], [0.9, 0.8, 0.7], [1, 1, 1])
    explorer = detectors.PRExplorer([torch.zeros(3, 64, 64)], [prediction], [target], CLASSES, score=0.5)
    explorer.redraw()
    for score, point in [(0.75, (0.5, 0.5)), (0.65, (1.0, 2 / 3)), (0.85, (0.5, 1.0))]:
        set_controls(explorer, score=score)
        (dot,) = [line for line in explorer.figure.axes[1].lines if line.get_gid() == "operating-point"]
        assert (dot.get_xdata()[0], dot.get_ydata()[0]) == pytest.approx(point)
    assert "AP: VOC 0.833, COCO 0.835" in explorer.figure.axes[1].get_title()
    kinds = patches_by_kind(explorer.figure)
    assert kinds == {"hit": 1, "miss": 0, "truth": 2}  # score >= 0.85: the first detection only
    shown = shown_statically(monkeypatch, explorer.show)
    assert len(shown) == 1 and isinstance(shown[0], Figure)


def test_draw_interpolations_shows_both_rules_on_one_curve():
    target = truths([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1])
    prediction = found([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]], [0.9, 0.8, 0.7], [1, 1, 1])
    ranking = detectors.rank_class([prediction], [target], 1)
    ax = Figure().subplots()
    detectors.draw_interpolations(ranking, ax)
    lines = {line.get_gid(): line for line in ax.lines}
    readings = lines["coco-readings"].get_ydata()
    assert len(readings) == 101 and readings.mean() == pytest.approx(detectors.pr_area(ranking, "coco"))
    assert list(readings[:51]) == [1.0] * 51 and readings[51:] == pytest.approx([2 / 3] * 50)
    labels = ax.get_legend_handles_labels()[1]
    assert any("VOC (all points): area 0.8333" in text for text in labels)
    assert any("COCO (101 readings): mean 0.8350" in text for text in labels)
