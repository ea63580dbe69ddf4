"""The safe format values cross between grader and worker in: exact round trips, no pickle."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from autograder import wire

DTYPES = [torch.float16, torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8, torch.bool]


def round_trip(value):
    return wire.decode(wire.read_message(_Stream(wire.dumps(wire.encode(value)))))


class _Stream:
    def __init__(self, data):
        self.data = data

    def read(self, n):
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


@settings(max_examples=60, deadline=None, derandomize=True)
@given(shape=st.lists(st.integers(0, 4), max_size=3), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_tensors_round_trip_exactly(shape, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    tensor = (torch.rand(shape, generator=generator, dtype=torch.float64) * 100).to(dtype)
    back = round_trip(tensor)
    assert back.dtype == dtype and list(back.shape) == shape
    assert torch.equal(back, tensor)


def test_scalars_views_and_containers():
    base = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    value = {"zero_dim": torch.tensor(2.5), "view": base.t()[1:], "tuple": (1, "a", None, True),
             "list": [1.5, -2], "pairs": {1: "x"}, "nan": float("nan"), "device": torch.device("cpu"),
             "dtype": torch.float32, "big": 2**70}
    back = round_trip(value)
    assert back["zero_dim"].shape == () and back["zero_dim"].item() == 2.5
    assert torch.equal(back["view"], base.t()[1:])
    assert back["tuple"] == (1, "a", None, True) and back["list"] == [1.5, -2] and back["pairs"] == {1: "x"}
    assert math.isnan(back["nan"]) and back["device"] == torch.device("cpu") and back["dtype"] is torch.float32
    assert back["big"] == 2**70


def test_other_objects_arrive_as_opaque_never_as_themselves():
    back = round_trip(object())
    assert isinstance(back, wire.Opaque) and back != object()


@pytest.mark.parametrize("bad", [
    {"__tensor__": {"dtype": "float32", "shape": [2], "data": "AAAA", "device": "cpu"}},   # wrong byte count
    {"__tensor__": {"dtype": "object", "shape": [], "data": "", "device": "cpu"}},         # unknown dtype
    {"__evil__": 1},
])
def test_malformed_values_are_refused(bad):
    with pytest.raises(ValueError):
        wire.decode(bad)
