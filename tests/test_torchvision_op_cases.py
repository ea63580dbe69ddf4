"""The cases of torchvision's own tests of its box and ROI ops (test/test_ops.py: TestBoxArea,
TestBoxIou, TestRoiPool, TestRoIAlign, TestNMS), run on the course's references of the graded
functions that have those ops as twins: a02's box_area and box_iou, a04's roi_pool (and its
explicit-backward RoIPoolFunction), a06's roi_align, a08's nms and batched_nms.

The oracle is torchvision itself, on the same inputs: forward values in float64 (1e-12) or in the
case's dtype with torchvision's tolerances, gradients by torch.autograd.gradcheck in float64,
contiguous and permuted inputs, float16/32/64 where torchvision computes them, boxes off the map,
zero boxes, degenerate boxes, and the inputs torchvision refuses. Where torchvision's CPU kernel
has no float16 (nms), the float32 result of the same boxes is the oracle, as in torchvision's own
GPU test. Where torchvision itself would overflow (int8 coordinates whose differences leave int8),
exact integer arithmetic in float64 is."""
import pytest
import torch
import torchvision
from torch.autograd import gradcheck
from torchvision import ops

from coursetools.reference import load_reference

BOXES = load_reference("a02-proposals")
POOL = load_reference("a04-roi-pooling")
ALIGN = load_reference("a06-roi-align")
YOLO = load_reference("a08-yolo")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# The boxes of torchvision's TestBoxArea and TestBoxIou.
INT_BOXES = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300], [0, 0, 25, 25]]
INT_BOXES2 = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300]]
FLOAT_BOXES = [[285.3538, 185.5758, 1193.5110, 851.4551], [285.1472, 188.7374, 1192.4984, 851.0669],
               [279.2440, 197.9812, 1189.4746, 849.2019]]


def exact_areas(boxes: torch.Tensor) -> torch.Tensor:
    b = boxes.double()
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def exact_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    a, b = boxes1.double(), boxes2.double()
    wh = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (exact_areas(a)[:, None] + exact_areas(b)[None] - inter)


# box_area ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64])
def test_box_area_of_integer_boxes_is_widened_like_torchvision(dtype):
    boxes = torch.tensor([[0, 0, 100, 100], [0, 0, 0, 0]], dtype=dtype)
    got, want = BOXES.box_area(boxes), ops.box_area(boxes)
    assert got.dtype == want.dtype == (torch.int64 if dtype == torch.int64 else torch.int32)
    assert got.tolist() == want.tolist() == [10000, 0]  # not 16, which int8 arithmetic gives


def test_box_area_of_int16_boxes_beyond_int16():
    boxes = torch.tensor([[0, 0, 200, 200], [50, 50, 250, 250]], dtype=torch.int16)
    assert BOXES.box_area(boxes).tolist() == ops.box_area(boxes).tolist() == [40000, 40000]  # not -25536


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_area_of_float_boxes(dtype):
    boxes = torch.tensor(FLOAT_BOXES, dtype=dtype)
    got = BOXES.box_area(boxes)
    assert got.dtype == dtype and torch.equal(got, ops.box_area(boxes))
    assert torch.allclose(got.double(), torch.tensor([604723.0806, 600965.4666, 592761.0085], dtype=torch.float64),
                          rtol=0, atol=1e-4 if dtype == torch.float64 else 0.1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_box_area_of_half_precision_boxes_in_float32(dtype):
    boxes = torch.tensor([[2.825, 1.8625, 3.90, 4.85], [2.825, 4.875, 19.20, 5.10], [2.925, 1.80, 8.90, 4.90]],
                         dtype=dtype)
    got, want = BOXES.box_area(boxes), ops.box_area(boxes)
    assert got.dtype == want.dtype == torch.float32 and torch.equal(got, want)
    big = torch.tensor(FLOAT_BOXES, dtype=dtype)  # areas of about 600,000: beyond float16's 65504
    assert torch.isfinite(BOXES.box_area(big)).all() and torch.equal(BOXES.box_area(big), ops.box_area(big))


@pytest.mark.parametrize("device", DEVICES)
def test_box_area_empty_and_non_contiguous(device):
    empty = torch.zeros(0, 4, device=device)
    assert BOXES.box_area(empty).shape == (0,) and BOXES.box_area(empty).device.type == device
    boxes = torch.tensor(FLOAT_BOXES, dtype=torch.float64, device=device)
    strided = torch.zeros(3, 8, dtype=torch.float64, device=device)
    strided[:, ::2] = boxes
    assert not strided[:, ::2].is_contiguous()
    assert torch.equal(BOXES.box_area(strided[:, ::2]), ops.box_area(boxes))


@pytest.mark.parametrize("shape", [(3,), (3, 5), (3, 2), (2, 3, 4)])
def test_box_area_refuses_what_is_not_n_by_4(shape):
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        BOXES.box_area(torch.ones(shape))


# box_iou ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.int64])
def test_box_iou_of_integer_boxes(dtype):
    a, b = torch.tensor(INT_BOXES, dtype=dtype), torch.tensor(INT_BOXES2, dtype=dtype)
    expected = torch.tensor([[1.0, 0.25, 0.0], [0.25, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0625, 0.25, 0.0]])
    got = BOXES.box_iou(a, b)
    assert got.dtype == torch.float32 and torch.allclose(got, expected, rtol=0, atol=1e-4)
    assert torch.allclose(got, ops.box_iou(a, b), rtol=0, atol=1e-7)


SMALL_INTEGER_BOXES = {  # corners the type holds, areas and intersections it does not
    torch.int8: ([[0, 0, 120, 120], [0, 0, 100, 110], [-50, -60, 70, 10]], [[30, 30, 127, 127], [0, 0, 120, 120]]),
    torch.uint8: ([[0, 0, 200, 200], [0, 0, 180, 190], [10, 20, 110, 70]], [[50, 50, 250, 250], [0, 0, 200, 200]]),
    torch.int16: ([[0, 0, 200, 200], [0, 0, 180, 190], [-150, -20, 110, 300]], [[50, 50, 250, 250], [0, 0, 200, 200]]),
}


@pytest.mark.parametrize("dtype", list(SMALL_INTEGER_BOXES), ids=str)
def test_box_iou_of_small_integer_boxes_does_not_wrap(dtype):
    a, b = (torch.tensor(boxes, dtype=dtype) for boxes in SMALL_INTEGER_BOXES[dtype])
    got = BOXES.box_iou(a, b)
    assert got.dtype == torch.float32 and torch.allclose(got.double(), exact_iou(a, b), rtol=0, atol=1e-6)
    assert (got >= 0).all() and (got <= 1).all()
    assert torch.equal(BOXES.box_area(a).long(), exact_areas(a).long())


def test_box_iou_of_the_issue_int16_pair():
    a = torch.tensor([[0, 0, 200, 200]], dtype=torch.int16)
    b = torch.tensor([[50, 50, 250, 250]], dtype=torch.int16)
    assert torch.allclose(BOXES.box_iou(a, b), ops.box_iou(a, b))
    assert abs(BOXES.box_iou(a, b).item() - 22500 / 57500) < 1e-6  # not -2.80


@pytest.mark.parametrize("dtype, atol", [(torch.float16, 0.002), (torch.bfloat16, 0.01), (torch.float32, 1e-3),
                                         (torch.float64, 1e-3)])
def test_box_iou_of_float_boxes(dtype, atol):
    boxes = torch.tensor(FLOAT_BOXES, dtype=dtype)
    expected = torch.tensor([[1.0, 0.9933, 0.9673], [0.9933, 1.0, 0.9737], [0.9673, 0.9737, 1.0]])
    got = BOXES.box_iou(boxes, boxes)
    assert got.dtype == (dtype if dtype in (torch.float32, torch.float64) else torch.float32)
    assert torch.allclose(got.float(), expected, rtol=0, atol=atol)
    if dtype in (torch.float32, torch.float64):
        assert torch.allclose(got, ops.box_iou(boxes, boxes), rtol=0, atol=1e-6)
    else:  # the reference widens the corners before subtracting; torchvision subtracts them in half
        # precision first (its IoU of a box with itself is then 1.0009): both within its test's tolerance
        assert torch.allclose(got, ops.box_iou(boxes, boxes), rtol=0, atol=2 * atol)
        assert torch.allclose(got.double(), exact_iou(boxes, boxes), rtol=0, atol=1e-6)
        assert torch.equal(got.diagonal(), torch.ones(3))


def test_box_iou_equals_the_iou_of_each_pair():
    g = torch.Generator().manual_seed(0)
    corners = torch.rand(12, 2, generator=g)
    boxes = torch.cat([corners, corners + torch.rand(12, 2, generator=g)], 1)
    a, b = boxes[:5], boxes[5:]
    pairwise = torch.tensor([[BOXES.box_iou(a[i:i + 1], b[j:j + 1]).item() for j in range(7)] for i in range(5)])
    assert torch.allclose(BOXES.box_iou(a, b), pairwise) and torch.allclose(BOXES.box_iou(a, b), ops.box_iou(a, b))


@pytest.mark.parametrize("n, m", [(0, 3), (3, 0), (0, 0)])
def test_box_iou_of_empty_sets(n, m):
    a, b = torch.tensor(FLOAT_BOXES)[:n], torch.tensor(FLOAT_BOXES)[:m]
    got = BOXES.box_iou(a, b)
    assert got.shape == ops.box_iou(a, b).shape == (n, m)


def test_box_iou_refuses_what_is_not_n_by_4():
    with pytest.raises(ValueError, match="boxes1"):
        BOXES.box_iou(torch.ones(2, 5), torch.ones(3, 4))
    with pytest.raises(ValueError, match="boxes2"):
        BOXES.box_iou(torch.ones(2, 4), torch.ones(4))


# roi_pool and roi_align: TestRoiPool and TestRoIAlign -------------------------------------------

ROIS = [[0, 0, 0, 9, 9], [0, 0, 5, 4, 9], [0, 5, 5, 9, 9], [1, 0, 0, 9, 9]]  # torchvision's test_forward regions
POOL_FUNCTIONS = {"roi_pool": POOL.roi_pool, "RoIPoolFunction": POOL.RoIPoolFunction.apply}


def pooled(name, x, rois, size, scale=1.0, ratio=-1, aligned=False):
    if name == "roi_align":
        return ALIGN.roi_align(x, rois, size, scale, ratio, aligned)
    return POOL_FUNCTIONS[name](x, rois, size, scale)


def torchvision_pooled(name, x, rois, size, scale=1.0, ratio=-1, aligned=False):
    if name == "roi_align":
        return ops.roi_align(x, rois, size, scale, ratio, aligned)
    return ops.roi_pool(x, rois, size, scale)


POOLERS = [("roi_pool", False), ("RoIPoolFunction", False), ("roi_align", False), ("roi_align", True)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name, aligned", POOLERS)
def test_forward_of_torchvisions_regions(name, aligned, dtype, contiguous, device):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 50, 10, 10, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    if not contiguous:
        x = x.permute(0, 1, 3, 2)
    rois = torch.tensor(ROIS, dtype=dtype, device=device)
    got = pooled(name, x, rois, (5, 5), 1.0, -1, aligned)
    want = torchvision_pooled(name, x, rois, (5, 5), 1.0, -1, aligned)
    assert got.dtype == want.dtype == dtype and got.shape == want.shape == (4, 50, 5, 5)
    tolerance = 4e-3 if dtype == torch.float16 else 1e-5
    assert torch.allclose(got.double(), want.double(), rtol=tolerance, atol=tolerance)
    if dtype == torch.float64:  # and exactly, where no rounding is involved
        assert torch.allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("name, aligned", POOLERS)
def test_gradcheck_in_float64(name, aligned, seed, contiguous, device):
    torch.manual_seed(seed)
    x = torch.rand(1, 8, 5, 5, dtype=torch.float64, device=device, requires_grad=True)
    if not contiguous:
        x = x.permute(0, 1, 3, 2)
    rois = torch.tensor([[0, 0, 0, 4, 4], [0, 0, 2, 3, 4], [0, 2, 2, 4, 4]], dtype=torch.float64, device=device)
    assert gradcheck(lambda z: pooled(name, z, rois, 2, 1.0, 1, aligned), (x,), atol=1e-5)


@pytest.mark.parametrize("name, aligned", POOLERS)
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_boxes_off_the_map_and_degenerate_boxes(name, aligned, scale):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    rois = torch.tensor([[0, -20, -20, -5, -5],      # wholly above and left of the map
                         [1, 30, 30, 60, 60],        # wholly below and right of it
                         [0, -6, 2, 4, 12],          # half off the map
                         [1, 3, 3, 3, 3],            # a point: zero width and height
                         [0, 2, 5, 7, 5],            # zero height
                         [1, 6, 6, 2, 7],            # inverted: x2 < x1
                         [0, 0, 0, 32, 32]],         # the whole map and more
                        dtype=torch.float64)
    if name == "roi_align" and aligned:
        rois = rois[rois[:, 3] >= rois[:, 1]]  # torchvision asks for a negative number of samples here
    leaf, oracle = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, want = pooled(name, leaf, rois, (2, 3), scale, -1, aligned), torchvision_pooled(name, oracle, rois, (2, 3),
                                                                                          scale, -1, aligned)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    upstream = torch.randn(want.shape, generator=g, dtype=torch.float64)
    assert torch.allclose(torch.autograd.grad(got, leaf, upstream)[0], torch.autograd.grad(want, oracle, upstream)[0],
                          rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, aligned", POOLERS)
def test_zero_boxes_keep_the_graph(name, aligned, device):
    x = torch.rand(2, 3, 6, 7, device=device, requires_grad=True)
    rois = torch.zeros(0, 5, device=device)
    got, want = pooled(name, x, rois, (2, 3), 0.5, 2, aligned), torchvision_pooled(name, x, rois, (2, 3), 0.5, 2,
                                                                                   aligned)
    assert got.shape == want.shape == (0, 3, 2, 3) and got.dtype == want.dtype
    assert got.requires_grad and want.requires_grad  # a backward pass through them works...
    grad, = torch.autograd.grad(got.sum(), x)
    assert torch.equal(grad, torch.zeros_like(x))  # ...and gives zero gradients


@pytest.mark.parametrize("name, aligned", POOLERS)
def test_boxes_that_are_not_k_by_5_are_refused(name, aligned):
    x = torch.linspace(1, 64, 64).reshape(1, 1, 8, 8)
    for boxes in (torch.tensor([[0.0, 0.0, 3.0, 3.0]]), torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0, 1.0]]),
                  torch.tensor([0.0, 0.0, 0.0, 3.0, 3.0])):
        with pytest.raises((AssertionError, IndexError)):  # torchvision's check_roi_boxes_shape
            torchvision_pooled(name, x, boxes, (2, 2), 1.0, -1, aligned)
        with pytest.raises(ValueError, match=r"\[K, 5\]"):
            pooled(name, x, boxes, (2, 2), 1.0, -1, aligned)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        pooled(name, x[0], torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]]), (2, 2), 1.0, -1, aligned)


# nms and batched_nms: TestNMS -------------------------------------------------------------------

def boxes_with_an_iou_at_the_threshold(seed, n, iou_threshold):
    """n random boxes; the last is the first one widened until its IoU with it just exceeds the
    threshold, so that it must be suppressed (torchvision's _create_tensors_with_iou, rewritten)."""
    g = torch.Generator().manual_seed(seed)
    boxes = torch.rand(n, 4, generator=g) * 100
    boxes[:, 2:] += boxes[:, :2]
    boxes[-1] = boxes[0]
    x1, _, x2, _ = boxes[-1].tolist()
    target = iou_threshold + 1e-5
    boxes[-1, 2] += (x2 - x1) * (1 - target) / target
    return boxes, torch.rand(n, generator=g)


def greedy_nms(boxes, scores, threshold):
    """The definition, one box at a time, in float64."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    iou = exact_iou(boxes, boxes)
    kept = []
    for i in order:
        if all(iou[i, k] <= threshold for k in kept):
            kept.append(i)
    return torch.tensor(kept, dtype=torch.int64)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("iou", [0.2, 0.5, 0.8])
def test_nms_of_boxes_at_the_threshold(iou, seed):
    boxes, scores = boxes_with_an_iou_at_the_threshold(seed, 1000, iou)
    got = YOLO.nms(boxes, scores, iou)
    assert got.dtype == torch.int64 and torch.equal(got, ops.nms(boxes, scores, iou))
    assert torch.equal(got, greedy_nms(boxes, scores, iou))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_nms_layout_and_device(contiguous, device):
    boxes, scores = boxes_with_an_iou_at_the_threshold(3, 500, 0.5)
    want = ops.nms(boxes, scores, 0.5)
    boxes, scores = boxes.to(device), scores.to(device)
    if not contiguous:
        boxes = boxes.T.contiguous().T
        assert not boxes.is_contiguous()
    got = YOLO.nms(boxes, scores, 0.5)
    assert got.device.type == device and torch.equal(got.cpu(), want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nms_of_half_precision_boxes_computes_the_iou_in_float32(dtype):
    # torchvision's test_nms_float16 (its CPU kernel has no float16; its GPU one agrees with float32).
    boxes = torch.tensor(FLOAT_BOXES)
    scores = torch.tensor([0.6370, 0.7569, 0.3966])
    keep32 = ops.nms(boxes, scores, 0.2)
    assert torch.equal(YOLO.nms(boxes.to(dtype), scores.to(dtype), 0.2), keep32)
    with pytest.raises(RuntimeError):
        ops.nms(boxes.half(), scores.half(), 0.2)
    # Many large boxes: the same as their float32 copies (those hold the float16 values exactly).
    big, big_scores = boxes_with_an_iou_at_the_threshold(5, 300, 0.5)
    big, big_scores = (big * 8).to(dtype), big_scores.to(dtype)
    assert torch.equal(YOLO.nms(big, big_scores, 0.5), ops.nms(big.float(), big_scores.float(), 0.5))


@pytest.mark.parametrize("boxes, scores", [((4,), (3,)), ((3, 5), (3,)), ((3, 4), (3, 2)), ((3, 4), (4,))])
def test_nms_input_errors(boxes, scores):
    with pytest.raises(RuntimeError):
        ops.nms(torch.rand(boxes), torch.rand(scores), 0.5)
    with pytest.raises(ValueError):
        YOLO.nms(torch.rand(boxes), torch.rand(scores), 0.5)


@pytest.mark.parametrize("seed", range(10))
def test_batched_nms_equals_both_torchvision_implementations(seed):
    torch.manual_seed(seed)
    boxes = torch.cat((torch.rand(1000, 2), torch.rand(1000, 2) + 10), dim=1)
    scores = torch.rand(1000)
    idxs = torch.randint(0, 4, size=(1000,))
    got = YOLO.batched_nms(boxes, scores, idxs, 0.9)
    assert torch.equal(got, ops.boxes._batched_nms_vanilla(boxes, scores, idxs, 0.9))
    assert torch.equal(got, ops.boxes._batched_nms_coordinate_trick(boxes, scores, idxs, 0.9))
    assert torch.equal(got, ops.batched_nms(boxes, scores, idxs, 0.9))


def test_batched_nms_of_nothing_and_its_input_errors():
    empty = YOLO.batched_nms(torch.empty(0, 4), torch.empty(0), torch.empty(0, dtype=torch.int64), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    for boxes, scores, idxs in [((3, 4), (3,), (2,)), ((3, 5), (3,), (3,)), ((3, 4), (2,), (3,))]:
        with pytest.raises(RuntimeError):
            ops.batched_nms(torch.rand(boxes), torch.rand(scores), torch.randint(0, 2, idxs), 0.5)
        with pytest.raises(ValueError):
            YOLO.batched_nms(torch.rand(boxes), torch.rand(scores), torch.randint(0, 2, idxs), 0.5)
