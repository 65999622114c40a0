"""Export what a model has learnt: python -m mgr.embed ckpt_path=best.ckpt [data=...] [split=test]

The embedding is the penultimate layer (`model.embed`, the input of the output
layer) of every chunk evaluation scores in a split: the data module's
`eval_dataset` (EvenChunks), cut by mgr.data.chunking.chunk_starts with no
overlap, the fewest evenly spaced chunks that cover each track (at most
data.eval_max_chunks), a track shorter than a chunk zero-padded to it. So the
chunk logits are those of mgr.eval's test metrics. A track's embedding (and
logits) is the mean of its chunks'. Its scores and predicted class combine its
chunks as the checkpoint's track metrics did (mgr.models.aggregation.TrackAggregation;
`track_aggregation=...` overrides), so they are those of mgr.eval's track metrics;
the option changes nothing else. All go to <run dir>/embeddings.npz, and a
t-SNE map of the chunk and track embeddings, coloured by label, to tsne.png
(seed report 004's figure of learned representations). A data=... override must have
the model's sample rate and chunk length (mgr.restore.check_fits), not its classes.

A multi-label model (task=multilabel) gives each track a sigmoid probability per tag
(track_probabilities) and answers every tag at or above its threshold (track_predictions:
[tracks, tags] booleans); a model with a class tree (FMA's genres_all) has both rolled up it, as
mgr.predict answers (mgr.data.genre_tree.rolled_answers). A point of the map has one colour: a
multi-label track's, and its chunks', is its rarest label (the one fewest tracks of the dataset carry: the label mgr's splits
stratify it by, mgr.data.sources.base.TrackList.strata), so the rare tags stay visible; a track
without labels is drawn as "no label". map_labels in the file says which colour each track got.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from mgr import MGRError
from mgr.entry import command, require, task

log = logging.getLogger("mgr.embed")


def split_embeddings(model, dataset, batch_size: int, device) -> dict[str, np.ndarray]:
    """Chunk embeddings, logits and track positions of an EvenChunks dataset, in dataset order."""
    import torch
    from torch.utils.data import DataLoader

    model.eval().to(device)
    embeddings, logits, labels, tracks = [], [], [], []
    with torch.inference_mode():
        for wave, label, track in DataLoader(dataset, batch_size=batch_size):
            emb = model.embed(wave.to(device))
            embeddings.append(emb.float().cpu())
            logits.append(model.calibrated(model.head(emb)).float().cpu())  # as forward gives them
            labels.append(label)
            tracks.append(track)
    return {k: torch.cat(v).numpy() for k, v in
            (("embeddings", embeddings), ("logits", logits), ("labels", labels), ("tracks", tracks))}


def track_means(values: np.ndarray, tracks: np.ndarray, n_tracks: int) -> np.ndarray:
    sums = np.zeros((n_tracks, values.shape[1]), dtype=np.float64)
    np.add.at(sums, tracks, values)
    return (sums / np.maximum(np.bincount(tracks, minlength=n_tracks), 1)[:, None]).astype(np.float32)


def tsne_2d(points: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    # t-SNE needs perplexity < number of points; about a third of them keeps small splits readable.
    perplexity = min(perplexity, max(1.0, (len(points) - 1) / 3))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def map_colours(tracks, track_ids: list[int]) -> tuple[list[str], np.ndarray]:
    """The names of the map's colours and each track's colour (an index of them): its label; a multi-label
    track's rarest label (TrackList.strata, by how many tracks of the whole list carry each), one colour more,
    "no label", for tracks without any."""
    names, strata = list(tracks.class_names), np.asarray(tracks.strata())[track_ids]
    return (names + ["no label"] if (strata == len(names)).any() else names), strata


@task
def embed(cfg: DictConfig) -> Path:
    import torch

    from mgr.data.genre_tree import rolled_answers
    from mgr.plots import save_embedding_map
    from mgr.restore import resolve_device, restore

    require(cfg, "ckpt_path", usage="python -m mgr.embed ckpt_path=<best>.ckpt [data=...] [split=test]")
    device = resolve_device(cfg.device)
    model, datamodule = restore(cfg, same_classes=False)  # other music may have other classes
    datamodule.prepare_data()
    datamodule.setup()
    if not datamodule.split_tracks.get(cfg.split):
        raise MGRError(f"split={cfg.split} has no tracks; choose one of "
                       f"{', '.join(k for k, v in datamodule.split_tracks.items() if v)}.")
    class_names = datamodule.class_names
    track_ids = datamodule.split_tracks[cfg.split]
    chunks = split_embeddings(model, datamodule.eval_dataset(cfg.split), cfg.batch_size, device)
    track_embeddings = track_means(chunks["embeddings"], chunks["tracks"], len(track_ids))
    track_labels = np.array([datamodule.tracks.labels[t] for t in track_ids])
    track_scores = model.track_aggregation.scores(torch.from_numpy(chunks["logits"]),
                                                  torch.from_numpy(chunks["tracks"]), len(track_ids))
    track_probabilities = model.track_aggregation.probabilities_of(track_scores)  # softmax, or a sigmoid per tag
    # a multi-label model answers every tag at or above its threshold, both rolled up its class tree where it
    # has one, as mgr.predict answers; a multi-class one its top class
    if model.multilabel:
        track_probabilities, track_predictions = rolled_answers(model, track_probabilities)
    else:
        track_predictions = track_scores.argmax(1)
    map_names, map_labels = map_colours(datamodule.tracks, track_ids)

    run_dir = Path(cfg.paths.output_dir)
    npz_path = run_dir / "embeddings.npz"
    np.savez_compressed(
        npz_path,
        chunk_embeddings=chunks["embeddings"],
        chunk_logits=chunks["logits"],
        chunk_labels=chunks["labels"],
        chunk_tracks=chunks["tracks"],  # row of the track in track_* below
        track_embeddings=track_embeddings,
        track_logits=track_means(chunks["logits"], chunks["tracks"], len(track_ids)),
        track_scores=track_scores.numpy(),  # by track_aggregation: mean logits, mean probabilities or vote shares
        track_probabilities=track_probabilities.numpy(),
        track_predictions=track_predictions.numpy(),  # multi-label: [tracks, model classes] booleans
        task=np.array("multilabel" if model.multilabel else "multiclass"),
        track_aggregation=np.array(model.track_aggregation.name),
        vote_threshold=np.array(model.track_aggregation.vote_threshold),
        track_labels=track_labels,  # multi-label: [tracks, classes] 0/1
        map_labels=map_labels,  # the colour of each track (and its chunks) on the map: an index of map_names
        map_names=np.array(map_names),
        track_paths=np.array([datamodule.tracks.files[t] for t in track_ids]),
        class_names=np.array(class_names),
        model_class_names=np.array(model.class_names),
    )

    rng = np.random.default_rng(cfg.tsne.seed)
    shown = np.arange(len(chunks["embeddings"]))
    if len(shown) > cfg.tsne.max_points:
        shown = np.sort(rng.choice(shown, cfg.tsne.max_points, replace=False))
    panels, labels = {}, {}
    for name, points, point_labels in (
        (f"chunks ({len(shown)})", chunks["embeddings"][shown], map_labels[chunks["tracks"][shown]]),
        (f"tracks ({len(track_ids)}, mean of chunks)", track_embeddings, map_labels),
    ):
        if len(points) >= 5:  # fewer points give no map worth drawing
            panels[name], labels[name] = tsne_2d(points, cfg.tsne.perplexity, cfg.tsne.seed), point_labels
    png_path = run_dir / "tsne.png"
    if panels:
        title = f"t-SNE of {model.architecture} embeddings ({chunks['embeddings'].shape[1]}-d), {cfg.split} split"
        if datamodule.tracks.multilabel:
            title += "; a track (and its chunks) in the colour of its rarest label"
        save_embedding_map(panels, labels, map_names, png_path, title)
    else:
        log.warning("Too few chunks for a t-SNE map; no tsne.png written.")
    print(f"\nEmbeddings of the {cfg.split} split: {len(chunks['embeddings'])} chunks and {len(track_ids)} tracks, "
          f"{chunks['embeddings'].shape[1]} dimensions\n  {npz_path}" + (f"\n  {png_path}" if panels else ""), flush=True)
    return npz_path


main = command("embed", embed)


if __name__ == "__main__":
    main()
