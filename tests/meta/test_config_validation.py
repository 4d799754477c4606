"""Config validation and the safetensors reader, field by field and as property tests (hypothesis).

The properties: whatever the bytes, ``load_state_dict_file`` raises :class:`CheckpointError` or returns
tensors; whatever the JSON, ``cfg_from_config_dict`` raises :class:`PretrainedCfgError` (a ValueError
naming the field) or returns a config that serialises back to JSON. Each property runs a bounded number
of examples (a few seconds), without an example database.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from zoo.meta.cfg import MAX_CONFIG_DEPTH, PretrainedCfgError
from zoo.meta.registry import cfg_from_config, get_pretrained_cfg, list_models, list_pretrained
from zoo.models.builder import CheckpointError, load_state_dict_file

FAST = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**20) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
BASE = json.loads(json.dumps(get_pretrained_cfg("unet3d_small.pcrl_ct32").to_dict()))
FIELDS = sorted(BASE) + ["unknown_field"]


# --- config validation: every field ---------------------------------------------------------------
def test_every_registered_cfg_reads_back() -> None:
    for name in list_models() + list_pretrained():
        data = json.loads(json.dumps(get_pretrained_cfg(name).to_dict()))
        assert json.loads(json.dumps(cfg_from_config(data).to_dict())) == data, name


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("num_classes", "2", "num_classes must be an int"),
    ("num_classes", True, "num_classes must be an int"),
    ("num_classes", -1, "num_classes must be an int in [0"),
    ("in_chans", 0, "in_chans must be an int in [1"),
    ("in_chans", 2, "input_size starts with 1 channels, but in_chans is 2"),
    ("spatial_dims", 4, "spatial_dims must be 2 or 3"),
    ("input_size", [1, 0, 64, 32], "input_size must be 4 positive ints"),
    ("input_size", "1x64", "input_size must be 4 positive ints"),
    ("voxel_spacing", [1, 1], "voxel_spacing must be null or 3 positive numbers"),
    ("crop_pct", 0, "crop_pct must be a number in (0, 1]"),
    ("image_scale", 0, "image_scale must be a number in (0, 16]"),
    ("image_scale", "0.5", "image_scale must be a number in (0, 16]"),
    ("classifier", 3, "classifier must be a string"),
    ("classifier", "fc; rm", "classifier must be a dotted module name"),
    ("first_conv", "", "first_conv must be a dotted module name"),
    ("sha256", "abc", "sha256 must be 64 lowercase hex"),
    ("sha256", None, "sha256 is missing or null"),
    ("file_size", 0, "file_size must be an int > 0"),
    ("verified", "yes", "verified must be true or false"),
    ("architecture", "no_such_net", "'no_such_net' is not a zoo architecture"),
    ("architecture", "unet3d_small.pcrl_ct32", "without a tag"),
    ("arch_kwargs", [], "arch_kwargs must be a JSON object"),
    ("arch_kwargs", {"width": "16"}, "arch_kwargs.width must be of type int like 16"),
    ("arch_kwargs", {"width": 0}, "arch_kwargs.width must be > 0"),
    ("arch_kwargs", {"norm": 1}, "arch_kwargs.norm must be of type string"),
    ("arch_kwargs", {"bad key": 1}, "not argument names"),
    ("metrics", {"a": float("inf")}, "metrics holds values that are not JSON"),
    ("intensity", {"kind": "hu_window", "hu_min": 5, "hu_max": 1}, "hu_min < hu_max"),
    ("intensity", {"kind": "log"}, "intensity.kind must be one of"),
    ("intensity", {"kind": "mean_std", "mean": [0.5], "std": [0.0]}, "intensity.std must be > 0"),
    ("unknown_field", 1, "unknown pretrained_cfg fields ['unknown_field']"),
])
def test_each_field_is_checked_by_name(field: str, value: Any, needle: str) -> None:
    with pytest.raises(PretrainedCfgError) as err:
        cfg_from_config({**BASE, field: value}, "local-dir:/x", require_sha256=True)
    assert needle in str(err.value) and "local-dir:/x" in str(err.value), str(err.value)


def test_nesting_is_bounded() -> None:
    deep: Any = 1
    for _ in range(MAX_CONFIG_DEPTH + 1):
        deep = {"k": deep}
    with pytest.raises(PretrainedCfgError, match="metrics is nested deeper than"):
        cfg_from_config({**BASE, "metrics": deep})
    very_deep: Any = []
    for _ in range(50_000):  # deeper than Python's recursion limit: still one clear error
        very_deep = [very_deep]
    with pytest.raises(PretrainedCfgError, match="nested deeper"):
        cfg_from_config({**BASE, "arch_kwargs": {"x": very_deep}})


@FAST
@given(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=8), st.booleans())
def test_arbitrary_dicts_give_a_cfg_or_a_named_error(data: dict[str, Any], over_valid: bool) -> None:
    _valid_or_named({**BASE, **data} if over_valid else data)


@FAST
@given(st.sampled_from(FIELDS), JSON)
def test_one_mutated_field_gives_a_cfg_or_a_named_error(field: str, value: Any) -> None:
    _valid_or_named({**BASE, field: value})


@FAST
@given(JSON)
def test_non_dicts_give_a_named_error(value: Any) -> None:
    _valid_or_named(value)


def _valid_or_named(data: Any) -> None:
    try:
        cfg = cfg_from_config(data, "cfg.json")
    except PretrainedCfgError as err:
        assert str(err).startswith("cfg.json: ")
        return
    json.dumps(cfg.to_dict(), allow_nan=False)  # what is accepted can be written back


# --- the safetensors reader -----------------------------------------------------------------------
def _valid_file_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.safetensors"
        save_file({"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2, dtype=torch.int64)},
                  str(path), metadata={"format": "pt"})
        return path.read_bytes()


VALID = _valid_file_bytes()
HEADER_LEN = struct.unpack("<Q", VALID[:8])[0]
HEADER = json.loads(VALID[8:8 + HEADER_LEN])


def _read(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.safetensors"
        path.write_bytes(data)
        try:
            state = load_state_dict_file(path)
        except CheckpointError as err:
            assert "not a readable safetensors file" in str(err)
            return
        assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_the_valid_file_reads() -> None:
    _read(VALID)
    assert set(load_state_dict_file_from(VALID)) == {"a.weight", "b"}


def load_state_dict_file_from(data: bytes) -> dict[str, torch.Tensor]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.safetensors"
        path.write_bytes(data)
        return load_state_dict_file(path)


@FAST
@given(st.binary(max_size=256))
def test_arbitrary_bytes_give_tensors_or_a_checkpoint_error(data: bytes) -> None:
    _read(data)


@FAST
@given(st.integers(0, len(VALID) - 1), st.integers(0, 255))
def test_one_changed_byte_gives_tensors_or_a_checkpoint_error(pos: int, byte: int) -> None:
    _read(VALID[:pos] + bytes([byte]) + VALID[pos + 1:])


@FAST
@given(st.sampled_from(["a.weight", "b", "__metadata__", "c"]),
       st.sampled_from(["dtype", "shape", "data_offsets", None]), JSON)
def test_mutated_headers_give_tensors_or_a_checkpoint_error(key: str, field: str | None, value: Any) -> None:
    header = json.loads(json.dumps(HEADER))
    if field is None or not isinstance(header.get(key), dict):
        header[key] = value
    else:
        header[key][field] = value
    raw = json.dumps(header).encode()
    _read(struct.pack("<Q", len(raw)) + raw + VALID[8 + HEADER_LEN:])


@FAST
@given(st.sampled_from(["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL",
                        "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "C64", "XX"]),
       st.lists(st.integers(0, 5), max_size=3), st.integers(0, 30), st.integers(0, 30))
def test_any_dtype_shape_and_offsets(dtype: str, shape: list[int], start: int, end: int) -> None:
    header = {"t": {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}}
    raw = json.dumps(header).encode()
    _read(struct.pack("<Q", len(raw)) + raw + bytes(24))
