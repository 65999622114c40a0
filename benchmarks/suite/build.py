"""The real-music suite's data: three tasks from Debian's packaged game soundtracks, one command.

    python benchmarks/suite/build.py [--root data/suite]

Fetches twelve soundtrack packages with `apt-get download` (no install, no root, nothing written
outside --root), keeps each one's usable tracks under `<root>/music/<label>/`, cuts the 30 s clips the
short-clip tasks use into `<root>/clips/<label>/`, and writes one manifest per task, `<root>/<task>.csv`
with the columns path,label,group (no split column: `data.folds=5 data.fold=K`, mgr's own group-aware
folds, split them). Each manifest's five folds are checked with mgr's fold code before it is written.
Re-running skips every package, clip and manifest already built; an interrupted run resumes. See
benchmarks/suite/README.md for the tasks, their sizes and the comparison they serve.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from mgr import MGRError
from mgr.data.audio import DecodeError, is_audio_file, load_audio
from mgr.data.sources.folder import FolderSource
from mgr.data.splits import check_split

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "data" / "suite"
FOLDS = 5
SPLIT_SEED = 0  # data.split_seed's default: the folds mgr.train draws
CLIP_SECONDS = 30.0
MAX_CLIPS_PER_TRACK = 2
# Kept apart for independent checks of what the suite decides: never fetched, inspected or tuned on.
RESERVED = frozenset({"wesnoth-1.16-music", "ufoai-music", "warzone2100-music", "nexuiz-music",
                      "planetblupi-music-ogg"})


@dataclass(frozen=True)
class Soundtrack:
    label: str
    package: str
    music_dir: str  # inside the package, without the leading ./


# One class per game: each soundtrack is one composer's or one team's (the packages' copyright files).
SEVEN = (
    Soundtrack("drascula", "drascula-music", "usr/share/scummvm/drascula/audio"),
    Soundtrack("fillets-ng", "fillets-ng-data", "usr/share/games/fillets-ng/music"),
    Soundtrack("freedroidrpg", "freedroidrpg-data", "usr/share/freedroidrpg/data/sound/music"),
    Soundtrack("hyperrogue", "hyperrogue-music", "usr/share/hyperrogue/music"),
    Soundtrack("singularity", "singularity-music", "usr/share/games/singularity/music"),
    Soundtrack("supertux", "supertux-data", "usr/share/games/supertux2/music"),
    Soundtrack("widelands", "widelands-data", "usr/share/games/widelands/data/music"),
)
FIVE_MORE = (
    Soundtrack("colobot", "colobot-common-sounds", "usr/share/games/colobot/music"),
    Soundtrack("extremetuxracer", "extremetuxracer-data", "usr/share/games/etr/music"),
    Soundtrack("hedgewars", "hedgewars-data", "usr/share/games/hedgewars/Data/Music"),
    Soundtrack("marsshooter", "marsshooter-data", "usr/share/games/marsshooter/audio/music"),
    Soundtrack("xmoto", "xmoto-data", "usr/share/games/xmoto/Textures/Musics"),
)
SOUNDTRACKS = SEVEN + FIVE_MORE


@dataclass(frozen=True)
class Task:
    name: str
    labels: tuple[str, ...]
    min_seconds: float       # shorter tracks are left out
    tracks_per_class: int    # at most; a class's tracks are drawn in the order of their sha256
    clips_per_track: int     # 0: whole tracks; else up to this many of the track's 30 s clips


# Sized so that the default against the classic baseline, 3 tasks x 5 folds, takes under an hour
# on 2 cores (the estimate is in README.md).
TASKS = (
    Task("long", tuple(s.label for s in SEVEN), 60.0, 8, 0),
    Task("clips", tuple(s.label for s in SEVEN), CLIP_SECONDS, 25, MAX_CLIPS_PER_TRACK),
    Task("many", tuple(s.label for s in SOUNDTRACKS), CLIP_SECONDS, 6, 1),
)


# ---------------------------------------------------------------- fetch and unpack

def fetch_deb(package: str, debs: Path) -> Path:
    """The package's .deb in `debs`, downloaded with `apt-get download` unless already there."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise MGRError("benchmarks/suite/build.py needs apt-get and dpkg-deb (Debian or Ubuntu) "
                       "to fetch the game soundtrack packages.")
    partial = debs / ".partial"  # an interrupted download never looks finished
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    proc = subprocess.run(["apt-get", "download", package], cwd=partial, capture_output=True, text=True)
    got = sorted(partial.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or len(got) != 1:
        lines = [l for l in proc.stderr.splitlines() if l.startswith("E:")] or proc.stderr.splitlines() or ["no .deb"]
        raise MGRError(f"apt-get download {package} failed ({lines[-1].removeprefix('E: ')}); the suite "
                       "fetches Debian packages, so run apt-get update and check that the Debian archive is reachable.")
    target = debs / got[0].name
    got[0].rename(target)
    shutil.rmtree(partial)
    return target


def unpack(deb: Path, members: list[str], into: Path) -> None:
    """Extract `members` (paths inside the package) of `deb` into `into`, nothing else."""
    into.mkdir(parents=True)
    data = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", str(into), *[f"./{m}" for m in members]], stdin=data.stdout,
                         capture_output=True, text=True)
    data.stdout.close()
    err = data.stderr.read().decode(errors="replace")
    if data.wait() != 0 or tar.returncode != 0:
        why = (tar.stderr if tar.returncode else err).strip()
        raise MGRError(f"Cannot unpack {', '.join(members)} from {deb.name} ({why}): a damaged download (delete it "
                       "and run build again) or a version of the package laid out unlike the one this script knows.")


def pieces(stems: list[str]) -> dict[str, str]:
    """The piece each stem belongs to: variants (`x_old`, `x_remix`, `x2` beside `x`) share one."""
    base = {s: re.sub(r"[_-]?(old|remix|enhanced)$", "", s, flags=re.I) for s in stems}
    known = set(base.values())
    for stem, b in base.items():
        unnumbered = re.sub(r"[_-]?\d+$", "", b)
        if unnumbered != b and unnumbered in known:
            base[stem] = unnumbered
    return base


def select_tracks(music: Path, min_seconds: float) -> tuple[list[dict], list[dict]]:
    """Decode every audio file below `music` (sorted by path): the usable tracks and the skipped ones."""
    kept, skipped, seen = [], [], {}
    for file in sorted(p for p in music.rglob("*") if is_audio_file(p)):
        rel = file.relative_to(music).as_posix()
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        if digest in seen:
            skipped.append({"path": rel, "reason": f"identical to {seen[digest]}"})
            continue
        seen[digest] = rel
        try:
            info = sf.info(str(file))
            seconds = len(load_audio(file, info.samplerate)) / info.samplerate  # decodes in full: validates
        except (DecodeError, RuntimeError) as e:  # sf.info raises LibsndfileError, a RuntimeError
            skipped.append({"path": rel, "reason": f"does not decode: {e}"})
            continue
        if seconds < min_seconds:
            skipped.append({"path": rel, "reason": f"{seconds:.1f} s, shorter than {min_seconds:g} s"})
            continue
        kept.append({"path": rel, "seconds": round(seconds, 3), "sample_rate": info.samplerate,
                     "channels": info.channels, "sha256": digest})
    group_of = pieces([Path(t["path"]).stem for t in kept])
    for t in kept:
        t["group"] = group_of[Path(t["path"]).stem]
    return kept, skipped


def build_class(music_root: Path, debs: Path, track: Soundtrack, min_seconds: float) -> dict:
    """One class folder `<music_root>/<label>/` with its tracks.json, fetched and unpacked unless done."""
    if track.package in RESERVED:
        raise MGRError(f"{track.package} is reserved for independent checks of the suite; leave it out.")
    folder, record_file = music_root / track.label, music_root / track.label / "tracks.json"
    wanted = {"package": track.package, "music_dir": track.music_dir, "min_seconds": min_seconds}
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        if {k: record.get(k) for k in wanted} == wanted:
            print(f"{track.label}: {len(record['tracks'])} tracks in {folder}, skipping {track.package}", flush=True)
            return record
    print(f"{track.label}: fetching {track.package} ...", flush=True)
    deb = fetch_deb(track.package, debs)
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True).stdout.strip()
    tmp = music_root / f".unpack-{track.label}"
    shutil.rmtree(tmp, ignore_errors=True)
    copyright_file = f"usr/share/doc/{track.package}/copyright"
    unpack(deb, [track.music_dir, copyright_file], tmp)
    kept, skipped = select_tracks(tmp / track.music_dir, min_seconds)
    shutil.rmtree(folder, ignore_errors=True)  # a class left half-moved by an interrupted run
    for t in kept:
        (folder / t["path"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp / track.music_dir / t["path"]).rename(folder / t["path"])
    folder.mkdir(parents=True, exist_ok=True)
    (tmp / copyright_file).rename(folder / "copyright")
    record = {**wanted, "version": version, "deb": deb.name, "deb_bytes": deb.stat().st_size,
              "tracks": kept, "skipped": skipped}
    part = record_file.with_suffix(".json.part")
    part.write_text(json.dumps(record, indent=1))
    part.rename(record_file)  # written last: the class is complete
    deb.unlink()
    shutil.rmtree(tmp)
    minutes = sum(t["seconds"] for t in kept) / 60
    print(f"{track.label}: {track.package} {version} ({record['deb_bytes'] / 1e6:.1f} MB), "
          f"{len(kept)} tracks kept ({minutes:.1f} min), {len(skipped)} skipped", flush=True)
    return record


# ---------------------------------------------------------------- tasks

def clip_starts(seconds: float, clips: int) -> list[float]:
    """Where a track's clips start: min(clips, length // 30 s) clips of 30 s, clip k centred in the k-th
    of as many equal parts of the track, so they never overlap and skip the intro and the ending."""
    n = min(clips, int(seconds // CLIP_SECONDS))
    part = seconds / n if n else 0.0
    return [round(k * part + (part - CLIP_SECONDS) / 2, 3) for k in range(n)]


def clip_path(label: str, track: dict, k: int) -> str:
    """A clip's path below <root>: clips/<label>/<track path without its suffix>.<k>.flac."""
    return f"clips/{label}/{Path(track['path']).with_suffix('').as_posix()}.{k}.flac"


def cut_clip(source: Path, start: float, target: Path) -> None:
    """CLIP_SECONDS of `source` from `start`, at its own sample rate and channels, as 16-bit FLAC."""
    rate = sf.info(str(source)).samplerate
    first = int(round(start * rate))
    audio, _ = sf.read(str(source), start=first, stop=first + int(round(CLIP_SECONDS * rate)), dtype="float32",
                       always_2d=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    sf.write(str(part), audio, rate, format="FLAC", subtype="PCM_16")
    part.rename(target)  # a clip that is there is whole


def chosen_tracks(task: Task, records: dict[str, dict]) -> dict[str, list[dict]]:
    """Per label of the task: its tracks of at least task.min_seconds, at most task.tracks_per_class,
    drawn in the order of their sha256 (a fixed pseudo-random draw: no dependence on names or file order)."""
    out = {}
    for label in task.labels:
        long_enough = [t for t in records[label]["tracks"] if t["seconds"] >= task.min_seconds]
        out[label] = sorted(sorted(long_enough, key=lambda t: t["sha256"])[: task.tracks_per_class],
                            key=lambda t: t["path"])
    return out


def task_rows(task: Task, records: dict[str, dict], root: Path) -> list[tuple[str, str, str, float, str]]:
    """(path below root, label, group, seconds, source track) of every file of the task, its clips cut
    unless there."""
    rows, cut = [], 0
    for label, tracks in chosen_tracks(task, records).items():
        for t in tracks:
            group, source = f"{label}/{t['group']}", f"music/{label}/{t['path']}"
            if not task.clips_per_track:
                rows.append((source, label, group, t["seconds"], source))
                continue
            for k, start in enumerate(clip_starts(t["seconds"], MAX_CLIPS_PER_TRACK)[: task.clips_per_track]):
                path = clip_path(label, t, k)
                if not (root / path).is_file():
                    cut_clip(root / source, start, root / path)
                    cut += 1
                rows.append((path, label, group, CLIP_SECONDS, source))
    if task.clips_per_track:
        print(f"{task.name}: {cut} clips cut, {len(rows) - cut} there before", flush=True)
    return sorted(rows)


def check_folds(manifest: Path) -> None:
    """mgr's own folds of the manifest (data.folds=FOLDS, data.split_seed=SPLIT_SEED): every one of them
    can be drawn and puts no group on two sides."""
    source = FolderSource(str(manifest))
    tracks = source.list()
    for fold in range(FOLDS):
        check_split(source.split(tracks, None, SPLIT_SEED, FOLDS, fold), tracks.files, tracks.groups)


def write_task(task: Task, records: dict[str, dict], root: Path) -> dict:
    """`<root>/<task>.csv` (path,label,group; paths relative to root), its folds checked first; its summary."""
    print(f"{task.name}: choosing tracks" + (" and cutting their clips" if task.clips_per_track else "") + " ...",
          flush=True)
    rows = task_rows(task, records, root)
    manifest, part = root / f"{task.name}.csv", root / f"{task.name}.csv.part"
    with open(part, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "label", "group"])
        out.writerows(row[:3] for row in rows)
    check_folds(part)
    part.rename(manifest)
    return {"task": task.name, "classes": len({r[1] for r in rows}), "tracks": len({r[4] for r in rows}),
            "pieces": len({r[2] for r in rows}), "files": len(rows), "minutes": sum(r[3] for r in rows) / 60,
            "MB": sum((root / r[0]).stat().st_size for r in rows) / 1e6}


def summary_table(summaries: list[dict]) -> str:
    lines = ["| task | classes | tracks | groups (pieces) | files (tracks or clips) | minutes | MB |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {s['task']} | {s['classes']} | {s['tracks']} | {s['pieces']} | {s['files']} | {s['minutes']:.1f} "
              f"| {s['MB']:.1f} |" for s in summaries]
    return "\n".join(lines)


def build(root: Path, soundtracks=SOUNDTRACKS, tasks=TASKS) -> list[dict]:
    """Fetch every soundtrack the tasks use, cut their clips and write their manifests; the summaries."""
    root.mkdir(parents=True, exist_ok=True)
    min_seconds = min(t.min_seconds for t in tasks)
    records = {s.label: build_class(root / "music", root / "debs", s, min_seconds) for s in soundtracks}
    summaries = [write_task(task, records, root) for task in tasks]
    print(f"\n{summary_table(summaries)}\n\nmanifests: " + ", ".join(str(root / f"{t.name}.csv") for t in tasks))
    return summaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the suite's folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        build(args.root.expanduser().resolve())
    except MGRError as e:
        print(f"mgr: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
