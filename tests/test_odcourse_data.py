"""The helper package's synthetic data, drawing and shared check helpers."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from odcourse.checks import CheckFailed, Report  # noqa: E402
from odcourse.checks.tensors import call_keeping_inputs, expect_tensor  # noqa: E402
from odcourse.data import CLASSES, SyntheticShapes, collate, make_scene  # noqa: E402
from odcourse.draw import draw_boxes, show_detections  # noqa: E402
from odcourse.proposals import colour_bins, gradient_orientations  # noqa: E402


def test_scenes_are_deterministic_and_differ_by_seed_and_index():
    a, b = make_scene(3, 5), make_scene(3, 5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    assert not torch.equal(make_scene(3, 6)[0], a[0]) and not torch.equal(make_scene(4, 5)[0], a[0])


@pytest.mark.parametrize("index", range(20))
def test_scene_annotations_describe_the_image(index):
    image, target = SyntheticShapes(20, size=96, seed=7)[index]
    assert image.shape == (3, 96, 96) and image.dtype == torch.float32
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
    assert 1 <= len(boxes) <= 4 and labels.dtype == torch.int64 and set(labels.tolist()) <= {1, 2, 3}
    assert masks.shape == (len(boxes), 96, 96) and masks.dtype == torch.uint8
    # Each box is the tight box of its mask, in pixel-edge coordinates (torchvision's masks_to_boxes
    # gives the last pixel's index, one less than the edge).
    edges = torchvision.ops.masks_to_boxes(masks.bool()) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert torch.equal(boxes, edges)
    assert not (masks.sum(0) > 1).any(), "visible masks do not overlap"
    if len(boxes) > 1:
        iou = torchvision.ops.box_iou(boxes, boxes) - torch.eye(len(boxes))
        assert float(iou.max()) <= 0.3 + 1e-6
    assert int(target["image_id"]) == index


def test_every_class_appears_and_objects_differ_from_the_background():
    data = SyntheticShapes(60, seed=0)
    labels = torch.cat([data[i][1]["labels"] for i in range(len(data))])
    assert set(labels.tolist()) == {1, 2, 3} and len(CLASSES) == 4
    image, target = data[0]
    inside = image[:, target["masks"][0].bool()].mean(1)
    outside = image[:, target["masks"].sum(0) == 0].mean(1)
    assert float((inside - outside).abs().max()) > 0.1


def test_dataset_refuses_bad_arguments_and_indices():
    with pytest.raises(ValueError, match="size must be at least 32"):
        SyntheticShapes(3, size=8)
    with pytest.raises(ValueError, match="min_objects <= max_objects"):
        SyntheticShapes(3, min_objects=5, max_objects=2)
    with pytest.raises(IndexError, match="outside 0..2"):
        SyntheticShapes(3)[3]
    images, targets = collate([SyntheticShapes(2)[0], SyntheticShapes(2)[1]])
    assert len(images) == len(targets) == 2


def test_pixel_features_of_selective_search():
    image = torch.tensor([[[0.0, 0.05, 0.5, 1.0]]]).repeat(3, 2, 1)
    assert colour_bins(image)[0, 0].tolist() == [0, 1, 12, 24]
    ramp = torch.arange(5.0).repeat(3, 5, 1) / 4  # brightness grows to the right
    bins, strength = gradient_orientations(ramp)
    assert bins.shape == strength.shape == (3, 5, 5) and strength.dtype == torch.float64
    assert bins[0, 2, 2].item() == 4  # angle 0 is the fifth of 8 sectors from -pi
    assert strength[0, 2, 2].item() == pytest.approx(0.25)
    assert strength[0, 2, 0].item() == pytest.approx(0.125)  # the edge is repeated


def test_drawing_boxes_and_detections():
    image, target = make_scene(0, 1)
    figure, ax = plt.subplots()
    show_detections(image, target["boxes"], target["labels"], torch.ones(len(target["labels"])), CLASSES, ax=ax)
    assert len(ax.patches) == len(target["boxes"]) and len(ax.texts) == len(target["boxes"])
    draw_boxes(torch.zeros(0, 4), ax)
    assert len(ax.patches) == len(target["boxes"])
    plt.close(figure)


def test_shared_check_helpers_name_the_problem(monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda *a: None)

    def in_place(x):
        x += 1
        return x

    with pytest.raises(CheckFailed, match=r"changed its argument\(s\) \[0\] in place"):
        with Report("f") as report:
            call_keeping_inputs(report, in_place, torch.zeros(3))
    with pytest.raises(CheckFailed, match="has dtype torch.float64 but must be torch.float32"):
        with Report("g") as report:
            expect_tensor(report, torch.zeros(2, dtype=torch.float64), "the result", shape=(2,), dtype=torch.float32)
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    with pytest.raises(CheckFailed):
        with Report("h") as report:
            report.illustrate(lambda: plt.figure())
            report.expect(False, "wrong")
    assert len(shown) == 1
