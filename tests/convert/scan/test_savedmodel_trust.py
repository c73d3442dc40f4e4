"""SavedModels judged by what a serving signature, the loader and the saver reach (issue 12 items 3 and 13c).

The payload table lives in test_scan_techniques.py (``savedmodel/...`` rows, each with a live control); here:
the benign side (TF1 graphs with their saver, as TF Serving exporters and tf2onnx wrote them, scan safe and
convert), checkpoint ops outside the saver, ops nothing reaches, the allowlist as data, and symlinks that
leave the folder. Every model is built here with real TensorFlow calls."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import savedmodel_payloads as sp

import convert
from compat import audit
from compat.cli import main
from convert.errors import UnsafeArtifactError
from convert.scan.savedmodel import ALLOWLIST, scan_savedmodel

ROOT = Path(__file__).resolve().parents[3]
TF_FIXTURES = ROOT / "fixtures" / "tensorflow"
CHECKPOINT_OPS = {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "Save", "SaveSlices", "Restore", "RestoreSlice"}

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def tf():
    from convert.adapters.tensorflow import env as _tf_env

    return _tf_env.tensorflow()


def flagged(artifact) -> list[str]:
    return [f"{f.severity}: {f.what} @ {f.where}" for f in artifact.findings if f.severity != "info"]


# ------------------------------------------------------------------------------------------ benign side

TF1_VARIANTS = {
    "Builder, sharded saver": dict(),
    "Builder, one-file saver": dict(sharded=False),
    "Builder, V1 checkpoint format": dict(sharded=False, checkpoint_v1=True),
    "simple_save (tf2onnx's examples)": dict(simple_save=True),
    "half_plus_two (assets, legacy init op, reference variables)": dict(assets=True, reference=True),
}


@pytest.mark.parametrize("variant", TF1_VARIANTS, ids=list(TF1_VARIANTS))
def test_tf1_savedmodels_with_their_saver_graph_are_safe(tf, tmp_path, variant):
    path = sp.tf1_model(tmp_path, name="model", **TF1_VARIANTS[variant])
    artifact = convert.inspect(path)
    assert artifact.safety == "safe", flagged(artifact)
    verdict, findings, facts = scan_savedmodel(path)
    assert facts["checkpoint_ops"] and set(facts["checkpoint_ops"]) <= CHECKPOINT_OPS  # seen, and normal
    assert main(["inspect", str(path)]) == 0


def test_a_tf1_savedmodel_converts_end_to_end(tf, tmp_path):
    """The saver and the init op it runs at load are no reason to refuse: the whole command passes."""
    path = sp.tf1_model(tmp_path, name="served", assets=True, reference=True)
    assert main(["convert", str(path), "-o", str(tmp_path / "served.onnx")]) == 0
    assert (tmp_path / "served.onnx").stat().st_size > 0


def test_tf2_savedmodels_and_tf_print_to_stderr_are_safe(tf, tmp_path, canary):
    for path in (TF_FIXTURES / "scorer_module", TF_FIXTURES / "recurrent_savedmodel",
                 sp.print_to_stderr(tmp_path, canary)):
        artifact = convert.inspect(path)
        assert artifact.safety == "safe", (path.name, flagged(artifact))
        assert {"SaveV2", "RestoreV2"} <= set(scan_savedmodel(path)[2]["checkpoint_ops"])


# ------------------------------------------------------------------------ checkpoint ops out of the saver


def _checkpoint_op_module(tf, tmp_path: Path, canary, op: str) -> Path:
    """A tf.Module whose serving function runs a checkpoint op of its own: SaveV2 writes a checkpoint named
    by the canary, RestoreV2 reads one."""
    prefix = str(canary.path)

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable([1.0, 2.0])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def __call__(self, x):
            if op == "SaveV2":
                tf.raw_ops.SaveV2(prefix=prefix, tensor_names=["w"], shape_and_slices=[""], tensors=[self.w])
                return {"y": x * 2}
            (w,) = tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=["w"], shape_and_slices=[""],
                                        dtypes=[tf.float32])
            return {"y": x * tf.reduce_sum(w)}

    module = Module()
    path = tmp_path / op
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


@pytest.mark.parametrize("op, verdict, what", [("SaveV2", "unsafe", "writes files"),
                                               ("RestoreV2", "suspicious", "reads files")])
def test_checkpoint_ops_a_signature_reaches_are_file_ops(tf, tmp_path, canary, op, verdict, what):
    path = _checkpoint_op_module(tf, tmp_path, canary, op)
    artifact = convert.inspect(path)
    assert artifact.safety == verdict
    assert any(f"graph op {op} {what}, reached by signature 'serving_default'" in f.what for f in artifact.findings)
    assert main(["inspect", str(path)]) == (1 if verdict == "unsafe" else 0)
    assert main(["convert", str(path), "-o", str(tmp_path / "out.onnx")]) == 1  # refused without --trust
    assert not (tmp_path / "out.onnx").exists()


def test_a_write_nothing_reaches_is_suspicious_and_never_runs(tf, tmp_path, canary):
    """A TF1 graph holding a WriteFile no signature, init op or saver reaches: at most suspicious (it runs only
    if someone fetches it by hand); refused without --trust, and with it the load does not run it."""
    v1 = tf.compat.v1
    path = tmp_path / "dangling"
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        tf.io.write_file(str(canary.path), "fired", name="dangling_write")
        y = tf.identity(x * 2, name="y")
        with v1.Session(graph=graph) as sess:
            v1.saved_model.simple_save(sess, str(path), {"x": x}, {"y": y})
    artifact = convert.inspect(path)
    assert artifact.safety == "suspicious"
    (finding,) = [f for f in artifact.findings if f.severity != "info"]
    assert "WriteFile writes files, which no signature or load step reaches" in finding.what
    assert finding.where == "graph dangling_write"
    with pytest.raises(UnsafeArtifactError, match="suspicious: graph op WriteFile"):
        convert.load(path)
    loaded = convert.load(path, convert.Hints(trust=True))
    loaded.run({"x": [[1.0, 2.0]]})
    assert any("loaded with --trust" in note for note in loaded.notes)


def test_an_op_off_the_allowlist_loads_only_with_trust(tf, tmp_path, canary):
    path = sp.dataset_reduce(tmp_path, canary)
    with pytest.raises(UnsafeArtifactError, match="RangeDataset is not an op benign models use"):
        convert.load(path)
    assert main(["convert", str(path), "-o", str(tmp_path / "out.onnx")]) == 1
    loaded = convert.load(path, convert.Hints(trust=True))
    assert any("RangeDataset" in note for note in loaded.notes)


# ------------------------------------------------------------------------------------ the allowlist


def _generator():
    spec = importlib.util.spec_from_file_location("make_tf_ops", ROOT / "fixtures" / "make_tf_ops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_allowlist_is_data_built_by_its_principle(tf):
    from tensorflow.python.framework import op_def_registry

    data = json.loads(ALLOWLIST.read_text())
    allowed = set(data["allowed"])
    assert "make_tf_ops.py" in data["about"] and data["tensorflow"]
    never = {op for ops in data["kinds"].values() for op in ops}
    assert not allowed & never, allowed & never
    assert not allowed & {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "Save", "RestoreSlice"}
    checked = {op for rule in data["destinations"].values() for op in rule["ops"]}
    assert {"PrintV2", "DebugIdentity", "DebugNanCount", "DebugNumericSummary"} <= checked <= allowed
    # registered ops only, and none of them names a path, a URL or an address unless checked node by node
    generator = _generator()
    for op in sorted(allowed):
        op_def = op_def_registry.get(op)
        assert op_def is not None, f"{op} is not a TensorFlow op"
        assert op in checked or not generator.pathy(op_def), (op, generator.pathy(op_def))
    # what ordinary models hold is on it
    for folder in (TF_FIXTURES / "scorer_module", TF_FIXTURES / "recurrent_savedmodel"):
        assert set(scan_savedmodel(folder)[2]["ops"]) - CHECKPOINT_OPS <= allowed


# ---------------------------------------------------------------------------------------- symlinks


def _copy(tmp_path: Path, name: str = "model") -> Path:
    folder = tmp_path / name
    shutil.copytree(TF_FIXTURES / "scorer_module", folder)
    return folder


def _link_out(folder: Path, member: str, outside: Path) -> None:
    """Move ``member`` outside the folder and leave a symlink to it (a model cache does this)."""
    target = outside / member.replace("/", "_")
    outside.mkdir(exist_ok=True)
    shutil.move(str(folder / member), target)
    os.symlink(target, folder / member)


@pytest.mark.parametrize("member", ["saved_model.pb", "variables/variables.data-00000-of-00001",
                                    "variables/variables.index", "variables"])
def test_symlinks_leaving_the_folder_are_refused_even_with_trust(tf, tmp_path, member):
    folder = _copy(tmp_path)
    _link_out(folder, member, tmp_path / "elsewhere")
    artifact = convert.inspect(folder)
    assert artifact.safety == "suspicious"
    assert any(f"symlink {member} points outside the SavedModel folder" in f.what for f in artifact.findings)
    for trust in (False, True):
        with pytest.raises(UnsafeArtifactError, match=f"symlinks point outside the SavedModel folder: {member}") \
                as info:
            convert.load(folder, convert.Hints(trust=trust))
        assert "--trust does not lift this" in info.value.line() and "\n" not in info.value.line()
    assert main(["inspect", str(folder)]) == 0  # suspicious, not unsafe
    out = tmp_path / "out.onnx"
    assert main(["convert", str(folder), "-o", str(out), "--trust"]) == 1
    assert not out.exists()


def test_a_symlink_to_a_system_file_and_a_dangling_one_are_reported(tmp_path):
    folder = _copy(tmp_path)
    (folder / "assets").mkdir()
    os.symlink("/etc/hostname", folder / "assets" / "vocab.txt")
    os.symlink(tmp_path / "gone", folder / "assets" / "missing.txt")
    whats = [f.what for f in convert.inspect(folder).findings]
    assert any("symlink assets/vocab.txt points outside the SavedModel folder (to /etc/hostname)" in w for w in whats)
    assert any("symlink assets/missing.txt" in w and "does not resolve" in w for w in whats)


def test_symlinks_that_stay_inside_the_folder_are_fine(tf, tmp_path):
    folder = _copy(tmp_path)
    (folder / "store").mkdir()
    data = "variables/variables.data-00000-of-00001"
    shutil.move(str(folder / data), folder / "store" / "data")
    os.symlink(Path("..") / "store" / "data", folder / data)  # relative, resolves inside
    artifact = convert.inspect(folder)
    assert artifact.safety == "safe", flagged(artifact)
    loaded = convert.load(folder)
    assert loaded.run({"features": [[50.0] * 6]})


def test_the_audit_refuses_an_outside_symlink_even_when_trusted(tf, tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    folder = _copy(zoo)
    _link_out(folder, "variables/variables.data-00000-of-00001", tmp_path / "elsewhere")
    for trust in (False, True):
        (row,) = audit([zoo], jobs=1, timeout=300, trust=trust).artifacts
        assert row.safety == "suspicious"
        assert (row.load.status, row.load.category) == ("refused", "unsafe"), row.load
        assert "outside the SavedModel folder" in row.load.reason


# ------------------------------------------------------------------------------ vocabulary files (assets)


def _tf1_vocab_table(tf, tmp_path: Path, vocab: Path, as_asset: bool) -> Path:
    """A TF1 graph whose table reads a vocabulary file at load: registered as an asset (copied into assets/, the
    loader feeds its path), or not (the absolute path baked into the graph is read as it is)."""
    v1 = tf.compat.v1
    path = tmp_path / ("tf1-vocab-asset" if as_asset else "tf1-vocab-path")
    graph = tf.Graph()
    with graph.as_default():
        words = v1.placeholder(tf.string, [None], name="word")
        table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
            str(vocab), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
            -1)
        ids = table.lookup(words)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.tables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                sess, ["serve"], {"serving_default": v1.saved_model.predict_signature_def({"word": words},
                                                                                         {"id": ids})},
                main_op=v1.tables_initializer(),
                assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS) if as_asset else None)
            builder.save()
    return path


def _tf2_constant_path_table(tf, tmp_path: Path, target: str) -> Path:
    """A serving function that fills a table from a file named by a constant: it reads whatever that names."""

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="word")])
        def __call__(self, word):
            table = tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.int64)
            tf.raw_ops.InitializeTableFromTextFileV2(table_handle=table, filename=target, key_index=-2,
                                                     value_index=-1)
            return {"id": tf.raw_ops.LookupTableFindV2(table_handle=table, keys=word,
                                                       default_value=tf.constant(-1, tf.int64))}

    module = Module()
    path = tmp_path / "tf2-constant-path"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


def test_vocabulary_tables_may_read_their_assets_and_nothing_else(tf, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("cat\ndog\n")

    class Tf2Vocab(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
                str(vocab), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER), -1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="word")])
        def __call__(self, word):
            return {"id": self.table.lookup(word)}

    module = Tf2Vocab()
    tf.saved_model.save(module, str(tmp_path / "tf2-vocab-asset"), signatures={"serving_default": module.__call__})
    for path in (_tf1_vocab_table(tf, tmp_path, vocab, as_asset=True), tmp_path / "tf2-vocab-asset"):
        artifact = convert.inspect(path)
        assert artifact.safety == "safe", (path.name, flagged(artifact))
        assert any("InitializeTableFromTextFileV2 reads a vocabulary file (an asset), run at load" in f.what
                   for f in artifact.findings if f.severity == "info"), path.name
    for path in (_tf1_vocab_table(tf, tmp_path, vocab, as_asset=False),
                 _tf2_constant_path_table(tf, tmp_path, "/etc/hostname")):
        artifact = convert.inspect(path)
        assert artifact.safety == "suspicious", path.name
        assert any("InitializeTableFromTextFileV2 reads files (a file name that is none of the SavedModel's assets)"
                   in f.what for f in artifact.findings), (path.name, flagged(artifact))
        with pytest.raises(UnsafeArtifactError, match="reads files"):
            convert.load(path)


def test_a_repeated_node_name_cannot_hide_an_op(tf, tmp_path):
    """A crafted graph with two nodes named ``y`` (the signature's output), the second a WriteFile: each is
    judged (TensorFlow itself refuses such a graph; the scan does not pick one)."""
    from tensorflow.core.framework import node_def_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    path = sp.tf1_model(tmp_path, name="twice")
    model = saved_model_pb2.SavedModel()
    model.ParseFromString((path / "saved_model.pb").read_bytes())
    nodes = model.meta_graphs[0].graph_def.node
    nodes.insert(0, node_def_pb2.NodeDef(name="y", op="WriteFile", input=["x", "x"]))
    (path / "saved_model.pb").write_bytes(model.SerializeToString())
    artifact = convert.inspect(path)
    assert artifact.safety == "unsafe"
    assert any("WriteFile writes files, reached by signature 'serving_default'" in f.what and f.where == "graph y"
               for f in artifact.findings), flagged(artifact)
