"""Static audit throughput on a generated folder of 2,000 artifacts (scikit-learn pickles and joblib files,
torch state dicts, numpy arrays, a few payloads) against the open-source pickle scanners installed as
benchmark-only dependencies in a venv of their own (benchmarks/.data/peers: picklescan, modelscan, fickling).
Target: at least the speed of the fastest of them; `--jobs` scaling shown."""

from __future__ import annotations

import json
import os
import re
import shutil

from _measure import DATA, PY, ROOT, measure

FOLDER = DATA / "audit2000"
N = 2000

GENERATE = r"""
import os, pickle, sys, numpy as np, joblib
from pathlib import Path
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
import torch

out, n = Path(sys.argv[1]), int(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
x, y = load_wine(return_X_y=True)
models = [make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y),
          RandomForestClassifier(10, max_depth=5, random_state=0).fit(x, y)]
net = torch.nn.Sequential(torch.nn.Linear(13, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))

class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))

for i in range(n):
    kind = i % 10
    sub = out / f"team{i % 7}" / f"run{i % 13}"
    sub.mkdir(parents=True, exist_ok=True)
    if kind < 4:
        joblib.dump(models[i % 2], sub / f"model_{i}.joblib", compress=3 if kind == 3 else 0)
    elif kind < 6:
        pickle.dump(models[i % 2], open(sub / f"model_{i}.pkl", "wb"), protocol=4)
    elif kind < 8:
        torch.save(net.state_dict(), sub / f"weights_{i}.pt")
    elif kind == 8:
        np.save(sub / f"features_{i}.npy", np.random.default_rng(i).normal(size=(200, 13)))
    else:
        pickle.dump({"model": models[0], "extra": Payload()} if i % 100 == 9 else {"threshold": 0.5, "i": i},
                    open(sub / f"meta_{i}.pkl", "wb"), protocol=4)
"""

FICKLING = r"""
import sys
from pathlib import Path
from fickling.analysis import Severity, check_safety
from fickling.fickle import Pickled
scanned = flagged = failed = 0
for p in sorted(Path(sys.argv[1]).rglob("*")):
    if p.suffix in (".pkl", ".joblib") and p.is_file():
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


def main() -> list[str]:
    if not FOLDER.exists() or sum(1 for p in FOLDER.rglob("*") if p.is_file()) < N:
        shutil.rmtree(FOLDER, ignore_errors=True)
        measure([PY, "-c", GENERATE, str(FOLDER), str(N)], repeats=1)
    size_mb = sum(p.stat().st_size for p in FOLDER.rglob("*") if p.is_file()) / 1e6
    rows = []
    for jobs in (1, os.cpu_count() or 1):
        ours = measure([PY, "-m", "compat.cli", "audit", str(FOLDER), "--static", "--jobs", str(jobs),
                        "--json", str(DATA / "audit.json")], repeats=3, cwd=ROOT, ok_codes=(0, 1))
        rows.append((f"modelport audit --static --jobs {jobs}", ours.seconds))
    rows = [list(r) for r in rows]
    audit = json.loads((DATA / "audit.json").read_text())["summary"]
    rows[0].append(f"{audit['safety']['unsafe']} unsafe, {audit['safety']['suspicious']} suspicious, "
                f"{audit['safety']['unknown']} unknown of {audit['artifacts']} artifacts")
    rows[1].append(rows[0][2])
    peers = []
    if tool("picklescan"):
        peers.append(("picklescan -p", [tool("picklescan"), "-p", str(FOLDER)], _picklescan))
    if tool("modelscan"):
        peers.append(("modelscan -p", [tool("modelscan"), "-p", str(FOLDER)], _modelscan))
    if tool("python") and tool("fickling"):
        peers.append(("fickling (check_safety per .pkl/.joblib, one process)", [tool("python"), "-c", FICKLING,
                                                                              str(FOLDER)], _fickling))
    for name, cmd, read in peers:
        run = measure(cmd, repeats=3, ok_codes=None)
        rows.append((name, run.seconds, read(run.output)))  # raises when the peer did not really run
    best_peer = min((r[1] for r in rows if not r[0].startswith("modelport")), default=None)
    lines = [f"### Static audit throughput ({N:,} artifacts, {size_mb:.0f} MB, in nested folders)", "",
             "| scanner | time | files/s | vs fastest peer | what it reported (20 files carry a payload) |",
             "|---|---:|---:|---:|---|"]
    for name, seconds, found in rows:
        vs = f"{best_peer / seconds:.2f}× its speed" if best_peer else "-"
        lines.append(f"| {name} | {seconds:.2f} s | {N / seconds:,.0f} | {vs} | {found} |")
    if not peers:
        lines += ["", "No peer scanner found in benchmarks/.data/peers: `make bench` installs picklescan, modelscan, fickling there."]
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
    print("\n".join(main()))
