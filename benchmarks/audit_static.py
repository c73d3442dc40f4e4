"""Static audit against the open-source pickle scanners (picklescan, modelscan, fickling, installed as
benchmark-only tools in a venv of their own: benchmarks/.data/peers), on the same files in the same run:
one file, and a folder of 2,000 artifacts written by the real libraries (scikit-learn models as pickle and
joblib, compressed or not, torch state dicts and whole modules in both torch formats, numpy arrays, ONNX
models, configuration pickles) of varied sizes, with 20 payloads among them, 6 of them placed after joblib's
numpy array blocks, where only a reader that goes to the end of the file finds them.

Each peer is timed alternately with modelport (A B A B ...: the ratio is taken pair by pair, so a machine whose
speed drifts during the run does not tilt it). Target: at least picklescan's speed on both, with every file
read to its end: every payload reported unsafe, nothing else unsafe, no file left unknown.

picklescan stops at the first byte it cannot read as an opcode (a joblib array block, a compressed stream) and
says so; modelport reads on. So picklescan is also timed on equal terms: under modelport's own interpreter (the
same start-up), on a one-file pickle it parses to its end, and on the part of the folder it parses to its end."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys

from _measure import DATA, PY, ROOT, run_once

FOLDER = DATA / "audit-corpus"
N = 2000
REPEATS = 5
REPEATS_ONE = 21  # a one-file run takes ~60 ms: more pairs, for a median that one noisy moment cannot move

GENERATE = r"""
import gzip, io, json, os, pickle, sys, zipfile
from pathlib import Path
import joblib, numpy as np, torch
from sklearn.datasets import load_wine
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

out, n = Path(sys.argv[1]), int(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
x, y = load_wine(return_X_y=True)
models = [LogisticRegression(max_iter=500).fit(x, y),
          make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y),
          make_pipeline(StandardScaler(), SVC()).fit(x, y),
          KNeighborsClassifier().fit(np.tile(x, (20, 1)), np.tile(y, 20))]  # holds its training data
models += [RandomForestClassifier(trees, max_depth=depth, random_state=0).fit(x, y)
           for trees, depth in ((3, 3), (10, 5), (25, 8), (60, 10))]
models += [GradientBoostingClassifier(n_estimators=k, random_state=0).fit(x, y) for k in (10, 40)]
nets = [torch.nn.Sequential(torch.nn.Linear(13, w), torch.nn.ReLU(), torch.nn.Linear(w, 3)) for w in (8, 64, 512)]
nets.append(torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(10)))
nets[-1](torch.zeros(1, 3, 16, 16))
onnx_models = []
try:
    from skl2onnx import to_onnx
    onnx_models = [to_onnx(m, x[:1].astype(np.float32)).SerializeToString() for m in (models[0], models[4], models[9])]
except Exception:
    pass

class Payload:
    def __init__(self, how):
        self.how = how
    def __reduce__(self):
        return {"system": (os.system, ("echo pwned",)), "eval": (eval, ("1+1",)),
                "exec": (exec, ("x = 1",))}[self.how]

payloads, one = {}, None
for i in range(n):
    kind = i % 20
    sub = out / f"team{i % 7}" / f"project{i % 11}" / f"run{i % 13}"
    sub.mkdir(parents=True, exist_ok=True)
    model = models[(i * 7 + i // 20) % len(models)]
    if i % 100 == 19:  # 20 payloads: half after joblib's array blocks (a random forest's), half in plain pickles
        how = ("system", "eval", "exec")[(i // 100) % 3]
        if (i // 100) % 2 == 0:
            path = sub / f"model_{i}.joblib"
            joblib.dump({"model": models[6], "hook": Payload(how)}, path)  # the arrays come first
        else:
            path = sub / f"meta_{i}.pkl"
            path.write_bytes(pickle.dumps({"model": model, "extra": Payload(how)}, protocol=2 + i % 4))
        payloads[str(path.relative_to(out))] = how
    elif kind < 5:
        if one is None and model is models[6]:
            one = str((sub / f"model_{i}.joblib").relative_to(out))
        joblib.dump(model, sub / f"model_{i}.joblib")
    elif kind < 7:
        joblib.dump(model, sub / f"model_{i}.joblib", compress=("zlib", "gzip", "lzma", "bz2")[i % 4])
    elif kind < 10:
        (sub / f"model_{i}.pkl").write_bytes(pickle.dumps(model, protocol=2 + i % 4))
    elif kind < 13:
        torch.save(nets[i % len(nets)].state_dict(), sub / f"weights_{i}.pt")
    elif kind == 13:
        torch.save(nets[i % len(nets)].state_dict(), sub / f"weights_{i}.pth", _use_new_zipfile_serialization=False)
    elif kind == 14:
        torch.save(nets[i % 3], sub / f"module_{i}.pt")  # a whole module: its classes are named in the pickle
    elif kind == 15:
        np.save(sub / f"features_{i}.npy", rng.normal(size=(int(rng.integers(10, 2000)), 13)))
    elif kind == 16 and onnx_models:
        (sub / f"model_{i}.onnx").write_bytes(onnx_models[i % len(onnx_models)])
    else:
        config = {"threshold": float(i % 97) / 97, "labels": ["a", "b", "c"], "run": i, "tags": ("x", str(i))}
        (sub / f"config_{i}.pkl").write_bytes(pickle.dumps(config, protocol=i % 6))
Path(sys.argv[3]).write_text(json.dumps({"payloads": payloads, "one": one}, indent=1))
"""

FICKLING = r"""
import sys
from pathlib import Path
from fickling.analysis import Severity, check_safety
from fickling.fickle import Pickled
scanned = flagged = failed = 0
given = Path(sys.argv[1])
for p in [given] if given.is_file() else sorted(given.rglob("*")):
    if p.is_file() and p.suffix in (".pkl", ".joblib", ".pt", ".pth"):
        scanned += 1
        try:
            with open(p, "rb") as fh:
                result = check_safety(Pickled.load(fh))
        except Exception:
            failed += 1
            continue
        flagged += result.severity != Severity.LIKELY_SAFE
print(f"fickling: scanned {scanned} flagged {flagged} failed {failed}")
"""

PEERS = DATA / "peers"  # `make bench` installs picklescan, modelscan and fickling there, apart from modelport


def tool(name: str) -> str | None:
    return shutil.which(name, path=str(PEERS / "bin"))


def corpus() -> tuple[list, dict]:
    """The files (generated once, kept under benchmarks/.data) and the manifest: which carry a payload, and the
    one file timed alone (a random forest of 25 trees saved with joblib)."""
    manifest = FOLDER.with_suffix(".json")
    if not manifest.exists() or sum(1 for p in FOLDER.rglob("*") if p.is_file()) != N:
        shutil.rmtree(FOLDER, ignore_errors=True)
        run = run_once([PY, "-c", GENERATE, str(FOLDER), str(N), str(manifest)], cwd=ROOT)
        if run.returncode:
            raise SystemExit(f"could not generate the corpus:\n{run.output[-2000:]}")
    files = sorted(p for p in FOLDER.rglob("*") if p.is_file())
    return files, json.loads(manifest.read_text())


def ours(target, jobs: int | None, report=None) -> list[str]:
    """The timed command prints its summary, as the peers do; ``report`` adds the JSON report, written by one
    run outside the timing, for the proof that every file was read to its end.
    --no-cache: every run reads every file to its end (a cached row would read nothing)."""
    cmd = [PY, "-m", "compat.cli", "audit", str(target), "--static", "--quiet", "--no-cache"]
    return cmd + (["--json", str(report)] if report else []) + (["--jobs", str(jobs)] if jobs else [])


def paired(a: list[str], b: list[str], repeats: int = REPEATS) -> tuple[float, float, float, object]:
    """Run A and B alternately ``repeats`` times: (median A, median B, median of the pairs' A/B, B's last run)."""
    run_once(a, cwd=ROOT)  # warm the page cache and the bytecode for both, uncounted
    run_once(b, cwd=ROOT)
    pairs = []
    for _ in range(repeats):
        ra, rb = run_once(a, cwd=ROOT), run_once(b, cwd=ROOT)
        if ra.returncode not in (0, 1):
            raise SystemExit(f"modelport failed ({ra.returncode}):\n{ra.output[-2000:]}")
        pairs.append((ra.seconds, rb.seconds, rb))
    return (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs),
            statistics.median(p[0] / p[1] for p in pairs), pairs[-1][2])


def read_to_the_end(report, payloads: dict) -> tuple[bool, str]:
    """Every payload unsafe, nothing else unsafe, no artifact unknown (what the scan could not read to its end
    is unknown): the proof that every file was read to its end. Returns (held, one line)."""
    data = json.loads(report.read_text())
    rows = {r["path"]: r for r in data["artifacts"]}
    unsafe = {p for p, r in rows.items() if r["safety"] == "unsafe"}
    unknown = [p for p, r in rows.items() if r["safety"] == "unknown"]
    missed = sorted(set(payloads) - unsafe)
    extra = sorted(unsafe - set(payloads))
    after_arrays = sum(1 for p in payloads if p.endswith(".joblib"))
    held = not missed and not extra and not unknown
    line = (f"{len(unsafe & set(payloads))} of {len(payloads)} payloads unsafe ({after_arrays} after joblib array "
            f"blocks), {len(extra)} other file(s) unsafe, {len(unknown)} unknown, of {len(rows)} artifacts "
            f"({len(data['skipped'])} data files skipped)")
    return held, line + ("" if held else f"; missed {missed[:3]}, extra {extra[:3]}, unknown {unknown[:3]}")


def same_interpreter(package: str) -> str | None:
    """A folder holding only ``package`` (a link into the peers' venv), for running that peer under modelport's
    own interpreter: the same start-up (site, .pth files) for both sides. picklescan imports only the standard
    library, so this is the same program; its own venv (fewer .pth files) starts about 9 ms sooner."""
    found = sorted((PEERS / "lib").glob(f"python*/site-packages/{package}"))
    if not found:
        return None
    folder = DATA / f"only-{package}"
    folder.mkdir(exist_ok=True)
    link = folder / package
    if not link.exists():
        link.symlink_to(found[0], target_is_directory=True)
    return str(folder)


def peers(target) -> list[tuple[str, list[str], object]]:
    found = []
    if tool("picklescan"):
        found.append(("picklescan", [tool("picklescan"), "-p", str(target)], _picklescan))
        alone = same_interpreter("picklescan")
        if alone:
            run = f"import sys; sys.path.insert(0, {alone!r}); from picklescan.cli import main; sys.exit(main())"
            found.append(("picklescan, under modelport's interpreter", [PY, "-c", run, "-p", str(target)],
                          _picklescan))
    if tool("modelscan"):
        found.append(("modelscan", [tool("modelscan"), "-p", str(target)], _modelscan))
    if tool("python") and tool("fickling"):
        found.append(("fickling (check_safety per pickle, one process)", [tool("python"), "-c", FICKLING,
                                                                         str(target)], _fickling))
    return found


def main() -> list[str]:
    import compileall

    # the peers run from installed wheels, whose bytecode pip compiled; modelport runs from this checkout, where
    # PYTHONDONTWRITEBYTECODE (set on some machines) would make every run compile its sources again
    for package in ("convert", "compat"):
        compileall.compile_dir(str(ROOT / package), quiet=1)
    files, manifest = corpus()
    payloads = manifest["payloads"]
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    one = FOLDER / manifest["one"]
    report = DATA / "audit.json"
    cores = len(os.sched_getaffinity(0))
    lines = [f"### Static audit vs pickle scanners ({N:,} artifacts, {size_mb:.0f} MB; one file)", "",
             f"Each peer timed alternately with modelport, {REPEATS_ONE} pairs for one file, {REPEATS} for folders, "
             f"median; ratio = the peer's time / "
             f"modelport's (above 1: modelport is faster); {cores} CPUs.", ""]
    # one file
    lines += [f"**One file** ({one.name}, {one.stat().st_size / 1e3:.0f} KB, a random forest saved with joblib):",
              "", "| scanner | its time | modelport's | speed vs it |", "|---|---:|---:|---:|"]
    for name, cmd, _ in peers(one):
        a, b, ratio, _ = paired(ours(one, None), cmd, repeats=REPEATS_ONE)
        lines.append(f"| {name} | {b * 1e3:.0f} ms | {a * 1e3:.0f} ms | {1 / ratio:.2f}× |")
    whole = read_whole(one)
    if whole is not None:  # picklescan stops at the first joblib array block of the file above
        a, b, ratio, _ = paired(ours(whole, None), [tool("picklescan"), "-p", str(whole)],
                                repeats=REPEATS_ONE)
        lines.append(f"| picklescan, on a file it parses to its end ({whole.name}, {whole.stat().st_size / 1e3:.0f} "
                     f"KB, a model pickled with pickle) | {b * 1e3:.0f} ms | {a * 1e3:.0f} ms | {1 / ratio:.2f}× |")
    base = paired([PY, "-c", "import pickletools"], [PY, "-c", "pass"], repeats=REPEATS_ONE)
    note = f"`python -c 'import pickletools'` alone: {base[0] * 1e3:.0f} ms in modelport's venv"
    if tool("python"):
        theirs = paired([tool("python"), "-c", "pass"], [PY, "-c", "pass"], repeats=REPEATS_ONE)
        note += (f"; `python -c pass`: {theirs[1] * 1e3:.0f} ms in modelport's venv (its editable install's "
                 f".pth imports pathlib at start-up), {theirs[0] * 1e3:.0f} ms in the peers' venv")
    lines += ["", f"({note}.)", ""]
    # the folder, 1 and 2 jobs against every peer
    held, proof = True, ""
    rows = []
    for name, cmd, read in peers(FOLDER):
        for jobs in (1, 2):
            a, b, ratio, peer_run = paired(ours(FOLDER, jobs), cmd)
            report.unlink(missing_ok=True)
            proof_run = run_once(ours(FOLDER, jobs, report), cwd=ROOT)
            if proof_run.returncode not in (0, 1):
                raise SystemExit(f"modelport failed ({proof_run.returncode}):\n{proof_run.output[-2000:]}")
            ok, proof = read_to_the_end(report, payloads)
            held = held and ok
            rows.append((name, jobs, a, b, ratio, read(peer_run.output)))
    lines += [f"**{N:,} files** (nested folders; 20 payloads):", "",
              "| scanner | its time | modelport --jobs | modelport's | files/s (modelport) | speed vs it | what the "
              "peer reported |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, jobs, a, b, ratio, found in rows:
        lines.append(f"| {name} | {b:.2f} s | {jobs} | {a:.2f} s | {N / a:,.0f} | {1 / ratio:.2f}× | {found} |")
    one_two = [r for r in rows if r[0] == rows[0][0]] if rows else []
    if len(one_two) == 2:
        lines += ["", f"1 vs 2 jobs (against the same peer runs): {one_two[0][2]:.2f} s vs {one_two[1][2]:.2f} s, "
                  f"{one_two[0][2] / one_two[1][2]:.2f}× (2 jobs fork two scanning processes from the audit's own)."]
    lines += ["", f"modelport: {proof}. Every file read to its end: {'yes' if held else 'NO'}."]
    lines += same_work()
    if not rows:
        lines += ["", "No peer scanner found in benchmarks/.data/peers: `make bench` installs picklescan, modelscan, "
                  "fickling there."]
    return lines


def _unparsed(output: str) -> set[str]:
    """The files picklescan names as ones it could not parse to their end (it stops at the first byte it cannot
    read as an opcode: a joblib array block, a compressed stream)."""
    failed = set()
    named = r"^(?:ERROR: parsing pickle in (.+?): |WARNING: could not parse (.+?) as pickle: )"
    for error, warning in re.findall(named, output, re.M):
        failed.add((error or warning).split(":", 1)[0])  # an archive member is named PATH:MEMBER
    return failed


def read_whole(near) -> object | None:
    """The model pickle closest in size to ``near`` that picklescan parses to its end, or None."""
    if not tool("picklescan"):
        return None
    size = near.stat().st_size
    for path in sorted(FOLDER.rglob("model_*.pkl"), key=lambda p: abs(p.stat().st_size - size))[:20]:
        run = run_once([tool("picklescan"), "-p", str(path)])
        if not _unparsed(run.output) and "Scanned files: 1" in run.output:
            return path
    return None


def same_work() -> list[str]:
    """The folder again, restricted to the files picklescan parses to their end (it stops at the first byte it
    cannot parse: joblib's array blocks), so that both tools do the same work: hard links in a folder of their
    own, both timed on it, 1 and 2 jobs."""
    run = run_once([tool("picklescan"), "-p", str(FOLDER)]) if tool("picklescan") else None
    if run is None:
        return []
    failed = _unparsed(run.output)
    parsed = DATA / "audit-corpus-parsed"
    shutil.rmtree(parsed, ignore_errors=True)
    kept = 0
    for path in FOLDER.rglob("*"):
        if path.is_file() and str(path) not in failed and str(path.resolve()) not in failed:
            link = parsed / path.relative_to(FOLDER)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, link)
            kept += 1
    lines = ["", f"**The same work**: the {kept:,} files of the folder that picklescan parses to their end "
             f"(the {len(failed)} it stops inside left out), both tools on that folder:", "",
             "| scanner | its time | modelport --jobs | modelport's | speed vs it | what the peer reported |",
             "|---|---:|---:|---:|---:|---|"]
    for jobs in (1, 2):
        a, b, ratio, peer_run = paired(ours(parsed, jobs), [tool("picklescan"), "-p", str(parsed)])
        lines.append(f"| picklescan | {b:.2f} s | {jobs} | {a:.2f} s | {1 / ratio:.2f}× | "
                     f"{_picklescan(peer_run.output)} |")
    return lines


def _number(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    if not m:
        raise SystemExit(f"peer output lacks {pattern!r}: it did not run as expected\n{text[-1500:]}")
    return int(m.group(1))


def _picklescan(out: str) -> str:
    errors = len(re.findall(r"^(?:ERROR: parsing|WARNING: could not parse)", out, re.M))
    infected = _number(r"Infected files: (\d+)", out)
    suspicious = _number(r"Suspicious globals: (\d+)", out)
    scanned = _number(r"Scanned files: (\d+)", out)
    return f"{infected} infected, {suspicious} suspicious globals, {errors} files it could not parse, of {scanned}"


def _modelscan(out: str) -> str:
    issues = _number(r"Total Issues: (\d+)", out)
    skipped = re.search(r"Total skipped: (\d+)", out)
    return f"{issues} issues" + (f", {skipped.group(1)} files skipped" if skipped else "")


def _fickling(out: str) -> str:
    flagged, failed = _number(r"flagged (\d+)", out), _number(r"failed (\d+)", out)
    scanned = _number(r"scanned (\d+)", out)
    return f"{flagged} flagged, {failed} files it could not parse, of {scanned}"


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print("\n".join(main()))
