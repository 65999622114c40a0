"""FMA's multi-label genres (data.source_options.labels=top|genres|genres_all) and its genre tree
(mgr.data.genre_tree), rebuilt in miniature: tracks.csv with its genres columns, genres.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from conftest import metrics_of, run_dir_of, tiny, write_tone
from mgr import MGRError
from mgr.data import GenreDataModule
from mgr.data.genre_tree import GenreTree
from mgr.data.sources.fma import FMASource
from mgr.data.splits import check_split

# genre_id, parent (0: top level), title: Techno under Electronic, Dub Techno under Techno.
GENRES = [(4, 0, "Jazz"), (12, 0, "Rock"), (15, 0, "Electronic"), (21, 0, "Hip-Hop"), (181, 15, "Techno"),
          (999, 181, "Dub Techno")]
# (track_id, genres, genres_all, genre_top, split, subset, artist_id); each artist on one side of the split.
TRACKS = [
    (2, [21], [21], "Hip-Hop", "training", "small", 1),
    (3, [12, 21], [12, 21], "", "training", "small", 1),  # two top genres: no genre_top
    (5, [181], [15, 181], "Electronic", "training", "small", 2),
    (10, [999], [15, 181, 999], "Electronic", "training", "small", 2),
    (20, [12], [12], "Rock", "training", "small", 3),
    (21, [4, 15], [4, 15], "", "training", "small", 3),
    (30, [], [], "", "training", "small", 3),  # no genre at all: in no label set
    (40, [21, 181], [15, 21, 181], "", "validation", "small", 4),
    (41, [12], [12], "Rock", "validation", "small", 4),
    (50, [999, 12], [12, 15, 181, 999], "", "test", "small", 5),
    (51, [21], [21], "Hip-Hop", "test", "small", 5),
    (60, [4], [4], "Jazz", "training", "medium", 6),  # not in fma_small
]
TITLES = {g: t for g, _, t in GENRES}
MULTI_LABEL_IDS = [2, 3, 5, 10, 20, 21, 40, 41, 50, 51]  # the small tracks with a genre


def write_fma_metadata(root: Path, tracks=TRACKS, genres=GENRES) -> None:
    """tracks.csv as FMA writes it (two header rows, the index name, lists as Python literals) and
    genres.csv."""
    meta = root / "fma_metadata"
    meta.mkdir(parents=True, exist_ok=True)
    with open(meta / "tracks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "artist", "set", "set", "track", "track", "track", "track"])
        w.writerow(["", "id", "split", "subset", "genre_top", "genres", "genres_all", "title"])
        w.writerow(["track_id", "", "", "", "", "", "", ""])
        for tid, gs, gs_all, top, split, subset, artist in tracks:
            w.writerow([tid, artist, split, subset, top, str(gs), str(gs_all), f"Track {tid}"])
    with open(meta / "genres.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["genre_id", "#tracks", "parent", "title", "top_level"])
        for g, parent, title in genres:
            w.writerow([g, 10, parent, title, parent and 15 or g])


@pytest.fixture
def fma_root(tmp_path) -> Path:
    root = tmp_path / "fma"
    write_fma_metadata(root)
    for tid, *_, subset, _ in TRACKS:
        if subset == "small":
            write_tone(root / "fma_small" / f"{tid:06d}"[:3] / f"{tid:06d}.mp3", seconds=1.5, seed=tid, format="MP3")
    return root


def track_id(file: str) -> int:
    return int(Path(file).stem)


def test_top_labels_are_todays_one_genre_top_per_track(fma_root):
    tracks = FMASource(str(fma_root)).list()
    assert not tracks.multilabel and tracks.class_names == ["Electronic", "Hip-Hop", "Rock"]
    top = {t[0]: t[3] for t in TRACKS}
    assert [tracks.class_names[i] for i in tracks.labels] == [top[track_id(f)] for f in tracks.files]
    assert [track_id(f) for f in tracks.files] == [2, 5, 10, 20, 41, 51]


@pytest.mark.parametrize("labels, column", [("genres", 1), ("genres_all", 2)])
def test_genres_and_genres_all_are_multi_hot_rows_named_by_genres_csv(fma_root, labels, column):
    tracks = FMASource(str(fma_root), labels=labels).list()
    assert tracks.multilabel and tracks.labels.dtype == np.float32
    assert [track_id(f) for f in tracks.files] == MULTI_LABEL_IDS  # 30 (no genre) and 60 (medium) left out
    assert tracks.class_names == ["Dub Techno", "Electronic", "Hip-Hop", "Jazz", "Rock", "Techno"]
    given = {t[0]: {TITLES[g] for g in t[column]} for t in TRACKS}
    for file, row in zip(tracks.files, tracks.labels):
        assert {tracks.class_names[i] for i in np.flatnonzero(row)} == given[track_id(file)]
    assert set(np.unique(tracks.labels)) == {0.0, 1.0}


@pytest.mark.parametrize("labels", ["genres", "genres_all"])
def test_multi_label_splits_keep_every_artist_on_one_side(fma_root, labels):
    source = FMASource(str(fma_root), labels=labels)
    tracks = source.list()
    artist = {t[0]: t[6] for t in TRACKS}
    assert tracks.groups == [f"artist {artist[track_id(f)]}" for f in tracks.files]
    official = source.split(tracks, "official", 0)
    assert {k: sorted(track_id(tracks.files[i]) for i in v) for k, v in official.items()} == \
        {"train": [2, 3, 5, 10, 20, 21], "val": [40, 41], "test": [50, 51]}
    check_split(official, tracks.files, source.leak_groups(tracks, "official"))
    for seed in range(3):
        splits = source.split(tracks, {"train": 0.6, "val": 0.2, "test": 0.2}, seed)
        check_split(splits, tracks.files, source.leak_groups(tracks, "random"))
        sides = {}
        for name, indices in splits.items():
            for i in indices:
                sides.setdefault(artist[track_id(tracks.files[i])], set()).add(name)
        assert all(len(s) == 1 for s in sides.values()), sides


def test_unknown_labels_option_and_a_genre_missing_from_genres_csv_are_one_sentence_errors(fma_root):
    with pytest.raises(MGRError, match=r"data.source_options.labels='all'; choose one of top, genres, genres_all"):
        FMASource(str(fma_root), labels="all")
    write_fma_metadata(fma_root, genres=[g for g in GENRES if g[0] != 999])
    with pytest.raises(MGRError, match=r"Line 7 of \S+tracks.csv gives genre 999, which genres.csv does not list"):
        FMASource(str(fma_root), labels="genres").list()
    (fma_root / "fma_metadata" / "genres.csv").unlink()
    with pytest.raises(MGRError, match=r"FMA genre list not found under data.root=.*dataset=fma_metadata"):
        FMASource(str(fma_root), labels="genres_all").list()


def test_a_genres_field_that_is_not_a_list_of_ids_names_its_line(fma_root):
    broken = [(t[0], "Rock" if t[0] == 5 else t[1], *t[2:]) for t in TRACKS]
    write_fma_metadata(fma_root, tracks=broken)
    with pytest.raises(MGRError, match=r"Line 6 of \S+tracks.csv has \('track', 'genres'\) 'Rock', not a list"):
        FMASource(str(fma_root), labels="genres").list()


def test_genre_tree_parents_and_roll_up_answer_every_ancestor(fma_root):
    tree = GenreTree.read(fma_root / "fma_metadata" / "genres.csv")
    assert tree.parent("Dub Techno") == "Techno" and tree.parent("Techno") == "Electronic"
    assert tree.parent("Rock") is None and tree.ancestors("Dub Techno") == ["Techno", "Electronic"]
    answers = ["Dub Techno", "Rock"]  # a track's predicted genres, its leaves only
    assert not tree.is_consistent(answers)
    rolled = tree.roll_up(answers)
    assert rolled == ["Dub Techno", "Techno", "Electronic", "Rock"]
    assert tree.is_consistent(rolled)  # every answered genre's parent is answered
    assert tree.roll_up(["Electronic"]) == ["Electronic"]  # a parent alone adds no child
    tracks = FMASource(str(fma_root), labels="genres").list()  # every track's rolled-up genres: its genres_all
    all_of = {t[0]: {TITLES[g] for g in t[2]} for t in TRACKS}
    for file, row in zip(tracks.files, tracks.labels):
        assert set(tree.roll_up(tracks.class_names[i] for i in np.flatnonzero(row))) == all_of[track_id(file)]


def test_genre_tree_names_shared_titles_by_id_and_refuses_a_loop(tmp_path):
    write_fma_metadata(tmp_path, genres=[*GENRES, (7, 12, "Techno")])
    tree = GenreTree.read(tmp_path / "fma_metadata" / "genres.csv")
    assert tree.name(181) == "Techno (181)" and tree.parent("Techno (7)") == "Rock"
    write_fma_metadata(tmp_path, genres=[(1, 2, "A"), (2, 1, "B")])
    with pytest.raises(MGRError, match="its own ancestor"):
        GenreTree.read(tmp_path / "fma_metadata" / "genres.csv")


def train_one_step_on_genres_all(run_mgr, fma_root):
    data = [o for o in tiny("cnn", "mel") if not o.startswith("data.source_options")]
    return run_mgr("train", "task=multilabel", "data=fma_small", f"data.root={fma_root}",
                   "data.source_options.labels=genres_all", *data, "data.min_seconds=0.5", "recipe=none",
                   "+trainer.limit_train_batches=1", "~callbacks.plots")  # one step


def test_fma_genres_all_trains_a_step_under_task_multilabel(run_mgr, fma_root):
    proc = train_one_step_on_genres_all(run_mgr, fma_root)
    metrics = metrics_of(proc)
    assert metrics["task"] == "multilabel" and len(metrics["thresholds"]) == 6
    assert metrics["class_names"] == ["Dub Techno", "Electronic", "Hip-Hop", "Jazz", "Rock", "Techno"]


# The miniature's tree over its genres_all classes: Dub Techno < Techno < Electronic.
CLASS_PARENTS = {"Dub Techno": "Techno", "Electronic": None, "Hip-Hop": None, "Jazz": None, "Rock": None,
                 "Techno": "Electronic"}


@pytest.mark.parametrize("labels, parents", [("genres_all", CLASS_PARENTS), ("genres", None), ("top", None)])
def test_the_data_module_gives_the_tree_over_its_classes_with_genres_all_only(fma_root, tmp_path, labels, parents):
    dm = GenreDataModule(source="fma", root=str(fma_root), cache_dir=str(tmp_path / "cache"),
                         source_options={"labels": labels})
    assert dm.class_parents == parents
    # A genre no track carries is skipped: Techno's parent is then its nearest ancestor among the classes.
    tree = GenreTree.read(fma_root / "fma_metadata" / "genres.csv")
    assert tree.class_parents(["Dub Techno", "Electronic"]) == {"Dub Techno": "Electronic", "Electronic": None}


def test_fma_genres_all_is_scored_per_level_and_predicts_up_the_tree(run_mgr, fma_root):
    from sklearn.metrics import roc_auc_score

    from mgr.models import load_model
    from mgr.predict import predict_files

    proc = train_one_step_on_genres_all(run_mgr, fma_root)
    metrics = metrics_of(proc)
    # The test tracks 50 (Dub Techno and its ancestors, Rock) and 51 (Hip-Hop): no Jazz among them.
    assert metrics["levels"] == [
        {"level": 1, "classes": ["Electronic", "Hip-Hop", "Jazz", "Rock"], "left_out": ["Jazz"]},
        {"level": 2, "classes": ["Techno"], "left_out": []}, {"level": 3, "classes": ["Dub Techno"], "left_out": []}]
    tree = GenreTree.read(fma_root / "fma_metadata" / "genres.csv")
    with open(run_dir_of(proc) / "test_predictions.csv") as f:
        rows = list(csv.DictReader(f))
    names = metrics["class_names"]
    scores = {c: np.array([float(r[f"score_{c}"]) for r in rows]) for c in names}
    rolled = {c: np.max([scores[d] for d in names if d == c or c in tree.ancestors(d)], axis=0) for c in names}
    for level, classes in ((1, ["Electronic", "Hip-Hop", "Rock"]), (2, ["Techno"]), (3, ["Dub Techno"])):
        aucs = [roc_auc_score([c in r["labels"].split(";") for r in rows], rolled[c]) for c in classes]
        assert metrics[f"test/level{level}/track_auc"] == pytest.approx(np.mean(aucs), abs=1e-5)
        assert f"level {level}: ROC-AUC" in proc.stdout
    model = load_model(metrics["best_checkpoint"])
    assert model.class_parents == CLASS_PARENTS
    files = sorted((fma_root / "fma_small").rglob("*.mp3"))
    model.set_thresholds([0.0 if c == "Dub Techno" else 1.0 for c in names])  # a leaf answered on its own
    for p in predict_files(model, files, overlap=0.0):
        answers = [names[k] for k in p.tags]
        assert "Dub Techno" in answers and tree.is_consistent(answers), answers
        assert p.probabilities[names.index("Electronic")] == max(p.probabilities[names.index(c)] for c in
                                                                   ("Dub Techno", "Electronic", "Techno"))
