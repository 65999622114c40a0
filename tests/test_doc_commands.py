"""The docs' examples cannot drift: every `python -m mgr.<command>` that README.md and docs/ show
(in code blocks, transcripts and inline code) composes its config as the command would, the ones
that take under a minute run for real on tiny data, and every other one is listed in NOT_RUN with
the reason. A new documented command that is neither in RUN nor in NOT_RUN fails the test."""

from __future__ import annotations

import itertools
import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import compose_resolved, mgr_in_process, options, write_wav

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MODULES = ("train", "eval", "predict", "embed", "report", "download", "verify")

# What stands for the reader's own paths and names, and what the tests put there: a value of the
# `values` mapping (`$checkpoint`, `$sweep`, ...) or text. Applied to each argument in this order.
PLACEHOLDERS = [
    # logs/train/runs/<run>/checkpoints/<best>.ckpt, or a transcript's real-looking one
    (re.compile(r"^(?:logs/train/runs/[^/]+/checkpoints/)?[^/=,\[\]]+\.ckpt$"), "$checkpoint"),
    (re.compile(r"^logs/train/multiruns/<date_time>$"), "$sweep"),
    (re.compile(r"^logs/train/runs/<run>$"), "$run"),
    (re.compile(r"^(PATH|\.\.\.)$"), "$folder"),  # download's root=PATH, root=...
    (re.compile(r"^N$"), "3"),                      # data.folds=N
    (re.compile(r"^range\(N\)$"), "range(3)"),      # data.fold='range(N)'
]
SHELL_VARIABLE = re.compile(r"\$(?:(\w+)|\{(\w+)\})")  # $HOME, ${HOME}; Hydra's ${a.b} stays
# `group=<name>`: an option of the group (every option composes in tests/conf/test_conf.py).
ANY_OPTION = re.compile(r"^([\w/]+)=<name>$")
# `key=a|b|c` lists the values a key takes: each is composed, as a sweep's choices are.
ALTERNATIVES = re.compile(r"^([\w.]+)=(\w+(?:\|\w+)+)$")


@dataclass(frozen=True)
class Documented:
    """A documented command: where it is and its words as the shell passes them (quotes, prompt and
    comment gone). `text` is how RUN and NOT_RUN name it: the same command on several pages is one."""
    where: str
    words: tuple[str, ...]

    @property
    def module(self) -> str:
        return self.words[2].removeprefix("mgr.")

    @property
    def args(self) -> tuple[str, ...]:
        return self.words[3:]

    @property
    def text(self) -> str:
        return " ".join(self.words)


# --- finding the commands ------------------------------------------------------------------------

FENCE = re.compile(r"^\s*(```|~~~)\s*([\w-]*)")
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
CHAIN = {"&&", "||", ";", "|"}


def commands_of_line(line: str) -> list[tuple[str, ...]]:
    """The `python -m mgr.<x> ...` commands of a shell line, each as its words; a chain
    (`a && b`) holds several commands, a `# comment` ends the line."""
    words = shlex.split(line.removeprefix("$ "), comments=True)
    commands = [list(g) for chained, g in itertools.groupby(words, lambda w: w in CHAIN) if not chained]
    return [tuple(c) for c in commands
            if len(c) >= 3 and c[0] in ("python", "python3") and c[1] == "-m" and c[2].startswith("mgr.")]


def shell_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(number of the first line, text) of each logical line: a line ending in `\\` goes on."""
    joined, start, pending = [], 0, ""
    for number, line in lines:
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((start, pending + line))
        pending = ""
    return joined + ([(start, pending)] if pending else [])


def documented_commands(page: Path) -> list[Documented]:
    """Every mgr command of a markdown page: each line of a shell block (```bash), each line of any
    other block that starts with `python -m mgr.` or a prompt (`$ python -m mgr.`: a transcript),
    and each inline code span outside blocks that holds one."""
    name = str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name
    found, block, language = [], None, ""
    for number, line in enumerate(page.read_text().splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            if block is None:
                block, language = [], fence.group(2)
            else:
                shell = language in SHELL_BLOCKS
                for start, text in shell_lines(block):
                    if shell or re.match(r"(\$ )?python3? -m mgr\.", text.lstrip()):
                        found += commands_at(f"{name}:{start}", text.strip())
                block = None
        elif block is not None:
            block.append((number, line))
        else:
            for span in re.findall(r"`([^`]+)`", line):
                found += commands_at(f"{name}:{number}", span)
    return found


def commands_at(where: str, text: str) -> list[Documented]:
    try:
        return [Documented(where, c) for c in commands_of_line(text)]
    except ValueError as e:  # shlex: an unclosed quote; a shell would not run the line either
        if "mgr." in text:
            raise ValueError(f"{where}: a shell cannot read this command ({e}): {text}") from None
        return []


def all_documented_commands() -> list[Documented]:
    return [c for page in PAGES for c in documented_commands(page)]


# --- what a command composes ---------------------------------------------------------------------

def substituted(arg: str, values: dict[str, str]) -> str:
    """An argument with its placeholders and shell variables ($HOME) replaced by `values`."""
    key, eq, value = arg.partition("=")
    if not eq:
        return arg
    option = ANY_OPTION.match(arg)
    if option:
        return f"{key}={options(option.group(1))[0]}"
    alternatives = ALTERNATIVES.match(arg)
    if alternatives:
        return f"{key}={alternatives.group(2).replace('|', ',')}"
    items = value[1:-1].split(",") if value.startswith("[") and value.endswith("]") else [value]
    for n, item in enumerate(items):
        for pattern, replacement in PLACEHOLDERS:
            if pattern.match(item):
                items[n] = pattern.sub(replacement, item)
                break
    value = f"[{','.join(items)}]" if value.startswith("[") else items[0]
    return f"{key}={SHELL_VARIABLE.sub(lambda m: values.get(m[1] or m[2], m[0]), value)}"


@dataclass(frozen=True)
class Invocation:
    """What Hydra gets of a documented command: its flags and each job's overrides."""
    flags: tuple[str, ...]     # -m, --help, --cfg job
    overrides: tuple[str, ...]

    def jobs(self) -> list[list[str]]:
        """The overrides of enough of the jobs a multirun starts that every choice of every swept
        key is in one, and the first and the last of a range (data.fold='range(5)'): job i takes
        choice i of each key (its last once a key's run out). A choice that does not compose fails
        in its job; composing every combination would take a composition per job (60 for the
        real-music suite), each about a sixth of a second."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        choices = [swept_choices(o) for o in OverridesParser.create().parse_overrides(list(self.overrides))]
        return [[c[min(i, len(c) - 1)] for c in choices] for i in range(max(map(len, choices), default=1))]


def swept_choices(override) -> list[str]:
    """`key=value` for each value of an override that the jobs must cover."""
    if not override.is_sweep_override():
        return [override.input_line]
    values = list(override.sweep_string_iterator())
    if override.value_type.name == "RANGE_SWEEP":  # numbers in a row: the ends are the cases
        values = [values[0], values[-1]] if len(values) > 1 else values
    return [f"{override.get_key_element()}={v}" for v in values]


FLAGS = {"-m": 1, "--multirun": 1, "--help": 1, "-h": 1, "--hydra-help": 1, "--cfg": 2, "-c": 2}


def invocation(command: Documented, values: dict[str, str]) -> Invocation:
    flags, overrides, args = [], [], list(command.args)
    while args:
        arg = args.pop(0)
        if arg in FLAGS:
            flags += [arg, *args[:FLAGS[arg] - 1]]
            del args[:FLAGS[arg] - 1]
        elif arg == "...":  # "and the rest of your overrides" (slurm-resume.md)
            continue
        else:
            overrides.append(substituted(arg, values))
    return Invocation(tuple(flags), tuple(overrides))


def composition_error(command: Documented, values: dict[str, str], jobs: slice = slice(None)) -> str | None:
    """Hydra's message for the first of the command's `jobs` that does not compose, or None.
    Composed with the hydra node (so hydra/launcher=slurm and hydra.launcher.* are checked) and
    resolved, as `python -m mgr.<command> <overrides> --cfg job --resolve` would."""
    try:
        for job in invocation(command, values).jobs()[jobs]:
            compose_resolved(command.module, job)
    except Exception as e:  # whichever error Hydra or OmegaConf raises: its message is the report
        return f"{type(e).__name__}: {e}"
    return None


# --- which commands run ----------------------------------------------------------------------------

CHECKPOINT = "python -m mgr.{} ckpt_path=logs/train/runs/<run>/checkpoints/<best>.ckpt"
TRANSCRIPT_CHECKPOINT = "ckpt_path=logs/train/runs/2026-11-21_20-47-39-834061/checkpoints/epoch007.ckpt"

# Run for real by test_the_quick_documented_commands_run, on the session's trained_run checkpoint,
# a hand-made sweep, a $HOME with music in it: each the reason it is run, what stands for the reader's.
RUN = {
    CHECKPOINT.format("eval"): "the tests of trained_run's checkpoint again",
    CHECKPOINT.format("predict") + " inputs=[song.mp3,$HOME/unsorted/]": "a song.mp3 and a folder of audio files",
    CHECKPOINT.format("predict") + " inputs=[$HOME/unsorted/]": "a folder of audio files",
    CHECKPOINT.format("predict") + " inputs=[$HOME/unsorted/] min_confidence=0.6": "a folder, unknown below 0.6",
    CHECKPOINT.format("predict") + " inputs=[$HOME/unsorted/] novelty=true": "a folder, unknown where unlike the training data",
    CHECKPOINT.format("predict") + " inputs=[$HOME/unsorted/] novelty=true min_confidence=0.6":
        "a folder, unknown where unlike the training data or below 0.6",
    f"python -m mgr.predict {TRANSCRIPT_CHECKPOINT} inputs=[my_music/]": "the transcript's command, on wav files",
    "python -m mgr.embed ckpt_path=<best>.ckpt": "trained_run's test split and its t-SNE map",
    f"python -m mgr.embed {TRANSCRIPT_CHECKPOINT}": "the transcript's command: the same",
    "python -m mgr.report sweep_dir=logs/train/multiruns/<date_time>": "a hand-made 3-model sweep",
    "python -m mgr.report sweep_dir=logs/train/runs": "the same runs in logs/train/runs",
    "python -m mgr.verify": "the caches of the session's data folder",
    "python -m mgr.train data=folder data.root=$HOME/music debug=fast_dev_run": "one batch on 3 genres of 5 tracks",
    "python -m mgr.train --help": "exit code 0 (the help's content is tested with each command)",
    "python -m mgr.train --cfg job": "prints the config, runs nothing",
    "python -m mgr.train --cfg job model=fcn": "prints the config, runs nothing",
}

# Composed by test_every_documented_command_composes, not run: each the reason.
TRAINS_SYNTH = "trains on the default synth dataset, generated and decoded first (198 MB, about 50 s), for minutes"
OWN_MUSIC = "trains on the reader's music for minutes"
PROBE = "downloads the encoder's weights (no network in tests); tests/models/test_probe*.py probe tiny encoders"
SWEEP = "a multirun of full trainings (hours); tests/test_sweeps.py runs tiny multiruns"
DOWNLOAD = "downloads the real dataset (GBs); tests/test_download.py downloads from a local server"
NOT_RUN = {
    "python -m mgr.train": TRAINS_SYNTH + "; CI runs the Quick start verbatim",
    "python -m mgr.train model=cnn feature=stft": TRAINS_SYNTH,
    "python -m mgr.train calibrate=false": TRAINS_SYNTH,
    "python -m mgr.train task=multilabel": TRAINS_SYNTH + "; tests/test_multilabel.py trains it tiny",
    "python -m mgr.train task=multilabel data=fma_small data.source_options.labels=genres_all":
        "trains on the real fma_small (7.2 GB); tests/data/sources/test_fma_multilabel.py trains a miniature tree a step",
    "python -m mgr.train task=multilabel data=folder data.root=$HOME/music/labels.csv":
        OWN_MUSIC + "; tests/test_multilabel.py trains a labels manifest a step",
    "python -m mgr.train task=multilabel data=mtg_jamendo data.root=data/mtg-jamendo":
        "trains on MTG-Jamendo's 55,000 full tracks (tens of GB, not in tests); "
        "tests/data/sources/test_mtg_jamendo.py trains a miniature copy a step",
    "python -m mgr.train task=multilabel data=mtat data.root=data/mtat":
        "trains on MagnaTagATune's 25,863 clips (3 GB, not in tests); tests/data/sources/test_mtat.py trains "
        "a miniature copy a step",
    CHECKPOINT.format("predict") + " inputs=[song.mp3] min_confidence=0.5":
        "a multilabel checkpoint; tests/test_multilabel.py predicts with one",
    "python -m mgr.train model=crnn feature=mfcc model.rnn=lstm trainer.max_epochs=30": TRAINS_SYNTH,
    "python -m mgr.train debug=fast_dev_run": "generates and decodes the default synth dataset (198 MB, about 50 s) "
                                              "for one batch; tests/test_train.py runs fast_dev_run on tiny data",
    "python -m mgr.train model=<name>": TRAINS_SYNTH + "; tests/conf/test_model.py runs every model",
    "python -m mgr.train trainer=gpu": "needs a GPU; benchmarks/gpu_check.sh trains with it on one",
    "python -m mgr.train data=folder data.root=$HOME/music": OWN_MUSIC,
    "python -m mgr.train -m data=folder data.root=$HOME/music data.folds=5 data.fold=range(5)": SWEEP,
    "python -m mgr.train -m model=cnn,crnn data.folds=5 data.fold=range(5)": SWEEP,
    "python -m mgr.train -m model=cnn,crnn data.folds=5 data.fold=range(5) seed=1,2,3": SWEEP,
    "python -m mgr.train -m model=crnn,cnn feature=mel,mfcc": SWEEP,
    "python -m mgr.train -m data.folds=N data.fold=range(N)": SWEEP,
    "python -m mgr.train -m data.fold=range(5) data=suite_long,suite_clips,suite_many "
    "experiment=suite/default,suite/scratch,suite/classic":
        "the real-music suite: its data is built from Debian's packages (1.3 GB), then 45 trainings",
    "python -m mgr.train -m model=crnn,fcn feature=mel,cqt,chroma data=gtzan trainer=ddp logger=wandb":
        "GTZAN on several GPUs with W&B online",
    "python -m mgr.train -m hydra/launcher=pool model=crnn,fcn feature=mel,cqt,chroma data=gtzan trainer=gpu logger=wandb":
        "GTZAN on 4 GPUs with W&B online; tests/test_pool_launcher.py runs tiny pool sweeps on the CPU",
    "python -m mgr.train -m hydra/launcher=slurm hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=4 "
    "hydra.launcher.tasks_per_node=4 trainer=ddp ...": "submits to SLURM; its hydra node composes here",
    "python -m mgr.train -m hydra/launcher=slurm hydra.launcher.partition=gpu hydra.launcher.nodes=2 "
    "hydra.launcher.gpus_per_node=4 hydra.launcher.tasks_per_node=4 trainer=ddp trainer.devices=4 trainer.num_nodes=2 ...":
        "submits to SLURM; its hydra node composes here; tests/test_cluster_ddp.py runs its overrides in simulated "
        "srun tasks on the CPU",
    "python -m mgr.train trainer=ddp trainer.devices=4": "needs 4 GPUs; tests/conf/test_trainer.py runs trainer=ddp_cpu",
    "python -m mgr.train ckpt_path=last hydra.run.dir=logs/train/runs/<run>":
        "resumes a killed run with that run's own overrides, which the command leaves out; "
        "tests/test_run_directory.py resumes one",
    "python -m mgr.train hparams_search=optuna hydra.sweeper.n_trials=30":
        "30 trainings; tests/test_sweeps.py runs a 3-trial Optuna sweep",
    "python -m mgr.train data=folder data.root=$HOME/music model=cnn": OWN_MUSIC,
    "python -m mgr.train model=probe encoder=<name>": PROBE,
    "python -m mgr.train model=probe task=multilabel": PROBE,
    "python -m mgr.train -m model=probe encoder=mert_95m encoder.layer=0,4,8,12": PROBE,
    "python -m mgr.embed ckpt_path=<best>.ckpt split=val data=folder data.root=$HOME/music":
        "needs a checkpoint trained at data=folder's sample rate and chunk length; the session's is tiny (8 kHz, 1 s)",
    CHECKPOINT.format("embed") + " split=val data=folder data.root=$HOME/music":
        "needs a checkpoint trained at data=folder's sample rate and chunk length; the session's is tiny (8 kHz, 1 s)",
    "python -m mgr.predict ckpt_path=downloaded.ckpt inputs=[my_music/]":
        "shows the refusal of a checkpoint that names code; tests/models/test_checkpoints.py refuses one",
    "python -m mgr.download dataset=gtzan root=data/gtzan": DOWNLOAD,
    "python -m mgr.download dataset=fma_small root=data/fma": DOWNLOAD,
    "python -m mgr.download dataset=fma_medium root=data/fma": DOWNLOAD,
    "python -m mgr.download dataset=fma_large root=data/fma": DOWNLOAD,
    "python -m mgr.download dataset=fma_metadata root=...": DOWNLOAD,
    "python -m mgr.download dataset=mtg_jamendo root=data/mtg-jamendo": DOWNLOAD,
    "python -m mgr.download dataset=mtat root=data/mtat": DOWNLOAD,
    "python -m mgr.download dataset=gtzan|fma_small|fma_medium|fma_large|fma_metadata|mtg_jamendo|mtg_jamendo_low|mtg_jamendo_metadata|mtat root=PATH": DOWNLOAD,
}


# --- the tests -----------------------------------------------------------------------------------

VALUE_NAMES = ("HOME", "checkpoint", "sweep", "run", "folder")  # what PLACEHOLDERS and the shell fill in


def composition_values(tmp_path: Path) -> dict[str, str]:
    """Where the placeholders point for composing: paths nothing reads."""
    return {name: str(tmp_path / name) for name in VALUE_NAMES}


def composition_failures(values: dict[str, str], jobs: slice) -> list[str]:
    commands = {c.text: c for c in all_documented_commands()}  # one of each: the same text composes alike
    return [f"{c.where}: {c.text}\n    {error}" for c in commands.values()
            if (error := composition_error(c, values, jobs)) is not None]


def test_every_documented_command_composes(tmp_path):
    """Each command's first job (all of a command that is no multirun); a sixth of a second each."""
    assert {c.module for c in all_documented_commands()} == set(MODULES), "an entry point documented nowhere"
    failures = composition_failures(composition_values(tmp_path), slice(0, 1))
    assert not failures, "documented commands that do not compose:\n" + "\n".join(failures)


@pytest.mark.slow
def test_every_further_job_of_the_documented_multiruns_composes(tmp_path):
    failures = composition_failures(composition_values(tmp_path), slice(1, None))
    assert not failures, "documented multiruns with a job that does not compose:\n" + "\n".join(failures)


def test_every_documented_command_is_run_or_listed_with_a_reason():
    documented = {c.text: c.where for c in all_documented_commands()}
    unlisted = [f"{where}: {text}" for text, where in documented.items() if text not in RUN and text not in NOT_RUN]
    assert not unlisted, ("documented commands that are neither run nor listed: add each to RUN (it runs in "
                          "under a minute on tiny data) or to NOT_RUN with the reason\n" + "\n".join(unlisted))
    stale = [text for text in (*RUN, *NOT_RUN) if text not in documented]
    assert not stale, f"listed commands that no page documents any more: {stale}"
    assert not set(RUN) & set(NOT_RUN)


def quick_commands() -> list[Documented]:
    """One documented command of RUN for each distinct run: the same command on several pages, or
    the transcript's checkpoint for <best>.ckpt, runs once."""
    symbolic = {name: f"${name}" for name in VALUE_NAMES}
    distinct = {}
    for command in all_documented_commands():
        if command.text in RUN:
            distinct.setdefault((command.module, invocation(command, symbolic)), command)
    return list(distinct.values())


def write_music(folder: Path, names: list[str]) -> None:
    """1.5 s of noise at 8 kHz in each named file, in the format its name says (song.mp3 is an MP3)."""
    rng = np.random.default_rng(len(names))
    for name in names:
        write_wav(folder / name, 0.1 * rng.standard_normal(12000).astype(np.float32), 8000)


@pytest.fixture
def readers_world(tmp_path, monkeypatch, request) -> dict[str, str]:
    """What the documented commands take for granted: a $HOME with music, the working directory's
    song.mp3, my_music/ and logs/train/runs, a sweep; the checkpoint of trained_run when asked."""
    home = tmp_path / "home"
    write_music(home / "music", [f"{genre}/{n}.wav" for genre in ("jazz", "metal", "ambient") for n in range(5)])
    write_music(home / "unsorted", ["a.wav", "b.flac"])
    write_music(tmp_path, ["song.mp3", "my_music/one.wav", "my_music/live/two.ogg"])
    monkeypatch.setenv("HOME", str(home))
    from test_sweep_report import make_sweep  # hand-made finished runs: mgr.report reads them as a sweep

    make_sweep(tmp_path / "logs" / "train" / "runs")
    values = {**composition_values(tmp_path), "HOME": str(home), "sweep": str(make_sweep(tmp_path / "sweep"))}
    command = request.node.callspec.params["command"]
    if needs_trained_run(command):
        metrics = json.loads((request.getfixturevalue("trained_run") / "metrics.json").read_text())
        values["checkpoint"] = metrics["best_checkpoint"]
    if probes_musicnn(command):  # where mgr keeps the wheel it downloaded: the session's cache, as after a first run
        wheel = request.getfixturevalue("musicnn_wheel")
        encoders = request.getfixturevalue("data_dir") / "cache" / "encoders"
        encoders.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheel, encoders / wheel.name)
    return values


def probes_musicnn(command: Documented) -> bool:
    """Whether the command trains on a folder with no model named: data=folder's default, musicnn's probe."""
    named = invocation(command, {}).overrides
    return command.module == "train" and "data=folder" in named and not any(o.startswith("model=") for o in named)


def needs_trained_run(command: Documented) -> bool:
    """Whether the command names a checkpoint, or is mgr.verify: it checks the caches of the
    session's data folder, and trained_run's is one of them."""
    named = invocation(command, {"checkpoint": "$checkpoint"}).overrides
    return any("$checkpoint" in o for o in named) or command.module == "verify"


@pytest.mark.slow
@pytest.mark.parametrize("command", quick_commands(), ids=lambda c: c.text.removeprefix("python -m "))
def test_the_quick_documented_commands_run(command, readers_world, tmp_path, data_dir):
    called = invocation(command, readers_world)
    assert "-m" not in called.flags and "--multirun" not in called.flags, "RUN holds a multirun"
    proc = mgr_in_process(command.module, *called.flags, *called.overrides, cwd=tmp_path, data_dir=data_dir, check=False)
    assert proc.returncode == 0, f"{command.where}: {command.text}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


# --- the finder and the composer themselves ------------------------------------------------------

def test_the_finder_reads_blocks_transcripts_and_inline_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Run `python -m mgr.verify` or `mgr.eval` (no command).\n"
        "```bash\n"
        "pip install . && python -m mgr.train \\\n"
        "    model=cnn data.fold='range(2)'   # a comment\n"
        "wandb agent x/y/z\n"
        "echo \"unclosed\n"
        "```\n"
        "```\n"
        "src/mgr/train.py   python -m mgr.train\n"
        "$ python -m mgr.predict ckpt_path=a.ckpt inputs=[b/]\n"
        "mgr: error: ...\n"
        "```\n")
    found = [(c.where, c.module, c.args) for c in documented_commands(page)]
    assert found == [("page.md:1", "verify", ()),
                     ("page.md:3", "train", ("model=cnn", "data.fold=range(2)")),
                     ("page.md:10", "predict", ("ckpt_path=a.ckpt", "inputs=[b/]"))]
    page.write_text("```bash\npython -m mgr.train data.root='a b\n```\n")
    with pytest.raises(ValueError, match=r"page.md:2: a shell cannot read this command"):
        documented_commands(page)


def test_placeholders_shell_variables_and_alternatives_are_filled_in():
    values = {"HOME": "/home/you", "checkpoint": "/runs/best.ckpt", "sweep": "/sweep", "run": "/run", "folder": "/f"}
    command = Documented("x.md:1", ("python", "-m", "mgr.predict",
                                    "ckpt_path=logs/train/runs/<run>/checkpoints/<best>.ckpt", "inputs=[a.mp3,$HOME/x/]"))
    assert invocation(command, values).overrides == ("ckpt_path=/runs/best.ckpt", "inputs=[a.mp3,/home/you/x/]")
    download = Documented("x.md:2", ("python", "-m", "mgr.download", "dataset=gtzan|fma_small", "root=PATH"))
    assert invocation(download, values).jobs() == [["dataset=gtzan", "root=/f"], ["dataset=fma_small", "root=/f"]]


def test_a_multirun_composes_every_choice_and_the_ends_of_a_range():
    sweep = Invocation(("-m",), ("model=cnn,crnn,fcn", "data.fold=range(5)", "seed=1"))
    assert sweep.jobs() == [["model=cnn", "data.fold=0", "seed=1"], ["model=crnn", "data.fold=4", "seed=1"],
                            ["model=fcn", "data.fold=4", "seed=1"]]


@pytest.mark.parametrize("args,message", [
    (("data=folder", "data.root=~/music"), "LexerNoViableAltException"),  # the shell leaves ~ after key= alone
    (("model=no_such_model",), "Could not find 'model/no_such_model'"),
    (("-m", "hydra/launcher=slurm", "hydra.launcher.no_such_key=1"), "hydra.launcher.no_such_key"),
])
def test_a_command_that_does_not_compose_is_reported_with_hydras_message(args, message, tmp_path):
    error = composition_error(Documented("x.md:1", ("python", "-m", "mgr.train", *args)), composition_values(tmp_path))
    assert error is not None and message in error
