"""Video: probe a clip, plan keyframe-aligned segments, stylize frames through a Stylizer into H.264, join
segments without re-encoding and copy the source's audio. PyAV (FFmpeg's libraries), no ffmpeg binary; no torch.
"""

from __future__ import annotations

import bisect
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
from PIL import Image

from animegan.errors import ConfigError, VideoError

logger = logging.getLogger(__name__)

# Audio codecs the MP4 muxer takes as they are; any other audio track is re-encoded to AAC.
MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"})
DEFAULT_CRF = 18  # x264 constant rate factor: 0 lossless, 18 visually transparent, 23 x264's default
DEFAULT_PRESET = "medium"  # x264 speed/size trade-off; the encode is small next to the generator's cost
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# No B-frames: dts == pts in every segment, so segments encoded apart concatenate with rising timestamps. One
# encoder thread: the same frames encode to the same bytes on any worker (and stay off the model's cores).
X264_PARAMS = "bframes=0"
ENCODER_THREADS = 1

Source = str | Path | bytes | BinaryIO


@dataclass(frozen=True)
class VideoInfo:
    """What probe_video found; timestamps (pts) are in the video stream's time_base."""

    format: str  # container format(s) as FFmpeg names them, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # video codec, e.g. "h264"
    width: int  # as displayed: rotation applied
    height: int
    rotation: int  # degrees counter-clockwise the decoded frames are turned for display: 0, 90, 180, 270
    frame_rate: Fraction  # average frames per second
    time_base: Fraction
    frames: int  # video packets (one frame each)
    duration: float  # seconds, first frame to the end of the last
    start_pts: int  # pts of the first frame
    keyframes: tuple[tuple[int, int], ...]  # (pts, number of frames before it in display order)
    audio_codec: str | None  # None: no audio stream
    streams: int  # every stream in the container

    @property
    def fps(self) -> float:
        return float(self.frame_rate)


@dataclass(frozen=True)
class Segment:
    """Frames with start_pts <= pts < end_pts (end None: to the end) of the source; start is a keyframe."""

    index: int
    start_pts: int
    end_pts: int | None
    frames: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start_pts": self.start_pts,
            "end_pts": self.end_pts,
            "frames": self.frames,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        end = d.get("end_pts")
        return cls(int(d["index"]), int(d["start_pts"]), None if end is None else int(end), int(d["frames"]))


@dataclass(frozen=True)
class EncodeOptions:
    """How stylized frames are encoded: H.264, yuv420p (so sides are even), x264's quality settings."""

    crf: int = DEFAULT_CRF  # 0-51, lower is better and larger
    preset: str = DEFAULT_PRESET  # x264 preset name

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf={self.crf} must be in 0..51 (lower is better quality)")
        if self.preset not in PRESETS:
            raise ConfigError(f"preset={self.preset!r}; use one of {', '.join(PRESETS)}")


@dataclass
class VideoResult:
    """What stylize_video wrote."""

    frames: int
    width: int
    height: int
    audio: bool = False


def _open(source: Source) -> Any:
    try:
        if isinstance(source, bytes):
            return av.open(io.BytesIO(source), "r")
        return av.open(source if not isinstance(source, Path) else str(source), "r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{_name(source)} is not a readable video container: {exc}") from exc


def _name(source: Source) -> str:
    return "the upload" if isinstance(source, bytes) or hasattr(source, "read") else str(source)


def _rotation(frame: Any) -> int:
    """Display rotation of a decoded frame (its display matrix), snapped to a multiple of 90 degrees."""
    return int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) * 90 % 360


def _scan_packets(container: Any, stream: Any, name: str) -> tuple[list[int], list[int], int | None]:
    """Demux the whole video stream (no decoding): every frame's pts in file order, the keyframes' pts, and
    where the last frame ends (None if no packet says)."""
    pts_list: list[int] = []
    key_pts: list[int] = []
    end = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            pts_list.append(packet.pts)
            if packet.is_keyframe:
                key_pts.append(packet.pts)
            stop = packet.pts + (packet.duration or 0)
            end = stop if end is None else max(end, stop)
    except av.FFmpegError as exc:
        raise VideoError(f"{name} is damaged after {len(pts_list)} video frames: {exc}") from exc
    if not pts_list or not key_pts:
        raise VideoError(f"{name} has a video stream without frames")
    return pts_list, key_pts, end


def probe_video(source: Source) -> VideoInfo:
    """Read the container's streams, count the video frames, find the keyframes and decode the first frame.

    VideoError for what is not a video: not a container, no video stream, no frames, an undecodable stream.
    Demuxing reads the whole file (no decoding), so a truncated file is found here, not in a worker.
    """
    name = _name(source)
    with _open(source) as container:
        if not container.streams.video:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise VideoError(f"{name} has no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        pts_list, key_pts, end = _scan_packets(container, stream, name)
        container.seek(0)
        try:
            first = next(container.decode(stream))
        except (av.FFmpegError, StopIteration) as exc:
            raise VideoError(f"{name}: the {codec} video stream cannot be decoded: {exc}") from exc
        rotation = _rotation(first)
        tb = stream.time_base
        pts_list.sort()
        start = pts_list[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate and len(pts_list) > 1:
            rate = Fraction(len(pts_list) - 1) / ((pts_list[-1] - start) * tb)
        frame_rate = Fraction(rate or 0)
        if end is None or end <= pts_list[-1]:
            end = pts_list[-1] + (int(1 / (frame_rate * tb)) if frame_rate else 0)
        keyframes = tuple((pts, bisect.bisect_left(pts_list, pts)) for pts in sorted(set(key_pts)))
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            format=container.format.name,
            codec=codec,
            width=width,
            height=height,
            rotation=rotation,
            frame_rate=frame_rate,
            time_base=Fraction(tb),
            frames=len(pts_list),
            duration=float((end - start) * tb),
            start_pts=start,
            keyframes=keyframes,
            audio_codec=audio,
            streams=len(container.streams),
        )


def plan_segments(info: VideoInfo, segment_seconds: float) -> list[Segment]:
    """Cut at the first keyframe at least `segment_seconds` after the previous cut (a long GOP: longer segments)."""
    if segment_seconds <= 0:
        raise ConfigError(f"segment_seconds={segment_seconds} must be > 0")
    step = segment_seconds / info.time_base  # in pts units
    cuts = [info.keyframes[0]]
    for pts, before in info.keyframes[1:]:
        if pts - cuts[-1][0] >= step:
            cuts.append((pts, before))
    # Frames before the first keyframe cannot be decoded on their own; they are left out (as players do).
    segments = []
    for i, (pts, before) in enumerate(cuts):
        nxt = cuts[i + 1] if i + 1 < len(cuts) else None
        frames = (nxt[1] if nxt else info.frames) - before
        segments.append(Segment(i, pts, nxt[0] if nxt else None, frames))
    return segments


def output_size(width: int, height: int) -> tuple[int, int]:
    """yuv420p needs even sides: an odd one loses its last row or column."""
    return width - width % 2, height - height % 2


def _display_pixels(frame: Any, rotation: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB as displayed: the display matrix's rotation applied (np.rot90 turns counter-clockwise)."""
    rgb = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(rgb, rotation // 90)) if rotation else rgb


def stylize_video(
    source: Source,
    destination: str | Path,
    stylizer: Any,
    *,
    encode: EncodeOptions | None = None,
    segment: Segment | None = None,
    audio: bool = True,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> VideoResult:
    """Decode `source`, stylize every frame with `stylizer` (an animegan.inference.Stylizer: same-size frames
    share forward passes of its batch_size), encode H.264 MP4 at `destination` with the source's timestamps.

    segment: only those frames, written with timestamps from 0 (join_segments puts them back in place), and no
    audio. audio: copy the source's audio track (re-encoded to AAC only if MP4 cannot hold its codec).
    progress(frames_done_so_far) is called after each batch; should_stop() is checked before each batch and
    ends the encode early (the file is then incomplete: the caller discards it).
    """
    encode = encode or EncodeOptions()
    name = _name(source)
    with _open(source) as container:
        if not container.streams.video:
            raise VideoError(f"{name} has no video stream")
        in_video = container.streams.video[0]
        in_video.thread_type = "AUTO"
        with av.open(str(destination), "w", format="mp4") as out:
            frames = _StylizedFrames(
                out,
                in_video,
                stylizer,
                encode,
                offset=segment.start_pts if segment is not None else 0,
                audio_source=source if audio and segment is None else None,
                progress=progress,
                should_stop=should_stop,
            )
            rotation: int | None = None
            try:
                for frame in _frames_of(container, in_video, segment):
                    if rotation is None:
                        rotation = _rotation(frame)
                    frames.add(frame, _display_pixels(frame, rotation))
            except av.FFmpegError as exc:
                raise VideoError(f"{name}: decoding failed after {frames.seen} frames: {exc}") from exc
            frames.flush()
            writer = frames.writer
            if writer is None:
                raise VideoError(
                    f"{name}: no frames to stylize" + (f" in segment {segment.index}" if segment else "")
                )
            writer.close()
            if frames.audio is not None:
                frames.audio.write()
        return VideoResult(
            frames=frames.done, width=writer.width, height=writer.height, audio=frames.audio is not None
        )


def _frames_of(container: Any, in_video: Any, segment: Segment | None) -> Iterator[Any]:
    """The decoded frames of `segment` (every frame without one), in order; frames without a pts are skipped."""
    if segment is not None:
        container.seek(segment.start_pts, stream=in_video, backward=True, any_frame=False)
    for frame in container.decode(in_video):
        if frame.pts is None:
            continue
        if segment is not None and frame.pts < segment.start_pts:
            continue
        if segment is not None and segment.end_pts is not None and frame.pts >= segment.end_pts:
            break
        yield frame


class _StylizedFrames:
    """Decoded frames in, stylized in batches of the stylizer's batch_size (same-size frames share forward
    passes) and encoded into `out`. The encoder, and the copy of the source's audio, start with the first
    stylized frame, whose size they take."""

    def __init__(
        self,
        out: Any,
        in_video: Any,
        stylizer: Any,
        encode: EncodeOptions,
        *,
        offset: int,  # pts of the first frame written: segments start at 0
        audio_source: Source | None,  # copy this file's audio track (None: no audio)
        progress: Callable[[int], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.out, self.in_video, self.stylizer, self.encode = out, in_video, stylizer, encode
        self.batch_size = max(1, int(getattr(stylizer, "batch_size", 1) or 1))
        self.offset, self.audio_source = offset, audio_source
        self.progress, self.should_stop = progress, should_stop
        self.writer: _Writer | None = None
        self.audio: AudioCopy | None = None
        self.done = 0  # frames encoded
        self.batch: list[tuple[Any, np.ndarray]] = []  # (frame, (H, W, 3) uint8 RGB as displayed)

    @property
    def seen(self) -> int:
        """Frames decoded so far: encoded plus waiting in the batch."""
        return self.done + len(self.batch)

    def add(self, frame: Any, pixels: np.ndarray) -> None:
        self.batch.append((frame, pixels))
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Stylize and encode the waiting frames; should_stop() is checked first and raises StopVideo."""
        if not self.batch:
            return
        if self.should_stop is not None and self.should_stop():
            raise StopVideo(self.done)
        images = self.stylizer.stylize_many([Image.fromarray(pixels) for _, pixels in self.batch])
        for (frame, _), image in zip(self.batch, images, strict=True):
            if self.writer is None:
                self.writer = _Writer(self.out, image.size, self.in_video, self.encode)
                if self.audio_source is not None:
                    self.audio = AudioCopy.open(self.audio_source, self.out)
            self.writer.write(np.asarray(image.convert("RGB")), frame.pts - self.offset, frame.duration)
        self.done += len(self.batch)
        self.batch.clear()
        if self.progress is not None:
            self.progress(self.done)


class StopVideo(Exception):
    """should_stop() answered True; `frames` were done before it."""

    def __init__(self, frames: int) -> None:
        super().__init__(f"stopped after {frames} frames")
        self.frames = frames


class _Writer:
    """An H.264 stream in `out` of the first stylized frame's size (made even), in the source's time base."""

    def __init__(self, out: Any, size: tuple[int, int], in_video: Any, encode: EncodeOptions) -> None:
        self.width, self.height = output_size(*size)
        if self.width < 2 or self.height < 2:
            raise VideoError(f"stylized frames of {size[0]}x{size[1]} are too small to encode")
        rate = in_video.average_rate or in_video.guessed_rate or 25
        self.stream = out.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = in_video.time_base
        self.stream.codec_context.time_base = in_video.time_base
        self.stream.codec_context.thread_count = ENCODER_THREADS
        self.stream.options = {"crf": str(encode.crf), "preset": encode.preset, "x264-params": X264_PARAMS}
        self.out = out

    def write(self, rgb: np.ndarray, pts: int, duration: int | None) -> None:
        frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(rgb[: self.height, : self.width]), format="rgb24"
        )
        frame.pts = pts
        frame.time_base = self.stream.codec_context.time_base
        if duration:
            frame.duration = duration
        for packet in self.stream.encode(frame):
            self.out.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.out.mux(packet)


class AudioCopy:
    """The first audio track of `source`, added to `out` before anything is muxed (a container's streams are fixed
    once its header is written), then copied packet for packet, or re-encoded to AAC if MP4 cannot hold it."""

    def __init__(self, source: Source, out: Any) -> None:
        if isinstance(source, io.IOBase):
            source.seek(0)
        self.container = _open(source)
        self.input = self.container.streams.audio[0]
        self.out = out
        self.copy = self.input.codec_context.name in MP4_AUDIO_CODECS
        if self.copy:
            self.output = out.add_stream_from_template(self.input)
        else:
            logger.info(
                "audio codec %s does not fit MP4; re-encoding it to AAC", self.input.codec_context.name
            )
            self.output = out.add_stream("aac", rate=self.input.codec_context.sample_rate)

    @classmethod
    def open(cls, source: Source, out: Any) -> AudioCopy | None:
        """None when `source` has no audio."""
        with _open(source) as probe:
            if not probe.streams.audio:
                return None
        return cls(source, out)

    def write(self) -> None:
        try:
            if self.copy:
                for packet in self.container.demux(self.input):
                    if packet.dts is None:
                        continue
                    packet.stream = self.output
                    self.out.mux(packet)
                return
            for frame in self.container.decode(self.input):
                frame.pts = None
                for packet in self.output.encode(frame):
                    self.out.mux(packet)
            for packet in self.output.encode(None):
                self.out.mux(packet)
        finally:
            self.container.close()


def join_segments(
    parts: Sequence[str | Path],
    segments: Sequence[Segment],
    destination: str | Path,
    time_base: Fraction,
    source: Source | None = None,
) -> int:
    """Concatenate segment files (stylize_video with `segment`) into one MP4 without re-encoding, each put back
    at its segment's place in the source's `time_base`, then copy `source`'s audio. Returns the frames written."""
    if len(parts) != len(segments) or not parts:
        raise ConfigError(f"join_segments: {len(parts)} files for {len(segments)} segments")
    written = 0
    with av.open(str(destination), "w", format="mp4") as out:
        with _open(Path(parts[0])) as first:
            out_video = out.add_stream_from_template(first.streams.video[0])
            out_video.time_base = time_base
        audio = AudioCopy.open(source, out) if source is not None else None
        for path, seg in zip(parts, segments, strict=True):
            with _open(Path(path)) as part:
                stream = part.streams.video[0]
                for packet in part.demux(stream):
                    if packet.dts is None:
                        continue
                    # A segment starts at 0 in its own time base (the muxer may have scaled the source's).
                    scale = Fraction(packet.time_base) / time_base
                    packet.pts = round(packet.pts * scale) + seg.start_pts
                    packet.dts = round(packet.dts * scale) + seg.start_pts
                    packet.duration = round((packet.duration or 0) * scale)
                    packet.time_base = time_base
                    packet.stream = out_video
                    out.mux(packet)
                    written += 1
        if audio is not None:
            audio.write()
    return written
