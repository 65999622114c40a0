"""Time how long a wrong value takes to stop `python -m mgr.train`, and `--help` to answer (issue 24's
bar: 15 s, one `mgr: error:` line, no data/ written), each in a fresh interpreter and an empty folder.

    python benchmarks/front_door.py

Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = (("train", "trainer.max_epochs=abc"), ("train", "model.dropout=abc"), ("train", "data.batch_size=-1"),
         ("train", "model=cnnn"), ("train", "--help"), ("predict", "--help"))


def main() -> None:
    print("| command | wall time | exit | last line of stderr | data/ written |\n|---|---|---|---|---|")
    for command, argument in CASES:
        with tempfile.TemporaryDirectory() as cwd:
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", f"mgr.{command}", argument], cwd=cwd, capture_output=True,
                                  text=True, timeout=300)
            wall = time.perf_counter() - start
            last = (proc.stderr.strip().splitlines() or [""])[-1]
            shown = last if len(last) < 70 else last[:67] + "..."
            print(f"| `python -m mgr.{command} {argument}` | {wall:.1f} s | {proc.returncode} | {shown or '(none)'} | "
                  f"{'yes' if Path(cwd, 'data').exists() else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
