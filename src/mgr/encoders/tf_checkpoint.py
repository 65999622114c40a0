"""Reads a TensorFlow checkpoint (a V2 "tensor bundle") into numpy arrays without TensorFlow,
verifying every byte it uses against the CRC32C the checkpoint stores.

A bundle is `<prefix>.index` and `<prefix>.data-00000-of-00001`. The index is a LevelDB-style
table (data blocks of prefix-compressed key/value entries, each block followed by its type byte
and the masked CRC32C of block + type; an index block pointing at them; a 48-byte footer ending
in a magic number). Key "" holds a BundleHeaderProto; every other key is a tensor name whose value
is a BundleEntryProto (dtype, shape, shard, offset, size, masked CRC32C of the tensor's bytes).
The formats: tensorflow/core/util/tensor_bundle/tensor_bundle.{h,proto} and
tensorflow/core/lib/io/{format,block}.cc. TensorFlow is the only maintained reader of them and
weighs ~500 MB, so mgr reads them itself (issue 15).
"""

from __future__ import annotations

import struct

import numpy as np

from mgr import MGRError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
CRC_MASK_DELTA = 0xA282EAD8
# tensorflow/core/framework/types.proto: the numeric dtypes a bundle stores as raw bytes.
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 17: "<u2", 19: "<f2",
          22: "<u4", 23: "<u8"}

# --- CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as TF's crc32c::Value ---


def _byte_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1).astype(np.uint32)
    return table


CRC_TABLE = _byte_table()
_TABLE_LIST = CRC_TABLE.tolist()
MAX_LANES = 4096  # chunks whose CRCs numpy computes side by side


def _update_serial(state: int, data: bytes) -> int:
    for byte in data:
        state = _TABLE_LIST[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state


def crc32c(data: bytes) -> int:
    """CRC32C of `data`. Byte by byte this is ~1 MB/s in Python, too slow for 10 MB checkpoints,
    so larger inputs are cut into up to MAX_LANES equal chunks updated in parallel by numpy, then joined:
    the CRC register update is linear over GF(2), so update(s, chunk) = Z(s) ^ update(0, chunk),
    where Z (feeding len(chunk) zero bytes) is found by running 32 extra lanes, one per register
    bit, over zeros."""
    data = bytes(data)
    lanes = min(MAX_LANES, len(data) // 64)
    if lanes < 16:
        return _update_serial(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    step = len(data) // lanes
    columns = np.zeros((step, lanes + 32), np.uint32)
    columns[:, :lanes] = np.frombuffer(data, np.uint8, lanes * step).reshape(lanes, step).T
    state = np.zeros(lanes + 32, np.uint32)
    state[lanes:] = np.uint32(1) << np.arange(32, dtype=np.uint32)
    for column in columns:
        state = CRC_TABLE[(state ^ column) & 0xFF] ^ (state >> 8)
    partial, zeros_of_bit = state[:lanes].tolist(), state[lanes:]
    # Z applied to a register value, one 256-entry table per byte of it.
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    z_tables = [np.bitwise_xor.reduce(np.where(bits, zeros_of_bit[8 * k:8 * k + 8], 0), axis=1).tolist()
                for k in range(4)]
    t0, t1, t2, t3 = z_tables
    register = 0xFFFFFFFF
    for value in partial:
        register = (t0[register & 0xFF] ^ t1[(register >> 8) & 0xFF] ^ t2[(register >> 16) & 0xFF]
                    ^ t3[register >> 24] ^ value)
    return _update_serial(register, data[lanes * step:]) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The CRC as TF stores it (crc32c::Mask): rotated right by 15 bits plus a constant, so a CRC
    stored inside CRC-checked data does not checksum to a fixed value."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + CRC_MASK_DELTA) & 0xFFFFFFFF


# --- protobuf wire format, only what the two bundle messages use ---


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(message: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varint and fixed32/64 fields, bytes for the rest."""
    out, pos = [], 0
    while pos < len(message):
        key, pos = _varint(message, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", message, pos)[0], pos + 8
        elif wire == 5:
            value, pos = struct.unpack_from("<I", message, pos)[0], pos + 4
        elif wire == 2:
            length, pos = _varint(message, pos)
            value, pos = message[pos:pos + length], pos + length
        else:
            raise ValueError(f"protobuf wire type {wire}")
        out.append((number, value))
    return out


def _shape(shape_proto: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 (Dim: int64 size = 1)."""
    return tuple(dict(_fields(dim)).get(1, 0) for number, dim in _fields(shape_proto) if number == 2)


# --- the index table ---


def _block(index: bytes, offset: int, size: int, where: str) -> bytes:
    """A table block after checking its trailer: type byte 0 (uncompressed) and masked CRC32C."""
    contents, kind = index[offset:offset + size], index[offset + size:offset + size + 1]
    (stored,) = struct.unpack_from("<I", index, offset + size + 1)
    if masked_crc32c(contents + kind) != stored:
        raise MGRError(f"{where}: a block of the checkpoint index fails its CRC32C check; the file is corrupted.")
    if kind != b"\x00":
        raise MGRError(f"{where}: the checkpoint index is compressed (block type {kind[0]}), which mgr cannot read.")
    return contents


def _entries(block: bytes) -> list[tuple[bytes, bytes]]:
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end, pos, key, out = len(block) - 4 - 4 * n_restarts, 0, b"", []
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        out.append((key, block[pos:pos + value_len]))
        pos += value_len
    return out


def _handle(value: bytes) -> tuple[int, int]:
    offset, pos = _varint(value, 0)
    return offset, _varint(value, pos)[0]


def read_bundle(index: bytes, data: bytes, where: str = "checkpoint") -> dict[str, np.ndarray]:
    """Every tensor of a single-shard bundle, from the bytes of its .index and .data files; each
    tensor's bytes are checked against its stored CRC32C. `where` names it in errors."""
    if len(index) < FOOTER_BYTES or struct.unpack_from("<Q", index, len(index) - 8)[0] != TABLE_MAGIC:
        raise MGRError(f"{where}: not a TensorFlow checkpoint index (no table magic number at its end).")
    footer = index[len(index) - FOOTER_BYTES:]
    _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    entries = []
    for _, handle in _entries(_block(index, index_offset, index_size, where)):
        entries += _entries(_block(index, *_handle(handle), where))
    header = dict(_fields(entries[0][1])) if entries and entries[0][0] == b"" else {}
    if header.get(1, 1) != 1 or header.get(2, 0) != 0:
        raise MGRError(f"{where}: mgr reads single-shard little-endian checkpoints only "
                       f"(this one: {header.get(1, 1)} shards, endianness {header.get(2, 0)}).")
    tensors = {}
    for key, value in entries[1:]:
        name, entry = key.decode(), dict(_fields(value))
        if 7 in entry:
            raise MGRError(f"{where}: tensor {name!r} is stored in slices, which mgr cannot read.")
        dtype = DTYPES.get(entry.get(1, 0))
        if dtype is None:
            raise MGRError(f"{where}: tensor {name!r} has TensorFlow dtype {entry.get(1, 0)}, which mgr cannot read.")
        offset, size = entry.get(4, 0), entry.get(5, 0)
        raw = data[offset:offset + size]
        if len(raw) != size or masked_crc32c(raw) != entry.get(6, 0):
            raise MGRError(f"{where}: tensor {name!r} is corrupted (its bytes do not match the CRC32C in the "
                           "checkpoint index); get the checkpoint again.")
        tensors[name] = np.frombuffer(raw, dtype).reshape(_shape(entry.get(2, b""))).copy()
    return tensors
