#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md in one command of about 8-9 minutes on one
# NVIDIA GPU (an H100; none has run it yet, so the times below are estimates):
#   1. features on CUDA against librosa on the CPU                                   ~1 min
#   2-3. crnn/cnn training throughput in fp32 and bf16, the frontend's share          ~1 min
#   4. the default run with trainer=gpu (it makes the synth data and its cache)       ~1 min
#   5. the default run with trainer=ddp on the one GPU                                ~1 min
#   6. mgr.predict on CUDA                                                            ~0.5 min
#   7. data.on_device's sampler against the workers' loader: chunks/s at batch 32 and
#      256, then the default run with data.on_device=true against false              ~1.5 min
#   8. the default run on an int16 cache against a float32 one: test accuracy, the
#      caches' bytes on disk                                                         ~1.5 min
#   9. a 2-job sweep under hydra/launcher=pool (one job per GPU where there are
#      several, else both on the one GPU): each job's slot and GPUs, their time spans  ~1 min
# Each step has a time limit (step below); a step past it is marked FAILED and the next starts.
# results.md gets each step's section as the step ends: a lease cut short keeps the steps before.
#
#   bash benchmarks/gpu_check.sh prepare          # on a CPU machine with PyPI, in mgr's test venv
#   bash benchmarks/gpu_check.sh [--out DIR]      # on the GPU machine
#   bash benchmarks/gpu_check.sh --smoke          # any CPU, about 3 minutes: every step, tiny sizes
#
# The GPU machines lent here have no network and Python 3.12 with torch 2.11.0,
# Lightning, torchmetrics, numpy, scipy, scikit-learn (so joblib), matplotlib, numba and
# llvmlite preinstalled, but not nnAudio, Hydra, OmegaConf, Hydra's joblib launcher,
# soundfile, soxr or librosa. `prepare` downloads those as Python 3.12 wheels, at the
# versions of the venv it runs in (the ones mgr's tests passed with), plus a wheel of mgr
# itself, into benchmarks/gpu_wheels/ (git-ignored; about 4 MB: carry it to the machine,
# and make it again after a commit: the check runs that wheel's mgr, not the working tree).
# The check installs them with --no-deps into a folder of its own on PYTHONPATH, so the
# preinstalled torch is never touched. wandb is left out: the check logs to CSV only.
#
# Results: DIR/results.md (one section per step, its tables), DIR/environment.json,
# DIR/log.txt; DIR is $OUT where set, else ./gpu_check_out. Exit code 1 if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
wheels=benchmarks/gpu_wheels

if [ "${1:-}" = prepare ]; then
    set -e
    rm -rf "$wheels" && mkdir -p "$wheels"
    pins=$(python - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in
      ("nnAudio", "hydra-core", "omegaconf", "hydra-joblib-launcher", "soundfile", "cffi", "pycparser", "soxr",
       "librosa", "audioread", "decorator", "pooch", "platformdirs", "filelock")))
EOF
)
    platforms=""
    for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
        platforms="$platforms --platform $p"
    done
    # shellcheck disable=SC2086
    pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms -d "$wheels" $pins
    antlr=$(python -c "from importlib.metadata import version; print(version('antlr4-python3-runtime'))")
    pip wheel -q --no-deps "antlr4-python3-runtime==$antlr" -w "$wheels"  # published as an sdist only
    pip wheel -q --no-deps . -w "$wheels"
    ls "$wheels"; du -sh "$wheels"
    exit 0
fi

smoke=0 out=${OUT:-gpu_check_out}
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --out) out=$2; shift ;;
        *) echo "gpu_check.sh: unknown argument $1 (use prepare, --smoke, --out DIR)" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$out"
results=$out/results.md log=$out/log.txt
: > "$log"
if [ -z "${MGR_DATA_DIR:-}" ]; then  # synth data shared by the runs of this check, then removed
    MGR_DATA_DIR=$(mktemp -d) && trap 'rm -rf "$MGR_DATA_DIR"' EXIT
fi
export PYTHONUNBUFFERED=1 MGR_DATA_DIR

if ! python -c "import mgr.train, nnAudio, soundfile, soxr, hydra_plugins.hydra_joblib_launcher" 2>/dev/null; then
    [ -d "$wheels" ] || { echo "mgr or its dependencies are missing and $wheels is absent: run 'bash benchmarks/gpu_check.sh prepare' where PyPI is reachable." >&2; exit 1; }
    site=$(mktemp -d)
    python -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl >>"$log" 2>&1 || { echo "installing $wheels failed; see $log" >&2; exit 1; }
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
python -c "import librosa" 2>/dev/null && librosa="" || librosa="--no-librosa"

if [ "$smoke" = 1 ]; then
    device=cpu gpu="" ddp="trainer=ddp_cpu trainer.devices=1"
    tiny="data.source_options.tracks_per_class=4 data.source_options.seconds=[2.0,3.0] data.sample_rate=8000
          data.chunk_seconds=1.0 feature.n_fft=256 feature.hop_length=128 feature.n_mels=32 model=cnn
          model.channels=[4,8,8] model.hidden=8 trainer.max_epochs=1"
    features="--clips 1 --features mel --repeats 1"
    throughput="--models cnn --steps 1 --batch-size 2 --sample-rate 8000 --chunk-seconds 1.0"
    predict="--model cnn --files 2 --seconds 4"
    loader="--clips 2 --batches 2 --batch-sizes 32 --workers 0 1"
    pool=""
else
    device=cuda gpu="trainer=gpu" ddp="trainer=ddp trainer.devices=1" tiny="" features="" throughput="--models crnn cnn --steps 20"
    predict=""
    # 64 clips of 30 s: 4096 chunks of 3 s an epoch. 4 workers: data.num_workers=auto on 16 cores.
    loader="--clips 64 --batches 20 --batch-sizes 32 256 --workers 0 4"
    # Several GPUs: one job on each (the pool's default); one GPU: both jobs share it.
    gpus=$(python -c "import torch; print(torch.cuda.device_count())")
    pool=$([ "$gpus" -gt 1 ] && echo "hydra.callbacks.pool.jobs_per_gpu=1" || echo "hydra.callbacks.pool.jobs_per_gpu=2")
fi

set -f  # overrides such as seconds=[2.0,3.0] are words, not file patterns
sections=$(mktemp -d)
step() {  # step <n> <title> <seconds allowed on a GPU> <command...>: section n of results.md
    local section=$sections/$1 title=$2 limit=$3; shift 3
    [ "$smoke" = 1 ] && limit=600  # a CPU shared with other work is slow, and no figure counts
    local start=$SECONDS
    echo "== $title: $*" | tee "$section.log"
    # bash -c: a command may be one of the functions below (exported), which timeout cannot run itself.
    if timeout "$limit" bash -c '"$@"' "$1" "$@" > "$section.txt" 2>>"$section.log"; then
        printf '\n## %s\n\n`%s` (%d s)\n\n' "$title" "$*" $((SECONDS - start)) > "$section.md"
    else
        printf '\n## %s\n\nFAILED after %d s: `%s` (see log.txt)\n\n' "$title" $((SECONDS - start)) "$*" > "$section.md"
    fi
    tables "$section.txt" >> "$section.md"  # a failed step keeps the tables it printed before it failed
    cat "$section.txt" >> "$section.log"
    cat "$section.log" >> "$log"
    [ "$smoke" = 1 ] || cat "$section.md" >> "$results"  # at once: a GPU lease may end before the last step
}

tables() {  # the Markdown of a step's output: its tables and their **captions**, each followed by a blank line
    awk '/^\*\*/ { if (table) print ""; print; print ""; table = 0; next }
         /^\|/ { print; table = 1; next } table { print ""; table = 0 }
         END { if (table) print "" }' "$1"
}

compare_runs() {  # compare_runs <key>=<a>,<b>,... <overrides...>: benchmarks/default_run.py for each value, one table
    local key=${1%%=*} values=${1#*=} value table header=1
    shift
    echo "**The default run (benchmarks/default_run.py) with $key=$values, one after the other**"
    for value in ${values//,/ }; do
        table=$(python benchmarks/default_run.py "$@" "$key=$value") || return 1
        if [ $header = 1 ]; then echo "$table"; else echo "$table" | tail -n +3; fi  # the header once
        header=0
    done
}

on_device_rates() {  # on_device_rates --clips N --batches N --batch-sizes B... --workers W... [--device D]
    # benchmarks/data_benchmark.py's (c), today's loader against data.on_device's sampler, on one cache
    # for each batch size: its BATCH is a constant, so its functions are called here with it set.
    set -o pipefail
    python - "$@" <<'EOF' | sed -E 's/^\(c\) (.*)$/**\1**/'
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, "benchmarks")
import data_benchmark as bench  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--clips", type=int)
parser.add_argument("--batches", type=int)
parser.add_argument("--batch-sizes", type=int, nargs="+")
parser.add_argument("--workers", type=int, nargs="+")
parser.add_argument("--device", default="cpu")
parser.add_argument("--repeats", type=int, default=5)
args = parser.parse_args()
with tempfile.TemporaryDirectory() as tmp:
    files = bench.make_clips(Path(tmp), args.clips, "wav")
    cache = bench.WaveformCache.build(files, bench.RATE, Path(tmp) / "cache", "bench", num_workers=0)
    for batch in args.batch_sizes:
        bench.BATCH = batch
        bench.on_device_section(cache, files, args.workers, args.batches, args.device, args.repeats)
EOF
}

cache_sizes() {  # the waveform caches under $MGR_DATA_DIR/cache: sample type, files, bytes on disk
    python - "$MGR_DATA_DIR/cache" <<'EOF'
import json
import sys
from pathlib import Path

caches = []
for index in sorted(Path(sys.argv[1]).glob("*/index.json")):  # finished caches (a .partial one has no index)
    folder, meta = index.parent, json.loads(index.read_text())
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    caches.append((meta.get("dtype", "float32"), folder.name, len(meta["files"]), meta["sample_rate"], size))
print("**The waveform caches of the check's synth data ($MGR_DATA_DIR/cache)**")
full = {rate: size for dtype, _, _, rate, size in caches if dtype == "float32"}
print("| data.cache_dtype | cache folder | files | MB on disk | share of float32's |\n|---|---|---|---|---|")
for dtype, name, files, rate, size in caches:
    share = f"{size / full[rate]:.2f}" if rate in full else "-"
    print(f"| {dtype} | {name} | {files} | {size / 1e6:.2f} | {share} |")
EOF
}

pool_sweep() {  # pool_sweep <overrides...>: seed=1,2 as a multirun under hydra/launcher=pool, then its jobs' table
    local dir rc start=$SECONDS
    dir=$(mktemp -d)
    (cd "$dir" && python -m mgr.train -m hydra/launcher=pool seed=1,2 trainer.enable_progress_bar=false "$@") >&2
    rc=$?
    python - "$dir" $((SECONDS - start)) <<'EOF' || rc=1
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import yaml

(sweep,) = Path(sys.argv[1]).glob("logs/train/multiruns/*")
swept = json.loads((sweep / ".device_pool" / "swept_keys.json").read_text())
stamp = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")  # a job log line: [2026-12-07 14:59:09,014]...


def job(folder: Path) -> dict:
    """Its swept values, its slot of the pool (from its log), the GPUs it saw, when it held its slot
    (from the slot's line to its last log line) and its test track accuracy, if it finished."""
    lines = next(folder.glob("*.log")).read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if "Device pool slot" in line)
    times = [datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f") for line in lines[first:] if (m := stamp.match(line))]
    overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
    metrics = folder / "metrics.json"
    return {"num": folder.name, "swept": " ".join(o for o in overrides if o.split("=")[0] in swept),
            "slot": lines[first].split("Device pool ")[1],
            "gpus": ", ".join(json.loads((folder / "environment.json").read_text())["gpus"]) or "cpu",
            "start": times[0], "end": times[-1],
            "acc": f"{json.loads(metrics.read_text())['test/track_acc']:.3f}" if metrics.exists() else "unfinished"}


jobs = [job(f) for f in sorted(sweep.iterdir(), key=lambda f: f.name) if f.name.isdigit()]
zero = min(j["start"] for j in jobs)
print("| job | swept | device pool slot (CUDA_VISIBLE_DEVICES, threads) | GPUs the job saw | from s | to s "
      "| test acc (track) |\n|---|---|---|---|---|---|---|")
for j in jobs:
    print(f"| {j['num']} | {j['swept']} | {j['slot']} | {j['gpus']} | {(j['start'] - zero).total_seconds():.1f} "
          f"| {(j['end'] - zero).total_seconds():.1f} | {j['acc']} |")
# The time two or more jobs ran at once: the instants where the count of running jobs changes.
events = sorted([(j["start"], 1) for j in jobs] + [(j["end"], -1) for j in jobs])
running, both, most = 0, 0.0, 0
for (t, change), (following, _) in zip(events, events[1:] + events[-1:]):
    running += change
    most = max(most, running)
    both += (following - t).total_seconds() if running >= 2 else 0.0
finished = sum(j["acc"] != "unfinished" for j in jobs)
print(f"\n| jobs | finished | most at once | s with 2 or more at once | sweep wall s |\n|---|---|---|---|---|\n"
      f"| {len(jobs)} | {finished} | {most} | {both:.1f} | {sys.argv[2]} |")
sys.exit(0 if finished == len(jobs) == 2 and most == 2 else 1)
EOF
    rm -rf "$dir"
    return $rc
}
on_device_comparison() {  # on_device_comparison <on_device_rates options...> -- <overrides...>: step 7
    local options=()
    while [ "$1" != -- ]; do options+=("$1"); shift; done
    shift
    on_device_rates "${options[@]}" && compare_runs data.on_device=true,false "$@"
}

sample_type_comparison() {  # sample_type_comparison <overrides...>: step 8
    # int16 first: step 4 made it (the default), so data.cache_dtype=null in the later steps never picks float32.
    echo "**float32's wall time includes decoding its cache; int16's run found its cache made by step 4**"
    compare_runs data.cache_dtype=int16,float32 "$@" && cache_sizes
}
export -f compare_runs on_device_rates cache_sizes pool_sweep on_device_comparison sample_type_comparison

{
    echo "# GPU check $(date -u +%Y-%m-%dT%H:%M:%SZ)$([ "$smoke" = 1 ] && echo ' (smoke, CPU)')"
    # The torch line and environment.json from one interpreter: each start imports torch anew.
    python - "$out/environment.json" <<'EOF'
import json
import sys

import torch

from mgr.environment import environment

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
with open(sys.argv[1], "w") as f:
    f.write(json.dumps(environment(), indent=2) + "\n")
EOF
    [ -n "$librosa" ] && echo "librosa could not be imported: features without the librosa column."
} > "$results"

# shellcheck disable=SC2086
benchmarks() {  # steps 1-3: processes of their own
    step 1 "Features on $device against librosa on the CPU" 100 python benchmarks/feature_benchmark.py --device $device $features $librosa
    step 2 "Training throughput on $device, 32" 40 python benchmarks/train_throughput.py --device $device --precision 32 $throughput
    step 3 "Training throughput on $device, bf16" 40 python benchmarks/train_throughput.py --device $device --precision bf16 $throughput
}
# shellcheck disable=SC2086
runs() {  # steps 4-5: the two runs share the synth data; step 4 makes it and its (int16) cache
    step 4 "Default run, ${gpu:-trainer=default}" 110 python benchmarks/default_run.py $gpu $tiny
    step 5 "Default run, $ddp" 110 python benchmarks/default_run.py $ddp $tiny
}
# shellcheck disable=SC2086
prediction() { step 6 "mgr.predict on $device" 60 python benchmarks/predict_benchmark.py --device $device $predict; }
# shellcheck disable=SC2086
loader_step() { step 7 "data.on_device against the workers' loader on $device" 160 on_device_comparison $loader --device $device -- $gpu $tiny; }
# shellcheck disable=SC2086
sample_type_step() { step 8 "Cache sample type, int16 against float32" 150 sample_type_comparison $gpu $tiny; }
# shellcheck disable=SC2086
pool_step() { step 9 "2-job sweep, hydra/launcher=pool" 150 pool_sweep $pool $gpu $tiny; }
after_step() { until [ -e "$sections/$1.md" ]; do sleep 1; done; }

# Steps 7-9 train on the synth data step 4 makes (two runs making it at once would both write it).
if [ "$smoke" = 1 ]; then  # no figure counts: two groups at once, a core each (most of a step is imports)
    { benchmarks; prediction; after_step 4; loader_step; } & { runs; sample_type_step; pool_step; }; wait
    set +f && cat "$sections"/?.md >> "$results" && set -f
else
    benchmarks; runs; prediction; loader_step; sample_type_step; pool_step
fi
rm -rf "$sections"

cat "$results"
if grep -q '^FAILED after' "$results"; then exit 1; fi
