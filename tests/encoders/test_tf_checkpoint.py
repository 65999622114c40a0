"""mgr's TensorFlow checkpoint reader: CRC32C on known vectors, a checkpoint TF's own Saver wrote
(tests/fixtures/musicnn/tiny_checkpoint, made by make_reference.py), and corruption refused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mgr import MGRError
from mgr.encoders.tf_checkpoint import _update_serial, crc32c, masked_crc32c, read_bundle

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "musicnn" / "tiny_checkpoint" / "model"


def tiny_bundle() -> tuple[bytearray, bytearray]:
    return bytearray(Path(f"{TINY}.index").read_bytes()), bytearray(Path(f"{TINY}.data-00000-of-00001").read_bytes())


def test_crc32c_of_known_vectors():
    # RFC 3720 (iSCSI), appendix B.4, and the usual check value of CRC-32C
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


@pytest.mark.parametrize("size", [1023, 1024, 4096 * 64 - 1, 4096 * 64 + 17, 3_000_001])
def test_parallel_crc32c_equals_the_byte_by_byte_one(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data) == _update_serial(0xFFFFFFFF, data) ^ 0xFFFFFFFF


def test_mask_is_tensorflows():
    # crc32c::Mask: rotate right by 15 bits, add 0xa282ead8
    crc = crc32c(b"123456789")
    assert masked_crc32c(b"123456789") == ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def test_reads_a_checkpoint_tensorflow_wrote():
    tensors = read_bundle(*tiny_bundle())
    assert sorted(tensors) == ["counts", "dense/kernel", "global_step"]
    np.testing.assert_array_equal(tensors["dense/kernel"], np.arange(6, dtype=np.float32).reshape(3, 2) / 4)
    assert tensors["global_step"].dtype == np.int64 and tensors["global_step"].shape == () and tensors["global_step"] == 7
    np.testing.assert_array_equal(tensors["counts"], np.arange(1000, dtype=np.int32))


def test_a_corrupted_tensor_is_refused_by_name():
    index, data = tiny_bundle()
    tensors = read_bundle(bytes(index), bytes(data))
    counts = np.arange(1000, dtype=np.int32).tobytes()
    data[bytes(data).index(counts) + 2000] ^= 0x01  # one bit of `counts`
    with pytest.raises(MGRError, match=r"model.data: tensor 'counts' is corrupted .*CRC32C") as error:
        read_bundle(bytes(index), bytes(data), "model.data")
    assert "\n" not in str(error.value)
    assert len(tensors) == 3  # the intact bundle read fine


def test_a_corrupted_index_is_refused():
    index, data = tiny_bundle()
    index[5] ^= 0x40  # inside the first data block
    with pytest.raises(MGRError, match="fails its CRC32C check"):
        read_bundle(bytes(index), bytes(data))


def test_a_file_that_is_no_checkpoint_is_refused():
    with pytest.raises(MGRError, match="not a TensorFlow checkpoint index"):
        read_bundle(os.urandom(100), b"")
