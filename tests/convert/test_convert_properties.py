"""Property-based tests (hypothesis) of the converters' key mapping and input checks.

Bounded: a few dozen examples each, no deadline, small tensors, no model built; the whole file takes
a few seconds.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo.convert import LAYOUTS, ConvertError, Rename, extract_state_dict

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

segment = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
key = st.lists(st.one_of(segment, st.integers(0, 12).map(str)), min_size=1, max_size=5).map(".".join)
layouts = st.sampled_from(sorted(LAYOUTS))
tensors = st.integers(1, 4).map(lambda n: torch.zeros(n))


@SETTINGS
@given(layout=layouts, k=key)
def test_map_key_is_deterministic_and_prefix_free(layout: str, k: str) -> None:
    lay = LAYOUTS[layout]
    new, reason = lay.map_key(k)
    assert lay.map_key(k) == (new, reason)
    if reason is None:  # a kept key never keeps a prefix the layout strips
        assert not any(new.startswith(p) for p in lay.strip_prefixes if p and not lay.renames)
    else:
        assert reason in {d.reason for d in lay.drops}


@SETTINGS
@given(layout=layouts, k=key)
def test_module_prefix_is_transparent(layout: str, k: str) -> None:
    """DataParallel's ``module.`` changes nothing: a key maps as without it."""
    lay = LAYOUTS[layout]
    if "module." not in lay.strip_prefixes or k.startswith("module."):
        return
    assert lay.map_key("module." + k) == lay.map_key(k)


@SETTINGS
@given(stage=st.integers(1, 9), block=st.integers(1, 9), rest=key)
def test_one_based_rename_counts_from_zero(stage: int, block: int, rest: str) -> None:
    rename = Rename(r"^body\.block(?P<stage>\d+)\.unit(?P<block>\d+)\.", "stages.{stage}.blocks.{block}.",
                    one_based=("stage", "block"))
    assert rename.apply(f"body.block{stage}.unit{block}.{rest}") == f"stages.{stage - 1}.blocks.{block - 1}.{rest}"


def _official(layout: str, sd: dict[str, torch.Tensor]) -> Any:
    lay = LAYOUTS[layout]
    if any(entry is None for entry, _ in lay.containers):
        return dict(sd)
    return {entry: dict(sd) for entry, _ in lay.containers} | {"epoch": 1}


@SETTINGS
@given(layout=layouts, keys=st.lists(key, min_size=1, max_size=12, unique=True), data=st.data())
def test_extract_keeps_or_drops_every_key_once(layout: str, keys: list[str], data: st.DataObject) -> None:
    """Every upstream key is either kept under exactly one zoo key or listed as dropped: nothing is lost
    silently, and two keys never land on one name (that is an error)."""
    lay = LAYOUTS[layout]
    sd = {k: data.draw(tensors) for k in keys}
    obj = _official(layout, sd)
    try:
        out, dropped, _ = extract_state_dict(obj, lay, "fuzz.pt")
    except ConvertError as err:
        assert re.search(r"both map to|no weights left", str(err)), err
        return
    n_containers = len(lay.containers)
    assert len(out) + sum(map(len, dropped.values())) == len(keys) * n_containers
    for v in out.values():
        assert isinstance(v, torch.Tensor)


bad_values = st.one_of(st.integers(), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2),
                       st.floats(allow_nan=True), st.binary(max_size=4), st.booleans())


@SETTINGS
@given(layout=layouts, value=bad_values, k=key)
def test_a_non_tensor_value_is_one_clear_error(layout: str, value: Any, k: str) -> None:
    obj = _official(layout, {k: value})
    with pytest.raises(ConvertError) as info:
        extract_state_dict(obj, LAYOUTS[layout], "fuzz.pt")
    message = str(info.value)
    assert "fuzz.pt" in message and "not a tensor" in message
    article = re.search(r" is (an?) (\w+), not a tensor", message)
    assert article is not None and article.group(1) == ("an" if article.group(2)[0] in "aeiou" else "a")


@SETTINGS
@given(layout=layouts, top=st.one_of(bad_values, st.lists(tensors, max_size=2)))
def test_a_non_dict_file_is_refused(layout: str, top: Any) -> None:
    with pytest.raises(ConvertError, match="not a dict"):
        extract_state_dict(top, LAYOUTS[layout], "fuzz.pt")


@SETTINGS
@given(layout=layouts.filter(lambda n: all(e is not None for e, _ in LAYOUTS[n].containers)),
       keys=st.lists(key, min_size=1, max_size=200, unique=True))
def test_a_bare_state_dict_gets_a_short_message_with_the_wrap(layout: str, keys: list[str]) -> None:
    obj = {k: torch.zeros(1) for k in keys}
    entry = LAYOUTS[layout].containers[0][0]
    if entry in obj:
        return
    with pytest.raises(ConvertError) as info:
        extract_state_dict(obj, LAYOUTS[layout], "fuzz.pt")
    message = str(info.value)
    assert "bare state dict" in message and "torch.save(" in message
    assert len(message) < 700  # the key list is shortened, however many keys there are


@SETTINGS
@given(layout=layouts, kind=st.sampled_from(["sparse", "meta", "complex", "quantized"]), k=key)
def test_unstorable_tensors_are_refused(layout: str, kind: str, k: str) -> None:
    lay = LAYOUTS[layout]
    if lay.map_key(k)[1] is not None:
        return  # a dropped key is never stored
    w = torch.ones(2, 3)
    value = {"sparse": lambda: w.to_sparse(), "meta": lambda: torch.empty(2, 3, device="meta"),
             "complex": lambda: w.to(torch.complex64),
             "quantized": lambda: torch.quantize_per_tensor(w, 0.1, 0, torch.qint8)}[kind]()
    with pytest.raises(ConvertError, match=f"is a {kind} tensor"):
        extract_state_dict(_official(layout, {k: value}), lay, "fuzz.pt")
