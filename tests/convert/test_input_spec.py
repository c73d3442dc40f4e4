"""``--input [name=]DIMS[:DTYPE]``: what the grammar defines is read, anything else is refused, never taken as
one oddly named dimension."""

from __future__ import annotations

import pytest

from convert.errors import BadInputError
from convert.spec import parse_dims, parse_input_spec


@pytest.mark.parametrize("text, name, dtype, shape", [
    ("batchx3x32x32", "input_0", "float32", ("batch", 3, 32, 32)),
    ("tokens=batchx16:int64", "tokens", "int64", ("batch", 16)),
    ("x=seq_lenxbatchx8:double", "x", "float64", ("seq_len", "batch", 8)),
    ("20", "input_0", "float32", (20,)),
])
def test_what_the_grammar_defines_is_read(text, name, dtype, shape):
    spec = parse_input_spec(text)
    assert (spec.name, spec.dtype, spec.shape) == (name, dtype, shape)


@pytest.mark.parametrize("text, why", [
    ("batch*3*32", "'batch*3*32' is not a dimension"),
    ("batch,3,32", "is not a dimension"),
    ("batchx-1", "'-1' is not a dimension"),
    ("batchx3.5", "'3.5' is not a dimension"),
    ("batchx0", "'0' is not a dimension"),
    ("3xbatch x", "empty dimension"),
    ("batchx3:complex", "unknown dtype 'complex'"),
    ("=batchx3", "'' is not an input name"),
    ("my input=batchx3", "'my input' is not an input name"),
])
def test_anything_else_is_refused_with_the_grammar(text, why):
    with pytest.raises(BadInputError, match="use \\[name=\\]DIMS\\[:DTYPE\\]") as err:
        parse_input_spec(text)
    assert why in err.value.line() and f"bad --input {text!r}" in err.value.line()


def test_parse_dims_reads_sizes_and_names():
    assert parse_dims("batchx3") == ("batch", 3)
    with pytest.raises(ValueError):
        parse_dims("batch*3")
