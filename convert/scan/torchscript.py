"""What the TorchScript source in an archive's ``code/`` folder calls, read by tokens.

``torch.jit.load`` compiles that source, and the model runs it. A pattern over the text misses spellings
TorchScript's parser accepts (``torch . save (``, a line break inside the parentheses, a comment between the
dots, ``getattr(torch, "save")``); this module tokenizes the source with Python's tokenizer (TorchScript's
serialized code is Python syntax), rebuilds dotted paths whatever the whitespace, comments and line
continuations between their parts, and judges each call by the operator it resolves to: ``torch.X`` and
``torch.autograd.X`` are ``aten::X``, ``ops.NS.X`` (or ``torch.ops.NS.X``) is ``NS::X``, and a method call
``x.save(...)`` resolves to ``aten::save`` with ``x`` as its first argument.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass

CODE_MAX = 64 << 20  # bytes of one source file read; a larger one is not vouched for

# operator -> (severity, what it does when the model runs)
OPERATORS = {
    "aten::save": ("unsafe", "torch.save: writes files when the model runs"),
    "aten::from_file": ("unsafe", "torch.from_file: reads (and with shared=True writes) files when the model runs"),
    "debugprims::load_tensor": ("unsafe", "debugprims.load_tensor: reads files when the model runs"),
}
# namespaces whose operators open network connections (distributed collectives)
NETWORK_NAMESPACES = frozenset(("c10d", "_c10d_functional", "_c10d_functional_autograd", "symm_mem", "_dtensor"))
# operator namespaces torch itself registers for ordinary models (anything else is a custom operator)
TORCH_NAMESPACES = frozenset(("aten", "prim", "prims", "quantized", "_quantized", "quantization", "sparse", "mkldnn",
                              "mkl", "onednn", "mkldnn_prepacked", "profiler", "rngprims", "_native", "inductor_prims",
                              "onnx", "static_runtime", "debugprims", "_test"))
# custom-class namespaces torch itself registers (quantized models hold torch.classes.quantized.* objects)
TORCH_CLASS_NAMESPACES = frozenset(("quantized", "xnnpack", "profiler", "cuda", "mkldnn", "onednn", "_nnapi", "sparse"))
# names that, called as a method (``x.save(path)``), resolve to one of OPERATORS
_METHOD_OPS = {op.split("::")[1]: op for op in OPERATORS}
_SKIP = frozenset((tokenize.NL, tokenize.COMMENT))


@dataclass(frozen=True)
class Call:
    """One judged call: severity (``unsafe`` | ``suspicious``), what it is, and the line it is on."""

    severity: str
    what: str
    line: int


class CodeError(Exception):
    """Source the scan cannot read to its end (the verdict is then unknown)."""


def scan(fh) -> list[Call]:
    """The calls in one TorchScript source file (a binary file object) that reach outside the model."""
    data = fh.read(CODE_MAX + 1)
    if len(data) > CODE_MAX:
        raise CodeError(f"TorchScript source larger than {CODE_MAX} bytes")
    text = data.decode("utf-8", "replace")
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type not in _SKIP]
    except (tokenize.TokenError, SyntaxError, IndentationError) as exc:
        raise CodeError(f"TorchScript source does not tokenize: {exc}") from None
    defined = {tokens[i + 1].string for i, t in enumerate(tokens[:-1])
               if t.type == tokenize.NAME and t.string == "def" and tokens[i + 1].type == tokenize.NAME}
    found, seen = [], set()
    for path, line in _paths(tokens):
        judged = _judge(path, defined)
        if judged is not None and judged[1] not in seen:
            seen.add(judged[1])
            found.append(Call(judged[0], judged[1], line))
    return found


def _paths(tokens):
    """(dotted path as a list of names, line) for every maximal ``NAME (. NAME)*`` run, and ``getattr(x, "n")``
    read as ``x.n``."""
    i, n = 0, len(tokens)
    while i < n:
        t = tokens[i]
        if t.type != tokenize.NAME:
            i += 1
            continue
        # an attribute of an expression (``"p".from_file``, ``f(x).save``) starts from an anonymous receiver
        path, j = (["<expr>", t.string] if i and _is(tokens[i - 1], ".") else [t.string]), i + 1
        while j + 1 < n and _is(tokens[j], ".") and tokens[j + 1].type == tokenize.NAME:
            path.append(tokens[j + 1].string)
            j += 2
        if path == ["getattr"] and j < n and _is(tokens[j], "("):
            got = _getattr_path(tokens, j + 1)
            if got is not None:
                yield got, t.start[0]
        yield path, t.start[0]
        i = j


def _getattr_path(tokens, i: int):
    """``getattr(<path>, "<name>")`` starting after the parenthesis: the path extended by the string."""
    path = []
    while i < len(tokens) and tokens[i].type == tokenize.NAME:
        path.append(tokens[i].string)
        i += 1
        if i < len(tokens) and _is(tokens[i], "."):
            i += 1
        else:
            break
    if not path or i + 1 >= len(tokens) or not _is(tokens[i], ",") or tokens[i + 1].type != tokenize.STRING:
        return None
    try:
        name = ast.literal_eval(tokens[i + 1].string)
    except (ValueError, SyntaxError):
        return None
    return path + [name] if isinstance(name, str) else None


def _is(token, op: str) -> bool:
    return token.type == tokenize.OP and token.string == op


def _judge(path: list, defined: set):
    """(severity, what) for a dotted path, or None when it reaches nothing outside the model."""
    operator = _operator(path)
    if operator is not None:
        namespace, name = operator.split("::", 1)
        if operator in OPERATORS:
            severity, what = OPERATORS[operator]
            return severity, f"TorchScript code calls {what}"
        if namespace in NETWORK_NAMESPACES:
            return "suspicious", (f"TorchScript code calls {namespace}.{name}: distributed collectives open network "
                                  "connections when the model runs")
        if namespace not in TORCH_NAMESPACES:
            return "suspicious", (f"TorchScript code calls custom operator ops.{namespace}.{name} (native code loaded "
                                  "outside the archive)")
    custom = _custom_class(path)
    if custom is not None:
        namespace = custom.split(".")[0]
        if namespace in NETWORK_NAMESPACES:
            return "suspicious", (f"TorchScript code uses torch.classes.{custom}: distributed process groups open "
                                  "network connections")
        return "suspicious", f"TorchScript code uses custom class torch.classes.{custom} (native code loaded outside the archive)"
    if len(path) >= 2 and path[-1] in _METHOD_OPS and not (path[0] == "self" and path[-1] in defined):
        severity, what = OPERATORS[_METHOD_OPS[path[-1]]]
        return severity, f"TorchScript code calls {what} (as a method: {'.'.join(path)})"
    return None


def _operator(path: list) -> str | None:
    if path[:2] == ["torch", "ops"]:
        path = path[1:]
    if path[0] == "ops" and len(path) >= 3:
        return f"{path[1]}::{path[2]}"
    if path[0] == "torch" and len(path) >= 2:
        if path[1] == "autograd" and len(path) >= 3:
            return f"aten::{path[2]}"
        if path[1] in ("ops", "classes"):
            return None
        return f"aten::{path[1]}"
    return None


def _custom_class(path: list) -> str | None:
    if path[:1] == ["__torch__"]:
        path = path[1:]
    if path[:2] == ["torch", "classes"] and len(path) >= 3 and path[2] not in TORCH_CLASS_NAMESPACES:
        return ".".join(path[2:4])
    return None
