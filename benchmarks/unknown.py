"""An honest "unknown" (issue 25): what `mgr.predict min_confidence=c` answers for audio of a kind the
model never saw, against the in-domain files it should keep labelling.

For each run of a multirun (a real-music suite task's folds, say), its best checkpoint labels its own
test files (in-domain: the paths of its test_predictions.csv) and one folder of out-of-domain audio
made here: noise (white, pink and brown, at three levels) and speech (espeak-ng: several voices and
texts). Files are cut as evaluation cuts them (overlap 0). A multi-class file is `unknown` at c when
its top calibrated probability is below c (mgr.predict's `is_unknown`, called here), so one pass gives
the fractions at every c.

    python benchmarks/unknown.py <multirun dir> [--data-dir data] [--thresholds 0.4 0.5 0.6 0.7 0.8]

Prints, per threshold and pooled over the runs: the share of noise and of speech answered `unknown`,
the share of in-domain files still labelled (coverage) and the accuracy of those labelled.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from omegaconf import OmegaConf

RATE, SECONDS = 22050, 30.0
SPEECH = [  # (espeak-ng voice, text)
    ("en", "The committee will meet again on Thursday to review the budget and the schedule for next year."),
    ("en-us", "Please remember to bring your identification and arrive at least twenty minutes early."),
    ("de", "Der Zug nach Berlin fährt heute mit einer Verspätung von ungefähr fünfzehn Minuten ab."),
    ("fr", "La réunion a été reportée à la semaine prochaine en raison des conditions météorologiques."),
    ("es", "El mercado abre a las ocho de la mañana y cierra a las seis de la tarde todos los días."),
    ("it", "Il museo resterà chiuso per lavori di restauro fino alla fine del mese di settembre."),
    ("nl", "De bibliotheek heeft een nieuwe collectie boeken over geschiedenis en aardrijkskunde."),
    ("pt", "O relatório final será entregue ao diretor antes do fim do prazo estabelecido."),
    ("sv", "Vi kommer att diskutera de nya reglerna för parkering vid nästa möte i kommunen."),
    ("pl", "Prognoza pogody zapowiada deszcz i silny wiatr w północnej części kraju."),
]


def make_noise(folder: Path, rng: np.random.Generator) -> list[Path]:
    """White, pink and brown noise (spectra flat, 1/f, 1/f^2), each at peaks of -30, -15 and -3 dBFS."""
    n = int(RATE * SECONDS)
    paths = []
    for colour, exponent in (("white", 0.0), ("pink", 1.0), ("brown", 2.0)):
        spectrum = np.fft.rfft(rng.standard_normal(n))
        frequency = np.fft.rfftfreq(n, 1 / RATE)
        spectrum[1:] /= frequency[1:] ** (exponent / 2)
        spectrum[0] = 0
        wave = np.fft.irfft(spectrum, n)
        for peak_db in (-30, -15, -3):
            path = folder / f"noise_{colour}_{-peak_db}dB.wav"
            sf.write(path, (wave / np.abs(wave).max() * 10 ** (peak_db / 20)).astype(np.float32), RATE)
            paths.append(path)
    return paths


def make_speech(folder: Path) -> list[Path]:
    """Each text spoken by espeak-ng in its language, at two speeds."""
    paths = []
    for voice, text in SPEECH:
        for speed in (140, 190):
            path = folder / f"speech_{voice}_{speed}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
            paths.append(path)
    return paths


def in_domain(run: Path, data_dir: str) -> tuple[list[Path], list[str]]:
    """A run's test files and their labels, from its test_predictions.csv; paths are relative to the
    folder of its data.root (a manifest's folder)."""
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    root = Path(OmegaConf.to_container(cfg.data)["root"].replace("${paths.data_dir}", data_dir))
    base = root.parent if root.suffix == ".csv" else root
    with open(run / "test_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [base / r["path"] for r in rows], [r["label"] for r in rows]


def top_probabilities(checkpoint: str, paths: list[Path]) -> tuple[np.ndarray, list[str]]:
    """Each file's top probability and answer, as mgr.predict computes them (overlap 0)."""
    from mgr.models import load_model
    from mgr.predict import predict_files

    model = load_model(checkpoint)
    tops, answers = [], []
    for p in predict_files(model, paths, overlap=0.0):
        if p.error or p.silent:
            raise SystemExit(f"{p.path}: {p.error or 'silent'}")
        probabilities = np.asarray(p.probabilities)
        tops.append(probabilities.max())
        answers.append(model.class_names[int(probabilities.argmax())])
    return np.array(tops), answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun", type=Path)
    parser.add_argument("--data-dir", default="data", help="what ${paths.data_dir} was in the runs")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.4, 0.5, 0.6, 0.7, 0.8])
    args = parser.parse_args()
    from mgr.predict import is_unknown
    import torch

    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed for the speech (apt install espeak-ng)")
    runs = sorted(p.parent for p in args.multirun.glob("*/metrics.json"))
    with tempfile.TemporaryDirectory() as tmp:
        noise, speech = make_noise(Path(tmp), np.random.default_rng(0)), make_speech(Path(tmp))
        kinds = {"noise": [], "speech": [], "in-domain": []}
        right = []
        for run in runs:
            checkpoint = json.loads((run / "metrics.json").read_text())["best_checkpoint"]
            files, labels = in_domain(run, args.data_dir)
            tops, answers = top_probabilities(checkpoint, [*noise, *speech, *files])
            kinds["noise"].append(tops[:len(noise)])
            kinds["speech"].append(tops[len(noise):len(noise) + len(speech)])
            kinds["in-domain"].append(tops[len(noise) + len(speech):])
            right.append(np.array(answers[len(noise) + len(speech):]) == np.array(labels))
            print(f"{run.name}: {len(files)} test files, {checkpoint}", flush=True)
    pooled = {kind: np.concatenate(v) for kind, v in kinds.items()}
    right = np.concatenate(right)

    def unknown(tops: np.ndarray, c: float) -> np.ndarray:  # mgr.predict's rule, file by file
        return np.array([is_unknown(torch.tensor([t]), None, c) for t in tops])

    print(f"\n{len(runs)} runs; {len(noise)} noise and {len(speech)} speech files labelled by each, "
          f"{len(pooled['in-domain'])} in-domain test files in all\n")
    print("| min_confidence | noise answered unknown | speech answered unknown | in-domain still labelled "
          "(coverage) | accuracy of those labelled |\n|---|---|---|---|---|")
    print(f"| none | 0 | 0 | 1 | {right.mean():.3f} |")
    for c in args.thresholds:
        kept = ~unknown(pooled["in-domain"], c)
        print(f"| {c:g} | {unknown(pooled['noise'], c).mean():.3f} | {unknown(pooled['speech'], c).mean():.3f} "
              f"| {kept.mean():.3f} | {right[kept].mean() if kept.any() else float('nan'):.3f} |")


if __name__ == "__main__":
    main()
