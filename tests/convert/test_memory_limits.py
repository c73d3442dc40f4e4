"""Memory a load would take (issue 12 item 13): a torch zip archive whose members declare far more than the
file holds is refused before torch.load with one line (exit 2), and an allocation that fails while loading
(torch, scikit-learn) is reported as out-of-memory, never as a damaged file. Every archive here is written by
torch and re-packed with zipfile; the controls run torch.load for real in a child process."""

from __future__ import annotations

import os
import pickle
import pickletools
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import convert  # noqa: E402
from compat import audit  # noqa: E402
from compat.audits.diagnose import classify  # noqa: E402
from convert.adapters import memory  # noqa: E402
from convert.errors import BadInputError, OutOfMemoryError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NETS = ROOT / "fixtures" / "torch" / "nets.py"
INFLATED = 512 << 20  # what the bomb declares: past memory.BOMB_FLOOR, ~1000x its size


def deflated(path: Path, out: Path) -> Path:
    """``path`` (a torch zip archive) re-packed with every member deflated, streamed member by member."""
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        for info in zin.infolist():
            with zin.open(info) as src, zout.open(info.filename, "w", force_zip64=True) as dst:
                while chunk := src.read(1 << 24):
                    dst.write(chunk)
    return out


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A state dict of 512 MiB of zeros, saved by torch and re-packed deflated: about 0.5 MB on disk."""
    folder = tmp_path_factory.mktemp("bomb")
    plain = folder / "plain.pt"
    torch.save({"weight": torch.zeros(INFLATED // 4)}, plain)
    path = deflated(plain, folder / "bomb.pt")
    plain.unlink()
    return path


def run_child(code: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))


# peak resident memory of this process, in kB (VmHWM is per process image; ru_maxrss carries the parent's)
PEAK = "def peak():\n    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
# a child that runs the modelport CLI and prints, last, how much its own peak memory grew
CLI_PEAK = PEAK + """
import sys
import torch, compat.cli
before = peak()
code = compat.cli.main(sys.argv[1:])
print(f"exit={code} grown_kb={peak() - before}")
"""


def test_the_bomb_is_small_on_disk_and_inflates_for_real_under_torch_load(bomb):
    """Positive control: torch's zip reader inflates deflated members, and allocates what they declare."""
    assert bomb.stat().st_size < INFLATED / 500
    code = PEAK + ("import sys, torch\nb = peak()\nobj = torch.load(sys.argv[1], weights_only=True)\n"
                   "print(obj['weight'].numel() * 4, peak() - b)")
    done = run_child(code, bomb)
    nbytes, grown_kb = map(int, done.stdout.split())
    assert nbytes == INFLATED
    assert grown_kb * 1024 > 0.9 * INFLATED, done.stdout  # the memory was really taken


def test_a_compression_bomb_is_refused_before_torch_load_with_one_line(bomb):
    found = memory.declared(bomb)
    assert found.inflated >= INFLATED and found.inflated > memory.BOMB_RATIO * found.archive
    assert convert.inspect(bomb).format == "torch-zip"
    for trust in (False, True):  # not code: --trust does not make the memory appear
        with pytest.raises(OutOfMemoryError) as info:
            convert.load(bomb, convert.Hints(trust=trust, model_class="torch.nn:Linear"))
        line = info.value.line()
        assert "declares 512.0 MB when inflated" in line and "compression bomb" in line and str(bomb) in line
        assert "\n" not in line and info.value.exit_code == 2


def test_the_cli_refuses_the_bomb_with_exit_2_and_never_takes_the_memory(bomb, tmp_path):
    out = tmp_path / "out.onnx"
    done = run_child(CLI_PEAK, "convert", bomb, "-o", out, "--model-class", "torch.nn:Linear",
                     "--model-args", '{"in_features": 2, "out_features": 2}')
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("exit=2"), (done.stdout, done.stderr)
    grown_kb = int(last.split("grown_kb=")[1])
    assert grown_kb * 1024 < INFLATED / 4, last  # the load never started
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "compression bomb" in errors[0] and "Traceback" not in done.stderr
    assert not out.exists()


def test_the_audit_reports_the_bomb_out_of_memory_not_corrupt(bomb, tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / bomb.name).write_bytes(bomb.read_bytes())
    report = audit([folder], jobs=1, timeout=120)
    (row,) = report.artifacts
    assert (row.load.status, row.load.category) == ("out-of-memory", "out-of-memory"), row.load
    assert "compression bomb" in row.load.reason


def test_an_archive_within_the_bounds_loads(tmp_path):
    """The same re-packing of ordinary weights (they deflate by less than 2x): loaded as usual."""
    torch.manual_seed(0)
    state = torch.nn.Linear(64, 8).state_dict()
    torch.save({f"hidden.{k}": v for k, v in state.items()} | {"head.weight": torch.randn(3, 8),
                                                                "head.bias": torch.randn(3)}, tmp_path / "plain.pt")
    path = deflated(tmp_path / "plain.pt", tmp_path / "deflated.pt")
    assert memory.declared(path).ratio < memory.BOMB_RATIO
    loaded = convert.load(path, convert.Hints(model_class=f"{NETS}:MLP", model_args={"in_features": 64,
                                                                                     "hidden": 8}))
    assert torch.equal(loaded.model.hidden.weight, state["weight"])


def test_an_archive_past_this_process_memory_is_refused(tmp_path):
    """Not a bomb (stored, not deflated), but more than the process may allocate: the child caps its address
    space just above what it uses, and the refusal names the room it has."""
    path = tmp_path / "big.pt"
    torch.save({"weight": torch.zeros((96 << 20) // 4)}, path)  # 96 MiB stored: ratio ~1
    code = ("import resource, sys\nimport torch, convert\nfrom convert.adapters import memory\n"
            "used = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024\n"
            "resource.setrlimit(resource.RLIMIT_AS, (used + (64 << 20), resource.RLIM_INFINITY))\n"
            "try:\n    memory.check_archive(sys.argv[1])\nexcept Exception as exc:\n    print(exc)\n")
    done = run_child(code, path)
    assert "declares 96.0 MB when inflated" in done.stdout and "of memory this process can get" in done.stdout, \
        (done.stdout, done.stderr)


# ------------------------------------------------------------------------------- legacy (non-zip) files


def legacy_declaring(path: Path, numel: int) -> Path:
    """A legacy torch file (torch.save, _use_new_zipfile_serialization=False) of 4 floats whose object pickle
    is edited to declare ``numel`` elements for its storage (the data that follows stays 4 floats)."""
    torch.save({"weight": torch.zeros(4)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    # the object pickle is the 4th stream; its persistent id is ('storage', FloatStorage, key, 'cpu', numel)
    start = 0
    for _ in range(3):
        start = next(pos for op, arg, pos in pickletools.genops(data[start:]) if op.name == "STOP") + start + 1
    ops = list(pickletools.genops(data[start:]))
    cpu = next(i for i, (op, arg, pos) in enumerate(ops) if arg == "cpu")
    op, arg, pos = ops[cpu + 1]
    while op.name.endswith("PUT") or op.name == "MEMOIZE":  # the memo store after 'cpu'
        cpu += 1
        op, arg, pos = ops[cpu + 1]
    assert arg == 4 and op.name == "BININT1", (op.name, arg)
    at = start + pos
    patched = data[:at] + b"J" + numel.to_bytes(4, "little") + data[at + 2:]
    path.write_bytes(patched)
    return path


def test_a_legacy_file_declaring_more_than_it_holds_is_refused_before_torch_load(tmp_path):
    path = legacy_declaring(tmp_path / "legacy.pt", 1_000_000_000)  # 4 GB of floats declared, 16 bytes held
    # control: torch.load allocates what the pickle declares before it reads the data: under an address-space
    # cap it fails on that allocation
    code = ("import resource, sys\nimport torch\n"
            "used = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024\n"
            "resource.setrlimit(resource.RLIMIT_AS, (used + (1 << 30), resource.RLIM_INFINITY))\n"
            "try:\n    torch.load(sys.argv[1], weights_only=True)\nexcept Exception as exc:\n    print(exc)\n")
    done = run_child(code, path)
    assert memory.is_allocation_failure(RuntimeError(done.stdout)), (done.stdout, done.stderr)
    artifact = convert.inspect(path)
    assert "where the pickles describe 4000000008" in artifact.details.get("corrupt", ""), artifact.details
    with pytest.raises(BadInputError) as info:
        convert.load(path, convert.Hints(trust=True, model_class="torch.nn:Linear"))
    assert "nothing was loaded" in info.value.line() and info.value.exit_code == 2


# ------------------------------------------------------------------------------------ allocation failures


def _raised(make):
    try:
        make()
    except BaseException as exc:  # noqa: BLE001 -- the real exception each library raises
        return exc
    raise AssertionError("no allocation failure")


def test_real_allocation_failures_classify_as_out_of_memory_not_corrupt(bomb):
    import numpy as np

    failures = {
        "MemoryError": _raised(lambda: bytearray(1 << 62)),
        "numpy": _raised(lambda: np.empty(1 << 62, np.uint8)),
        "torch": _raised(lambda: torch.empty(1 << 62, dtype=torch.uint8)),
        "modelport": _raised(lambda: memory.check_archive(bomb)),
    }
    for label, exc in failures.items():
        status, category, reason = classify(exc)
        assert (status, category) == ("out-of-memory", "out-of-memory"), (label, reason)
    truncated = _raised(lambda: pickle.loads(pickle.dumps(list(range(100)))[:-30]))
    assert classify(truncated)[1] == "corrupt"  # damage is still damage


def test_an_allocation_failure_during_torch_load_is_out_of_memory_exit_2(tmp_path):
    """A sound legacy file of 128 MiB, loaded by the CLI in a child whose address space leaves 64 MiB: torch's
    allocation fails, and the one line says so (it is no damaged file)."""
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros((128 << 20) // 4)}, path, _use_new_zipfile_serialization=False)
    code = ("import resource, sys\nimport torch, onnx, onnxruntime, compat.cli, convert, convert.adapters.torch\n"
            "used = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024\n"
            "resource.setrlimit(resource.RLIMIT_AS, (used + (64 << 20), resource.RLIM_INFINITY))\n"
            "print('exit', compat.cli.main(sys.argv[1:]))\n")
    done = run_child(code, "convert", path, "-o", tmp_path / "out.onnx", "--model-class", "torch.nn:Linear")
    assert done.stdout.strip().endswith("exit 2"), (done.stdout, done.stderr)
    assert "ran out of memory while loading it" in done.stderr and "corrupt" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_an_allocation_failure_while_unpickling_a_sklearn_model_is_out_of_memory(tmp_path):
    """The same for a scikit-learn pickle holding a 128 MiB array: its static scan is clean, so a MemoryError
    while unpickling is the memory, not the file."""
    import numpy as np
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(np.eye(3), [0.0, 1.0, 2.0])
    model.coef_ = np.zeros((128 << 20) // 8)
    path = tmp_path / "wide.pkl"
    path.write_bytes(pickle.dumps(model, 5))
    assert convert.inspect(path).safety == "safe"
    code = ("import resource, sys\nimport sklearn.linear_model, onnx, onnxruntime, compat.cli, convert\n"
            "import convert.adapters.sklearn\n"
            "used = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024\n"
            "resource.setrlimit(resource.RLIMIT_AS, (used + (64 << 20), resource.RLIM_INFINITY))\n"
            "print('exit', compat.cli.main(sys.argv[1:]))\n")
    done = run_child(code, "convert", path, "-o", tmp_path / "out.onnx")
    assert done.stdout.strip().endswith("exit 2"), (done.stdout, done.stderr)
    assert "ran out of memory while loading it" in done.stderr and "corrupt" not in done.stderr, done.stderr
