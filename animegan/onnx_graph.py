"""What an ONNX generator file declares (opsets, inputs, outputs, metadata), read from its protobuf wire format
without onnx, onnxruntime or torch, and the rule for which graphs the Stylizer can serve.

The API checks uploads with it: the file is walked field by field and the weights (initializers) are skipped by
their length, never decoded, so checking a large graph costs its header, not its size in memory. A path is
memory-mapped, not read.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from animegan.errors import WeightsError

# The newest default-domain (ai.onnx) opset and IR version the pinned onnxruntime (constraints.txt) runs;
# tests/animegan/test_onnx.py checks both against the installed onnxruntime, so a bump shows up there.
MAX_OPSET = 26
MAX_IR_VERSION = 13
MIN_EXPORT_OPSET = 17  # our exporter's floor (GroupNormalization and the reflect pads export cleanly there)
# Operator domains onnxruntime's CPU build implements besides the default one; a graph importing another
# (a custom op library) cannot run on the workers.
KNOWN_DOMAINS = {"": MAX_OPSET, "ai.onnx": MAX_OPSET, "ai.onnx.ml": 5, "com.microsoft": 1}
FLOAT = 1  # TensorProto.DataType.FLOAT
ELEM_TYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    6: "int32",
    7: "int64",
    10: "float16",
    11: "float64",
    16: "bfloat16",
}
LAYOUTS = ("NCHW", "NHWC")
# Our exporter's metadata keys (animegan/onnx_export.py); other graphs have none of them.
META_PREFIX = "animegan:"

Dim = int | str | None  # a fixed size, a symbolic name, or unknown


class OnnxGraphError(WeightsError):
    """A file that is not a readable ONNX model, or a graph the Stylizer cannot serve; the message says why."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    elem_type: int  # TensorProto.DataType (1 = float32)
    dims: tuple[Dim, ...] | None  # None: the graph declares no shape

    @property
    def type_name(self) -> str:
        return ELEM_TYPES.get(self.elem_type, f"type {self.elem_type}")


@dataclass
class OnnxGraphInfo:
    """The parts of a ModelProto that decide whether and how it can run; the weights are not read."""

    ir_version: int = 0
    producer: str = ""
    opsets: dict[str, int] = field(default_factory=dict)  # domain ("" = ai.onnx) -> version
    inputs: list[TensorInfo] = field(default_factory=list)  # graph inputs that are not initializers
    outputs: list[TensorInfo] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)  # metadata_props
    nodes: int = 0
    external_data: bool = False  # some initializer lives in a file beside the model

    @property
    def opset(self) -> int:
        return self.opsets.get("", self.opsets.get("ai.onnx", 0))


class _Reader:
    """Protobuf wire format over a buffer, by offsets (nothing is copied but the strings asked for)."""

    def __init__(self, buf: memoryview, start: int, end: int, what: str) -> None:
        self.buf, self.pos, self.end, self.what = buf, start, end, what

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= self.end or shift > 63:
                raise OnnxGraphError(f"{self.what}: truncated or malformed protobuf (varint at {self.pos})")
            byte = self.buf[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def fields(self) -> Iterator[tuple[int, int, int | tuple[int, int]]]:
        """(field number, wire type, value): an int for varints, (start, end) for length-delimited fields."""
        while self.pos < self.end:
            key = self.varint()
            number, wire = key >> 3, key & 7
            if wire == 0:
                yield number, wire, self.varint()
            elif wire == 2:
                length = self.varint()
                start, self.pos = self.pos, self.pos + length
                if self.pos > self.end:
                    raise OnnxGraphError(
                        f"{self.what}: field {number} claims {length} bytes past the end of its message; "
                        "the file is truncated or not an ONNX model"
                    )
                yield number, wire, (start, self.pos)
            elif wire in (1, 5):
                self.pos += 8 if wire == 1 else 4
                yield number, wire, 0
            else:
                raise OnnxGraphError(
                    f"{self.what}: not an ONNX model (protobuf wire type {wire} at {self.pos})"
                )

    def sub(self, span: int | tuple[int, int]) -> _Reader:
        if not isinstance(span, tuple):
            raise OnnxGraphError(f"{self.what}: expected a message, found a number")
        return _Reader(self.buf, span[0], span[1], self.what)

    def text(self, span: int | tuple[int, int]) -> str:
        if not isinstance(span, tuple):
            raise OnnxGraphError(f"{self.what}: expected a string, found a number")
        return bytes(self.buf[span[0] : span[1]]).decode("utf-8", errors="replace")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _tensor_type(reader: _Reader) -> tuple[int, tuple[Dim, ...] | None]:
    elem, dims = 0, None
    for number, _, value in reader.fields():
        if number == 1 and isinstance(value, tuple):  # TypeProto.tensor_type
            for n, _, v in reader.sub(value).fields():
                if n == 1 and isinstance(v, int):
                    elem = v
                elif n == 2:  # TensorShapeProto
                    found: list[Dim] = []
                    for dn, _, dv in reader.sub(v).fields():
                        if dn != 1:
                            continue
                        dim: Dim = None
                        for k, _, x in reader.sub(dv).fields():
                            if k == 1 and isinstance(x, int):
                                dim = _signed(x)
                            elif k == 2:
                                dim = reader.text(x)
                        found.append(dim)
                    dims = tuple(found)
    return elem, dims


def _value_info(reader: _Reader) -> TensorInfo:
    name, elem, dims = "", 0, None
    for number, _, value in reader.fields():
        if number == 1:
            name = reader.text(value)
        elif number == 2:
            elem, dims = _tensor_type(reader.sub(value))
    return TensorInfo(name, elem, dims)


def _read_graph(reader: _Reader, info: OnnxGraphInfo) -> None:
    declared: list[TensorInfo] = []
    initializers: set[str] = set()
    for number, _, value in reader.fields():
        if number == 1:
            info.nodes += 1  # NodeProto: counted, not decoded (attributes may hold large constants)
        elif number == 5:  # TensorProto: its name and where its data lives; raw_data is skipped
            for n, _, v in reader.sub(value).fields():
                if n == 8:
                    initializers.add(reader.text(v))
                elif n == 14 and v == 1:  # data_location EXTERNAL
                    info.external_data = True
        elif number == 11:
            declared.append(_value_info(reader.sub(value)))
        elif number == 12:
            info.outputs.append(_value_info(reader.sub(value)))
    # Old exporters list the initializers among the graph inputs too; only the others are fed at run time.
    info.inputs = [t for t in declared if t.name not in initializers]


def inspect_onnx(source: bytes | bytearray | memoryview | str | Path, name: str = "model") -> OnnxGraphInfo:
    """Read the graph's declarations from bytes or a file (memory-mapped); OnnxGraphError if it is not ONNX."""
    if isinstance(source, str | Path):
        path = Path(source)
        with path.open("rb") as handle:
            if path.stat().st_size == 0:
                raise OnnxGraphError(f"{name}: the file is empty")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    return _inspect(view, name)
                finally:
                    view.release()
    return _inspect(memoryview(source), name)


def _inspect(buf: memoryview, name: str) -> OnnxGraphInfo:
    info = OnnxGraphInfo()
    reader = _Reader(buf, 0, len(buf), name)
    graphs = 0
    for number, wire, value in reader.fields():
        if number == 1 and wire == 0 and isinstance(value, int):
            info.ir_version = value
        elif number == 2:
            info.producer = reader.text(value)
        elif number == 7:
            graphs += 1
            _read_graph(reader.sub(value), info)
        elif number == 8:
            domain, version = "", 0
            for n, _, v in reader.sub(value).fields():
                if n == 1:
                    domain = reader.text(v)
                elif n == 2 and isinstance(v, int):
                    version = v
            info.opsets[domain] = version
        elif number == 14:
            key, text = "", ""
            for n, _, v in reader.sub(value).fields():
                if n == 1:
                    key = reader.text(v)
                elif n == 2:
                    text = reader.text(v)
            info.metadata[key] = text
    if graphs != 1 or info.ir_version == 0 or not info.opsets:
        raise OnnxGraphError(
            f"{name}: not an ONNX model (found {graphs} graphs, IR version {info.ir_version}, "
            f"{len(info.opsets)} opset imports)"
        )
    return info


def serving_layout(info: OnnxGraphInfo, name: str = "model") -> str:
    """'NCHW' or 'NHWC': how the Stylizer feeds this graph; OnnxGraphError naming why it cannot serve it.

    A generator takes one float32 image batch of rank 4 with 3 channels, in [-1, 1] (x / 127.5 - 1): channels
    second (NCHW, ours and most PyTorch exports) or last (NHWC, TensorFlow's and AnimeGANv3's releases).
    """
    if info.ir_version > MAX_IR_VERSION:
        raise OnnxGraphError(
            f"{name}: ONNX IR version {info.ir_version} is newer than onnxruntime here runs "
            f"(up to {MAX_IR_VERSION}); re-export with an older IR version"
        )
    for domain, version in info.opsets.items():
        if domain not in KNOWN_DOMAINS:
            raise OnnxGraphError(
                f"{name}: the graph uses operators of domain {domain!r} (a custom op library), which "
                "onnxruntime here does not have"
            )
        if version > KNOWN_DOMAINS[domain]:
            raise OnnxGraphError(
                f"{name}: opset {version} of domain {domain or 'ai.onnx'!r} is newer than onnxruntime here "
                f"runs (up to {KNOWN_DOMAINS[domain]}); re-export with opset {MIN_EXPORT_OPSET}-"
                f"{KNOWN_DOMAINS[domain]}"
            )
    if info.external_data:
        raise OnnxGraphError(
            f"{name}: its weights live in external data files; save the model as one file "
            "(onnx.save(model, path, save_as_external_data=False))"
        )
    if len(info.inputs) != 1:
        names = ", ".join(repr(t.name) for t in info.inputs) or "none"
        raise OnnxGraphError(
            f"{name}: a generator graph takes exactly one input (an image batch); this one has "
            f"{len(info.inputs)} ({names})"
        )
    if not info.outputs:
        raise OnnxGraphError(f"{name}: the graph has no output")
    image = info.inputs[0]
    if image.elem_type != FLOAT:
        raise OnnxGraphError(
            f"{name}: input {image.name!r} is {image.type_name}; a generator takes float32 in [-1, 1]"
        )
    dims = image.dims
    if dims is None or len(dims) != 4:
        raise OnnxGraphError(
            f"{name}: input {image.name!r} has shape {_shape(dims)}; a generator takes a rank-4 image "
            "batch, NCHW (B, 3, H, W) or NHWC (B, H, W, 3)"
        )
    channels_first, channels_last = dims[1] == 3, dims[3] == 3
    if channels_first == channels_last:
        raise OnnxGraphError(
            f"{name}: cannot tell the layout of input {image.name!r} {_shape(dims)}: neither exactly one of "
            "dimension 1 (NCHW) and dimension 3 (NHWC) is 3 channels"
        )
    layout = "NCHW" if channels_first else "NHWC"
    out = info.outputs[0]
    if out.dims is not None and len(out.dims) != 4:
        raise OnnxGraphError(f"{name}: output {out.name!r} has shape {_shape(out.dims)}, not a rank-4 image")
    return layout


def fixed_batch(info: OnnxGraphInfo) -> int | None:
    """The batch size the graph's input fixes (AnimeGANv3's releases take 1), or None if it is dynamic."""
    dims = info.inputs[0].dims if info.inputs else None
    first = dims[0] if dims else None
    return first if isinstance(first, int) and first > 0 else None


def describe_graph(info: OnnxGraphInfo, layout: str) -> dict[str, object]:
    """The registry's config for an ONNX model (what GET /v1/models shows)."""
    image = info.inputs[0]
    described: dict[str, object] = {
        "arch": "onnx",
        "layout": layout,
        "opset": info.opset,
        "input": image.name,
        "input_shape": [d if d is not None else "?" for d in image.dims or ()],
        "producer": info.producer,
    }
    arch = info.metadata.get(f"{META_PREFIX}arch")
    if arch:
        described["exported_arch"] = arch
    return described


def _shape(dims: tuple[Dim, ...] | None) -> str:
    if dims is None:
        return "(undeclared)"
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
