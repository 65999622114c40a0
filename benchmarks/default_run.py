"""Time the README's main job (`python -m mgr.train`, defaults) from an empty
working directory, so synth generation and cache decoding are included.

    python benchmarks/default_run.py [extra overrides...]

Prints one Markdown table row for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    overrides = sys.argv[1:]
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mgr.train", "trainer.enable_progress_bar=false", *overrides],
                              cwd=cwd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        (metrics_file,) = Path(cwd).glob("logs/train/runs/*/metrics.json")
        m = json.loads(metrics_file.read_text())
    cpu = f"{os.cpu_count()} cores, {platform.machine()}"
    print("| command | machine | wall time | test acc (chunk) | test acc (track) | test macro-F1 (track) |")
    print("|---|---|---|---|---|---|")
    command = " ".join(["python -m mgr.train", *overrides])
    print(f"| `{command}` | {cpu} | {wall / 60:.1f} min | {m['test/acc']:.3f} | {m['test/track_acc']:.3f} "
          f"| {m['test/track_f1']:.3f} |")


if __name__ == "__main__":
    main()
