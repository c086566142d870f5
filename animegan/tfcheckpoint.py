"""Read TensorFlow checkpoints (the V2 "tensor bundle" format that `tf.train.Saver` and `tf.train.Checkpoint` write)
without TensorFlow, so the original AnimeGAN v1 release (`AnimeGAN.model-60.index` + `.data-00000-of-00001`) can be
imported.

A bundle is `PREFIX.index`, a LevelDB-format table (sorted keys -> protobuf values), and `PREFIX.data-NNNNN-of-MMMMM`
shards of raw little-endian tensor bytes. The index maps "" to a BundleHeaderProto (shard count, endianness) and
each variable name to a BundleEntryProto (dtype, shape, shard, offset, size). Format definitions:
tensorflow/core/protobuf/tensor_bundle.proto and LevelDB's doc/table_format.md. Only what a checkpoint of plain
numeric variables needs is implemented: uncompressed blocks (what the bundle writer emits), no partitioned
(sliced) variables, and no checksum verification (sizes and bounds are checked instead).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from animegan.errors import WeightsError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked crc32c (4 bytes)
# tensorflow/core/framework/types.proto DataType -> numpy; strings and resources are skipped.
DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    14: "bfloat16",
    17: np.uint16,
    19: np.float16,
    22: np.uint32,
    23: np.uint64,
}


def checkpoint_prefix(path: str | Path) -> Path | None:
    """The bundle prefix `path` names, or None if it is not a TF checkpoint.

    Accepts the prefix itself (`.../AnimeGAN.model-60`), its `.index` or a `.data-*` file, or a checkpoint
    directory (its `checkpoint` state file names the latest prefix; else its only `.index` file).
    """
    path = Path(path)
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
            for line in state.read_text(errors="replace").splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "model_checkpoint_path":
                    # TF writes absolute paths: of another machine, or of the folder this one was copied from.
                    # The files in the folder given win; the recorded path is the fallback.
                    name = Path(value.strip().strip('"'))
                    for prefix in (path / name.name, path / name):
                        if Path(f"{prefix}.index").is_file():
                            return prefix
                    return None
        indexes = sorted(path.glob("*.index"))
        if len(indexes) > 1:
            names = ", ".join(index.stem for index in indexes[:5])
            raise WeightsError(
                f"{path} holds {len(indexes)} TensorFlow checkpoints ({names}) and no `checkpoint` state file "
                "naming the latest; pass one PREFIX"
            )
        return indexes[0].with_suffix("") if indexes else None
    if path.suffix == ".index" and path.is_file():
        return path.with_suffix("")
    if path.name.rpartition(".")[2].startswith("data-") and path.is_file():
        return path.with_name(path.name.rpartition(".")[0])
    return path if Path(f"{path}.index").is_file() else None


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Every numeric variable of the TF checkpoint at `path` (see checkpoint_prefix), by its TF name, TF layout."""
    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise WeightsError(
            f"{path}: not a TensorFlow checkpoint (no PREFIX.index beside it, no `checkpoint` state file)"
        )
    index = Path(f"{prefix}.index")
    entries = dict(_table_entries(index.read_bytes(), index))
    if b"" not in entries:
        raise WeightsError(f"{index}: no bundle header; is it a TensorFlow V2 checkpoint index?")
    header = _fields(entries.pop(b""), index)
    num_shards = int(header.get(1, [1])[0])
    if int(header.get(2, [0])[0]) != 0:
        raise WeightsError(f"{index}: the checkpoint was written big-endian; only little-endian is supported")
    shards: dict[int, bytes] = {}
    tensors = {}
    for key, value in entries.items():
        name = key.decode("utf-8", errors="replace")
        entry = _fields(value, index)
        if 7 in entry:
            raise WeightsError(f"{index}: variable {name!r} is partitioned (sliced); not supported")
        dtype = DTYPES.get(int(entry.get(1, [0])[0]))
        if dtype is None:
            continue  # strings, resources, variants: not weights
        shape = tuple(_shape(entry.get(2, [b""])[0], index))
        shard, offset, size = (int(entry.get(f, [0])[0]) for f in (3, 4, 5))
        if shard not in shards:
            data = Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")
            if not data.is_file():
                raise WeightsError(f"{index}: its data shard {data.name} is missing beside it")
            shards[shard] = data.read_bytes()
        blob = shards[shard]
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if offset + size > len(blob) or size != itemsize * int(np.prod(shape, dtype=np.int64)):
            raise WeightsError(
                f"{index}: variable {name!r} ({shape}) does not fit its data shard (offset {offset}, size {size},"
                f" shard {len(blob)} bytes); the checkpoint is truncated or corrupt"
            )
        tensors[name] = _decode(blob[offset : offset + size], dtype, shape)
    return tensors


def _decode(raw: bytes, dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bfloat16":  # the upper half of a float32
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).copy()


# --- LevelDB table ---------------------------------------------------------------------------------------


def _table_entries(data: bytes, path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of every entry of a LevelDB-format table, in key order."""
    if len(data) < FOOTER_SIZE or int.from_bytes(data[-8:], "little") != TABLE_MAGIC:
        raise WeightsError(f"{path}: not a TensorFlow checkpoint index (no table magic number at its end)")
    footer = data[-FOOTER_SIZE:]
    _, pos = _handle(footer, 0, path)  # metaindex: unused
    (index_offset, index_size), _ = _handle(footer, pos, path)
    for _, handle in _block_entries(_block(data, index_offset, index_size, path), path):
        (offset, size), _ = _handle(handle, 0, path)
        yield from _block_entries(_block(data, offset, size, path), path)


def _block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    if offset + size + BLOCK_TRAILER_SIZE > len(data):
        raise WeightsError(f"{path}: a table block lies past the end of the file; the index is truncated")
    compression = data[offset + size]
    if compression != 0:
        raise WeightsError(f"{path}: compressed table blocks (type {compression}) are not supported")
    return data[offset : offset + size]


def _block_entries(block: bytes, path: Path) -> Iterator[tuple[bytes, bytes]]:
    """Entries of one block: keys share a prefix with the previous key; a restart array ends the block."""
    if len(block) < 4:
        raise WeightsError(f"{path}: a table block is too short")
    num_restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 - 4 * num_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos, path)
        non_shared, pos = _varint(block, pos, path)
        value_len, pos = _varint(block, pos, path)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _handle(data: bytes, pos: int, path: Path) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(data, pos, path)
    size, pos = _varint(data, pos, path)
    return (offset, size), pos


def _varint(data: bytes, pos: int, path: Path) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WeightsError(f"{path}: a malformed varint; the checkpoint index is corrupt")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


# --- protobuf wire format ----------------------------------------------------------------------------------


def _fields(message: bytes, path: Path) -> dict[int, list]:
    """field number -> values of a protobuf message: ints for varint/fixed fields, bytes for length-delimited."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(message):
        tag, pos = _varint(message, pos, path)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(message, pos, path)
        elif wire == 1:
            value, pos = int.from_bytes(message[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(message, pos, path)
            value, pos = message[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(message[pos : pos + 4], "little"), pos + 4
        else:
            raise WeightsError(
                f"{path}: unsupported protobuf wire type {wire}; the checkpoint index is corrupt"
            )
        fields.setdefault(number, []).append(value)
    return fields


def _shape(message: bytes, path: Path) -> Iterator[int]:
    """Dimension sizes of a TensorShapeProto (field 2: repeated Dim, whose field 1 is the size)."""
    for dim in _fields(message, path).get(2, []):
        yield int(_fields(dim, path).get(1, [0])[0])
