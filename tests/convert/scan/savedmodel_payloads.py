"""SavedModels built with real TensorFlow calls: payloads whose graph writes a canary (or reads, or calls
Python) from a serving signature or at load time, and benign TF1/TF2 models with the saver graph every
SavedModel carries. Each builder is ``(folder, canary) -> path`` (benign ones ignore the canary); TensorFlow is
imported when a builder runs."""

from __future__ import annotations

from pathlib import Path

import pytest


def _tf():
    tf = pytest.importorskip("tensorflow")
    return tf


def _module_with(body, name: str):
    """A tf.Module whose ``__call__(x)`` (float32 [None]) runs ``body(tf, x)`` and returns x * 2, saved with
    that function as its serving signature."""

    def build(d: Path, c) -> Path:
        tf = _tf()

        class Module(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
            def __call__(self, x):
                x = body(tf, x, str(c.path)) if body else x
                return {"y": x * 2}

        module = Module()
        path = d / name
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
        return path

    return build


def _print_to_file(tf, x, target):
    tf.print("the canary", output_stream=f"file://{target}")
    return x


def _print_to_stderr(tf, x, target):
    tf.print("batch of", tf.shape(x))  # the default stream: benign
    return x


def _debug_identity_to_file(tf, x, target):
    from tensorflow.python.ops import gen_debug_ops

    return gen_debug_ops.debug_identity(x, tensor_name="x:0", debug_urls=[f"file://{target}"])


def _write_in_cond_branch(tf, x, target):
    """WriteFile inside a branch function of tf.cond: reached through the If op's then_branch attribute."""

    def write():
        tf.io.write_file(target, "fired")
        return x + 1

    return tf.cond(tf.size(x) >= 0, write, lambda: x - 1)


def _write_in_nested_function(tf, x, target):
    @tf.function
    def inner(v):
        tf.io.write_file(target, tf.strings.as_string(tf.reduce_sum(v)))
        return v

    return inner(x)


def _numpy_function(tf, x, target):
    return tf.numpy_function(lambda v: v, [x], tf.float32, stateful=True)


def _dataset_reduce(tf, x, target):
    """Datasets in a serving function: ops off the allowlist (nothing here touches a file)."""
    total = tf.data.Dataset.range(3).reduce(tf.constant(0, tf.int64), lambda a, b: a + b)
    return x + tf.cast(total, tf.float32)


print_to_file = _module_with(_print_to_file, "print-to-file")
print_to_stderr = _module_with(_print_to_stderr, "print-to-stderr")
debug_identity_to_file = _module_with(_debug_identity_to_file, "debug-identity")
write_in_cond_branch = _module_with(_write_in_cond_branch, "write-in-cond")
write_in_nested_function = _module_with(_write_in_nested_function, "write-in-nested")
numpy_function = _module_with(_numpy_function, "py-func")
dataset_reduce = _module_with(_dataset_reduce, "dataset-ops")


def resource_initializer_writes(d: Path, c) -> Path:
    """A TF2 resource whose initializer (run by tf.saved_model.load) writes the canary."""
    tf = _tf()
    target = str(c.path)

    class Writes(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

        def _initialize(self):
            tf.io.write_file(target, "fired")
            tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1.0)

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.res = Writes()

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": x * tf.raw_ops.ReadVariableOp(resource=self.res.resource_handle, dtype=tf.float32)}

    module = Module()
    path = d / "resource-init"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


def tf1_model(d: Path, c=None, *, init: str | None = None, name: str = "tf1", sharded: bool = True,
              checkpoint_v1: bool = False, simple_save: bool = False, assets: bool = False,
              reference: bool = False) -> Path:
    """A TF1-style SavedModel (graph mode, tf.compat.v1), as TF Serving exporters and tf2onnx wrote them: a
    placeholder, variables, a predict signature and the saver graph. ``init`` = ``"main_op"`` or
    ``"legacy_init_op"`` adds an init op that writes the canary; ``assets`` adds an asset file and a legacy init
    op that assigns its path to a variable (TF Serving's half_plus_two)."""
    tf = _tf()
    v1 = tf.compat.v1
    path = d / name
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        w = v1.get_variable("w", initializer=tf.constant([[0.5], [1.0], [2.0]]), use_resource=not reference)
        b = v1.get_variable("b", initializer=tf.constant([2.0]), use_resource=not reference)
        y = tf.identity(tf.matmul(x, w) + b, name="y")
        extra = {}
        if init == "main_op":
            extra["main_op"] = tf.group(tf.io.write_file(str(c.path), "fired"))
        elif init == "legacy_init_op":  # the collection older exporters wrote (today's Builder turns the keyword
            # into a main_op)
            v1.add_to_collection("legacy_init_op", tf.group(tf.io.write_file(str(c.path), "fired")))
        if assets:
            source = d / "foo.txt"
            source.write_text("asset-file-contents")
            filename = tf.constant(str(source), name="filename_tensor")
            v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, filename)
            holder = v1.get_variable("filename", initializer="", dtype=tf.string, use_resource=not reference)
            extra["legacy_init_op"] = tf.group(v1.assign(holder, filename))
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            if simple_save:
                v1.saved_model.simple_save(sess, str(path), {"x": x}, {"y": y})
            else:
                version = v1.train.SaverDef.V1 if checkpoint_v1 else v1.train.SaverDef.V2
                saver = v1.train.Saver(sharded=sharded, write_version=version)
                builder = v1.saved_model.Builder(str(path))
                signature = v1.saved_model.predict_signature_def({"x": x}, {"y": y})
                asset_collection = v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS) if assets else None
                builder.add_meta_graph_and_variables(sess, ["serve"], {"serving_default": signature},
                                                     assets_collection=asset_collection, saver=saver, **extra)
                builder.save()
    return path


def tf1_init_writes(init: str):
    def build(d: Path, c) -> Path:
        return tf1_model(d, c, init=init, name=f"tf1-{init.replace('_', '-')}")

    return build


def save_op_in_signature(d: Path, c) -> Path:
    """A TF1 signature whose output waits on a ``Save`` op writing the canary: a checkpoint op outside the saver."""
    tf = _tf()
    v1 = tf.compat.v1
    path = d / "save-in-signature"
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        w = v1.get_variable("w", initializer=tf.ones([3, 1]))
        with tf.control_dependencies([tf.raw_ops.Save(filename=str(c.path), tensor_names=["w"], data=[w.value()])]):
            y = tf.identity(tf.matmul(x, w), name="y")
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            v1.saved_model.simple_save(sess, str(path), {"x": x}, {"y": y})
    return path


def saver_restore_writes(d: Path, c) -> Path:
    """A crafted TF1 SavedModel: the saver's restore op (which loaders run to restore the variables) also waits
    on a WriteFile node added to the graph."""
    tf = _tf()
    from tensorflow.core.framework import node_def_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    path = tf1_model(d, name="saver-restore-writes")
    model = saved_model_pb2.SavedModel()
    model.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = model.meta_graphs[0]
    for name, value in (("canary_path", str(c.path)), ("canary_text", "fired")):
        const = node_def_pb2.NodeDef(name=name, op="Const")
        const.attr["dtype"].type = tf.string.as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        graph.graph_def.node.append(const)
    graph.graph_def.node.append(node_def_pb2.NodeDef(name="sneaky_write", op="WriteFile",
                                                     input=["canary_path", "canary_text"]))
    restore = next(n for n in graph.graph_def.node if n.name == graph.saver_def.restore_op_name)
    restore.input.append("^sneaky_write")
    (path / "saved_model.pb").write_bytes(model.SerializeToString())
    return path
