"""The arguments digest of a history row: the same text as json.dumps(sort_keys=True), however it
is built (storage/engine/codec.py builds its C encoder once)."""
from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.engine import codec

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(args=st.lists(JSON_VALUES, max_size=4), kwargs=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4))
def test_the_digest_text_is_json_dumps_with_sorted_keys(args, kwargs):
    value = [args, kwargs]
    assert codec._digest_text(value) == json.dumps(value, sort_keys=True, default=str)


def test_the_digest_of_known_arguments_does_not_change():
    # The value history rows written before the encoder was built once hold for these arguments.
    data = {"args": ["a", {"z": 1, "b": [1.5, None, True]}], "kwargs": {"y": "é", "a": 2}}
    expected = hashlib.sha256(b'[["a", {"b": [1.5, null, true], "z": 1}], {"a": 2, "y": "\\u00e9"}]').hexdigest()[:16]
    assert codec.args_digest(data) == expected == "87031bd2df054c93"
    assert codec.args_digest({"args": [5], "kwargs": {}}) == "94bc23bce58c8048"
