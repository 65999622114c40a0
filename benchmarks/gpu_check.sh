#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md in one command of under 8 minutes on one
# NVIDIA GPU: features on CUDA against librosa on the CPU, crnn/cnn training throughput
# in fp32 and bf16 with the frontend's share of a step, the default run with
# trainer=gpu, trainer=ddp on the one GPU, and mgr.predict on CUDA.
#
#   bash benchmarks/gpu_check.sh prepare          # on a CPU machine with PyPI, in mgr's test venv
#   bash benchmarks/gpu_check.sh [--out DIR]      # on the GPU machine
#   bash benchmarks/gpu_check.sh --smoke          # any CPU, under 2 minutes: every step, tiny sizes
#
# The GPU machines lent here have no network and Python 3.12 with torch 2.11.0,
# Lightning, torchmetrics, numpy, scipy, scikit-learn, matplotlib, numba and llvmlite
# preinstalled, but not nnAudio, Hydra, OmegaConf, soundfile, soxr or librosa. `prepare`
# downloads those as Python 3.12 wheels, at the versions of the venv it runs in (the ones
# mgr's tests passed with), plus a wheel of mgr itself, into benchmarks/gpu_wheels/
# (git-ignored; about 4 MB: carry it to the machine). The check installs them with
# --no-deps into a folder of its own on PYTHONPATH, so the preinstalled torch is never
# touched. wandb is left out: the check logs to CSV only.
#
# Results: DIR/results.md (one table per step), DIR/environment.json, DIR/log.txt;
# DIR is $OUT where set, else ./gpu_check_out. Exit code 1 if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
wheels=benchmarks/gpu_wheels

if [ "${1:-}" = prepare ]; then
    set -e
    rm -rf "$wheels" && mkdir -p "$wheels"
    pins=$(python - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in
      ("nnAudio", "hydra-core", "omegaconf", "soundfile", "cffi", "pycparser", "soxr", "librosa",
       "audioread", "decorator", "pooch", "platformdirs", "filelock")))
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

if ! python -c "import mgr.train, nnAudio, soundfile, soxr" 2>/dev/null; then
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
else
    device=cuda gpu="trainer=gpu" ddp="trainer=ddp trainer.devices=1" tiny="" features="" throughput="--models crnn cnn --steps 20"
    predict=""
fi

set -f  # overrides such as seconds=[2.0,3.0] are words, not file patterns
sections=$(mktemp -d)
step() {  # step <n> <title> <seconds allowed on a GPU> <command...>: section n of results.md
    local section=$sections/$1 title=$2 limit=$3; shift 3
    [ "$smoke" = 1 ] && limit=600  # a CPU shared with other work is slow, and no figure counts
    local start=$SECONDS
    echo "== $title: $*" | tee "$section.log"
    if timeout "$limit" "$@" > "$section.txt" 2>>"$section.log"; then
        printf '\n## %s\n\n`%s` (%d s)\n\n' "$title" "$*" $((SECONDS - start)) > "$section.md"
        grep '^|' "$section.txt" >> "$section.md"
    else
        printf '\n## %s\n\nFAILED after %d s: `%s` (see log.txt)\n' "$title" $((SECONDS - start)) "$*" > "$section.md"
    fi
    cat "$section.txt" >> "$section.log"
    cat "$section.log" >> "$log"
    [ "$smoke" = 1 ] || cat "$section.md" >> "$results"  # at once: a GPU lease may end before the last step
}

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
runs() {  # steps 4-5: the two runs share the synth data
    step 4 "Default run, ${gpu:-trainer=default}" 110 python benchmarks/default_run.py $gpu $tiny
    step 5 "Default run, $ddp" 110 python benchmarks/default_run.py $ddp $tiny
}
# shellcheck disable=SC2086
prediction() { step 6 "mgr.predict on $device" 60 python benchmarks/predict_benchmark.py --device $device $predict; }
if [ "$smoke" = 1 ]; then  # no figure counts: two groups at once, a core each (most of a step is imports)
    { benchmarks; prediction; } & runs; wait
    set +f && cat "$sections"/?.md >> "$results" && set -f
else
    benchmarks; runs; prediction
fi
rm -rf "$sections"

cat "$results"
if grep -q '^FAILED after' "$results"; then exit 1; fi
