"""Every line that only Colab runs, run here offline in the Colab-pinned kernel (requirements/colab.txt:
Colab's torch, torchvision and ipywidgets 7.7.1).

- Chapter 10 with COCO weights (`ODCOURSE_PRETRAINED=1`): torchvision's real loading code reads
  stand-in weights (randomly initialised models of the same architectures, whose classifier
  favours one class so that boxes and masks are drawn) from a private torch.hub cache, under the
  file names torchvision's weight enums name; the chapter's image URLs (http://images.cocodataset.org/...)
  reach a local HTTP server on 127.0.0.1, set as the kernel's HTTP proxy, which answers with a
  sample photograph (scikit-image's "chelsea", a cat). The chapter runs live (explorers with
  controls, as in Colab), and its form panel and precision-recall explorer are then driven.
- Every other explorer of the helpers, built as its chapter builds it (on small inputs) and shown
  live: each control moved, the figure redrawn, no error.
"""
from __future__ import annotations

import functools
import http.server
import io
import json
import threading

import nbformat
import pytest
import torch

from coursetools import colab_like
from coursetools.notebooks import setup_source
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow]

COCO_CLASS = 17  # "cat" in torchvision's COCO label map: the stand-in detectors see cats everywhere


@pytest.fixture(scope="module")
def helper_repository(tmp_path_factory):
    return colab_like.helper_repository(tmp_path_factory.mktemp("public-repo") / "repo")


def stand_in_weights(name: str, torch_home) -> str:
    """Write, under the name torchvision's weights enum gives its COCO file, the state dict of a
    randomly initialised `name` (seeded) whose classifier favours COCO_CLASS; return the file name."""
    from torchvision.models import get_model, get_model_weights

    weights = get_model_weights(name).DEFAULT
    torch.manual_seed(0)
    model = get_model(name, weights=None, weights_backbone=None, num_classes=len(weights.meta["categories"]))
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[COCO_CLASS] += 10.0
    state = {key: value for key, value in model.state_dict().items() if not key.endswith("num_batches_tracked")}
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    file_name = weights.url.rsplit("/", 1)[-1]
    torch.save(state, folder / file_name)
    return file_name


class PhotographProxy(http.server.BaseHTTPRequestHandler):
    """An HTTP proxy that answers every .jpg request with the sample photograph, 404 otherwise."""

    photograph = b""
    requested: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.requested.append(self.path)
        if self.path.endswith(".jpg"):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(self.photograph)))
            self.end_headers()
            self.wfile.write(self.photograph)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def photograph_proxy():
    from PIL import Image
    from skimage.data import chelsea

    buffer = io.BytesIO()
    Image.fromarray(chelsea()).save(buffer, format="JPEG", quality=90)
    handler = type("Handler", (PhotographProxy,), {"photograph": buffer.getvalue(), "requested": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.requested
    server.shutdown()


# What the kernel runs after a chapter (or the recipes below): every live explorer, every control
# moved through its range and back, the figure redrawn each time. Works with ipywidgets 7 and 8.
DRIVER = '''
import gc, importlib, json, pkgutil
import ipywidgets as widgets
import odcourse
from matplotlib.figure import Figure
from odcourse.widgets import Explorer

for _module in pkgutil.iter_modules(odcourse.__path__):
    importlib.import_module(f"odcourse.{_module.name}")


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _values(name, control, texts):
    if isinstance(control, widgets.Checkbox):
        return [not control.value]
    if isinstance(control, widgets.SelectMultiple):
        options = list(control._options_values)
        return [tuple(options[:1]), tuple(options)]
    if isinstance(control, widgets.Dropdown):
        return [value for value in control._options_values if value != control.value][:3]
    if isinstance(control, (widgets.IntSlider, widgets.FloatSlider)):
        return [control.max, control.min]
    if isinstance(control, widgets.Text):
        return list(texts.get(name, []))
    raise TypeError(f"the driver cannot move a {type(control).__name__}")


_driven = {}
for _explorer in [o for o in gc.get_objects() if isinstance(o, Explorer)]:
    _kind = type(_explorer).__name__
    assert isinstance(_explorer.figure, Figure), f"{_kind} was not shown live"
    for _name, _control in _explorer.controls.items():
        _original = _control.value
        for _value in _values(_name, _control, globals().get("TEXTS", {})) + [_original]:
            if _value == _control.value:
                continue
            _before = _explorer.figure
            _control.value = _value  # what a student moving the control does
            assert _explorer.figure is not _before and _explorer.figure.axes, f"{_kind}: {_name} = {_value!r} drew nothing"
            _driven.setdefault(_kind, {}).setdefault(_name, []).append(repr(_value))
print("DRIVEN " + json.dumps({"ipywidgets": widgets.__version__, "driven": _driven,
                              "explorers": sorted(c.__name__ for c in _subclasses(Explorer))}))
'''


def driven(nb) -> dict:
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    line = [line for line in text.splitlines() if line.startswith("DRIVEN ")]
    assert line, text
    return json.loads(line[-1][len("DRIVEN "):])


def cell_text(nb, cell_id: str) -> str:
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def images_in(nb, cell_id: str) -> int:
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return sum("image/png" in o.get("data", {}) for o in cell.outputs)


URL = "http://images.cocodataset.org/val2017/000000000632.jpg"  # typed into the form's URL box


def test_chapter_10_with_coco_weights_runs_offline(tmp_path, helper_repository, photograph_proxy):
    torch_home = tmp_path / "torch-home"
    files = [stand_in_weights(name, torch_home) for name in ("fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn")]
    proxy, requested = photograph_proxy
    chapter = nbformat.read(ROOT / "book" / "10-detectors.ipynb", as_version=4)
    chapter.cells.append(nbformat.v4.new_code_cell(f"TEXTS = {{'url': [{URL!r}, 'no-such-file.png']}}\n" + DRIVER))
    path = tmp_path / "10-detectors.ipynb"
    nbformat.write(chapter, path)
    environment = {"ODCOURSE_PRETRAINED": "1", "TORCH_HOME": str(torch_home), "HTTP_PROXY": proxy,
                   "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
    nb = colab_like.run_notebook(path, tmp_path / "colab", helper_repository, environment=environment)

    assert colab_like.errors(nb) == []
    assert "COCO weights downloaded on this runtime: yes" in cell_text(nb, "configuration")
    assert cell_text(nb, "load-model").startswith("FasterRCNN: ") and "91 categories" in cell_text(nb, "load-model")
    found = cell_text(nb, "detect-example").splitlines()  # one line per drawn detection: "cat 1.00 at (...)"
    assert found and all(line.split()[0] == "cat" for line in found), found
    assert images_in(nb, "detect-example") == 1 and images_in(nb, "mask") == 1
    masks = cell_text(nb, "mask")
    assert masks.startswith("masks (") and " 0 detections" not in masks, masks
    # every image the chapter and the form asked for came from the local server, nothing else did
    assert {"http://images.cocodataset.org/val2017/000000039769.jpg",
            "http://images.cocodataset.org/val2017/000000439715.jpg",
            "http://images.cocodataset.org/val2017/000000000285.jpg", URL} <= set(requested)
    assert all(url.startswith("http://images.cocodataset.org/") for url in requested), requested
    assert sorted(p.name for p in (torch_home / "hub" / "checkpoints").iterdir()) == sorted(files)  # nothing else fetched
    report = driven(nb)
    assert report["ipywidgets"] == "7.7.1"
    assert set(report["driven"]["DetectionPanel"]) == {"image", "url", "score_threshold", "size"}
    assert set(report["driven"]["PRExplorer"]) == {"label", "iou_threshold", "score", "image"}


RECIPES = '''
import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from odcourse import rcnn
from odcourse.capstone import ProposalExplorer
from odcourse.colab import MatmulExplorer
from odcourse.data import CLASSES, SyntheticShapes, make_scene
from odcourse.iou import IoUExplorer
from odcourse.modern import FcosExplorer, MatchingExplorer
from odcourse.proposals import SelectiveSearchExplorer, SlidingWindowExplorer
from odcourse.roialign import RoIAlignExplorer
from odcourse.roipool import RoIPoolExplorer
from odcourse.rpn import AnchorExplorer, tiny_backbone
from odcourse.ssd import DefaultBoxExplorer
from odcourse.transconv import ConvMatrixExplorer
from odcourse.yolo import NmsExplorer, YoloGridExplorer

scene, truth = make_scene(seed=0, size=128)
MatmulExplorer(n=128).show()
SlidingWindowExplorer(scene, size=32, aspect="1:1", stride=8).show()
SelectiveSearchExplorer(scene).show()
IoUExplorer().show()
rcnn.BoxRegressionExplorer(scene, [20.0, 20.0, 70.0, 80.0], [28.0, 18.0, 84.0, 90.0]).show()
RoIPoolExplorer(x1=2.0, y1=26.0, x2=51.0, y2=58.0, output_size=3, spatial_scale=1 / 8).show()
AnchorExplorer(row=16, column=20, sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0), stride=16).show()
RoIAlignExplorer(x1=1.3, y1=0.7, x2=5.6, y2=4.9, output_size=2, sampling_ratio=2, aligned=True).show()
ConvMatrixExplorer(input_size=4, kernel_size=3, stride=1, padding=0, mode="convolution", row=0, col=0).show()
ConvMatrixExplorer(input_size=6, kernel_size=3, stride=2, padding=1, mode="transposed", row=1, col=1).show()
YoloGridExplorer(index=1, S=7, B=2, row=3, column=1).show()
NmsExplorer(conf_threshold=0.01, iou_threshold=0.5, step=2).show()
DefaultBoxExplorer(level=2, row=6, column=2).show()
FcosExplorer(x=200, y=224, width=112, height=96, radius=1.5).show()
MatchingExplorer(x=0.26, y=0.31, w_class=1.0, w_l1=5.0, w_giou=2.0).show()
torch.manual_seed(0)
backbone = tiny_backbone(0)
backbone.out_channels = 64
detector = FasterRCNN(backbone, None, min_size=128, max_size=128,
                      rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
                      rpn_post_nms_top_n_test=100, box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
                      box_head=TwoMLPHead(64 * 49, 256), box_predictor=FastRCNNPredictor(256, len(CLASSES)),
                      box_score_thresh=0.05).eval()
shapes = SyntheticShapes(3, size=128, seed=1)
ProposalExplorer(detector, [shapes[k][0] for k in range(3)], [shapes[k][1] for k in range(3)], CLASSES, image=1,
                 objectness=0.5, top_n=10, score=0.5).show()
'''


def test_every_explorer_runs_live_in_colabs_kernel(tmp_path, helper_repository):
    setup = nbformat.v4.new_code_cell(setup_source())
    nb = nbformat.v4.new_notebook(cells=[setup, nbformat.v4.new_code_cell(RECIPES), nbformat.v4.new_code_cell(DRIVER)])
    path = tmp_path / "explorers.ipynb"
    nbformat.write(nb, path)
    nb = colab_like.run_notebook(path, tmp_path / "colab", helper_repository)
    assert colab_like.errors(nb) == []
    report = driven(nb)
    assert report["ipywidgets"] == "7.7.1"
    # chapter 10's two (DetectionPanel, PRExplorer) are driven by the test above
    assert sorted(report["driven"]) == sorted(set(report["explorers"]) - {"DetectionPanel", "PRExplorer"})
    for kind, controls in report["driven"].items():
        assert controls, kind
