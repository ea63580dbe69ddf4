"""Visible checks for assignment a05-rpn: ``from odcourse.checks import rpn as check``.

torchvision's region proposal network is the yardstick (AnchorGenerator, RPNHead, Matcher,
BalancedPositiveNegativeSampler, RegionProposalNetwork); the inputs are small enough to print.
"""
from __future__ import annotations

import itertools

import torch

from . import Report
from .tensors import boxes_picture, call_keeping_inputs, close, expect_tensor


def _torchvision_anchors(image_size, feature_size, sizes, ratios, dtype=torch.float32):
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    images = ImageList(torch.zeros(1, 1, *image_size), [tuple(image_size)])
    return AnchorGenerator((tuple(sizes),), (tuple(ratios),))(images, [torch.zeros(1, 1, *feature_size, dtype=dtype)])[0]


def _rows(boxes: torch.Tensor) -> str:
    return "; ".join(str([round(v, 1) for v in row]) for row in boxes.tolist())


def generate_anchors(fn) -> None:
    """Check ``generate_anchors`` against torchvision's AnchorGenerator: values, order, rounding, strides."""
    with Report("generate_anchors") as report:
        cases = [((800, 800), (50, 50), (128, 256, 512), (0.5, 1.0, 2.0), "the slides' 9 anchors on a stride-16 map"),
                 ((600, 1000), (37, 62), (64,), (1.0, 2.0), "a 600 x 1000 image (strides 600 // 37 = 16, 1000 // 62 = 16)"),
                 ((90, 120), (3, 4), (33, 10), (1.0, 0.25), "sizes whose half is .5 (torch.round: halves to even)")]
        for image_size, feature_size, sizes, ratios, what in cases:
            want = _torchvision_anchors(image_size, feature_size, sizes, ratios)
            got = report.call(fn, image_size, feature_size, sizes, ratios)
            if not expect_tensor(report, got, what, shape=tuple(want.shape), dtype=torch.float32):
                continue
            k = len(sizes) * len(ratios)
            if not report.expect(close(got[:k], want[:k], atol=0, rtol=0),
                                 f"{what}: the anchors of location (0, 0) are {_rows(got[:k])} but should be "
                                 f"{_rows(want[:k])} (for each ratio r, for each size s: h = s sqrt(r), w = s / sqrt(r), "
                                 "corners (-w/2, -h/2, w/2, h/2) rounded with torch.round)"):
                report.illustrate(boxes_picture({"yours": (got[:k], "#e6194b"), "torchvision's": (want[:k], "#3cb44b")},
                                                f"{what}: the anchors of location (0, 0)"))
                continue
            same_set = torch.equal(torch.unique(got, dim=0), torch.unique(want, dim=0))
            report.expect(close(got, want, atol=0, rtol=0),
                          f"{what}: " + ("the right anchors in the wrong order (location by location, row-major, "
                                         "then the k cell anchors)" if same_set else
                                         "the anchors of other locations differ (shift by (j s_x, i s_y) with "
                                         "s_y = image height // map height, s_x = image width // map width)"))
        got = report.call(fn, (64, 64), (4, 4), (16,), (1.0,), dtype=torch.float64)
        expect_tensor(report, got, "generate_anchors(..., dtype=torch.float64)", shape=(16, 4), dtype=torch.float64)
        got = report.call(fn, (64, 64), (0, 4), (16, 32), (1.0,))
        expect_tensor(report, got, "the anchors of a map with no rows", shape=(0, 4), dtype=torch.float32)


def rpn_head(cls) -> None:
    """Check ``RPNHead``: torchvision's parameter names and shapes, its initialisation, the same outputs."""
    from torchvision.models.detection.rpn import RPNHead as TorchvisionHead

    with Report("RPNHead") as report:
        torch.manual_seed(0)
        head = report.call(cls, 32, 5)
        if not report.expect(isinstance(head, torch.nn.Module), "RPNHead(32, 5) must be a torch.nn.Module"):
            return
        theirs = TorchvisionHead(32, 5)
        mine = {k: tuple(v.shape) for k, v in head.state_dict().items()}
        want = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
        if not report.expect(mine == want, f"the parameters are {mine} but must be {want} (conv.0.0 is the 3 x 3 conv "
                                           "inside nn.Sequential(nn.Sequential(conv, ReLU)))"):
            return
        state = head.state_dict()
        report.expect(all(float(state[k].abs().max()) == 0 for k in state if k.endswith("bias")),
                      "every bias must start at 0")
        weights = state["conv.0.0.weight"].double()
        report.expect(abs(float(weights.std()) - 0.01) < 0.001 and abs(float(weights.mean())) < 0.001,
                      f"the 3 x 3 conv's weights have mean {float(weights.mean()):.4f} and standard deviation "
                      f"{float(weights.std()):.4f}: initialise them from a normal distribution with std 0.01")
        inside = float((weights.abs() < 0.01).double().mean())
        report.expect(abs(inside - 0.683) < 0.03, f"{inside:.0%} of the weights lie within one standard deviation "
                                                  "of 0 where a normal distribution has 68 %: use nn.init.normal_")
        head.load_state_dict(theirs.state_dict())
        g = torch.Generator().manual_seed(1)
        features = [torch.randn(2, 32, 6, 7, generator=g), torch.randn(2, 32, 3, 4, generator=g)]
        got = report.call(head, features)
        if not report.expect(isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(v, list) for v in got),
                             "forward must return a pair of lists (objectness per level, box deltas per level)"):
            return
        want = theirs(features)
        for level in range(2):
            for name, mine_, theirs_ in (("objectness", got[0], want[0]), ("box deltas", got[1], want[1])):
                if level < len(mine_) and expect_tensor(report, mine_[level], f"{name} of level {level}",
                                                        shape=tuple(theirs_[level].shape)):
                    report.expect(close(mine_[level], theirs_[level], atol=1e-6),
                                  f"{name} of level {level} differ from torchvision's with the same weights "
                                  "(3 x 3 conv with padding 1, ReLU, then the 1 x 1 conv)")


def match_anchors(fn) -> None:
    """Check ``match_anchors`` against torchvision's Matcher on a matrix small enough to read."""
    from torchvision.models.detection._utils import Matcher

    with Report("match_anchors") as report:
        iou = torch.tensor([[0.80, 0.50, 0.10, 0.00, 0.65, 0.20, 0.2],
                            [0.75, 0.10, 0.25, 0.30, 0.10, 0.20, 0.2]])
        for low_quality in (False, True):
            want = Matcher(0.7, 0.3, low_quality)(iou.clone())
            got = call_keeping_inputs(report, fn, iou, 0.7, 0.3, low_quality)
            what = f"match_anchors(iou, 0.7, 0.3, {low_quality}) of a 2 x 7 matrix"
            if expect_tensor(report, got, what, shape=(7,), dtype=torch.int64):
                report.expect(torch.equal(got, want),
                              f"{what} gave {got.tolist()} but expected {want.tolist()} (best ground truth when IoU >= 0.7, "
                              "-2 from 0.3 up to 0.7, -1 below 0.3" + (
                                  "; then every anchor that is some ground truth's best, ties included, gets its own "
                                  "best ground truth back" if low_quality else "") + ")")
        ties = torch.tensor([[0.5, 0.5, 0.1], [0.5, 0.2, 0.9]])
        got = report.call(fn, ties, 0.4, 0.3, False)
        report.expect(isinstance(got, torch.Tensor) and got.tolist() == [0, 0, 1],
                      "on a tie between ground truths the lowest index wins (anchor 0 has IoU 0.5 with both)")
        for shape, missing in (((0, 4), "ground truth"), ((3, 0), "anchors")):
            try:
                fn(torch.zeros(shape), 0.7, 0.3, True)
                raised = None
            except NotImplementedError:
                raise
            except Exception as error:
                raised = type(error)
            report.expect(raised is ValueError, f"with no {missing} (iou of shape {shape}) match_anchors must raise "
                                                 f"a ValueError, not {'nothing' if raised is None else raised.__name__}")


def sample_anchors(fn) -> None:
    """Check ``sample_anchors``: the counts, the masks, the generator, and that every subset is as likely."""
    with Report("sample_anchors") as report:
        labels = torch.cat([torch.ones(10), torch.zeros(300), -torch.ones(20)])[torch.randperm(330, generator=torch.Generator().manual_seed(0))]
        for batch, fraction, pos_want, neg_want, what in (
                (256, 0.5, 10, 246, "10 positives, 300 negatives, batch 256"),
                (64, 0.1, 6, 58, "batch 64 with positive_fraction 0.1 (int(6.4) = 6 positives)"),
                (1000, 0.5, 10, 300, "batch 1000: fewer anchors than the batch")):
            got = call_keeping_inputs(report, fn, labels, batch, fraction, torch.Generator().manual_seed(1))
            if not report.expect(isinstance(got, (tuple, list)) and len(got) == 2,
                                 "sample_anchors must return a pair (sampled_positive, sampled_negative)"):
                return
            positive, negative = got
            if not (expect_tensor(report, positive, f"sampled_positive ({what})", shape=(330,), dtype=torch.bool)
                    and expect_tensor(report, negative, f"sampled_negative ({what})", shape=(330,), dtype=torch.bool)):
                return
            report.expect((int(positive.sum()), int(negative.sum())) == (pos_want, neg_want),
                          f"{what}: sampled {int(positive.sum())} positives and {int(negative.sum())} negatives but "
                          f"expected {pos_want} and {neg_want}")
            report.expect(bool((labels[positive] == 1).all()) and bool((labels[negative] == 0).all()),
                          f"{what}: sampled_positive must mark positive anchors only, sampled_negative negative ones")
        many = torch.cat([torch.ones(200), torch.zeros(500)])
        positive, negative = report.call(fn, many, 256, 0.5, torch.Generator().manual_seed(2))
        report.expect((int(positive.sum()), int(negative.sum())) == (128, 128),
                      "200 positives and 500 negatives with batch 256 and fraction 0.5 give 128 + 128")
        first = report.call(fn, labels, 64, 0.5, torch.Generator().manual_seed(7))
        again = report.call(fn, labels, 64, 0.5, torch.Generator().manual_seed(7))
        other = report.call(fn, labels, 64, 0.5, torch.Generator().manual_seed(8))
        report.expect(torch.equal(first[1], again[1]), "the same generator seed must give the same sample "
                                                       "(draw the randomness from `generator`)")
        report.expect(not torch.equal(first[1], other[1]), "different generator seeds gave the same sample")
        # 2 of 4 positives: each of the 6 pairs should come up about 1 time in 6.
        four = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
        draws = 1200
        counts = dict.fromkeys(itertools.combinations(range(4), 2), 0)
        for seed in range(draws):
            positive, _ = report.call(fn, four, 4, 0.5, torch.Generator().manual_seed(seed))
            pair = tuple(int(i) for i in torch.nonzero(positive).flatten().tolist())
            counts[pair] = counts.get(pair, 0) + 1
        expected = draws / 6
        chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
        report.expect(len(counts) == 6 and chi2 < 25, "choosing 2 of 4 positives 1200 times gave the pairs "
                      f"{ {k: v for k, v in counts.items()} }: every pair should be about equally frequent "
                      "(uniform sampling without replacement, e.g. torch.randperm)")


def _torchvision_rpn_loss(objectness, deltas, labels, targets, positive, negative):
    from torchvision.models.detection.rpn import RegionProposalNetwork

    rpn = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, {"training": 1, "testing": 1},
                                {"training": 1, "testing": 1}, 0.7)
    rpn.fg_bg_sampler = lambda _: ([positive.to(torch.uint8)], [negative.to(torch.uint8)])  # the given sample
    return rpn.compute_loss(objectness[:, None], deltas, [labels], [targets])


def rpn_loss(fn) -> None:
    """Check ``rpn_loss`` against torchvision's RegionProposalNetwork.compute_loss on a given sample."""
    with Report("rpn_loss") as report:
        g = torch.Generator().manual_seed(3)
        n = 60
        objectness = torch.randn(n, generator=g)
        deltas = torch.randn(n, 4, generator=g) * 0.2
        targets = torch.randn(n, 4, generator=g) * 0.2
        labels = torch.randint(-1, 2, (n,), generator=g).float()
        positive = (labels == 1) & (torch.rand(n, generator=g) < 0.7)
        negative = (labels == 0) & (torch.rand(n, generator=g) < 0.5)
        want = _torchvision_rpn_loss(objectness, deltas, labels, targets, positive, negative)
        got = call_keeping_inputs(report, fn, objectness, deltas, labels, targets, positive, negative)
        if not report.expect(isinstance(got, (tuple, list)) and len(got) == 2,
                             "rpn_loss must return a pair (objectness_loss, box_loss)"):
            return
        for name, mine, theirs, hint in (
                ("objectness_loss", got[0], want[0], "binary cross-entropy with logits, averaged over the sampled anchors "
                                                     "(positives and negatives)"),
                ("box_loss", got[1], want[1], "smooth L1 with beta 1/9, summed over the sampled positives' 4 deltas, "
                                              "divided by the number of all sampled anchors")):
            if expect_tensor(report, mine, name, shape=()):
                report.expect(close(mine, theirs, atol=1e-6),
                              f"{name} is {float(mine):.5f} but torchvision's is {float(theirs):.5f} ({hint})")
        o, d = objectness.clone().requires_grad_(True), deltas.clone().requires_grad_(True)
        losses = report.call(fn, o, d, labels, targets, positive, negative)
        if report.expect(all(isinstance(v, torch.Tensor) and v.requires_grad for v in losses),
                         "both losses must be differentiable with respect to objectness and pred_bbox_deltas"):
            (losses[0] + losses[1]).backward()
            report.expect(bool(o.grad[~(positive | negative)].eq(0).all()) and bool(d.grad[~positive].eq(0).all()),
                          "anchors outside the sample (and negatives, for the box loss) must get no gradient")
        nothing = torch.zeros(n, dtype=torch.bool)
        o, d = objectness.clone().requires_grad_(True), deltas.clone().requires_grad_(True)
        losses = report.call(fn, o, d, labels, targets, nothing, nothing)
        if report.expect(all(isinstance(v, torch.Tensor) and v.shape == () and bool(torch.isnan(v.detach()))
                             for v in losses),
                         "with nothing sampled both losses must be nan (scalars), as torchvision's: a mean over no "
                         "anchors (0 / 0), not 0 and not an error"):
            report.expect(all(v.requires_grad for v in losses),
                          "with nothing sampled the nan losses must still depend on objectness and pred_bbox_deltas "
                          "(build them with the same operations on the empty sample), so that a backward pass "
                          "through them works")


def _torchvision_filter(anchors, objectness, deltas, image_size, pre, post, nms_thresh, score_thresh, min_size):
    from torchvision.models.detection._utils import BoxCoder
    from torchvision.models.detection.rpn import RegionProposalNetwork

    rpn = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, {"training": pre, "testing": pre},
                                {"training": post, "testing": post}, nms_thresh, score_thresh)
    rpn.min_size = min_size
    proposals = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(deltas, [anchors]).view(1, -1, 4)
    boxes, scores = rpn.filter_proposals(proposals, objectness[None], [tuple(image_size)], [len(anchors)])
    return boxes[0], scores[0]


def filter_proposals(fn) -> None:
    """Check ``filter_proposals`` against torchvision's RegionProposalNetwork.filter_proposals (one level)."""
    with Report("filter_proposals") as report:
        g = torch.Generator().manual_seed(4)
        corner = torch.rand(40, 2, generator=g) * 90 - 10
        anchors = torch.cat([corner, corner + 8 + torch.rand(40, 2, generator=g) * 40], dim=1)
        objectness = torch.randperm(40, generator=g).float() / 4 - 5  # distinct scores: no ties
        deltas = torch.randn(40, 4, generator=g) * 0.3
        deltas[3, 2] = 9.0  # wider than log(1000 / 16) allows
        deltas[5, 3] = -12.0  # flatter than min_size 0.5
        report.illustrate(boxes_picture({"anchors": (anchors, "#a9a9a9")}, "the 40 anchors on the 80 x 100 image",
                                        size=(80, 100)))
        for pre, post, nms_thresh, score_thresh, min_size in ((30, 10, 0.5, 0.0, 0.5), (40, 40, 0.7, 0.3, 1e-3),
                                                               (5, 3, 0.3, 0.0, 1e-3)):
            what = (f"pre_nms_top_n {pre}, post_nms_top_n {post}, nms_thresh {nms_thresh}, score_thresh {score_thresh}, "
                    f"min_size {min_size}")
            want_boxes, want_scores = _torchvision_filter(anchors, objectness, deltas, (80, 100), pre, post, nms_thresh,
                                                          score_thresh, min_size)
            got = call_keeping_inputs(report, fn, anchors, objectness, deltas, (80, 100), pre, post, nms_thresh,
                                      score_thresh, min_size)
            if not report.expect(isinstance(got, (tuple, list)) and len(got) == 2,
                                 "filter_proposals must return a pair (boxes, scores)"):
                return
            boxes, scores = got
            if expect_tensor(report, boxes, f"boxes ({what})", shape=tuple(want_boxes.shape), dtype=torch.float32) \
                    and expect_tensor(report, scores, f"scores ({what})", shape=tuple(want_scores.shape)):
                ok = close(boxes, want_boxes, atol=1e-4) and close(scores, want_scores, atol=1e-6)
                report.expect(ok, f"{what}: the proposals differ from torchvision's (top-k of the logits, decode with "
                                  "dw, dh at most log(1000/16), clip, drop boxes under min_size, sigmoid, score_thresh, "
                                  "NMS, first post_nms_top_n, highest score first)")
                if not ok:
                    report.illustrate(boxes_picture({"yours": (boxes, "#e6194b"), "torchvision's": (want_boxes, "#3cb44b")},
                                                    f"proposals, {what}", size=(80, 100)))
        o = objectness.clone().requires_grad_(True)
        boxes, scores = report.call(fn, anchors, o, deltas, (80, 100), 30, 10, 0.5)
        report.expect(not boxes.requires_grad and not scores.requires_grad,
                      "the proposals must carry no gradient (detach objectness and the deltas)")
        boxes, scores = report.call(fn, torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 4), (80, 100), 30, 10, 0.5)
        expect_tensor(report, boxes, "the proposals of no anchors", shape=(0, 4))
