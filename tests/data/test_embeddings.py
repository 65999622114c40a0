"""mgr.data.embeddings: a frozen encoder's layers per chunk, computed once, equal to computing them
directly; resumed after a kill, extended with only the chunks it lacks, keyed by what determines
the values, and refused when damaged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import write_wav
from mgr import MGRError
from mgr.data import embeddings as embeddings_module
from mgr.data.cache import WaveformCache
from mgr.data.chunking import crop
from mgr.data.datasets import EvenChunks
from mgr.data.embeddings import ChunkEmbeddings, EmbeddedChunks

SR, CHUNK = 8000, 4000
DIMS = [1, 4]
IDENTITY = {"name": "toy", "weights_sha256": "abc"}


class ToyEncoder:
    """Two layers that are easy to check: each chunk's mean, and its first four samples."""

    def __init__(self):
        self.calls = 0

    def __call__(self, wave: torch.Tensor) -> list[torch.Tensor]:
        self.calls += len(wave)
        return [wave.mean(1, keepdim=True), wave[:, :4] * 10]


@pytest.fixture
def waveforms(tmp_path) -> WaveformCache:
    rng = np.random.default_rng(0)
    files = []
    for i, seconds in enumerate([0.3, 1.0, 2.2]):  # shorter than a chunk, two chunks, five
        path = tmp_path / "audio" / f"t{i}.wav"
        write_wav(path, rng.uniform(-0.5, 0.5, int(seconds * SR)), SR)
        files.append(str(path))
    return WaveformCache.build(files, SR, tmp_path / "cache", "folder")


def chunks_of(waveforms: WaveformCache, tracks: list[int]) -> list[tuple[int, int]]:
    return [(tracks[k], s) for k, s in EvenChunks(waveforms, tracks, [0, 1, 2], CHUNK).items]


def build(waveforms, wanted, encoder, tmp_path, identity=IDENTITY, batch_size=2) -> ChunkEmbeddings:
    return ChunkEmbeddings.build(waveforms, wanted, CHUNK, identity, DIMS, encoder, tmp_path / "cache",
                                 device=torch.device("cpu"), batch_size=batch_size, name="toy")


def test_cached_layers_equal_the_encoder_on_each_chunk(waveforms, tmp_path):
    encoder = ToyEncoder()
    wanted = chunks_of(waveforms, [0, 1, 2])
    store = build(waveforms, wanted, encoder, tmp_path)
    assert encoder.calls == len(wanted) == 1 + 2 + 5
    for (t, s), row in zip(wanted, store.rows(wanted)):
        expected = ToyEncoder()(crop(waveforms.waveform(t), s, CHUNK)[None])
        for i, layer in enumerate(expected):
            np.testing.assert_array_equal(store.layer(i)[row], layer[0].numpy())
    # A second build finds everything and computes nothing.
    again = build(waveforms, wanted, encoder, tmp_path)
    assert encoder.calls == len(wanted) and again.directory == store.directory


def test_the_dataset_gives_the_waveform_datasets_order_labels_and_positions(waveforms, tmp_path):
    tracks, labels = [2, 0], [5, 6, 7]
    even = EvenChunks(waveforms, tracks, labels, CHUNK)
    store = build(waveforms, chunks_of(waveforms, tracks), ToyEncoder(), tmp_path)
    embedded = EmbeddedChunks(store, tracks, labels, even.items, layers=[1])
    assert len(embedded) == len(even) == 6
    for i in range(len(even)):
        wave, label, position = even[i]
        layers, label2, position2 = embedded[i]
        assert (label2, position2) == (label, position)
        assert layers.shape == (1, 4)
        torch.testing.assert_close(layers[0], wave[:4] * 10)


def test_a_killed_build_resumes_after_its_last_commit(waveforms, tmp_path, monkeypatch):
    monkeypatch.setattr(embeddings_module, "COMMIT_SECONDS", 0.0)  # commit after every batch
    wanted = chunks_of(waveforms, [0, 1, 2])

    class Killed(Exception):
        pass

    class DiesAfterTwoBatches(ToyEncoder):
        def __call__(self, wave):
            if self.calls >= 4:
                raise Killed
            return super().__call__(wave)

    with pytest.raises(Killed):
        build(waveforms, wanted, DiesAfterTwoBatches(), tmp_path)
    encoder = ToyEncoder()
    store = build(waveforms, wanted, encoder, tmp_path)
    assert encoder.calls == len(wanted) - 4  # only what was not committed
    whole = build(waveforms, wanted, ToyEncoder(), tmp_path / "fresh")
    for i in range(len(DIMS)):
        np.testing.assert_array_equal(store.layer(i)[store.rows(wanted)], whole.layer(i)[whole.rows(wanted)])


def test_new_chunks_are_appended_and_other_encoders_get_their_own_cache(waveforms, tmp_path):
    first = build(waveforms, chunks_of(waveforms, [1]), ToyEncoder(), tmp_path)
    encoder = ToyEncoder()
    more = build(waveforms, chunks_of(waveforms, [1, 2]), encoder, tmp_path)
    assert encoder.calls == 5 and more.directory == first.directory and more.n_rows == 7
    other = build(waveforms, chunks_of(waveforms, [1]), ToyEncoder(), tmp_path, identity={**IDENTITY, "weights_sha256": "def"})
    assert other.directory != first.directory


def test_a_damaged_cache_is_refused_with_what_to_do(waveforms, tmp_path):
    store = build(waveforms, chunks_of(waveforms, [1, 2]), ToyEncoder(), tmp_path)
    layer = store.directory / "layer1.f32"
    layer.write_bytes(layer.read_bytes()[:-16])  # a truncated copy
    with pytest.raises(MGRError, match=f"{store.directory} is damaged: layer1.f32 holds fewer rows.*delete that folder"):
        ChunkEmbeddings(store.directory)
    (store.directory / "meta.json").write_text("{")
    with pytest.raises(MGRError, match="meta.json is missing or cannot be read"):
        ChunkEmbeddings(store.directory)


def test_the_store_pickles_without_its_memory_maps(waveforms, tmp_path):
    import pickle

    wanted = chunks_of(waveforms, [2])
    store = build(waveforms, wanted, ToyEncoder(), tmp_path)
    store.layer(0)
    copy = pickle.loads(pickle.dumps(store))
    assert copy._layers is None
    np.testing.assert_array_equal(copy.layer(1), store.layer(1))
    assert json.loads((store.directory / "meta.json").read_text())["rows"] == 5
