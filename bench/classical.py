"""Classical anchors: x264, x265, SVT-AV1 through PyAV (bundled FFmpeg) and JPEG, WebP through Pillow.

Every codec takes uint8 RGB frames (T, H, W, 3) and gives back a ``ClassicalStream`` whose size is
real bytes:

- video codecs (x264, x265, svtav1): the **elementary stream**, i.e. the sum of the encoder's
  packet sizes with no container (Annex B H.264/HEVC with in-band parameter sets, AV1 low-overhead
  OBUs with the sequence header). The decoder is fed exactly these packets and nothing else
  (no extradata), so the count is complete. x265 runs with ``info=0``: otherwise it writes its
  build and full option string as a 2.3 kB SEI into the first packet (metadata, not coded video;
  the anchors in shared/media/README.md exclude it too). libx264 has no such switch; its option
  SEI (~0.7 kB) stays in the count.
- image codecs (jpeg, webp): the whole image **file** (JFIF / RIFF WebP) of each frame, summed over
  frames (a video coded this way is Motion-JPEG-like: every frame on its own).

Colour: RGB -> yuv420p with libswscale's defaults (BT.601, limited range) before the video
encoders, and back to RGB with the same defaults after decoding: the convention of the anchors in
shared/media/README.md. Odd frame sizes are padded at the bottom/right by edge replication to
even sizes for yuv420p and cropped back after decoding; the rate still divides by the original
pixel count. Encode time includes the RGB -> YUV conversion, decode time the YUV -> RGB one.
"""

from __future__ import annotations

import io as pyio
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

from nvcodec import metrics
from nvcodec.errors import BitstreamError, InputError

__all__ = ["ClassicalCodec", "ClassicalStream", "CODECS", "encode", "decode"]

CodecKind = Literal["video", "image"]


@dataclass(frozen=True)
class ClassicalCodec:
    """One classical anchor and how it is run."""

    name: str  # the label used on the command line, in results and plots
    kind: CodecKind
    library: str  # "libx264" (PyAV encoder name) or "JPEG" (Pillow format)
    decoder: str  # PyAV decoder name, or the Pillow format again
    param_name: Literal["crf", "quality"]
    default_params: tuple[int, ...]  # CRFs (lower = better) or qualities (higher = better)
    options: tuple[tuple[str, str], ...] = ()  # fixed encoder options
    description: str = ""

    @property
    def rate_measure(self) -> str:
        return "elementary stream" if self.kind == "video" else "image file"

    @property
    def higher_param_is_better(self) -> bool:
        return self.param_name == "quality"


# SVT-AV1 has numbered presets 0 (slowest, best) .. 13 (fastest); there is no "medium". We take the
# middle-of-the-range preset 6 as its stand-in. Measured here (8 frames 256x256 of bigbuckbunny):
# preset 6 used 0.09 s of CPU against 1.46 s for x265 medium, i.e. it is still the faster encoder.
SVT_AV1_PRESET = 6

CODECS: dict[str, ClassicalCodec] = {
    codec.name: codec
    for codec in (
        ClassicalCodec(
            "x264", "video", "libx264", "h264", "crf", (18, 23, 28, 33, 38),
            (("preset", "medium"),), "H.264 libx264 preset medium, yuv420p, CRF",
        ),
        ClassicalCodec(
            "x265", "video", "libx265", "hevc", "crf", (18, 23, 28, 33, 38),
            (("preset", "medium"), ("x265-params", "log-level=error:info=0")), "HEVC libx265 preset medium, yuv420p, CRF, no info SEI",
        ),
        ClassicalCodec(
            "svtav1", "video", "libsvtav1", "libdav1d", "crf", (23, 31, 39, 47, 55),
            (("preset", str(SVT_AV1_PRESET)),), f"AV1 libsvtav1 preset {SVT_AV1_PRESET}, yuv420p, CRF",
        ),
        ClassicalCodec(
            "jpeg", "image", "JPEG", "JPEG", "quality", (15, 30, 50, 70, 85, 95),
            (("subsampling", "4:2:0"), ("optimize", "1")), "JPEG (Pillow/libjpeg), 4:2:0, optimised Huffman",
        ),
        ClassicalCodec(
            "webp", "image", "WEBP", "WEBP", "quality", (15, 30, 50, 70, 85, 95),
            (("method", "4"),), "WebP lossy (Pillow/libwebp), method 4",
        ),
    )
}


@dataclass(frozen=True)
class ClassicalStream:
    """An encoded clip: the packets (video) or image files (one per frame) and the source geometry."""

    codec: str
    param: int
    width: int
    height: int
    num_frames: int
    packets: tuple[bytes, ...]

    @property
    def num_bytes(self) -> int:
        return sum(len(packet) for packet in self.packets)

    @property
    def bpp(self) -> float:
        return metrics.bpp(self.num_bytes, self.num_frames, self.height, self.width)

    def to_bytes(self) -> bytes:
        """A tiny length-prefixed framing (for handing a stream to another process; not a format)."""
        name = self.codec.encode()
        head = struct.pack("<B", len(name)) + name + struct.pack("<iIII", self.param, self.width, self.height, self.num_frames)
        body = b"".join(struct.pack("<I", len(packet)) + packet for packet in self.packets)
        return head + struct.pack("<I", len(self.packets)) + body

    @classmethod
    def from_bytes(cls, data: bytes) -> ClassicalStream:
        try:
            name_len = data[0]
            codec = data[1 : 1 + name_len].decode()
            offset = 1 + name_len
            param, width, height, num_frames, count = struct.unpack_from("<iIIII", data, offset)
            offset += 20
            packets = []
            for _ in range(count):
                (size,) = struct.unpack_from("<I", data, offset)
                offset += 4
                if offset + size > len(data):
                    raise BitstreamError(f"classical stream truncated at byte {offset}")
                packets.append(bytes(data[offset : offset + size]))
                offset += size
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise BitstreamError(f"bad classical stream framing: {exc}") from None
        return cls(codec, param, width, height, num_frames, tuple(packets))


def _get(codec: str) -> ClassicalCodec:
    try:
        return CODECS[codec]
    except KeyError:
        raise InputError(f"unknown classical codec {codec!r}; choose from {', '.join(CODECS)}") from None


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) -> (T, H', W', 3) with H', W' even (bottom/right edge replication) for yuv420p."""
    import torch

    from nvcodec.geometry import pad_to_multiple

    if frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0:
        return frames
    as_planes = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W)
    padded = pad_to_multiple(as_planes, 2)
    return np.ascontiguousarray(padded.permute(0, 2, 3, 1).numpy())


def encode(frames: np.ndarray, codec: str, param: int, fps: Fraction = Fraction(25)) -> ClassicalStream:
    """Encode uint8 RGB ``frames`` (T, H, W, 3) with classical ``codec`` at CRF/quality ``param``."""
    spec = _get(codec)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    num_frames, height, width = frames.shape[:3]
    if spec.kind == "image":
        packets = tuple(_encode_image(frame, spec, param) for frame in frames)
    else:
        packets = _encode_video(_pad_even(frames), spec, param, fps)
    return ClassicalStream(codec, param, width, height, num_frames, packets)


def _encode_image(frame: np.ndarray, spec: ClassicalCodec, quality: int) -> bytes:
    from PIL import Image

    if not 0 <= quality <= 100:
        raise InputError(f"{spec.name} quality {quality} outside 0..100")
    options: dict[str, object] = {k: (int(v) if v.isdigit() else v) for k, v in spec.options}
    buffer = pyio.BytesIO()
    Image.fromarray(frame).save(buffer, format=spec.library, quality=quality, **options)
    return buffer.getvalue()


def _encode_video(frames: np.ndarray, spec: ClassicalCodec, crf: int, fps: Fraction) -> tuple[bytes, ...]:
    import av

    if spec.library == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # errors only; SVT-AV1 prints its config banner otherwise
    context = av.CodecContext.create(spec.library, "w")
    context.width, context.height = frames.shape[2], frames.shape[1]
    context.pix_fmt = "yuv420p"
    context.framerate = fps
    context.time_base = 1 / fps
    context.options = {**dict(spec.options), "crf": str(crf)}
    packets: list[bytes] = []
    try:
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            video_frame.pts = index
            packets.extend(bytes(packet) for packet in context.encode(video_frame))
        packets.extend(bytes(packet) for packet in context.encode(None))
    except av.error.FFmpegError as exc:
        raise InputError(f"{spec.name} (crf {crf}) failed on {frames.shape[2]}x{frames.shape[1]}: {exc}") from None
    return tuple(packets)


def decode(stream: ClassicalStream) -> np.ndarray:
    """Decode a ``ClassicalStream`` back to uint8 RGB (T, H, W, 3) at the source size."""
    spec = _get(stream.codec)
    if spec.kind == "image":
        from PIL import Image

        frames = []
        for packet in stream.packets:
            with Image.open(pyio.BytesIO(packet)) as image:
                frames.append(np.asarray(image.convert("RGB")))
        decoded = np.stack(frames)
    else:
        decoded = _decode_video(stream, spec)
    if decoded.shape[0] != stream.num_frames:
        raise BitstreamError(f"{stream.codec}: decoded {decoded.shape[0]} frames, expected {stream.num_frames}")
    return np.ascontiguousarray(decoded[:, : stream.height, : stream.width])


def _decode_video(stream: ClassicalStream, spec: ClassicalCodec) -> np.ndarray:
    import av

    context = av.CodecContext.create(spec.decoder, "r")
    context.thread_type = "AUTO"
    frames: list[np.ndarray] = []
    try:
        for packet in stream.packets:
            frames.extend(f.to_ndarray(format="rgb24") for f in context.decode(av.Packet(packet)))
        frames.extend(f.to_ndarray(format="rgb24") for f in context.decode(None))
    except av.error.FFmpegError as exc:
        raise BitstreamError(f"{stream.codec}: cannot decode its stream: {exc}") from None
    if not frames:
        raise BitstreamError(f"{stream.codec}: the stream decoded to no frames")
    return np.stack(frames)
