import numpy as np
import pandas as pd
import pytest

from compat.checks.inputs import chain, read_inputs, synthesize
from convert.errors import BadInputError
from convert.spec import Domain, OutputSpec, Signature, TensorSpec


def numeric_signature():
    domains = (Domain(mean=10.0, std=2.0), Domain(categories=(1.0, 2.0, 5.0)),
               Domain(low=0.0, high=1.0, thresholds=(0.25, 0.5)), Domain(missing_allowed=True))
    return Signature((TensorSpec("X", "float32", ("batch", 4), domains, ("a", "b", "c", "d")),),
                     (OutputSpec("y"),))


def collect(source, batch):
    parts = list(source.batches(batch))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_synthesized_rows_are_seeded_and_independent_of_the_batch_size():
    sig = numeric_signature()
    a = collect(synthesize(sig, rows=2500, seed=3), 64)["X"]
    b = collect(synthesize(sig, rows=2500, seed=3), 4096)["X"]
    assert a.shape == (2500, 4)
    np.testing.assert_array_equal(a, b)
    c = collect(synthesize(sig, rows=2500, seed=4), 4096)["X"]
    assert not np.array_equal(np.nan_to_num(a), np.nan_to_num(c))


def test_synthesized_values_follow_the_domains():
    x = collect(synthesize(numeric_signature(), rows=4000), 1000)["X"]
    assert abs(np.nanmean(x[:, 0]) - 10.0) < 0.3
    assert set(np.unique(x[:, 1])) <= {1.0, 2.0, 5.0}
    assert np.isnan(x[:, 3]).any() and not np.isnan(x[:, :3]).any()
    # float32-representable, so float32 and float64 graphs see the same numbers
    assert np.array_equal(x[:, 0].astype(np.float32).astype(np.float64), x[:, 0].astype(np.float64))


def test_split_points_are_hit_exactly_and_one_float32_step_either_side():
    x = collect(synthesize(numeric_signature(), rows=4000), 4000)["X"][:, 2].astype(np.float32)
    t = np.float32(0.25)  # exactly representable
    for value in (np.nextafter(t, np.float32(0)), t, np.nextafter(t, np.float32(1))):
        assert (x == value).any()


def test_strings_come_from_categories_and_text_from_the_vocabulary():
    sig = Signature((TensorSpec("city", "string", ("batch", 1), (Domain(categories=("Oslo", "Zürich")),)),
                     TensorSpec("text", "string", ("batch", 1), (Domain(vocabulary=("café", "stade"), lowercase=True),))))
    feeds = collect(synthesize(sig, rows=300), 300)
    assert set(feeds["city"].ravel()) == {"Oslo", "Zürich"}
    words = {w.strip(",.!").lower() for doc in feeds["text"].ravel() for w in doc.split()}
    assert {"café", "stade"} <= words
    assert any(w in doc for doc in feeds["text"].ravel() for w in ("Café", "CAFÉ", "Stade", "STADE"))


def test_csv_columns_are_matched_by_name_and_extra_columns_ignored(tmp_path):
    sig = numeric_signature()
    frame = pd.DataFrame({"d": [1.0, 2.0], "target": [0, 1], "a": [3.0, 4.0], "b": [1.0, 2.0], "c": [0.5, 0.6]})
    frame.to_csv(tmp_path / "rows.csv", index=False)
    feeds = collect(read_inputs(tmp_path / "rows.csv", sig), 10)
    np.testing.assert_array_equal(feeds["X"], [[3.0, 1.0, 0.5, 1.0], [4.0, 2.0, 0.6, 2.0]])


def test_csv_missing_columns_is_a_clear_error(tmp_path):
    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(BadInputError, match=r"lacks column\(s\) c, d"):
        read_inputs(tmp_path / "rows.csv", numeric_signature())


def test_npz_names_and_shapes_are_checked(tmp_path):
    sig = numeric_signature()
    np.savez(tmp_path / "ok.npz", X=np.zeros((3, 4), np.float32))
    assert read_inputs(tmp_path / "ok.npz", sig).rows == 3
    np.savez(tmp_path / "bad.npz", X=np.zeros((3, 5), np.float32))
    with pytest.raises(BadInputError, match="has 5 at axis 1"):
        read_inputs(tmp_path / "bad.npz", sig)
    two = Signature((TensorSpec("a", "float32", ("batch", 1)), TensorSpec("b", "float32", ("batch", 1))))
    np.savez(tmp_path / "wrong.npz", a=np.zeros((2, 1)), c=np.zeros((2, 1)))
    with pytest.raises(BadInputError, match="no array named b"):
        read_inputs(tmp_path / "wrong.npz", two)


def test_parquet_is_read_in_batches(tmp_path):
    pytest.importorskip("pyarrow", reason="parquet support is optional (pyarrow)")
    frame = pd.DataFrame({"a": np.arange(10.0), "b": 1.0, "c": 0.5, "d": 2.0})
    frame.to_parquet(tmp_path / "rows.parquet")
    source = read_inputs(tmp_path / "rows.parquet", numeric_signature())
    assert source.rows == 10 and len(list(source.batches(4))) == 3


def test_chain_keeps_order_and_counts_rows(tmp_path):
    sig = numeric_signature()
    np.savez(tmp_path / "ok.npz", X=np.full((3, 4), 7.0, np.float32))
    source = chain(read_inputs(tmp_path / "ok.npz", sig), synthesize(sig, rows=5))
    x = collect(source, 2)["X"]
    assert source.rows == 8 and x.shape == (8, 4) and (x[:3] == 7.0).all()


@pytest.mark.parametrize("content", [b"", b"not,a\n"])
def test_unreadable_inputs_name_the_file(tmp_path, content):
    path = tmp_path / "rows.npy"
    path.write_bytes(content)
    with pytest.raises(BadInputError) as err:
        read_inputs(path, numeric_signature())
    assert "rows.npy" in err.value.line()


def test_a_single_npz_array_under_another_name_feeds_a_single_input_only_when_it_fits(tmp_path):
    sig = numeric_signature()
    np.savez(tmp_path / "foo.npz", foo=np.ones((3, 4), np.float32))
    source = read_inputs(tmp_path / "foo.npz", sig)
    assert source.rows == 3 and "its only array, foo, taken as input X: the shapes agree" in source.description
    np.savez(tmp_path / "wide.npz", foo=np.ones((3, 5), np.float32))
    with pytest.raises(BadInputError, match=r"has no array named X; its only array, foo \[3, 5\], does not fit"):
        read_inputs(tmp_path / "wide.npz", sig)
    np.savez(tmp_path / "flat.npz", foo=np.ones(3, np.float32))  # rank 1 for a rank-2 input
    with pytest.raises(BadInputError, match="does not fit"):
        read_inputs(tmp_path / "flat.npz", sig)
    text = Signature((TensorSpec("text", "string", ("batch", 1)),))
    np.savez(tmp_path / "docs.npz", docs=np.array(["a b", "c d"]))  # one text column as a 1-d array fits
    assert read_inputs(tmp_path / "docs.npz", text).rows == 2


def test_a_source_without_rows_is_named_and_never_compared_alone(tmp_path):
    sig = numeric_signature()
    (tmp_path / "header.csv").write_text("a,b,c,d\n")
    empty = read_inputs(tmp_path / "header.csv", sig)
    assert empty.rows == 0
    both = chain(empty, synthesize(sig, rows=5))
    assert both.rows == 5 and both.description == f"synthesized (seed 0) only: {tmp_path / 'header.csv'} holds no rows"
    assert collect(both, 10)["X"].shape == (5, 4)
    with pytest.raises(BadInputError, match="holds no rows: nothing to compare on") as err:
        chain(read_inputs(tmp_path / "header.csv", sig))
    assert "header.csv" in err.value.line()
    np.savez(tmp_path / "none.npz", X=np.zeros((0, 4), np.float32))
    with pytest.raises(BadInputError, match="holds no rows"):
        chain(read_inputs(tmp_path / "none.npz", sig))
    (tmp_path / "rows.csv").write_text("a,b,c,d\n1,2,3,4\n")
    assert read_inputs(tmp_path / "rows.csv", sig).rows is None  # streamed: counted as it is read
