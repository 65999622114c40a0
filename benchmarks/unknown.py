"""An honest "unknown" (issue 25): what `mgr.predict min_confidence=c` answers for audio of a kind the
model never saw, against the in-domain files it should keep labelling.

For each run of a multirun (a real-music suite task's folds, say), its best checkpoint labels its own
test files (in-domain: the paths of its test_predictions.csv) and one folder of out-of-domain audio
made here: noise (white, pink and brown, at three levels) and speech (espeak-ng: several voices and
texts). Files are cut as evaluation cuts them (overlap 0). A multi-class file is `unknown` at c when
its top calibrated probability is below c (mgr.predict's `is_unknown`, called here), so one pass gives
the fractions at every c.

    python benchmarks/unknown.py <multirun dir> [--data-dir data] [--thresholds 0.4 0.5 0.6 0.7 0.8] [--novelty]
        [--held-out <files of classes the runs never saw>]

Prints, per threshold and pooled over the runs: the share of noise and of speech answered `unknown`,
the share of in-domain files still labelled (coverage) and the accuracy of those labelled.

With --novelty, each run also gets a novelty detector (mgr.models.novelty.fit_novelty: Gaussians of its
training chunks' embeddings, thresholded at the 0.95 quantile of its validation tracks' scores), fitted
on its data module rebuilt from the run's .hydra/config.yaml, and a second table says the same of
`unknown` = (top probability < c) OR novel (a file's chunks' mean score above the threshold), with a
row for the novelty rule alone.
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


def run_config(run: Path, data_dir: str):
    """A run's config, with ${paths.data_dir} as it was in the run."""
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    cfg.paths.data_dir = data_dir
    return cfg


def top_probabilities(model, paths: list[Path]) -> tuple[np.ndarray, list[str]]:
    """Each file's top probability and answer, as mgr.predict computes them (overlap 0)."""
    from mgr.predict import predict_files

    tops, answers = [], []
    for p in predict_files(model, paths, overlap=0.0):
        if p.error or p.silent:
            raise SystemExit(f"{p.path}: {p.error or 'silent'}")
        probabilities = np.asarray(p.probabilities)
        tops.append(probabilities.max())
        answers.append(model.class_names[int(probabilities.argmax())])
    return np.array(tops), answers


def novelty_scores(model, run: Path, data_dir: str, paths: list[Path]) -> tuple[np.ndarray, float]:
    """Each file's novelty score (its chunks' mean, the chunks cut as mgr.predict cuts them at overlap 0)
    under a detector fitted on the run's own data, and the detector's threshold."""
    import torch
    from hydra.utils import instantiate

    from mgr.data.chunking import chunk_starts, cut
    from mgr.models.novelty import fit_novelty
    from mgr.predict import _decoded

    datamodule = instantiate(run_config(run, data_dir).data, _convert_="all")
    datamodule.prepare_data()
    detector, fit = fit_novelty(model, datamodule, torch.device("cpu"))
    print(f"  {fit}; validation tracks' quantiles {fit.val_track_quantiles}", flush=True)
    scores = []
    with torch.inference_mode():
        for path, wave in _decoded(paths, model.hparams.sample_rate, threads=2):
            chunks = cut(wave, chunk_starts(len(wave), model.chunk_samples, 0.0), model.chunk_samples)
            scores.append(detector.file_score(torch.cat([model.embed(batch) for batch in chunks.split(32)])))
    return np.array(scores), float(detector.threshold)


def print_table(kinds: dict[str, np.ndarray], right: np.ndarray, thresholds: list[float], unknown, novel=None) -> None:
    """The table of `unknown` (a function of the top probabilities and c) at each c; with `novel` (each
    file's novelty verdict, by kind), of unknown OR novel, and a row for the novelty rule alone."""
    outside = [kind for kind in kinds if kind != "in-domain"]

    def row(label: str, verdict) -> str:  # verdict: kind -> each file's `unknown`
        kept = ~verdict("in-domain")
        return (f"| {label} | " + " | ".join(f"{verdict(kind).mean():.3f}" for kind in outside) +
                f" | {kept.mean():.3f} | {right[kept].mean() if kept.any() else float('nan'):.3f} |")

    rule = "min_confidence" if novel is None else "min_confidence, OR novel"
    print(f"| {rule} | " + " | ".join(f"{kind} answered unknown" for kind in outside) +
          " | in-domain still labelled (coverage) | accuracy of those labelled |\n|---" + "|---" * (len(outside) + 2) + "|")
    print("| none | " + "0 | " * len(outside) + f"1 | {right.mean():.3f} |")
    if novel is not None:
        print(row("novel alone", lambda kind: novel[kind]))
    for c in thresholds:
        print(row(f"{c:g}", lambda kind: unknown(kinds[kind], c) | (False if novel is None else novel[kind])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun", type=Path)
    parser.add_argument("--data-dir", default="data", help="what ${paths.data_dir} was in the runs")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.4, 0.5, 0.6, 0.7, 0.8])
    parser.add_argument("--held-out", type=Path, nargs="*", default=[],
                        help="music of classes the runs never saw (files), a third kind of outside audio")
    parser.add_argument("--novelty", action="store_true", help="also fit each run's novelty detector and score "
                        "unknown = low confidence OR novel")
    args = parser.parse_args()
    from mgr.models import load_model
    from mgr.predict import is_unknown
    import torch

    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed for the speech (apt install espeak-ng)")
    runs = sorted(p.parent for p in args.multirun.glob("*/metrics.json"))
    with tempfile.TemporaryDirectory() as tmp:
        noise, speech = make_noise(Path(tmp), np.random.default_rng(0)), make_speech(Path(tmp))
        outside = {"noise": noise, "speech": speech, **({"held-out music": args.held_out} if args.held_out else {})}
        ends = np.cumsum([len(files) for files in outside.values()])
        kinds = {**{kind: [] for kind in outside}, "in-domain": []}
        novel = {kind: [] for kind in kinds}
        right = []
        for run in runs:
            checkpoint = json.loads((run / "metrics.json").read_text())["best_checkpoint"]
            files, labels = in_domain(run, args.data_dir)
            model = load_model(checkpoint)
            paths = [path for files_of_kind in outside.values() for path in files_of_kind] + files
            tops, answers = top_probabilities(model, paths)
            print(f"{run.name}: {len(files)} test files, {checkpoint}", flush=True)
            verdicts = {}
            if args.novelty:
                scores, threshold = novelty_scores(model, run, args.data_dir, paths)
                verdicts = {"novel": scores > threshold}  # the detector's rule (is_novel), file by file
            for kind, part in zip(kinds, np.split(np.arange(len(paths)), ends)):
                kinds[kind].append(tops[part])
                if verdicts:
                    novel[kind].append(verdicts["novel"][part])
            right.append(np.array(answers[ends[-1]:]) == np.array(labels))
    pooled = {kind: np.concatenate(v) for kind, v in kinds.items()}
    right = np.concatenate(right)

    def unknown(tops: np.ndarray, c: float) -> np.ndarray:  # mgr.predict's rule, file by file
        return np.array([is_unknown(torch.tensor([t]), None, c) for t in tops])

    print(f"\n{len(runs)} runs; {', '.join(f'{len(v)} {k}' for k, v in outside.items())} files labelled by each, "
          f"{len(pooled['in-domain'])} in-domain test files in all\n")
    print_table(pooled, right, args.thresholds, unknown)
    if args.novelty:
        print("\nWith each run's novelty detector: unknown = (top probability < c) OR novel\n")
        print_table(pooled, right, args.thresholds, unknown, {kind: np.concatenate(v) for kind, v in novel.items()})


if __name__ == "__main__":
    main()
