"""Chapter 3's helpers (odcourse.rcnn): the explorer follows its controls, and each piece does what
its docstring says."""
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.models.detection._utils import BoxCoder

from odcourse import rcnn
from odcourse.data import make_scene
from tests.explorers import shown_statically


def drawn(figure: Figure, name: str) -> list[float]:
    """(x1, y1, x2, y2) of the rectangle labelled `name` in the figure's first axes."""
    (patch,) = [p for p in figure.axes[0].patches if isinstance(p, Rectangle) and p.get_label() == name]
    x, y = patch.get_xy()
    return [x, y, x + patch.get_width(), y + patch.get_height()]


def test_explorer_redraws_and_draws_the_box_that_boxcoder_decodes():
    image = torch.rand(3, 64, 64)
    proposal, truth = torch.tensor([10.0, 12.0, 40.0, 30.0]), torch.tensor([14.0, 10.0, 44.0, 36.0])
    explorer = rcnn.BoxRegressionExplorer(image, proposal, truth)
    first = explorer.redraw()
    assert drawn(first, "decoded") == pytest.approx(proposal.tolist())  # zero deltas: the proposal itself
    assert drawn(first, "ground truth") == pytest.approx(truth.tolist())
    explorer.controls["dx"].value = 0.25  # what a student moving a slider does
    explorer.controls["dw"].value = -0.5
    second = explorer.figure
    assert second is not first
    expected = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(torch.tensor([[0.25, 0.0, -0.5, 0.0]]), proposal[None])[0]
    assert drawn(second, "decoded") == pytest.approx(expected.tolist(), abs=1e-4)
    assert drawn(second, "proposal") == pytest.approx(proposal.tolist())
    targets = BoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(truth[None], proposal[None])[0]
    assert explorer.targets() == pytest.approx(targets, abs=1e-6)
    title = second.axes[0].get_title()
    assert f"{targets[0]:.3f}" in title and f"{targets[2]:.3f}" in title
    explorer.controls["dx"].value, explorer.controls["dy"].value = float(targets[0]), float(targets[1])
    explorer.controls["dw"].value, explorer.controls["dh"].value = float(targets[2]), float(targets[3])
    assert "IoU with the ground truth 1.00" in explorer.figure.axes[0].get_title()


def test_explorer_shows_one_static_figure_while_the_book_builds(monkeypatch):
    explorer = rcnn.BoxRegressionExplorer(torch.rand(3, 32, 32), [2, 2, 20, 20], [4, 4, 22, 24], dx=0.1)
    shown = shown_statically(monkeypatch, explorer.show)
    assert len(shown) == 1 and isinstance(shown[0], Figure)


def test_warp_regions_shapes_values_and_context():
    image = torch.arange(3 * 16 * 16, dtype=torch.float32).reshape(3, 16, 16)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [4.0, 2.0, 8.0, 10.0]])
    warped = rcnn.warp_regions(image, boxes, 16)
    assert warped.shape == (2, 3, 16, 16) and warped.dtype == torch.float32
    assert torch.allclose(warped[0], image, atol=1e-4)  # the whole image at its own size
    small = rcnn.warp_regions(image, boxes[1:], 4)  # a 4 x 8 box to 4 x 4: columns kept, rows averaged in pairs
    assert torch.allclose(small[0], image[:, 2:10, 4:8].reshape(3, 4, 2, 4).mean(2), atol=1e-4)
    framed = rcnn.warp_regions(image, torch.tensor([[4.0, 4.0, 12.0, 12.0]]), 16, context=4)
    assert torch.allclose(framed[0], image, atol=1e-4)  # 8 x 8 box + 4 of 16 context = the whole image
    assert rcnn.warp_regions(image, torch.zeros(0, 4), 8).shape == (0, 3, 8, 8)
    with pytest.raises(ValueError):
        rcnn.warp_regions(image, boxes, 8, context=4)


def test_label_proposals_and_class_ious():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    labels = torch.tensor([2, 3])
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 3.5],
                              [40.0, 40.0, 50.0, 50.0], [21.0, 20.0, 30.0, 30.0]])
    cls, matched, iou = rcnn.label_proposals(proposals, gt, labels, fg_iou=0.5, bg_iou=0.3)
    assert cls.tolist() == [2, 2, -1, 0, 3]
    assert matched[[0, 1, 4]].tolist() == [0, 0, 1]
    assert iou.tolist() == pytest.approx([1.0, 0.5, 0.35, 0.0, 0.9])
    per_class = rcnn.max_iou_per_class(proposals, gt, labels, num_classes=4)
    assert per_class.shape == (5, 4)
    assert per_class[:, 0].abs().sum() == 0 and per_class[:, 1].abs().sum() == 0
    assert per_class[:, 2].tolist() == pytest.approx([1.0, 0.5, 0.35, 0.0, 0.0])
    empty_cls, _, _ = rcnn.label_proposals(proposals, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert empty_cls.tolist() == [0] * 5


def test_tiny_cnn_shapes_and_determinism():
    crops = torch.rand(10, 3, 32, 32)
    a, b = rcnn.TinyCNN(4, size=32, seed=0), rcnn.TinyCNN(4, size=32, seed=0)
    assert torch.equal(a(crops), b(crops))
    pool5, fc6 = a.features(crops, batch_size=3)
    assert pool5.shape == (10, 64 * 4 * 4) and fc6.shape == (10, 128)
    assert a(crops).shape == (10, 4)
    a.replace_classifier(7)
    assert a(crops).shape == (10, 7)
    assert a.features(torch.zeros(0, 3, 32, 32))[0].shape == (0, 1024)


def test_training_is_reproducible_and_learns():
    torch.manual_seed(123)
    crops = torch.rand(64, 3, 16, 16)
    labels = (crops[:, 0].mean((1, 2)) > crops[:, 1].mean((1, 2))).long()  # red or green?
    crops[labels == 1, 0] += 0.5
    runs = []
    for _ in range(2):
        model = rcnn.TinyCNN(2, size=16, seed=1)
        runs.append(rcnn.train_classifier(model, crops, labels, epochs=8, batch_size=16, lr=5e-3, seed=0))
    assert runs[0] == runs[1]
    assert runs[0][-1] < runs[0][0]


def test_feature_cache_round_trip(tmp_path):
    pool5, fc6 = torch.rand(5, 8), torch.rand(5, 3)
    size = rcnn.save_features(tmp_path / "f.pt", pool5=pool5, fc6=fc6)
    assert size == (tmp_path / "f.pt").stat().st_size and size >= (40 + 15) * 4
    back = rcnn.load_features(tmp_path / "f.pt")
    assert torch.equal(back["pool5"], pool5) and torch.equal(back["fc6"], fc6)


def test_ridge_lstsq_matches_an_independent_numpy_solution():
    rng = np.random.default_rng(0)
    phi, targets, lam = rng.normal(size=(30, 50)), rng.normal(size=(30, 4)), 3.0  # more features than samples
    W, b = rcnn.ridge_lstsq(torch.tensor(phi), torch.tensor(targets), lam)
    # Independent: centre, solve the normal equations, recover the bias.
    mean_phi, mean_t = phi.mean(0), targets.mean(0)
    centred = phi - mean_phi
    W_ref = np.linalg.solve(centred.T @ centred + lam * np.eye(50), centred.T @ (targets - mean_t))
    b_ref = mean_t - mean_phi @ W_ref
    assert W.shape == (50, 4) and b.shape == (4,) and W.dtype == torch.float64
    np.testing.assert_allclose(W.numpy(), W_ref, atol=1e-8)
    np.testing.assert_allclose(b.numpy(), b_ref, atol=1e-8)
    W32, b32 = rcnn.ridge_lstsq(torch.tensor(phi, dtype=torch.float32), torch.tensor(targets[:, 0]), lam)
    assert W32.dtype == torch.float32 and W32.shape == (50, 1) and b32.shape == (1,)


def test_l2_svm_separates_separable_data_and_hard_negatives_grow():
    generator = torch.Generator().manual_seed(0)
    positives = torch.randn(20, 5, generator=generator) + torch.tensor([3.0, 0, 0, 0, 0])
    negatives = torch.randn(500, 5, generator=generator) - torch.tensor([3.0, 0, 0, 0, 0])
    x = torch.cat([positives, negatives])
    y = torch.cat([torch.ones(20), -torch.ones(500)])
    w, b = rcnn.train_l2_svm(x, y, lam=1e-3)
    assert w.shape == (5,) and b.shape == () and w.dtype == torch.float32
    assert torch.equal(torch.sign(x @ w + b), y)
    w2, b2 = rcnn.train_l2_svm(x, y, lam=1e-3)
    assert torch.equal(w, w2) and torch.equal(b, b2)  # deterministic
    w, b, sizes = rcnn.train_svm_with_hard_negatives(positives, negatives, rounds=3, first=50, per_round=100)
    assert sizes[0] == 50 and sizes == sorted(sizes) and sizes[-1] <= 250
    assert torch.equal(torch.sign(x @ w + b), y)


def test_stage_timer_adds_up_stages():
    timer = rcnn.StageTimer()
    for _ in range(2):
        with timer("a"):
            pass
        with timer("b"):
            sum(range(1000))
    assert list(timer.seconds) == ["a", "b"] and all(v >= 0 for v in timer.seconds.values())


def test_warped_regions_of_a_course_image_are_its_pixels():
    image, target = make_scene(0, 0)
    box = target["boxes"][:1]
    x1, y1, x2, y2 = [int(v) for v in box[0]]
    crop = rcnn.warp_regions(image, box, size=max(x2 - x1, y2 - y1))
    if (x2 - x1) == (y2 - y1):  # a square box at its own size is copied exactly
        assert torch.allclose(crop[0], image[:, y1:y2, x1:x2], atol=1e-5)
    assert crop.shape[1:] == (3, max(x2 - x1, y2 - y1), max(x2 - x1, y2 - y1))
