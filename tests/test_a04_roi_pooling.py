"""Proofs for a04-roi-pooling: the reference equals torchvision's roi_pool (forward and gradient),
adaptive max pooling and fastrcnn_loss; plausible wrong answers lose points on the test that names
the mistake; right answers written differently (padded sections instead of a sparse table, masks
instead of index arithmetic) earn full marks."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection.roi_heads import fastrcnn_loss

from coursetools.reference import load_reference
from tests.proofs import assert_full_marks, assert_mistakes_are_named, graded_together

ASSIGNMENT = "a04-roi-pooling"
REF = load_reference(ASSIGNMENT)
PROPERTY = settings(derandomize=True, max_examples=80, deadline=None, database=None)


def pooling_case(seed, n, c, h, w, k, half, ties, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    if ties:
        x = torch.randint(0, 3, (n, c, h, w), generator=g).to(dtype)
    else:
        x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64).to(dtype)
    corner = torch.rand(k, 2, generator=g, dtype=torch.float64) * 40 - 8
    boxes = torch.cat([corner, corner + torch.rand(k, 2, generator=g, dtype=torch.float64) * 30], 1)
    if half:
        boxes = boxes.floor() + 0.5
    index = torch.randint(0, n, (k, 1), generator=g).to(torch.float64)
    return x, torch.cat([index, boxes], 1).to(dtype)


POOLING = (st.integers(0, 10**6), st.integers(1, 3), st.integers(1, 3), st.integers(1, 16), st.integers(1, 16),
           st.integers(0, 20), st.sampled_from([1, 2, 3, 7, (2, 5)]), st.sampled_from([1.0, 0.5, 0.25, 0.6]),
           st.booleans(), st.booleans())


@PROPERTY
@given(*POOLING)
def test_roi_pool_equals_torchvision_forward_and_gradient(seed, n, c, h, w, k, size, scale, half, ties):
    x, boxes = pooling_case(seed, n, c, h, w, k, half, ties)
    leaf, oracle_leaf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, want = REF.roi_pool(leaf, boxes, size, scale), torchvision.ops.roi_pool(oracle_leaf, boxes, size, scale)
    assert torch.equal(got, want)
    upstream = torch.randn(want.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert torch.equal(torch.autograd.grad(got, leaf, upstream)[0], torch.autograd.grad(want, oracle_leaf, upstream)[0])


@PROPERTY
@given(*POOLING)
def test_roi_pool_function_equals_torchvision(seed, n, c, h, w, k, size, scale, half, ties):
    x, boxes = pooling_case(seed, n, c, h, w, k, half, ties)
    leaf, oracle_leaf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = REF.RoIPoolFunction.apply(leaf, boxes, size, scale)
    want = torchvision.ops.roi_pool(oracle_leaf, boxes, size, scale)
    assert torch.equal(got, want)
    upstream = torch.randn(want.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert torch.equal(torch.autograd.grad(got, leaf, upstream)[0], torch.autograd.grad(want, oracle_leaf, upstream)[0])


def test_roi_pool_function_passes_gradcheck_and_float32_equals_torchvision():
    x, boxes = pooling_case(3, 2, 2, 9, 8, 8, False, False)
    assert torch.autograd.gradcheck(lambda z: REF.RoIPoolFunction.apply(z, boxes, (2, 3), 0.5),
                                    (x.requires_grad_(True),))
    x, boxes = pooling_case(4, 2, 5, 30, 30, 50, False, False, torch.float32)
    assert torch.equal(REF.roi_pool(x, boxes, 7, 1 / 16 * 16), torchvision.ops.roi_pool(x, boxes, 7, 1.0))


def test_the_slides_worked_example_of_roi_pooling():
    """An 8 x 8 map, a region of 5 x 7 cells, a 2 x 2 output: sections of 2 and 3 rows, 3 and 4 columns
    (the example of the slides' ROI pooling pages, with numbers of our own)."""
    x = torch.arange(64.0).view(1, 1, 8, 8) % 13
    boxes = torch.tensor([[0.0, 0, 3, 6, 7]])  # columns 0..6, rows 3..7
    sections = [x[0, 0, 3:6, 0:4], x[0, 0, 3:6, 3:7], x[0, 0, 5:8, 0:4], x[0, 0, 5:8, 3:7]]
    want = torch.tensor([s.max() for s in sections]).view(1, 1, 2, 2)
    assert torch.equal(REF.roi_pool(x, boxes, 2), want)
    assert torch.equal(torchvision.ops.roi_pool(x, boxes, 2), want)


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 40), st.integers(1, 40),
       st.lists(st.integers(1, 8), min_size=1, max_size=4))
def test_spatial_pyramid_pool_equals_adaptive_max_pooling(seed, h, w, levels):
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    got = REF.spatial_pyramid_pool(x, tuple(levels))
    assert torch.equal(got, torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in levels], 1))
    assert REF.spatial_pyramid_pool(x).shape == (2, 3 * 21)  # SPP-net's 4 x 4 + 2 x 2 + 1 x 1 bins


@PROPERTY
@given(st.integers(0, 10**6), st.integers(0, 80), st.integers(1, 8))
def test_fast_rcnn_loss_equals_torchvision(seed, n, classes):
    g = torch.Generator().manual_seed(seed)
    logits, deltas = torch.randn(n, classes + 1, generator=g), torch.randn(n, 4 * (classes + 1), generator=g)
    labels, targets = torch.randint(0, classes + 1, (n,), generator=g), torch.randn(n, 4, generator=g)
    got, want = REF.fast_rcnn_loss(logits, deltas, labels, targets), fastrcnn_loss(logits, deltas, [labels], [targets])
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-6, equal_nan=True)


# Wrong answers lose points where their mistake is named -----------------------------------------

# A student's roi_pool: every section padded to the largest, gathered, masked, maxed. The wrong
# answers change one passage of it.
POOL = '''
def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    h, w = (output_size, output_size) if isinstance(output_size, int) else output_size
    n, c, H, W = input.shape
    k = len(boxes)
    s = boxes[:, 1:] * spatial_scale
    q = {round}
    x1, y1, x2, y2 = q.unbind(1)
    rh, rw = {size}
    i = torch.arange(h, device=input.device)
    j = torch.arange(w, device=input.device)
    hs = (torch.floor(i * (rh.to(input.dtype) / h)[:, None]).long() + y1[:, None]){clip_h}
    he = (torch.ceil((i + 1) * (rh.to(input.dtype) / h)[:, None]).long() + y1[:, None]){clip_h}
    ws = (torch.floor(j * (rw.to(input.dtype) / w)[:, None]).long() + x1[:, None]){clip_w}
    we = (torch.ceil((j + 1) * (rw.to(input.dtype) / w)[:, None]).long() + x1[:, None]){clip_w}
    mh = max(int((he - hs).max()), 1) if k else 1
    mw = max(int((we - ws).max()), 1) if k else 1
    rows = hs[:, :, None] + torch.arange(mh, device=input.device)
    cols = ws[:, :, None] + torch.arange(mw, device=input.device)
    valid = ((rows < he[..., None]) & (rows >= 0))[:, :, None, :, None] & \\
            ((cols < we[..., None]) & (cols >= 0))[:, None, :, None, :]
    cells = rows.clamp(0, H - 1)[:, :, None, :, None] * W + cols.clamp(0, W - 1)[:, None, :, None, :]
    flat = input.permute(0, 2, 3, 1).reshape(n, H * W, c)
    gathered = flat[boxes[:, 0].long()[:, None], cells.reshape(k, h * w * mh * mw)].reshape(k, h, w, mh * mw, c)
    gathered = gathered.masked_fill(~valid.reshape(k, h, w, mh * mw, 1), float("-inf"))
    pooled = {reduce}
    pooled = pooled.masked_fill(~valid.reshape(k, h, w, mh * mw).any(-1, keepdim=True), 0)
    return pooled.permute(0, 3, 1, 2)
'''
POOL_PARTS = dict(round="torch.where(s >= 0, torch.floor(s + 0.5), torch.ceil(s - 0.5)).long()",
                  size="(y2 - y1 + 1).clamp(min=1), (x2 - x1 + 1).clamp(min=1)",
                  clip_h=".clamp(0, H)", clip_w=".clamp(0, W)", reduce="gathered.max(dim=3).values")


def pool(**changes):
    return POOL.format(**{**POOL_PARTS, **changes})


# A student's RoIPoolFunction: the same padded sections, switches from torch.max, a scatter back.
FUNCTION = '''
class RoIPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, boxes, output_size, spatial_scale=1.0):
        h, w = (output_size, output_size) if isinstance(output_size, int) else output_size
        n, c, H, W = input.shape
        k = len(boxes)
        s = boxes[:, 1:] * spatial_scale
        x1, y1, x2, y2 = torch.where(s >= 0, torch.floor(s + 0.5), torch.ceil(s - 0.5)).long().unbind(1)
        rh, rw = (y2 - y1 + 1).clamp(min=1), (x2 - x1 + 1).clamp(min=1)
        i, j = torch.arange(h, device=input.device), torch.arange(w, device=input.device)
        hs = (torch.floor(i * (rh.to(input.dtype) / h)[:, None]).long() + y1[:, None]).clamp(0, H)
        he = (torch.ceil((i + 1) * (rh.to(input.dtype) / h)[:, None]).long() + y1[:, None]).clamp(0, H)
        ws = (torch.floor(j * (rw.to(input.dtype) / w)[:, None]).long() + x1[:, None]).clamp(0, W)
        we = (torch.ceil((j + 1) * (rw.to(input.dtype) / w)[:, None]).long() + x1[:, None]).clamp(0, W)
        mh = max(int((he - hs).max()), 1) if k else 1
        mw = max(int((we - ws).max()), 1) if k else 1
        rows = hs[:, :, None] + torch.arange(mh, device=input.device)
        cols = ws[:, :, None] + torch.arange(mw, device=input.device)
        valid = (rows < he[..., None])[:, :, None, :, None] & (cols < we[..., None])[:, None, :, None, :]
        cells = (rows.clamp(max=H - 1)[:, :, None, :, None] * W + cols.clamp(max=W - 1)[:, None, :, None, :])
        cells = cells.reshape(k, h, w, mh * mw)
        image = boxes[:, 0].long()
        flat = input.permute(0, 2, 3, 1).reshape(n, H * W, c)
        gathered = flat[image[:, None], cells.reshape(k, h * w * mh * mw)].reshape(k, h, w, mh * mw, c)
        gathered = gathered.masked_fill(~valid.reshape(k, h, w, mh * mw, 1), float("-inf"))
        {argmax}
        switch = cells.gather(3, which)  # k, h, w, c
        empty = ~valid.reshape(k, h, w, mh * mw).any(-1, keepdim=True)
        {empty}
        ctx.save_for_backward(image, switch, empty)
        ctx.shape = input.shape
        return pooled.masked_fill(empty, 0).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_output):
        image, switch, empty = ctx.saved_tensors
        n, c, H, W = ctx.shape
        g = grad_output.permute(0, 2, 3, 1).masked_fill(empty, 0)
        where = image[:, None, None, None] * (H * W) + switch
        grad = grad_output.new_zeros(n * H * W, c)
        channel = torch.arange(c, device=g.device).expand_as(where)
        {scatter}
        return grad.view(n, H, W, c).permute(0, 3, 1, 2), None, None, None
'''
FUNCTION_PARTS = dict(argmax="pooled, which = gathered.max(dim=3)", empty="",
                      scatter="grad.index_put_((where.flatten(), channel.flatten()), g.flatten(), accumulate=True)")


def function(**changes):
    return FUNCTION.format(**{**FUNCTION_PARTS, **changes})


SPP = '''
def spatial_pyramid_pool(features, levels=(4, 2, 1)):
    n, c, H, W = features.shape
    out = []
    for b in {levels}:
        i = torch.arange(b, device=features.device)
        {bins}
        rows = torch.arange(H, device=features.device)
        cols = torch.arange(W, device=features.device)
        in_row = (rows >= r0[:, None]) & (rows < r1[:, None])
        in_col = (cols >= c0[:, None]) & (cols < c1[:, None])
        grid = features[:, :, None, None].masked_fill(~(in_row[:, None, :, None] & in_col[None, :, None, :]),
                                                      float("-inf"))
        pooled = grid.amax(dim=(-2, -1))  # n, c, b, b
        out.append({flatten})
    return torch.cat(out, dim=1)
'''
SPP_PARTS = dict(levels="levels",
                 bins="r0, r1 = (i * H) // b, ((i + 1) * H + b - 1) // b\n        c0, c1 = (i * W) // b, ((i + 1) * W + b - 1) // b",
                 flatten="pooled.flatten(1)")


def spp(**changes):
    return SPP.format(**{**SPP_PARTS, **changes})


LOSS = '''
def fast_rcnn_loss(class_logits, box_regression, labels, regression_targets):
    classification = F.cross_entropy(class_logits, labels)
    n = len(labels)
    positive = {positive}
    deltas = box_regression.reshape(n, -1, 4) if n else box_regression.reshape(0, 1, 4)
    chosen = {chosen}
    d = chosen - regression_targets[positive]
    beta = {beta}
    loss = torch.where(d.abs() < beta, 0.5 * d ** 2 / beta, d.abs() - 0.5 * beta).sum()
    return classification, {normalise}
'''
LOSS_PARTS = dict(positive="labels > 0", chosen="deltas[positive, labels[positive]]", beta="1 / 9",
                  normalise="loss / n if n else loss * float('nan')")


def loss(**changes):
    return LOSS.format(**{**LOSS_PARTS, **changes})


WRONG = {
    # roi_pool
    "torch.round rounds halves to even": ("roi-pool", pool(round="torch.round(s).long()"), "away from zero", ()),
    "the box's end cell left out": ("roi-pool", pool(size="(y2 - y1).clamp(min=1), (x2 - x1).clamp(min=1)"),
                                    "sections from floor", ()),
    "sections not clipped to the map": ("roi-pool", pool(clip_h="", clip_w=""), "outside the map give 0", ()),
    "amax shares the gradient of tied maxima": ("roi-pool", pool(reduce="gathered.amax(dim=3)"),
                                                "first of them in row-major order", ()),
    "a loop over regions and sections": ("roi-pool", '''
def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    h, w = (output_size, output_size) if isinstance(output_size, int) else output_size
    H, W = input.shape[-2:]
    out = input.new_zeros(len(boxes), input.shape[1], h, w)
    for r, (b, *box) in enumerate(boxes.tolist()):
        x1, y1, x2, y2 = [int(math.floor(v * spatial_scale + 0.5)) if v >= 0 else -int(math.floor(-v * spatial_scale + 0.5)) for v in box]
        rh, rw = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        for i in range(h):
            for j in range(w):
                r0 = min(max(y1 + math.floor(i * rh / h), 0), H)
                r1 = min(max(y1 + math.ceil((i + 1) * rh / h), 0), H)
                c0 = min(max(x1 + math.floor(j * rw / w), 0), W)
                c1 = min(max(x1 + math.ceil((j + 1) * rw / w), 0), W)
                if r1 > r0 and c1 > c0:
                    out[r, :, i, j] = input[int(b), :, r0:r1, c0:c1].amax(dim=(1, 2))
    return out
''', "a training step also runs the backward pass", ()),
    # RoIPoolFunction
    "gradients of shared switches overwritten": ("roi-pool-function", function(
        scatter="grad.index_put_((where.flatten(), channel.flatten()), g.flatten())"), "switches add up", ()),
    "empty sections send their gradient to cell 0": ("roi-pool-function", function(
        empty="empty = torch.zeros_like(empty)"), "empty sections send nothing", ()),
    "the last of tied maxima as the switch": ("roi-pool-function", function(
        argmax="pooled, last = gathered.flip(3).max(dim=3)\n        which = gathered.shape[3] - 1 - last"),
        "first maximal cell in row-major order", ()),
    "autograd does the backward": ("roi-pool-function", '''
class RoIPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, boxes, output_size, spatial_scale=1.0):
        ctx.save_for_backward(input, boxes)
        ctx.args = (output_size, spatial_scale)
        return roi_pool(input, boxes, output_size, spatial_scale)

    @staticmethod
    def backward(ctx, grad_output):
        input, boxes = ctx.saved_tensors
        with torch.enable_grad():
            leaf = input.detach().requires_grad_(True)
            grad, = torch.autograd.grad(roi_pool(leaf, boxes, *ctx.args), leaf, grad_output)
        return grad, None, None, None
''', "does not allow", ()),
    # spatial_pyramid_pool
    "SPP-net's window and stride": ("spatial-pyramid-pool", spp(
        bins="size, stride = -(-H // b), H // b\n        r0, r1 = i * stride, i * stride + size\n"
             "        size, stride = -(-W // b), W // b\n        c0, c1 = i * stride, i * stride + size"),
        "bin i of n along a side a covers", ()),
    "levels in sorted order": ("spatial-pyramid-pool", spp(levels="sorted(levels)"), "in their order", ()),
    "values ordered bin by bin": ("spatial-pyramid-pool", spp(flatten="pooled.permute(0, 2, 3, 1).flatten(1)"),
                                  "the order channel, bin row, bin column", ()),
    "floor at both ends": ("spatial-pyramid-pool", spp(
        bins="r0, r1 = (i * H) // b, torch.maximum((i + 1) * H // b, (i * H) // b + 1)\n"
             "        c0, c1 = (i * W) // b, torch.maximum((i + 1) * W // b, (i * W) // b + 1)"),
        "ceil((i + 1) a / n)", ()),
    # fast_rcnn_loss
    "box loss averaged over the foreground": ("fast-rcnn-loss", loss(normalise="loss / max(int(positive.sum()), 1)"),
                                              "number of all sampled regions", ()),
    "smooth L1 with beta 1": ("fast-rcnn-loss", loss(beta="1.0"), "beta = 1/9", ()),
    "deltas of class 0 for every region": ("fast-rcnn-loss", loss(chosen="deltas[positive, 0]"),
                                           "true class", ()),
    "background regions regressed too": ("fast-rcnn-loss", loss(positive="labels >= 0"), "foreground regions only", ()),
    "losses as Python floats": ("fast-rcnn-loss", '''
def fast_rcnn_loss(class_logits, box_regression, labels, regression_targets):
    n = len(labels)
    positive = labels > 0
    d = box_regression.reshape(n, -1, 4)[positive, labels[positive]] - regression_targets[positive]
    box = torch.where(d.abs() < 1 / 9, 4.5 * d ** 2, d.abs() - 1 / 18).sum() / n
    return F.cross_entropy(class_logits, labels).item(), box.item()
''', "must be a torch.Tensor", ()),
}

# The reference's RoIPoolFunction uses the helpers of its roi_pool cell: a wrong roi_pool keeps them.
MISTAKES = {name: (grade_id, REF.solution_source(grade_id) + "\n" + code if grade_id == "roi-pool" else code,
                   phrase, dependents) for name, (grade_id, code, phrase, dependents) in WRONG.items()}
SLOW = ["a loop over regions and sections"]

# The slow answers (the loops the speed checks stop) each in a group of their own.
GROUPS = graded_together(ASSIGNMENT, MISTAKES, apart=SLOW)


@pytest.mark.slow
@pytest.mark.parametrize("mistakes", GROUPS, ids=" + ".join)
def test_wrong_answers_lose_points_where_named(tmp_path, mistakes):
    assert_mistakes_are_named(ASSIGNMENT, tmp_path, MISTAKES, mistakes, timed=SLOW)


DIFFERENT_BUT_RIGHT = {"roi-pool": pool(), "roi-pool-function": function(), "spatial-pyramid-pool": spp(),
                       "fast-rcnn-loss": loss()}


@pytest.mark.slow
def test_right_answers_written_differently_earn_full_marks(tmp_path):
    assert_full_marks(ASSIGNMENT, tmp_path, DIFFERENT_BUT_RIGHT)
