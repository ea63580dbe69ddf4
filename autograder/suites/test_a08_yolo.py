"""Hidden suite for a08-yolo: non-maximum suppression (plain and per category), YOLOv1's targets,
loss and decoding."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autograder.checks import expect
from autograder.suites.support import (GRADING, expect_close, expect_fast, expect_tensor_like, expect_unchanged,
                                       generator, noncontiguous, random_boxes)

FUNCTIONS = {"nms": "nms", "batched_nms": "batched-nms", "yolo_targets": "yolo-targets", "yolo_loss": "yolo-loss",
             "decode_yolo": "decode-yolo"}
BANNED = {"nms": ["torchvision.ops"], "batched_nms": ["torchvision.ops"], "yolo_targets": ["torchvision.ops"],
          "yolo_loss": ["torchvision.ops"], "decode_yolo": ["torchvision.ops"]}

NMS_HINT = ("sort by decreasing score (equal scores: lower index first), keep the best box, drop every later box "
            "whose IoU with it is strictly greater than the threshold, repeat with the next box still there")


def expect_same_indices(got, want, what: str, hint: str) -> None:
    """Kept indices: int64, on the right device, the same set in the same order."""
    expect(isinstance(got, torch.Tensor) and got.dim() == 1,
           f"{what} must be a one-dimensional torch.Tensor of indices, not {getattr(got, 'shape', type(got).__name__)}")
    expect(got.dtype == torch.int64, f"{what} has dtype {got.dtype} where torch.int64 indices were expected")
    expect(got.device.type == want.device.type, f"{what} is on {got.device.type}, not on the boxes' device")
    got, want = got.cpu().tolist(), want.cpu().tolist()
    if sorted(got) == sorted(want):
        expect(got == want, f"{what}: the right boxes are kept but not in the right order: results are ordered by "
                            "decreasing score, equal scores by index")
    else:
        missing, extra = len(set(want) - set(got)), len(set(got) - set(want))
        expect(False, f"{what}: {missing} box(es) that should be kept are missing and {extra} should have been "
                      f"suppressed; {hint}")


# nms ------------------------------------------------------------------------------------------

@st.composite
def nms_cases(draw, max_boxes=300):
    """(seed, n, scale, dtype, degenerate fraction, threshold)."""
    return (draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, max_boxes)), draw(st.sampled_from([1.0, 50.0, 1000.0])),
            draw(st.sampled_from([torch.float32, torch.float64])), draw(st.sampled_from([0.0, 0.1])),
            draw(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0])))


def nms_inputs(case, device):
    seed, n, scale, dtype, degenerate, threshold = case
    g = generator(seed)
    boxes = random_boxes(g, n, scale, dtype, degenerate, device)
    scores = torch.rand(n, generator=g, dtype=torch.float64).to(dtype).to(device)
    return boxes, scores, threshold


@pytest.mark.function("nms")
@pytest.mark.points(2)
@GRADING
@given(nms_cases())
def test_nms_of_random_boxes(student, reference, device, case):
    boxes, scores, threshold = nms_inputs(case, device)
    got = student.call("nms", boxes, scores, threshold,
                       failure=f"nms failed on {len(boxes)} boxes at threshold {threshold} ({{error}}): {NMS_HINT}")
    expect_same_indices(got, reference.nms(boxes, scores, threshold),
                        f"nms of {len(boxes)} boxes at threshold {threshold}", NMS_HINT)


@pytest.mark.function("nms")
@pytest.mark.points(1)
def test_nms_threshold_is_strict_and_ties_keep_index_order(student, reference, device):
    # Whole-number boxes with IoUs of exactly 1/2, 3/5 and 3/4 (and 1/3, 2/3) between neighbours, and tied scores.
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 0.0, 6.0, 4.0], [0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 4.0, 6.0],
                          [1.0, 0.0, 5.0, 4.0], [20.0, 20.0, 24.0, 24.0], [20.0, 20.0, 24.0, 24.0]], device=device)
    scores = torch.tensor([0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.5], device=device)
    for threshold in (0.25, 0.5, 0.75):  # thresholds that float32 holds exactly
        expect_same_indices(student.nms(boxes, scores, threshold), reference.nms(boxes, scores, threshold),
                            f"nms of boxes with IoUs exactly at the threshold {threshold} and tied scores",
                            "a box at exactly the threshold is kept (only IoU > threshold suppresses); of equal "
                            "scores the lower index comes first")


@pytest.mark.function("nms")
@pytest.mark.points(1)
def test_nms_edge_cases_and_inputs(student, reference, device):
    empty = torch.zeros(0, 4, device=device)
    expect_same_indices(student.nms(empty, torch.zeros(0, device=device), 0.5),
                        reference.nms(empty, torch.zeros(0, device=device), 0.5), "nms of no boxes",
                        "no boxes give an empty int64 tensor")
    one = torch.tensor([[1.0, 2.0, 3.0, 4.0]], device=device)
    expect_same_indices(student.nms(one, torch.tensor([0.3], device=device), 0.5),
                        reference.nms(one, torch.tensor([0.3], device=device), 0.5), "nms of one box", "it is kept")
    g = generator(21)
    boxes = random_boxes(g, 60, 40.0, torch.float32, device=device)
    scores = torch.rand(60, generator=g).to(device)
    expect_same_indices(student.nms(noncontiguous(boxes), scores, 0.4), reference.nms(boxes, scores, 0.4),
                        "nms of boxes stored non-contiguously", NMS_HINT + " (and do not assume a contiguous layout)")
    expect_unchanged(student, "nms")
    expect_same_indices(student.nms(boxes.double(), scores.double(), 0.4), reference.nms(boxes.double(), scores.double(), 0.4),
                        "nms of float64 boxes", NMS_HINT)
    large = torch.tensor([[285.35, 185.58, 1193.51, 851.46], [285.15, 188.74, 1192.50, 851.07],
                          [279.24, 197.98, 1189.47, 849.20], [10.0, 20.0, 300.0, 330.0]], device=device).half()
    half_scores = torch.tensor([0.637, 0.757, 0.397, 0.5], device=device).half()
    expect_same_indices(student.nms(large, half_scores, 0.2), reference.nms(large, half_scores, 0.2),
                        "nms of float16 boxes whose areas exceed float16's range",
                        "compute the IoU of float16 boxes in float32: an area of 600,000 square pixels is beyond "
                        "float16's largest number, 65504, and inf / inf is nan")


@pytest.mark.function("nms")
@pytest.mark.points(1)
def test_nms_speed(student, reference):
    def large(g):
        corner = torch.rand(5000, 2, generator=g) * 800
        boxes = torch.cat([corner, corner + 4 + torch.rand(5000, 2, generator=g) * 100], 1)
        return boxes, torch.rand(5000, generator=g), 0.5

    # The reference runs within 1.0-1.8x torchvision's compiled nms (bench/nms.py). On this input the
    # textbook answer (one IoU matrix, a Python loop over the kept boxes) takes about 14 times the
    # reference and a Python loop over pairs of boxes about 100 times: 40 leaves both sides a wide margin.
    expect_fast(student, reference, "nms", large, factor=40, seed=22,
                hint="compute IoUs with tensor operations on many boxes at once and let each kept box drop all "
                     "the boxes it overlaps in one step, not a Python loop over pairs of boxes")


# batched_nms ----------------------------------------------------------------------------------

@pytest.mark.function("batched_nms")
@pytest.mark.points(2)
@GRADING
@given(nms_cases(), st.integers(1, 6))
def test_batched_nms_of_random_boxes(student, reference, device, case, categories):
    # float64: torchvision's coordinate-offset trick must not flip a comparison at the threshold
    boxes, scores, threshold = nms_inputs(case[:3] + (torch.float64,) + case[4:], device)
    idxs = torch.randint(0, categories, (len(boxes),), generator=generator(case[0] + 1)).to(device) * 3 + 1
    got = student.call("batched_nms", boxes, scores, idxs, threshold,
                       failure=f"batched_nms failed on {len(boxes)} boxes of {categories} categories ({{error}})")
    expect_same_indices(got, reference.batched_nms(boxes, scores, idxs, threshold),
                        f"batched_nms of {len(boxes)} boxes in {categories} categories at threshold {threshold}",
                        "boxes of different categories never suppress each other; within a category, " + NMS_HINT +
                        "; all kept boxes together by decreasing score")


@pytest.mark.function("batched_nms")
@pytest.mark.points(1)
def test_batched_nms_edge_cases_and_inputs(student, reference, device):
    same_place = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 4 + [[1.0, 1.0, 11.0, 11.0]], device=device)
    scores = torch.tensor([0.5, 0.9, 0.7, 0.8, 0.95], device=device)
    idxs = torch.tensor([7, 100, 7, 3, 100], device=device)
    expect_same_indices(student.batched_nms(same_place, scores, idxs, 0.5),
                        reference.batched_nms(same_place, scores, idxs, 0.5),
                        "batched_nms of overlapping boxes in categories 7, 100 and 3",
                        "categories are any integers; each category keeps its own best box; the result is "
                        "ordered by score across categories")
    expect_unchanged(student, "batched_nms")
    empty = torch.zeros(0, 4, device=device)
    expect_same_indices(student.batched_nms(empty, torch.zeros(0, device=device),
                                            torch.zeros(0, dtype=torch.long, device=device), 0.5),
                        reference.batched_nms(empty, torch.zeros(0, device=device),
                                              torch.zeros(0, dtype=torch.long, device=device), 0.5),
                        "batched_nms of no boxes", "no boxes give an empty int64 tensor")
    g = generator(23)
    boxes = random_boxes(g, 80, 30.0, torch.float32, device=device)
    scores = torch.rand(80, generator=g).to(device)
    one = torch.zeros(80, dtype=torch.long, device=device)
    expect_same_indices(student.batched_nms(boxes, scores, one, 0.3), reference.batched_nms(boxes, scores, one, 0.3),
                        "batched_nms with a single category", "with one category it is plain NMS")


# yolo_targets ---------------------------------------------------------------------------------

def objects(g, count, classes, dtype=torch.float64):
    """float[count, 4] boxes in image fractions (inside [0, 1]) and int64[count] labels."""
    corner = torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.9
    size = 0.02 + torch.rand(count, 2, generator=g, dtype=torch.float64) * 0.6
    boxes = torch.cat([corner, (corner + size).clamp(max=1.0)], 1).to(dtype)
    return boxes, torch.randint(0, classes, (count,), generator=g)


TARGET_HINT = ("the cell of the centre is row min(floor(cy S), S - 1), column min(floor(cx S), S - 1); it holds "
               "(cx S - j, cy S - i, x2 - x1, y2 - y1, 1, one-hot label); the first object wins a shared cell; "
               "every other cell is zeros")


@pytest.mark.function("yolo_targets")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 7), st.integers(1, 5), st.integers(0, 10),
       st.sampled_from([torch.float32, torch.float64]))
def test_yolo_targets_of_random_objects(student, reference, device, seed, S, C, count, dtype):
    boxes, labels = objects(generator(seed), count, C, dtype)
    args = (boxes.to(device), labels.to(device), S, C)
    got = student.call("yolo_targets", *args, failure=f"yolo_targets failed for {count} objects on a {S} x {S} grid "
                                                      f"({{error}}): {TARGET_HINT}")
    expect_close(got, reference.yolo_targets(*args), f"yolo_targets of {count} objects, S = {S}, C = {C}",
                 TARGET_HINT, atol=1e-6)


@pytest.mark.function("yolo_targets")
@pytest.mark.points(1)
def test_yolo_targets_shared_cells_and_edges(student, reference, device):
    boxes = torch.tensor([[0.6, 0.6, 0.8, 0.9], [0.55, 0.5, 0.95, 1.0], [0.0, 0.0, 1.0, 1.0], [0.4, 0.4, 0.6, 0.6],
                          [0.9, 0.2, 1.0, 0.3], [0.0, 0.8, 0.1, 1.0], [1.0, 0.4, 1.0, 0.6], [0.3, 1.0, 0.5, 1.0]],
                         dtype=torch.float64, device=device)  # the last two: flat boxes on the right and bottom edges
    labels = torch.tensor([1, 2, 0, 2, 1, 0, 1, 2], device=device)
    for S in (2, 4, 5):
        got = student.call("yolo_targets", boxes, labels, S, 3,
                           failure=f"yolo_targets failed for objects on the image's edges ({{error}}): {TARGET_HINT}")
        expect_close(got, reference.yolo_targets(boxes, labels, S, 3),
                     f"objects sharing cells and centres on cell borders (S = {S})",
                     "a centre exactly on a border belongs to the cell below / to the right (floor), except on the "
                     "image's right or bottom edge: row min(floor(cy S), S - 1), column min(floor(cx S), S - 1); when "
                     "centres share a cell the first object in boxes wins",
                     atol=1e-12)
    expect_unchanged(student, "yolo_targets")


@pytest.mark.function("yolo_targets")
@pytest.mark.points(1)
def test_yolo_targets_without_objects(student, reference, device):
    empty = (torch.zeros(0, 4, device=device), torch.zeros(0, dtype=torch.long, device=device), 7, 20)
    expect_close(student.yolo_targets(*empty), reference.yolo_targets(*empty), "yolo_targets of an image without objects",
                 "an image without objects has an all-zero float[S, S, 5 + C] target", atol=0)


# yolo_loss ------------------------------------------------------------------------------------

def loss_case(seed, n, S, B, C, dtype=torch.float64, empty=False):
    g = generator(seed)
    targets = []
    for _ in range(n):
        count = 0 if empty else int(torch.randint(0, 6, (1,), generator=g))
        targets.append(objects(g, count, C))
    pred = (0.02 + torch.rand(n, S, S, B * 5 + C, generator=g, dtype=torch.float64) * 0.96).to(dtype)
    return pred, targets


def stacked_targets(reference, targets, S, C, device):
    return torch.stack([reference.yolo_targets(b.to(device), l.to(device), S, C) for b, l in targets])


LOSS_HINT = ("the responsible box of an object's cell has the largest IoU with the target box (ties: lower index); "
             "lambda_coord times its squared x, y, sqrt(w), sqrt(h) errors, plus (c - 1)^2; lambda_noobj c^2 for "
             "every other box; squared class errors once per object cell; the sum divided by the batch size N")


@pytest.mark.function("yolo_loss")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(1, 5), st.integers(1, 3), st.integers(1, 4),
       st.sampled_from([(5.0, 0.5), (1.0, 1.0), (2.0, 0.1)]))
def test_yolo_loss_of_random_predictions(student, reference, device, seed, n, S, B, C, lambdas):
    pred, targets = loss_case(seed, n, S, B, C)
    pred = pred.to(device)
    target = stacked_targets(reference, targets, S, C, device)
    got = student.call("yolo_loss", pred, target, *lambdas,
                       failure=f"yolo_loss failed for N = {n}, S = {S}, B = {B}, C = {C} ({{error}}): {LOSS_HINT}")
    expect_close(got, reference.yolo_loss(pred, target, *lambdas),
                 f"yolo_loss with N = {n}, S = {S}, B = {B}, C = {C}, lambda_coord {lambdas[0]}, "
                 f"lambda_noobj {lambdas[1]}", LOSS_HINT, atol=1e-9)


@pytest.mark.function("yolo_loss")
@pytest.mark.points(1)
def test_yolo_loss_responsible_box_by_iou(student, reference, device):
    S, C = 2, 2
    target = reference.yolo_targets(torch.tensor([[0.1, 0.1, 0.4, 0.4], [0.55, 0.5, 0.95, 0.9]], dtype=torch.float64,
                                                 device=device), torch.tensor([0, 1], device=device), S, C)[None]
    pred = torch.full((1, S, S, 3 * 5 + C), 0.3, dtype=torch.float64, device=device)
    pred[0, 0, 0, :15] = torch.tensor([0.5, 0.5, 0.1, 0.1, 0.95, 0.5, 0.5, 0.28, 0.32, 0.2, 0.5, 0.5, 0.6, 0.6, 0.9])
    pred[0, 1, 1, :15] = torch.tensor([0.5, 0.5, 0.4, 0.4, 0.1, 0.5, 0.5, 0.4, 0.4, 0.9, 0.5, 0.5, 0.4, 0.4, 0.4])
    expect_close(student.yolo_loss(pred, target, 5.0, 0.5), reference.yolo_loss(pred, target, 5.0, 0.5),
                 "the loss when the box with the largest IoU is not the most confident one, and when boxes tie",
                 "the responsible box is the one with the largest IoU with the target, whatever its confidence; of "
                 "boxes with equal IoU the first", atol=1e-12)
    expect_unchanged(student, "yolo_loss")


@pytest.mark.function("yolo_loss")
@pytest.mark.points(1)
def test_yolo_loss_gradient(student, reference, device):
    S, B, C = 3, 2, 3
    pred, targets = loss_case(31, 2, S, B, C)
    pred = pred.to(device)
    target = stacked_targets(reference, targets, S, C, device)
    probe = {"kind": "backward", "wrt": [0], "grad_output": torch.tensor(1.0, dtype=torch.float64)}
    got = student.call("yolo_loss", pred, target, 5.0, 0.5, probe=probe,
                       failure="the gradient of yolo_loss could not be computed ({error}): build the loss from pred "
                               "with differentiable operations")
    want = reference.call("yolo_loss", pred, target, 5.0, 0.5, probe=probe)
    expect_close(got[1][0], want[1][0], "the gradient of yolo_loss with respect to pred",
                 "only the responsible box's coordinates get a coordinate gradient; every box's confidence gets one; "
                 "class probabilities only in object cells; " + LOSS_HINT, atol=1e-10)


@pytest.mark.function("yolo_loss")
@pytest.mark.points(1)
def test_yolo_loss_without_objects_and_batch_normalisation(student, reference, device):
    pred, targets = loss_case(32, 3, 4, 2, 2, empty=True)
    pred, target = pred.to(device), stacked_targets(reference, targets, 4, 2, device)
    expect_close(student.yolo_loss(pred, target, 5.0, 0.5), reference.yolo_loss(pred, target, 5.0, 0.5),
                 "the loss of a batch without objects", "only lambda_noobj c^2 for every box, divided by N", atol=1e-10)
    pred, targets = loss_case(33, 1, 4, 2, 2)
    pred, target = pred.to(device), stacked_targets(reference, targets, 4, 2, device)
    double_pred, double_target = torch.cat([pred, pred]), torch.cat([target, target])
    expect_close(student.yolo_loss(double_pred, double_target, 5.0, 0.5), reference.yolo_loss(pred, target, 5.0, 0.5),
                 "the loss of a batch holding the same image twice", "the sum over the batch is divided by the batch "
                 "size N, so two copies of an image have the loss of one", atol=1e-10)
    expect_close(student.yolo_loss(pred.float(), target.float(), 5.0, 0.5),
                 reference.yolo_loss(pred.float(), target.float(), 5.0, 0.5), "the loss of float32 predictions",
                 "the loss takes pred's dtype", atol=1e-5)


# decode_yolo ----------------------------------------------------------------------------------

DECODE_HINT = ("score = confidence x the largest class probability (label = its class, the first of equal ones); "
               "centre ((j + x) / S, (i + y) / S), corners centre -/+ (w / 2, h / 2) clipped to [0, 1]; keep "
               "score > conf_threshold; batched_nms by label; highest score first")


@pytest.mark.function("decode_yolo")
@pytest.mark.points(2)
@GRADING
@given(st.integers(0, 2**31 - 1), st.integers(1, 7), st.integers(1, 3), st.integers(1, 4),
       st.sampled_from([0.0, 0.05, 0.2, 0.5]), st.sampled_from([0.3, 0.5, 0.7]))
def test_decode_yolo_of_random_predictions(student, reference, device, seed, S, B, C, conf, iou):
    pred = torch.rand(S, S, B * 5 + C, generator=generator(seed)).to(device)
    got = student.call("decode_yolo", pred, conf, iou, B,
                       failure=f"decode_yolo failed for S = {S}, B = {B}, C = {C} ({{error}}): {DECODE_HINT}")
    want = reference.decode_yolo(pred, conf, iou, B)
    expect(isinstance(got, (tuple, list)) and len(got) == 3, "decode_yolo must return a tuple (boxes, scores, labels)")
    what = f"decode_yolo with S = {S}, B = {B}, C = {C}, conf_threshold {conf}, iou_threshold {iou}"
    expect_close(got[1], want[1], f"the scores of {what}", DECODE_HINT, atol=1e-6)
    expect_close(got[0], want[0], f"the boxes of {what}", DECODE_HINT, atol=1e-6)
    expect_close(got[2], want[2], f"the labels of {what}", DECODE_HINT, atol=0)


@pytest.mark.function("decode_yolo")
@pytest.mark.points(1)
def test_decode_yolo_edges_dtypes_and_nothing_found(student, reference, device):
    pred = torch.rand(3, 3, 2 * 5 + 2, generator=generator(34), dtype=torch.float64).to(device)
    pred[0, 0, :4] = torch.tensor([0.05, 0.1, 0.9, 0.95])  # a big box in a corner cell: clipped at 0
    pred[..., 10:] = torch.tensor([0.6, 0.6], dtype=torch.float64)  # equal class probabilities everywhere
    got = student.call("decode_yolo", pred, 0.1, 0.5, 2, failure="decode_yolo failed: {error}")
    want = reference.decode_yolo(pred, 0.1, 0.5, 2)
    for index, part in enumerate(("boxes", "scores", "labels")):
        expect_close(got[index], want[index], f"the {part} of a float64 prediction with boxes crossing the image's "
                     "edge and equal class probabilities", DECODE_HINT, atol=1e-10)
    expect_unchanged(student, "decode_yolo")
    nothing = student.call("decode_yolo", pred, 0.99, 0.5, 2, failure="decode_yolo failed when nothing is above the "
                                                                       "threshold: {error}")
    want = reference.decode_yolo(pred, 0.99, 0.5, 2)
    for index, part in enumerate(("boxes", "scores", "labels")):
        expect_tensor_like(nothing[index], want[index], f"the {part} when no score is above the threshold")
