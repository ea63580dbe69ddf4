"""The safe format values cross between grader and worker in: exact round trips, no pickle."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from autograder.worker import wire
from autograder.worker.channel import dumps, loads

DTYPES = [torch.float16, torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8, torch.bool]


def round_trip(value):
    return wire.decode(loads(dumps({"value": wire.encode(value)}))["value"])


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


def test_values_nested_too_deeply_are_refused():
    deep = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError):
        wire.encode(deep)
    with pytest.raises(ValueError):
        wire.decode(deep)


def test_a_digest_sees_any_change_of_bytes_dtype_or_shape():
    x = torch.arange(6, dtype=torch.float32)
    same = {wire.digest(x), wire.digest(x.clone()), wire.digest(x.reshape(2, 3).reshape(6))}
    assert len(same) == 1
    changed = x.clone()
    changed[3] = changed[3].nextafter(torch.tensor(10.0))  # one bit
    others = {wire.digest(changed), wire.digest(x.double()), wire.digest(x.reshape(2, 3)), wire.digest(x[:5])}
    assert len(others) == 4 and not (others & same)


def test_encoding_runs_no_code_of_the_values_it_sends():
    """A value's own methods could run the student's code after a timed call has ended."""
    class Loud(str):
        def __str__(self):
            raise AssertionError("ran")

    class Lazy(dict):
        def items(self):
            raise AssertionError("ran")

        def __iter__(self):
            raise AssertionError("ran")

    class Disguised:
        @property
        def __class__(self):  # isinstance() would read this
            raise AssertionError("ran")

    back = round_trip({"version": Loud("2.11.0"), "lazy": Lazy(a=1), "size": torch.Size([2, 3]),
                       "torch": torch.__version__})  # a TorchVersion, a str subclass
    assert back == {"version": "2.11.0", "lazy": {"a": 1}, "size": (2, 3), "torch": str(torch.__version__)}
    assert type(back["version"]) is str
    assert isinstance(round_trip(Disguised()), wire.Opaque)


def test_expanded_tensors_arrive_as_their_values():
    """The gradient of a sum is an expanded view: one element with stride 0 has no byte view."""
    for tensor in (torch.tensor(3.0).expand(1), torch.ones(2, 1).expand(2, 3), torch.tensor(1.5).expand(())):
        assert torch.equal(round_trip(tensor), tensor.contiguous())
