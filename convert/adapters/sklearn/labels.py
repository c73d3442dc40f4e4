"""Labels the graph derives from the quantity scikit-learn's ``predict`` compares.

Some skl2onnx converters take the label as the argmax of the probabilities while scikit-learn's
``predict`` takes it from ``decision_function``. Where probabilities saturate (one-vs-rest sigmoids of
large margins are all 1.0, in float32 and in float64 alike) the two disagree on rows that are not tied
at all: a ``SGDClassifier(loss="log_loss")`` on unscaled features flips about one label in ten. The
fix is cheap and exact: convert the model a second time with the converter's ``raw_scores`` option (its
label is then the argmax of the raw scores) and take the label from there, keeping the probabilities.
"""

from __future__ import annotations

# estimator class -> why its converter's label needs the raw scores (applies when predict decides with
# decision_function and the estimator also gives probabilities)
FROM_RAW_SCORES = {
    "SGDClassifier": "skl2onnx takes the label from the normalised probabilities, scikit-learn from decision_function",
    "OneVsRestClassifier": "skl2onnx takes the label from the members' probabilities, scikit-learn from their "
                           "decision_function",
}
PREFIX = "raw_label__"


def needs_raw_scores(final, decided_by: str | None) -> str | None:
    """Why ``final`` (the estimator that gives the graph's label) needs its label from raw scores, or None."""
    why = FROM_RAW_SCORES.get(type(final).__name__)
    if why and decided_by == "decision_function" and hasattr(final, "predict_proba"):
        return why
    return None


def take_label(model, raw):
    """``model`` with its first output (the label) computed as in ``raw`` (the same estimator converted
    with raw scores); the nodes that computed the old label are dropped. Returns None when ``raw`` holds
    constructs this merge does not rename (subgraphs, functions)."""
    from onnx import helper

    if raw.functions or any(a.g.node or a.graphs for n in raw.graph.node for a in n.attribute):
        return None
    graph, other = model.graph, raw.graph
    inputs = {i.name for i in other.input}
    rename = lambda name: name if not name or name in inputs else PREFIX + name  # noqa: E731
    for init in other.initializer:
        init.name = rename(init.name)
        graph.initializer.append(init)
    for node in other.node:
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        node.name = rename(node.name)
        graph.node.append(node)
    label = graph.output[0].name
    for node in graph.node:
        if label in node.output and not node.name.startswith(PREFIX):
            node.output[:] = [PREFIX + "unused_" + n if n == label else n for n in node.output]
    graph.node.append(helper.make_node("Identity", [rename(other.output[0].name)], [label], name=PREFIX + "label"))
    have = {(o.domain, o.version) for o in model.opset_import}
    for imp in raw.opset_import:
        if imp.domain not in {d for d, _ in have}:
            model.opset_import.append(imp)
    _prune(graph)
    return model


def _prune(graph) -> None:
    """Drop the nodes and initializers no graph output depends on."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(n for n in node.input if n)
            needed.update(_subgraph_names(node))
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _subgraph_names(node) -> set[str]:
    """Every tensor name a node's subgraphs read (they may read outer-scope tensors)."""
    names: set[str] = set()
    for attr in node.attribute:
        for g in ([attr.g] if attr.g.node else []) + list(attr.graphs):
            for inner in g.node:
                names.update(n for n in inner.input if n)
                names |= _subgraph_names(inner)
    return names
