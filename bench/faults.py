"""Fault injection: kill, tear and fill, then check what survived.

    .venv/bin/python -m bench.faults --trials 5

writes ``reports/reliability.md``. Each fault is injected ``--trials``
times at a random moment (seeded) and checked:

1. SIGKILL of ``fastnn train --checkpoint``; ``--resume`` must end with
   parameters bit-identical to an uninterrupted run.
2. SIGKILL of a whole sweep (parent and workers); re-running must record
   every run exactly once and keep every line written before the kill.
3. A torn last line in a sweep's results (half a record); the resume must
   skip it with a warning and still record every run once.
4. The disk filling up while a model is being saved (a small tmpfs, needs
   root); the error must be one line, exit 1, no temporary file left and
   the model saved before untouched.
5. Divergence (learning rate 1e3): exit 3, one-line message naming epoch
   and step, existing model untouched.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import fastnn
from fastnn._atomic import atomic_write_bytes

PY = sys.executable
TRAIN = [PY, "-m", "fastnn", "train", "-d", "digits", "-e", "40", "-b", "8", "-nhl", "2",
         "-sz", "32", "-o", "nadam", "--dropout", "0.1", "--no-progress", "--threads", "1"]
SWEEP = """
method: grid
parameters:
  dataset: {value: digits}
  epochs: {value: 1}
  num_layers: {value: 1}
  hidden_size: {values: [4, 6, 8, 10, 12, 14, 16, 18]}
  batch_size: {values: [32, 64]}
  learning_rate: {values: [0.001, 0.003, 0.01, 0.03]}
"""


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)


def _epoch(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(z["header"].tobytes())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def kill_and_resume(tmp, rng, reference_params):
    ckpt = tmp / "ckpt"
    proc = subprocess.Popen([*TRAIN, "--checkpoint", str(ckpt)], stdout=subprocess.DEVNULL)
    target = rng.randint(0, 35)  # kill after this many checkpoints, somewhere in an epoch
    path = ckpt / "checkpoint.npz"
    while proc.poll() is None and target and not (path.exists() and _epoch(path) >= target):
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.05))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out = tmp / "resumed.npz"
    res = run([*TRAIN, "--checkpoint", str(ckpt), "--resume", "--save", str(out)])
    line = next((x for x in res.stdout.splitlines() if x.startswith("resuming")), "no checkpoint")
    net, _ = fastnn.load_model(out)
    same = res.returncode == 0 and np.array_equal(net.params.flat, reference_params)
    leftovers = [p.name for p in ckpt.iterdir() if p.name.endswith(".tmp")]
    return same and not leftovers, f"{line}; bit-identical: {same}; temp files: {leftovers}"


def kill_sweep(tmp, rng, tear=False):
    spec = tmp / "spec.yaml"
    spec.write_text(SWEEP)
    results = tmp / "results"
    cmd = [PY, "-m", "fastnn", "sweep", str(spec), "--results", str(results), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    target = rng.randint(3, 60)  # kill once this many runs are recorded
    lines_path = results / "results.jsonl"
    while proc.poll() is None:
        if lines_path.exists() and lines_path.read_bytes().count(b"\n") >= target:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    path = results / "results.jsonl"
    before = [json.loads(x)["run_id"] for x in path.read_text().splitlines() if x.strip()] \
        if path.exists() else []
    if tear:
        with open(path, "ab") as f:
            f.write(b'{"run_id": "9999-torn", "status": "fini')
    res = run(cmd)
    after = [json.loads(x)["run_id"] for x in path.read_text().splitlines()
             if x.strip() and not x.startswith('{"run_id": "9999-torn"')]
    ok = (res.returncode == 0 and len(after) == len(set(after)) == 64
          and after[:len(before)] == before)
    warned = "unreadable line" in res.stderr
    note = f"{len(before)} runs recorded before the kill, {len(after)} after the re-run"
    if tear:
        ok = ok and warned
        note += f"; torn line skipped with a warning: {warned}"
    return ok, note


def disk_full(tmp, rng):
    if os.geteuid() != 0:
        return None, "skipped: mounting a tmpfs needs root"
    mount = tmp / "small"
    mount.mkdir()
    if run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)]).returncode:
        return None, "skipped: could not mount a tmpfs"
    try:
        model = mount / "model.npz"
        model.write_bytes(b"saved before")
        # The small model fits (the check before training passes); a filler then
        # takes the space while it trains (about 6 s), so the save itself fails.
        proc = subprocess.Popen([PY, "-m", "fastnn", "train", "-d", "digits", "-e", "2000",
                                 "-nhl", "2", "-sz", "64", "--no-progress", "--save",
                                 str(model)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        for line in proc.stdout:  # training has started: the check before it passed
            if line.startswith("epoch"):
                break
        time.sleep(rng.uniform(0.0, 0.3))
        filler = mount / "filler"
        try:
            with open(filler, "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:  # ENOSPC: the disk is full now
            pass
        if proc.poll() is not None or model.read_bytes() != b"saved before":
            # it had finished and saved before the disk filled
            proc.communicate()
            return None, "not injected: training ended before the disk was full"
        _, err = proc.communicate(timeout=300)
        lines = err.strip().splitlines()
        leftovers = [p.name for p in mount.iterdir() if p.name.endswith(".tmp")]
        ok = (proc.returncode == 1 and len(lines) == 1 and "Traceback" not in err
              and model.read_bytes() == b"saved before" and not leftovers)
        return ok, f"exit {proc.returncode}: {lines[-1] if lines else ''}"
    finally:
        run(["umount", str(mount)])


def divergence(tmp, rng):
    model = tmp / "model.npz"
    model.write_bytes(b"saved before")
    res = run([PY, "-m", "fastnn", "train", "-d", "digits", "-o", "sgd", "-lr", "1e3",
               "-e", "3", "--no-progress", "--save", str(model)])
    lines = res.stderr.strip().splitlines()
    ok = res.returncode == 3 and len(lines) == 1 and model.read_bytes() == b"saved before"
    return ok, lines[-1] if lines else ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reports/reliability.md")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "reference.npz"
        run([*TRAIN, "--save", str(ref)])
        reference = fastnn.load_model(ref)[0].params.flat.copy()
    faults = [
        ("SIGKILL of `fastnn train --checkpoint`, then `--resume`",
         lambda t: kill_and_resume(t, rng, reference)),
        ("SIGKILL of a whole 64-run sweep (parent and workers), then the same command",
         lambda t: kill_sweep(t, rng)),
        ("SIGKILL of a sweep plus a torn last line in results.jsonl, then the same command",
         lambda t: kill_sweep(t, rng, tear=True)),
        ("Disk full while the model is being saved (600 KiB tmpfs filled during training)",
         lambda t: disk_full(t, rng)),
        ("Divergence: SGD at learning rate 1e3 with a model already saved",
         lambda t: divergence(t, rng)),
    ]
    lines = ["# Reliability: faults injected and what survived", "",
             (f"Reproduce: `.venv/bin/python -m bench.faults --trials {args.trials} "
             f"--seed {args.seed}` (root needed for the disk-full case). Kill moments are "
             "drawn at random from the seed."), "",
             "| fault | trials | survived | last outcome |", "|---|---|---|---|"]
    for name, inject in faults:
        outcomes = []
        for _ in range(args.trials):
            for _attempt in range(3):  # a fault that missed its moment is tried again
                with tempfile.TemporaryDirectory() as tmp:
                    outcome = inject(Path(tmp))
                if not str(outcome[1]).startswith("not injected"):
                    break
            outcomes.append(outcome)
            print(name, outcomes[-1], flush=True)
        counted = [ok for ok, _ in outcomes if ok is not None]
        survived = f"{sum(counted)}/{len(counted)}" if counted else "skipped"
        lines.append(f"| {name} | {args.trials} | {survived} | {outcomes[-1][1]} |")
    lines += ["", "Also checked by the test suite on every CI run (`make test`):", "",
              ("- property tests (hypothesis) feed random and mutated bytes to the IDX reader "
              "(200 + 150 cases), random text to the sweep-file loader (200) and mutated model "
              "files to the model loader (100): only fastnn's own documented errors come out "
              "(`tests/test_reliability.py`);"),
              "- 8 workers on 2 cores run a 64-run sweep and every run is recorded exactly once;",
              "- a 200-epoch run on digits holds its RSS within 1 MiB after warm-up;",
              ("- model files with object arrays, missing or mis-shaped arrays, wrong dtypes, a "
              "bad or oversized JSON header or a newer format version are refused "
              "(`tests/test_modelfile.py`);"),
              ("- a save that fails half-way leaves the previous model byte-identical and no "
              "temporary file (`tests/test_modelfile.py`).")]
    atomic_write_bytes(args.out, ("\n".join(lines) + "\n").encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
