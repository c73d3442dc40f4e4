"""PyTorch: state dicts, checkpoints, whole modules, TorchScript and torch.export archives -> ONNX.

What this adds to a bare ``torch.onnx.export`` call:
- loading what people actually have on disk (``_torch_load``): a state dict plus ``--model-class``, the
  state dict inside a training checkpoint (found and reported; ``--state-key`` overrides), wrapper
  prefixes stripped (``module.``), TorchScript and ``.pt2`` archives without a class, a whole pickled
  module only with ``--trust``; always ``weights_only=True`` otherwise;
- a signature (``_torch_sig``): inputs from ``--input``, the ``.pt2`` archive, or the first layer;
  integer inputs bounded by the vocabulary of the embedding that reads them; outputs named ``output``,
  ``output_0..`` or after dict keys, on both the native and the ONNX side;
- export with the cheaper exporter first: the TorchScript exporter (about 0.1 s) for an nn.Module, the
  dynamo exporter (seconds, plus its warm-up) when the first fails, or as the remedy when the first one's
  graph disagrees in the check (said in the notes, each timed); ``--exporter`` forces one. An export is
  failed when its graph, run at sizes other than the export example's, does not run, makes onnxruntime warn
  about a shape, or holds any tensor (outputs included) whose declared size contradicts the run: an axis
  the exporter froze is never patched over. The export example's sizes (batch 2, other dynamic axes 5, 6,
  7...) are never the ones the check runs either.
torch is imported inside functions: importing this module costs nothing.
"""

from __future__ import annotations

import time

from ... import formats
from ...artifact import Artifact
from ...errors import BadInputError, UnsupportedModelError
from ...onnxfile import finalize
from ...spec import Signature
from . import export as exp
from .env import Native, first_line, require_torch, root_cause
from .load import LOADERS, load_script, vouches, weights_summary
from .sig import Runner, callable_of, example_feeds, input_specs, output_specs, program_symbols
from ..base import Converted, Hints, Loaded, Stopwatch, warm_modules

PLAIN, TORCHSCRIPT, DYNAMO = None, exp.TORCHSCRIPT, exp.DYNAMO
TORCH_FORMATS = tuple(f for f in formats.formats_of("torch") if formats.get(f).framework == "torch")
TORCH_SUFFIXES = (".pt", ".pth", ".pt2", ".ckpt", ".bin")  # a plain zip under these names is a broken torch file
# exporters to try, in order, per kind of native model. For an nn.Module the TorchScript exporter comes first:
# on the fixtures it is as correct as the dynamo exporter and 20-50x cheaper (benchmarks/torch_convert_overhead.py),
# and the dynamo exporter's warm-up alone would put `convert` past 1.3x a hand-written export script.
# (An ExportedProgram has no TorchScript route: tracing its module bakes the example's sizes into the graph.)
EXPORT_PLANS = {"module": (exp.TORCHSCRIPT, exp.DYNAMO), "export": (exp.DYNAMO,), "script": (exp.TORCHSCRIPT,)}
KIND_NAMES = {"module": "an nn.Module", "export": "a torch.export archive", "script": "a TorchScript archive"}


class TorchAdapter:
    name = "torch"
    formats = formats.formats_of("torch")
    modules = {"load": ("torch",), "convert": ("torch.onnx", "onnxscript"), "check": ("onnxruntime",)}

    def warm(self, step: str) -> list[str]:
        return warm_modules(self.modules, step)

    def vouches(self, ref) -> bool:
        """Globals torch's ``weights_only`` unpickler enforces itself (see ``formats.gate``)."""
        return vouches(ref)

    def weights_summary(self, artifact: Artifact, trust: bool = False) -> dict | None:
        """What a ``torch.save`` file holding weights (a state dict, or a checkpoint with one) weighs: tensors,
        parameters, dtypes and the key of the state dict; None when it holds a pickled module instead (then
        ``load`` takes it, with trust). Loads through the gate, ``weights_only`` unless trusted."""
        return weights_summary(artifact, Hints(trust=trust))

    def describe_script(self, artifact: Artifact, trust: bool = False) -> str:
        """Load a TorchScript archive (its code travels with it) and name it in a few words."""
        return load_script(artifact, Hints(trust=trust)).description

    safe_formats = ("safetensors",)

    def save_safe(self, loaded: Loaded, path, to: str = "safetensors") -> dict:
        """A module's weights as safetensors plus its class reference (see ``safe``)."""
        from .safe import save_safetensors

        return dict(save_safetensors(loaded, path), format="safetensors")

    def reload_safe(self, loaded: Loaded, path, to: str = "safetensors") -> Loaded:
        from .safe import reload_safetensors

        return reload_safetensors(loaded, path)

    def can_load(self, artifact: Artifact) -> bool:
        if artifact.format == "zip":
            return artifact.path.suffix.lower() in TORCH_SUFFIXES
        return artifact.format in TORCH_FORMATS and artifact.framework in (None, "torch")

    # -- load ---------------------------------------------------------------------------------
    def load(self, artifact: Artifact, hints: Hints) -> Loaded:
        t0 = time.perf_counter()
        require_torch()
        native = LOADERS[artifact.format](artifact, hints)
        notes = list(native.notes)
        symbols = program_symbols(native.model) if native.kind == "export" and not hints.inputs else {}
        floors = {name: low for name, low in symbols.values()}
        inputs = input_specs(native, hints, artifact, notes)
        outputs = output_specs(native, Signature(inputs), artifact, floors)
        signature = Signature(inputs, outputs)
        facts = {"estimator": native.description, "model": native.description.split(" ")[0], "kind": native.kind,
                 "exporters": _plan(native, hints, artifact), "symbols": {k: v[0] for k, v in symbols.items()},
                 "floors": floors, "saved_with": artifact.saved_with.get("torch")}
        runner = Runner(callable_of(native), signature)
        return Loaded(artifact, native.model, signature, runner, self.name, notes, facts, time.perf_counter() - t0)

    # -- convert --------------------------------------------------------------------------------
    def remedies(self, loaded: Loaded) -> tuple[str | None, ...]:
        """The plan in order, then each later exporter on its own: when the first exporter's graph runs but
        disagrees in the check, the next one gets its chance."""
        return (PLAIN,) + tuple(loaded.facts["exporters"][1:])

    def to_onnx(self, loaded: Loaded, opset: int | None = None, remedy: str | None = None) -> Converted:
        if remedy not in (PLAIN,) + tuple(exp.EXPORTERS):
            raise ValueError(f"unknown remedy {remedy!r}")
        steps: dict[str, float] = {}
        watch = Stopwatch(steps)
        notes: list[str] = []
        native = Native(loaded.model, loaded.facts["kind"], loaded.facts["estimator"])
        chain = _chain(loaded, opset, remedy, notes)
        floors = loaded.facts.get("floors")
        args = exp.example_args(loaded.signature, example_feeds(loaded.signature, floors=floors))
        probe = example_feeds(loaded.signature, shift=1, floors=floors, seed=1)
        model, used = _export(native, loaded, chain, args, probe, opset, watch, notes)
        with watch("finalize"):
            exp.rename_dim_params(model, loaded.facts.get("symbols") or {})
            exp.add_unused_inputs(model, loaded.signature, notes)
            try:
                model = finalize(model)
            except Exception as exc:
                raise UnsupportedModelError(f"the {used} exporter wrote an invalid ONNX graph: {first_line(exc)}",
                                            path=loaded.artifact.path, hint="nothing was written") from None
        return Converted(model, remedy, notes, steps)


ADAPTER = TorchAdapter()


# ---------------------------------------------------------------------------------------------


def _plan(native: Native, hints: Hints, artifact: Artifact) -> tuple[str, ...]:
    """The exporters to try, in order: the kind's default plan, or the one ``--exporter`` forces."""
    plan = EXPORT_PLANS[native.kind]
    if not hints.exporter:
        return plan
    if hints.exporter not in exp.EXPORTERS:
        raise BadInputError(f"unknown exporter {hints.exporter!r}", hint="use --exporter dynamo or torchscript")
    if hints.exporter not in plan:
        raise BadInputError(f"the {hints.exporter} exporter cannot take {KIND_NAMES[native.kind]}",
                            path=artifact.path, hint=f"use --exporter {plan[0]}")
    return (hints.exporter,)


def _chain(loaded: Loaded, opset: int | None, remedy: str | None, notes: list[str]) -> tuple[str, ...]:
    if remedy is not PLAIN:
        if remedy == DYNAMO and opset is not None and opset < exp.DYNAMO_MIN_OPSET:
            raise UnsupportedModelError(f"the dynamo exporter writes opset {exp.DYNAMO_MIN_OPSET} or later, not "
                                        f"{opset}", path=loaded.artifact.path)
        return (remedy,)
    chain = tuple(loaded.facts["exporters"])
    if opset is not None and opset < exp.DYNAMO_MIN_OPSET and exp.DYNAMO in chain and len(chain) > 1:
        notes.append(f"opset {opset} is below what the dynamo exporter writes ({exp.DYNAMO_MIN_OPSET}): only the "
                     "TorchScript exporter is tried")
        chain = tuple(e for e in chain if e != exp.DYNAMO)
    return chain


def _export(native: Native, loaded: Loaded, chain, args, probe, opset, watch: Stopwatch, notes: list[str]):
    """The first exporter of ``chain`` whose graph has the signature's names and dynamic axes and runs on
    inputs of other sizes (``probe``); the failures of those before it are said in ``notes``."""
    failures: list[tuple[str, str]] = []
    for exporter in chain:
        try:
            with watch(f"export-{exporter}"):
                model = exp.EXPORTERS[exporter](native, loaded.signature, args, opset)
            problem = (exp.check_graph(model, loaded.signature)
                       or exp.runs_at_other_sizes(model, loaded.signature, probe))
            if problem:
                raise exp.ExporterRefused(problem)
        except Exception as exc:
            failures.append((exporter, first_line(root_cause(exc))))
            continue
        seconds = watch.steps[f"export-{exporter}"]
        for failed, reason in failures:
            notes.append(f"{failed} exporter failed ({reason}); used the {exporter} exporter")
        notes.append(f"exported with the {exporter} exporter in {seconds:.1f} s")
        return model, exporter
    reasons = "; ".join(f"{e}: {r}" for e, r in failures)
    hint = ("TorchScript archives only go through the TorchScript exporter: convert the state dict (--model-class) "
            "or a torch.export .pt2 archive of the model instead" if native.kind == "script" else "nothing was written")
    raise UnsupportedModelError(f"no exporter converts {loaded.facts['estimator']} ({reasons})",
                                path=loaded.artifact.path, hint=hint)
