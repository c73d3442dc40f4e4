"""Same inputs through the native and the ONNX model, one verdict: ``inputs`` (synthesized or read), ``run``
(onnxruntime), ``compare`` (per-output tolerances), ``harness`` (check, convert + remedies), ``report``,
``timing`` (bench)."""
