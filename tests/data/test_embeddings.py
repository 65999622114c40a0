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
from mgr.data.datasets import EvenChunks, cache_chunk
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
        expected = ToyEncoder()(cache_chunk(waveforms, t, s, CHUNK)[None])  # float32, whatever the cache stores
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


def _overwrite_with_random_values(path) -> None:
    """What the red team did: a layer file of the same size, holding other (finite, plausible) values."""
    path.write_bytes(np.random.default_rng(3).standard_normal(path.stat().st_size // 4).astype(np.float32).tobytes())


def test_a_corrupted_layer_stops_its_first_read_and_the_next_build_computes_it_again(waveforms, tmp_path, caplog):
    wanted = chunks_of(waveforms, [1, 2])
    store = build(waveforms, wanted, ToyEncoder(), tmp_path)
    layer = store.directory / "layer1.f32"
    _overwrite_with_random_values(layer)

    opened = ChunkEmbeddings(store.directory)  # the sizes still match: opened as before
    opened.layer(0)
    with pytest.raises(MGRError, match=rf"^The embedding cache {store.directory} is damaged: layer1.f32 does not "
                                       r"match the checksum written when it was computed; delete that folder"):
        opened.layer(1)

    encoder = ToyEncoder()
    repaired = build(waveforms, wanted, encoder, tmp_path)
    assert "layer1.f32 does not match the checksum" in caplog.text and "computing its chunks again" in caplog.text
    assert encoder.calls == len(wanted) and repaired.directory == store.directory
    fresh = build(waveforms, wanted, ToyEncoder(), tmp_path / "fresh")
    for i in range(len(DIMS)):
        np.testing.assert_array_equal(repaired.layer(i)[repaired.rows(wanted)], fresh.layer(i)[fresh.rows(wanted)])


def test_corrupted_chunk_positions_are_found_on_open(waveforms, tmp_path):
    store = build(waveforms, chunks_of(waveforms, [2]), ToyEncoder(), tmp_path)
    items = store.directory / "items.i64"
    raw = bytearray(items.read_bytes())
    raw[8] ^= 0x01  # the start of the first chunk: its row would be fed for another chunk
    items.write_bytes(bytes(raw))
    with pytest.raises(MGRError, match="items.i64 does not match the checksum"):
        ChunkEmbeddings(store.directory)


def test_checksums_follow_appended_and_resumed_rows(waveforms, tmp_path, monkeypatch):
    monkeypatch.setattr(embeddings_module, "COMMIT_SECONDS", 0.0)  # a commit after every batch
    first = build(waveforms, chunks_of(waveforms, [1]), ToyEncoder(), tmp_path)
    more = build(waveforms, chunks_of(waveforms, [0, 1, 2]), ToyEncoder(), tmp_path)
    assert more.directory == first.directory and more.n_rows == 8
    reopened = ChunkEmbeddings(more.directory)
    for i in range(len(DIMS)):
        reopened.layer(i)  # no mismatch
    sums = json.loads((more.directory / "meta.json").read_text())["crc32"]
    fresh = build(waveforms, chunks_of(waveforms, [1]) + chunks_of(waveforms, [0, 2]), ToyEncoder(), tmp_path / "fresh")
    assert sums == json.loads((fresh.directory / "meta.json").read_text())["crc32"]


def test_each_layer_is_verified_once_per_process_not_per_item(waveforms, tmp_path, monkeypatch):
    tracks, labels = [1, 2], [0, 1, 2]
    store = build(waveforms, chunks_of(waveforms, tracks), ToyEncoder(), tmp_path)
    checked = []
    real = embeddings_module.checksum
    monkeypatch.setattr(embeddings_module, "checksum", lambda data, *a: checked.append(len(data)) or real(data, *a))
    opened = ChunkEmbeddings(store.directory)
    assert len(checked) == 1  # the chunk positions, on open
    dataset = EmbeddedChunks(opened, tracks, labels, EvenChunks(waveforms, tracks, labels, CHUNK).items, layers=[1])
    for _ in range(3):
        for i in range(len(dataset)):
            dataset[i]
    assert len(checked) == 2  # layer 1, once
    import pickle

    pickle.loads(pickle.dumps(dataset))[0]
    assert len(checked) == 2  # a DataLoader worker's copy trusts what this process checked
    build(waveforms, chunks_of(waveforms, tracks), ToyEncoder(), tmp_path)
    assert len(checked) == 2 + 1 + len(DIMS)  # a build checks every file: once per run, before training


def test_a_cache_from_before_checksums_gets_them_with_a_warning(waveforms, tmp_path, caplog):
    wanted = chunks_of(waveforms, [1, 2])
    store = build(waveforms, wanted, ToyEncoder(), tmp_path)
    meta_path = store.directory / "meta.json"
    meta = json.loads(meta_path.read_text())
    sums = meta.pop("crc32")
    meta_path.write_text(json.dumps(meta))  # as mgr wrote it before checksums
    ChunkEmbeddings(store.directory).layer(1)  # unchecked, but usable

    encoder = ToyEncoder()
    upgraded = build(waveforms, wanted, encoder, tmp_path)
    assert encoder.calls == 0 and "written before mgr recorded checksums" in caplog.text
    assert json.loads(meta_path.read_text())["crc32"] == sums
    _overwrite_with_random_values(store.directory / "layer0.f32")
    with pytest.raises(MGRError, match="layer0.f32 does not match the checksum"):
        ChunkEmbeddings(upgraded.directory).layer(0)
