"""python -m mgr.verify: every cache checked, a summary line, one clear error."""

from __future__ import annotations


from conftest import verify_command
from mgr.data.cache import WaveformCache


def _untimed(stdout: str) -> list[str]:
    return sorted(line.rsplit(" (", 1)[0] for line in stdout.strip().splitlines())


def test_verify_command_summarises_good_caches(cache_files, tmp_path):
    first = WaveformCache.build(cache_files, 8000, tmp_path / "cache", "folder")  # int16, a new cache's default
    second = WaveformCache.build(cache_files[:3], 8000, tmp_path / "cache", "folder", dtype="float32")
    check = verify_command(f"paths.data_dir={tmp_path}")  # by default the caches under paths.cache_dir
    assert check.returncode == 0, check.stderr
    lines = check.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("2 caches, every checksum matches")
    assert {line.split()[1].rstrip(":") for line in lines[:2]} == {str(first.directory), str(second.directory)}
    assert all(line.startswith("ok ") and "every checksum matches" in line for line in lines[:2])
    assert f"ok {first.directory}: 12 files, 0.00 h of int16 audio, every" in check.stdout
    assert f"ok {second.directory}: 3 files, 0.00 h of float32 audio, every" in check.stdout
    both = verify_command(f"caches=[{first.directory},{second.directory}]")
    assert both.returncode == 0 and _untimed(both.stdout) == _untimed(check.stdout)
    missing = verify_command(f"caches={tmp_path / 'nothing_here'}")
    assert missing.returncode == 1 and missing.stderr.startswith(f"mgr: error: {tmp_path / 'nothing_here'} is no cache")


def test_verify_command_checks_embedding_caches_too(cache_files, tmp_path):
    import torch

    from mgr.data import embeddings, integrity
    from mgr.data.embeddings import ChunkEmbeddings

    assert integrity.META == embeddings.META
    waveforms = WaveformCache.build(cache_files, 8000, tmp_path / "cache", "folder")
    store = ChunkEmbeddings.build(waveforms, [(0, 0), (1, 0)], 2000, {"name": "toy"}, [2, 3],
                                  lambda wave: [wave[:, :2], wave[:, :3]], tmp_path / "cache", device=torch.device("cpu"))
    check = verify_command(f"caches={tmp_path / 'cache'}")  # the embeddings/ folder within is searched too
    assert check.returncode == 0, check.stderr
    lines = check.stdout.strip().splitlines()
    assert f"ok {store.directory}: 2 chunks, 2 layers, every checksum matches" in check.stdout
    assert len(lines) == 3 and lines[-1].startswith("2 caches, every checksum matches")

    layer = store.directory / "layer1.f32"
    layer.write_bytes(bytes(reversed(layer.read_bytes())))
    damaged = verify_command(f"caches={store.directory}")
    assert damaged.returncode == 1
    assert damaged.stdout.strip() == f"DAMAGED {store.directory}: layer1.f32 does not match the checksum written when " \
                                     "it was computed; delete that folder and the next run computes it again."
