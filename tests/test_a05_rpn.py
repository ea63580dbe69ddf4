"""Proofs for a05-rpn: the reference equals torchvision (AnchorGenerator, RPNHead with its
initialisation, Matcher, BalancedPositiveNegativeSampler, RegionProposalNetwork's compute_loss and
filter_proposals, and a whole RegionProposalNetwork assembled from the reference's parts); plausible
wrong answers lose points on the test that names the mistake; right answers written differently
(torchvision's BoxCoder and box ops, loops over ground truths, masks built by scatter) earn full
marks."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder, Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead, concat_box_prediction_layers
from torchvision.ops import box_iou

from coursetools.reference import load_reference
from tests.proofs import assert_full_marks, assert_mistakes_are_named, graded_together

ASSIGNMENT = "a05-rpn"
REF = load_reference(ASSIGNMENT)
PROPERTY = settings(derandomize=True, max_examples=80, deadline=None, database=None)


def torchvision_anchors(image_size, feature_sizes, sizes, ratios, dtype=torch.float32):
    """AnchorGenerator's anchors for one image and several feature maps (one size tuple per map)."""
    images = ImageList(torch.zeros(1, 3, *image_size, dtype=dtype), [tuple(image_size)])
    maps = [torch.zeros(1, 1, *f, dtype=dtype) for f in feature_sizes]
    return AnchorGenerator(tuple(sizes), (tuple(ratios),) * len(sizes))(images, maps)[0]


SIZES = st.lists(st.sampled_from([8, 16, 32, 33, 45, 64, 100, 128, 181, 256, 512]), min_size=1, max_size=4, unique=True)
RATIOS = st.lists(st.sampled_from([0.25, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0]), min_size=1, max_size=4, unique=True)


@PROPERTY
@given(st.integers(8, 1200), st.integers(8, 1200), st.integers(1, 60), st.integers(1, 60), SIZES, RATIOS,
       st.sampled_from([torch.float32, torch.float64]))
def test_generate_anchors_equals_anchor_generator(height, width, rows, columns, sizes, ratios, dtype):
    feature = (min(rows, height), min(columns, width))
    want = torchvision_anchors((height, width), [feature], [sizes], ratios, dtype)
    assert torch.equal(REF.generate_anchors((height, width), feature, sizes, ratios, dtype=dtype), want)


def test_generate_anchors_of_a_feature_pyramid_equal_anchor_generator():
    # FPN: one size per level, 3 ratios, levels concatenated in order (torchvision's fasterrcnn_resnet50_fpn).
    image, levels = (800, 1216), [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)]
    sizes = [(32,), (64,), (128,), (256,), (512,)]
    want = torchvision_anchors(image, levels, sizes, (0.5, 1.0, 2.0))
    got = torch.cat([REF.generate_anchors(image, f, s, (0.5, 1.0, 2.0)) for f, s in zip(levels, sizes)])
    assert torch.equal(got, want)
    # The slides' 9 anchors on an 800 x 800 image with a stride-16 map: 50 x 50 x 9.
    slides = REF.generate_anchors((800, 800), (50, 50), (128, 256, 512), (0.5, 1.0, 2.0))
    assert slides.shape == (22500, 4)
    assert slides[:9].tolist() == [[-91, -45, 91, 45], [-181, -91, 181, 91], [-362, -181, 362, 181],
                                   [-64, -64, 64, 64], [-128, -128, 128, 128], [-256, -256, 256, 256],
                                   [-45, -91, 45, 91], [-91, -181, 91, 181], [-181, -362, 181, 362]]


def test_rpn_head_is_torchvisions_with_the_same_seed():
    for channels, anchors in ((16, 9), (3, 1), (64, 15)):
        torch.manual_seed(channels)
        mine = REF.RPNHead(channels, anchors)
        torch.manual_seed(channels)
        theirs = RPNHead(channels, anchors)
        # The same parameters in the same order, drawn from the same random stream: the same values.
        assert list(mine.state_dict()) == list(theirs.state_dict())
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
        g = torch.Generator().manual_seed(1)
        features = [torch.randn(2, channels, 7, 9, generator=g), torch.randn(2, channels, 3, 4, generator=g)]
        got, want = mine(features), theirs(features)
        assert all(torch.equal(a, b) for a, b in zip(got[0] + got[1], want[0] + want[1]))
        sum(t.sum() for t in got[0] + got[1]).backward()
        sum(t.sum() for t in want[0] + want[1]).backward()
        assert all(torch.equal(a.grad, b.grad) for a, b in zip(mine.parameters(), theirs.parameters()))


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 8), st.integers(1, 300), st.sampled_from([(0.7, 0.3), (0.5, 0.4),
                                                                                          (0.5, 0.5), (0.6, 0.0)]),
       st.booleans(), st.booleans())
def test_match_anchors_equals_matcher(seed, m, n, thresholds, low_quality, quantised):
    g = torch.Generator().manual_seed(seed)
    iou = torch.rand(m, n, generator=g, dtype=torch.float64) ** 2
    if quantised:  # many ties, within and across rows, and exact threshold values
        iou = (iou * 10).floor() / 10
    want = Matcher(*thresholds, allow_low_quality_matches=low_quality)(iou.clone())
    assert torch.equal(REF.match_anchors(iou, *thresholds, low_quality), want)


def test_match_anchors_on_real_anchors_equals_matcher_and_raises_when_empty():
    anchors = REF.generate_anchors((128, 128), (16, 16), (16, 32, 64), (0.5, 1.0, 2.0))
    truths = torch.tensor([[10.0, 12.0, 50.0, 40.0], [60.0, 60.0, 70.0, 118.0], [0.0, 0.0, 128.0, 128.0]])
    iou = box_iou(truths, anchors)
    assert torch.equal(REF.match_anchors(iou, 0.7, 0.3, True), Matcher(0.7, 0.3, True)(iou.clone()))
    for shape in ((0, 5), (3, 0)):
        with pytest.raises(ValueError):
            Matcher(0.7, 0.3, True)(torch.zeros(shape))
        with pytest.raises(ValueError):
            REF.match_anchors(torch.zeros(shape), 0.7, 0.3, True)


@PROPERTY
@given(st.integers(0, 10**6), st.integers(0, 400), st.integers(0, 800), st.integers(0, 50),
       st.sampled_from([1, 16, 64, 256, 512]), st.sampled_from([0.5, 0.25, 0.1, 1.0, 0.0]))
def test_sample_anchors_draws_what_torchvisions_sampler_draws(seed, positives, negatives, ignored, batch, fraction):
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.ones(positives), torch.zeros(negatives), -torch.ones(ignored)])
    labels = labels[torch.randperm(len(labels), generator=g)]
    torch.manual_seed(seed)
    want_positive, want_negative = BalancedPositiveNegativeSampler(batch, fraction)([labels])
    torch.manual_seed(seed)
    positive, negative = REF.sample_anchors(labels, batch, fraction)
    # The same random stream, consumed the same way: the very same sample.
    assert torch.equal(positive, want_positive[0].bool()) and torch.equal(negative, want_negative[0].bool())


def rpn(pre=2000, post=2000, nms_thresh=0.7, score_thresh=0.0, head=None, anchor_generator=None,
        batch=256, fraction=0.5):
    return RegionProposalNetwork(anchor_generator, head, 0.7, 0.3, batch, fraction, {"training": pre, "testing": pre},
                                 {"training": post, "testing": post}, nms_thresh, score_thresh)


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 600), st.sampled_from([torch.float32, torch.float64]))
def test_rpn_loss_equals_compute_loss(seed, n, dtype):
    g = torch.Generator().manual_seed(seed)
    objectness = torch.randn(n, generator=g, dtype=dtype) * 2
    deltas = torch.randn(n, 4, generator=g, dtype=dtype) * 0.3
    targets = torch.randn(n, 4, generator=g, dtype=dtype) * 0.3
    labels = torch.randint(-1, 2, (n,), generator=g).to(dtype)
    torch.manual_seed(seed)
    want = rpn(batch=64).compute_loss(objectness[:, None], deltas, [labels], [targets])
    torch.manual_seed(seed)
    positive, negative = REF.sample_anchors(labels, 64, 0.5)
    got = REF.rpn_loss(objectness, deltas, labels, targets, positive, negative)
    if int((positive | negative).sum()) == 0:  # nothing sampled: nan, as torchvision
        assert all(torch.isnan(w) for w in want) and all(torch.isnan(v) and v.shape == () for v in got)
        return
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-6 if dtype == torch.float32 else 1e-12)


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 3000), st.integers(20, 600), st.integers(20, 600),
       st.sampled_from([5, 100, 1000, 5000]), st.sampled_from([1, 50, 1000]), st.sampled_from([0.3, 0.5, 0.7]),
       st.sampled_from([0.0, 0.3]), st.sampled_from([1e-3, 2.0]), st.booleans())
def test_filter_proposals_equals_region_proposal_network(seed, n, height, width, pre, post, nms_thresh, score_thresh,
                                                         min_size, training):
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=g) * torch.tensor([width, height]) * 1.2 - 20
    anchors = torch.cat([corner, corner + 4 + torch.rand(n, 2, generator=g) * 100], dim=1)
    logits = torch.randperm(n, generator=g).float() * (12.0 / n) - 6.0  # distinct scores: NMS's order is defined
    deltas = torch.randn(n, 4, generator=g) * 0.4
    deltas[torch.rand(n, generator=g) < 0.05, 2] = 6.0
    network = rpn(pre, post, nms_thresh, score_thresh).train(training)
    network.min_size = min_size
    proposals = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(deltas, [anchors]).view(1, -1, 4)
    want_boxes, want_scores = network.filter_proposals(proposals, logits[None], [(height, width)], [n])
    boxes, scores = REF.filter_proposals(anchors, logits, deltas, (height, width), pre, post, nms_thresh, score_thresh,
                                         min_size)
    assert torch.equal(boxes, want_boxes[0]) and torch.equal(scores, want_scores[0])


def test_an_rpn_of_the_reference_parts_equals_torchvisions():
    """The whole proposal network, one feature map: the reference's anchors, head, matching, sampling,
    loss and filtering give torchvision's RegionProposalNetwork's proposals and losses."""
    torch.manual_seed(0)
    generator = AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),))
    network = rpn(pre=300, post=50, head=RPNHead(8, 9), anchor_generator=generator, batch=64).train()
    images = ImageList(torch.zeros(2, 3, 128, 160), [(128, 160), (128, 160)])
    features = {"0": torch.randn(2, 8, 16, 20)}
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 50.0, 40.0], [60.0, 60.0, 90.0, 118.0]])},
               {"boxes": torch.tensor([[100.0, 10.0, 150.0, 70.0]])}]
    torch.manual_seed(1)
    want_boxes, want_losses = network(images, features, targets)

    head = REF.RPNHead(8, 9)
    head.load_state_dict(network.head.state_dict())
    logits, deltas = head(list(features.values()))
    objectness, box_deltas = concat_box_prediction_layers(logits, deltas)  # one row per anchor, anchors' order
    objectness, box_deltas = objectness.view(2, -1), box_deltas.view(2, -1, 4)
    anchors = REF.generate_anchors((128, 160), (16, 20), (16, 32, 64), (0.5, 1.0, 2.0))
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    torch.manual_seed(1)
    labels, regression_targets, samples = [], [], []
    for image, target in enumerate(targets):
        boxes, _ = REF.filter_proposals(anchors, objectness[image], box_deltas[image], (128, 160), 300, 50, 0.7)
        assert torch.equal(boxes, want_boxes[image])
        matches = REF.match_anchors(box_iou(target["boxes"], anchors), 0.7, 0.3, True)
        labels.append((matches >= 0).float() - (matches == -2).float())
        regression_targets.append(coder.encode_single(target["boxes"][matches.clamp(min=0)], anchors))
    for image in range(2):  # torchvision samples every image after matching them all
        samples.append(REF.sample_anchors(labels[image], 64, 0.5))
    got = REF.rpn_loss(objectness.flatten(), box_deltas.reshape(-1, 4), torch.cat(labels), torch.cat(regression_targets),
                       torch.cat([s[0] for s in samples]), torch.cat([s[1] for s in samples]))
    assert torch.allclose(got[0], want_losses["loss_objectness"], atol=1e-6)
    assert torch.allclose(got[1], want_losses["loss_rpn_box_reg"], atol=1e-6)


# Wrong answers lose points where their mistake is named -----------------------------------------

ANCHORS = '''
def generate_anchors(image_size, feature_size, sizes, aspect_ratios, dtype=torch.float32, device="cpu"):
    sizes = torch.as_tensor(sizes, dtype=torch.float32, device=device)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32, device=device)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = {ws}
    hs = {hs}
    base = {base}
    H, W = feature_size
    sy, sx = (image_size[0] // H if H else 0), (image_size[1] // W if W else 0)
    shift_y, shift_x = torch.meshgrid(torch.arange(H, device=device) * sy, torch.arange(W, device=device) * sx,
                                      indexing="ij")
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 4).to(dtype){centre}
    return {combine}
'''
ANCHORS_PARTS = dict(ws="(w_ratios[:, None] * sizes[None, :]).reshape(-1)",
                     hs="(h_ratios[:, None] * sizes[None, :]).reshape(-1)",
                     base="(torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round().to(dtype)", centre="",
                     combine="(shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)")


def anchors_answer(**changes):
    return ANCHORS.format(**{**ANCHORS_PARTS, **changes})


HEAD = '''
class RPNHead(nn.Module):
    def __init__(self, in_channels, num_anchors):
        super().__init__()
        {conv}
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * num_anchors, 1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                {init}
                nn.init.constant_(layer.bias, 0)

    def forward(self, x):
        logits, deltas = [], []
        for feature in x:
            t = {hidden}
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas
'''
HEAD_PARTS = dict(conv="self.conv = nn.Sequential(nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1), "
                       "nn.ReLU(inplace=True)))",
                  init="nn.init.normal_(layer.weight, std=0.01)", hidden="self.conv(feature)")


def head_answer(**changes):
    return HEAD.format(**{**HEAD_PARTS, **changes})


MATCH = '''
def match_anchors(iou, high_threshold, low_threshold, allow_low_quality_matches):
    if iou.numel() == 0:
        {empty}
    values, matches = iou.max(dim=0)
    result = matches.clone()
    result[{below}] = -1
    result[{between}] = -2
    if allow_low_quality_matches:
        best = iou.max(dim=1).values
        {restore}
    return result
'''
MATCH_PARTS = dict(empty='raise ValueError("nothing to match: no ground truth or no anchor")',
                   below="values < low_threshold", between="(values >= low_threshold) & (values < high_threshold)",
                   restore="anchors = torch.nonzero(iou == best[:, None])[:, 1]\n        result[anchors] = matches[anchors]")


def match_answer(**changes):
    return MATCH.format(**{**MATCH_PARTS, **changes})


MATCH_IN_A_LOOP = '''
def match_anchors(iou, high_threshold, low_threshold, allow_low_quality_matches):
    if iou.numel() == 0:
        raise ValueError("nothing to match")
    result = torch.empty(iou.shape[1], dtype=torch.long, device=iou.device)
    best_for_gt = iou.max(dim=1).values
    for n in range(iou.shape[1]):
        value, m = iou[:, n].max(dim=0)
        result[n] = m if value >= high_threshold else (-2 if value >= low_threshold else -1)
        if allow_low_quality_matches and bool((iou[:, n] == best_for_gt).any()):
            result[n] = m
    return result
'''

SAMPLE = '''
def sample_anchors(labels, batch_size_per_image, positive_fraction, generator=None):
    positive = torch.where({is_positive})[0]
    negative = torch.where(labels == 0)[0]
    num_pos = min(positive.numel(), int(batch_size_per_image * positive_fraction))
    num_neg = min(negative.numel(), {num_neg})
    pos = positive[{pick_pos}]
    neg = negative[torch.randperm(negative.numel(), generator=generator, device=labels.device)[:num_neg]]
    pos_mask = torch.zeros_like(labels, dtype=torch.bool)
    neg_mask = torch.zeros_like(labels, dtype=torch.bool)
    pos_mask[pos] = True
    neg_mask[neg] = True
    return pos_mask, neg_mask
'''
SAMPLE_PARTS = dict(is_positive="labels >= 1", num_neg="batch_size_per_image - num_pos",
                    pick_pos="torch.randperm(positive.numel(), generator=generator, device=labels.device)[:num_pos]")


def sample_answer(**changes):
    return SAMPLE.format(**{**SAMPLE_PARTS, **changes})


LOSS = '''
def rpn_loss(objectness, pred_bbox_deltas, labels, regression_targets, sampled_positive, sampled_negative):
    sampled = sampled_positive | sampled_negative
    n = int(sampled.sum())
    if n == 0:
        return {empty}
    objectness_loss = {objectness_loss}
    box_loss = F.smooth_l1_loss(pred_bbox_deltas[sampled_positive], regression_targets[sampled_positive],
                                beta={beta}, reduction="sum") / {norm}
    return objectness_loss, box_loss
'''
LOSS_PARTS = dict(empty="F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled]), "
                       "pred_bbox_deltas[sampled].sum() / n",
                  objectness_loss="F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled])",
                  beta="1 / 9", norm="n")


def loss_answer(**changes):
    return LOSS.format(**{**LOSS_PARTS, **changes})


FILTER = '''
def filter_proposals(anchors, objectness, bbox_deltas, image_size, pre_nms_top_n, post_nms_top_n, nms_thresh,
                     score_thresh=0.0, min_size=1e-3):
    from torchvision.models.detection._utils import BoxCoder
    from torchvision.ops import clip_boxes_to_image, nms, remove_small_boxes

    objectness, bbox_deltas = {detach}
    top = {top}
    boxes = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(bbox_deltas[top], anchors[top])
    scores = {scores}
    boxes = {clip}
    keep = remove_small_boxes(boxes, min_size)
    boxes, scores = boxes[keep], scores[keep]
    keep = torch.where(scores >= score_thresh)[0]
    boxes, scores = boxes[keep], scores[keep]
    keep = nms(boxes, scores, nms_thresh)[:post_nms_top_n]
    return boxes[keep], scores[keep]
'''
FILTER_PARTS = dict(detach="objectness.detach(), bbox_deltas.detach()",
                    top="objectness.topk(min(pre_nms_top_n, objectness.numel())).indices",
                    scores="torch.sigmoid(objectness[top])", clip="clip_boxes_to_image(boxes, image_size)")


def filter_answer(**changes):
    return FILTER.format(**{**FILTER_PARTS, **changes})


WRONG = {
    # generate_anchors
    "cell anchors size-major": ("generate-anchors", anchors_answer(
        ws="(w_ratios[None, :] * sizes[:, None]).reshape(-1)", hs="(h_ratios[None, :] * sizes[:, None]).reshape(-1)"),
        "ratio-major", ()),
    "aspect ratio taken as width / height": ("generate-anchors", anchors_answer(
        ws="(h_ratios[:, None] * sizes[None, :]).reshape(-1)", hs="(w_ratios[:, None] * sizes[None, :]).reshape(-1)"),
        "h = s sqrt(r)", ()),
    "corners not rounded": ("generate-anchors", anchors_answer(base="(torch.stack([-ws, -hs, ws, hs], dim=1) / 2).to(dtype)"),
                            "rounded with torch.round", ()),
    "anchors centred on the cell's centre": ("generate-anchors", anchors_answer(
        centre="\n    shifts = shifts + torch.tensor([sx, sy, sx, sy], dtype=dtype, device=device) / 2"),
        "shifts its anchors by (j s_x, i s_y", ()),
    "all locations of one cell anchor first": ("generate-anchors", anchors_answer(
        combine="(shifts[None, :, :] + base[:, None, :]).reshape(-1, 4)"), "the right anchors in the wrong order", ()),
    "a loop over locations": ("generate-anchors", anchors_answer(
        combine="torch.cat([s + base for s in shifts]) if len(shifts) else base[:0]"), "not in a loop over locations", ()),
    # RPNHead
    "a flat Sequential (conv.0 instead of conv.0.0)": ("rpn-head", head_answer(
        conv="self.conv = nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.ReLU(inplace=True))"),
        "torchvision's names and shapes", ()),
    "PyTorch's default initialisation": ("rpn-head", head_answer(init="pass"), "standard deviation 0.01", ()),
    "uniform initialisation with standard deviation 0.01": ("rpn-head", head_answer(
        init="nn.init.uniform_(layer.weight, -0.01 * 3 ** 0.5, 0.01 * 3 ** 0.5)"), "not a uniform one", ()),
    "no ReLU after the 3 x 3 conv": ("rpn-head", head_answer(hidden="self.conv[0][0](feature)"),
                                     "after the 3 x 3 conv and ReLU", ()),
    "no padding": ("rpn-head", head_answer(
        conv="self.conv = nn.Sequential(nn.Sequential(nn.Conv2d(in_channels, in_channels, 3), nn.ReLU(inplace=True)))"),
        "padding 1", ()),
    # match_anchors
    "low-quality anchors given the ground truth they are best for": ("match-anchors", match_answer(
        restore="gt, anchors = torch.nonzero(iou == best[:, None]).unbind(1)\n        result[anchors] = gt"),
        "matched to its own best one", ()),
    "one best anchor per ground truth (ties dropped)": ("match-anchors", match_answer(
        restore="anchors = iou.argmax(dim=1)\n        result[anchors] = matches[anchors]"), "whose best anchors tie", ()),
    "thresholds compared with > instead of >=": ("match-anchors", match_answer(
        below="values <= low_threshold", between="(values > low_threshold) & (values <= high_threshold)"),
        "exactly at the thresholds", ()),
    "-1 and -2 swapped": ("match-anchors", match_answer(below="(values >= low_threshold) & (values < high_threshold)",
                                                        between="values < low_threshold"), "-2 if >= low_threshold", ()),
    "no ground truth gives all negatives": ("match-anchors", match_answer(
        empty="return torch.full((iou.shape[1],), -1, dtype=torch.long, device=iou.device)"),
        "must raise a ValueError", ()),
    "a loop over anchors": ("match-anchors", MATCH_IN_A_LOOP, "not a loop over anchors", ()),
    # sample_anchors
    "only labels equal to 1 are positive": ("sample-anchors", sample_answer(is_positive="labels == 1"),
                                            "min(#positives, int(batch * fraction))", ()),
    "negatives always half the batch": ("sample-anchors", sample_answer(
        num_neg="batch_size_per_image - int(batch_size_per_image * positive_fraction)"), "negatives fill the rest", ()),
    "the first positives, not random ones": ("sample-anchors", sample_answer(pick_pos="torch.arange(num_pos)"),
                                             "every subset must be equally likely", ()),
    "positives drawn with replacement": ("sample-anchors", sample_answer(
        pick_pos="torch.randint(max(positive.numel(), 1), (num_pos,), generator=generator, device=labels.device)"),
        "min(#positives, int(batch * fraction))", ()),
    "the generator argument ignored for positives": ("sample-anchors", sample_answer(
        pick_pos="torch.randperm(positive.numel(), device=labels.device)[:num_pos]"), "seeded alike gave different", ()),
    # rpn_loss
    "box loss divided by the positives": ("rpn-loss", loss_answer(norm="max(int(sampled_positive.sum()), 1)"),
                                          "not the positives only", ()),
    "smooth L1 with beta 1": ("rpn-loss", loss_answer(beta="1.0"), "beta = 1/9", ()),
    "objectness averaged over every labelled anchor": ("rpn-loss", loss_answer(
        objectness_loss="F.binary_cross_entropy_with_logits(objectness[labels >= 0], labels[labels >= 0])"),
        "not over all anchors", ()),
    "0 when nothing is sampled": ("rpn-loss", loss_answer(empty="objectness.sum() * 0, pred_bbox_deltas.sum() * 0"),
                                  "must be nan", ()),
    "a constant nan when nothing is sampled": ("rpn-loss", loss_answer(
        empty="torch.tensor(float('nan')), torch.tensor(float('nan'))"), "still depend on the inputs", ()),
    # filter_proposals
    "pre_nms_top_n ignored": ("filter-proposals", filter_answer(top="torch.argsort(objectness, descending=True)"),
                              "pre_nms_top_n highest logits", ()),
    "image_size read as (width, height)": ("filter-proposals", filter_answer(
        clip="clip_boxes_to_image(boxes, tuple(image_size)[::-1])"), "image_size = (height, width)", ()),
    "raw logits as scores": ("filter-proposals", filter_answer(scores="objectness[top]"), "sigmoid of the logits", ()),
    "no clipping": ("filter-proposals", filter_answer(clip="boxes"), "x is clipped into", ()),
    "gradients not stopped": ("filter-proposals", filter_answer(detach="objectness, bbox_deltas"),
                              "carry no gradient", ()),
}

MISTAKES = WRONG
SLOW = ["a loop over anchors", "a loop over locations"]
# Named by a test that times the function and checks its empty inputs and gradients too.
NAMED_WHERE_TIMED = ["gradients not stopped", "no ground truth gives all negatives"]

# The slow answers (the loops the speed checks stop) each in a group of their own.
GROUPS = graded_together(ASSIGNMENT, MISTAKES, apart=SLOW)


@pytest.mark.slow
@pytest.mark.parametrize("mistakes", GROUPS, ids=" + ".join)
def test_wrong_answers_lose_points_where_named(tmp_path, mistakes):
    assert_mistakes_are_named(ASSIGNMENT, tmp_path, MISTAKES, mistakes, timed=SLOW + NAMED_WHERE_TIMED)


SAMPLE_BY_SCATTER = '''
def sample_anchors(labels, batch_size_per_image, positive_fraction, generator=None):
    flat = labels.reshape(-1)
    chosen = []
    budget = batch_size_per_image
    for is_kind, limit in ((flat >= 1, int(batch_size_per_image * positive_fraction)), (flat == 0, None)):
        indices = torch.nonzero(is_kind).flatten()
        count = min(indices.numel(), budget if limit is None else limit)
        keys = torch.rand(indices.numel(), generator=generator, device=labels.device)
        mask = torch.zeros(flat.shape, dtype=torch.bool, device=labels.device)
        mask.scatter_(0, indices[keys.argsort()[:count]], True)
        chosen.append(mask)
        budget -= count
    return chosen[0], chosen[1]
'''

MATCH_BY_GROUND_TRUTH = '''
def match_anchors(iou, high_threshold, low_threshold, allow_low_quality_matches):
    m, n = iou.shape
    if m == 0 or n == 0:
        raise ValueError(f"cannot match {m} ground truths with {n} anchors")
    best = torch.full((n,), -1.0, dtype=iou.dtype, device=iou.device)
    owner = torch.zeros(n, dtype=torch.long, device=iou.device)
    restore = torch.zeros(n, dtype=torch.bool, device=iou.device)
    for gt in range(m):  # one pass per ground truth; a strictly better IoU takes the anchor over
        better = iou[gt] > best
        best = torch.where(better, iou[gt], best)
        owner = torch.where(better, torch.full_like(owner, gt), owner)
        restore |= iou[gt] == iou[gt].max()
    labels = torch.where(best >= high_threshold, owner,
                         torch.where(best >= low_threshold, torch.full_like(owner, -2), torch.full_like(owner, -1)))
    return torch.where(restore & allow_low_quality_matches, owner, labels)
'''

FILTER_BY_HAND = '''
def filter_proposals(anchors, objectness, bbox_deltas, image_size, pre_nms_top_n, post_nms_top_n, nms_thresh,
                     score_thresh=0.0, min_size=1e-3):
    import torchvision
    with torch.no_grad():
        order = torch.argsort(objectness, descending=True)[:pre_nms_top_n]
        a, d = anchors[order], bbox_deltas[order]
        size = a[:, 2:] - a[:, :2]
        centre = a[:, :2] + size / 2 + d[:, :2] * size
        half = size * torch.exp(torch.clamp(d[:, 2:], max=math.log(1000.0 / 16))) / 2
        boxes = torch.cat([centre - half, centre + half], dim=1)
        height, width = image_size
        limit = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
        boxes = torch.minimum(boxes.clamp(min=0), limit)
        scores = torch.sigmoid(objectness[order])
        wide = (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
        ok = wide & (scores >= score_thresh)
        boxes, scores = boxes[ok], scores[ok]
        keep = torchvision.ops.nms(boxes, scores, nms_thresh)[:post_nms_top_n]
        return boxes[keep].clone(), scores[keep].clone()
'''

LOSS_WITH_MASKS = '''
def rpn_loss(objectness, pred_bbox_deltas, labels, regression_targets, sampled_positive, sampled_negative):
    sampled = (sampled_positive | sampled_negative).to(objectness.dtype)
    count = sampled.sum()  # 0 when nothing is sampled: 0 / 0, nan, as torchvision
    p = labels.to(objectness.dtype)
    # log(1 + exp(o)) - o p, written so that it never overflows
    cross_entropy = objectness.clamp(min=0) - objectness * p + torch.log1p(torch.exp(-objectness.abs()))
    d = (pred_bbox_deltas - regression_targets).abs()
    beta = 1 / 9
    huber = torch.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta).sum(dim=1)
    return (cross_entropy * sampled).sum() / count, (huber * sampled_positive.to(d.dtype)).sum() / count
'''

DIFFERENT_BUT_RIGHT = {"generate-anchors": anchors_answer(), "rpn-head": head_answer(),
                       "match-anchors": MATCH_BY_GROUND_TRUTH, "sample-anchors": SAMPLE_BY_SCATTER,
                       "rpn-loss": LOSS_WITH_MASKS, "filter-proposals": FILTER_BY_HAND}


@pytest.mark.slow
def test_right_answers_written_differently_earn_full_marks(tmp_path):
    assert_full_marks(ASSIGNMENT, tmp_path, DIFFERENT_BUT_RIGHT)
