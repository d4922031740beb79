"""A busy camera picture for Chromium's fake camera (``--use-file-for-fake-video-capture``).

Chromium's default fake picture (a still pattern with a small moving arc) compresses to
almost nothing: its VP8 encoder sits at the lowest quantizer and never needs the bitrate
a person in front of a webcam does, so bandwidth tests learn little. This module writes
a YUV4MPEG2 clip (4:2:0) that does need it: soft large shapes swaying as one, two layers
of fine detail moving apart through a drifting mask (a block showing two motions at once
is something no motion vector predicts), discs with turning stripes on looping paths, a
light film grain, colour travelling with the picture and a large frame counter.

The fine detail is what a 720p encoding pays for and a 180p one never sees, as in a
real scene; ``vp8_kbps`` measures what a clip needs (the test of this module asserts it).
Every motion is periodic in the clip's length, so the loop Chromium plays has no cut (a
cut would make the encoder spend a key frame's worth of bits each time round).
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

VERSION = 3  # part of cached file names: bump when the picture changes
GRAIN_FRAMES = 4  # distinct grain patterns, cycled (the clip's length must divide by it)
# A 5x7 font for the frame counter, one string per row.
DIGITS = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11110", "00001", "00001", "01110", "00001", "00001", "11110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
}


def clip(
    path: Path, width: int = 1280, height: int = 720, fps: int = 30, seconds: float = 2.0
) -> Path:
    """Write the clip to ``path`` unless a complete one is there already; return ``path``.

    The file is written beside ``path`` and renamed into place, so a reader (or a test
    running at the same time) never sees half a clip. A file of the right size is taken
    as complete, whatever it shows: ``cached_clip`` puts ``VERSION`` in its names.
    1280x720 is 1.38 MB a frame; ``seconds`` is rounded to whole grain cycles.
    """
    if width % 2 or height % 2:
        raise ValueError(f"4:2:0 needs an even width and height, not {width}x{height}")
    frames = _frame_count(fps, seconds)
    header = f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode()
    frame_bytes = len(b"FRAME\n") + width * height * 3 // 2
    path = Path(path)
    if path.exists() and path.stat().st_size == len(header) + frames * frame_bytes:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    painter = _Painter(width, height, frames)
    try:
        with partial.open("wb") as out:
            out.write(header)
            for index in range(frames):
                out.write(b"FRAME\n")
                for plane in painter.frame(index):
                    out.write(plane.tobytes())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def cached_clip(width: int = 1280, height: int = 720, fps: int = 30, seconds: float = 2.0) -> Path:
    """The clip for these parameters, made once per machine under the temporary directory."""
    frames = _frame_count(fps, seconds)
    name = f"pulseroom-motion-v{VERSION}-{width}x{height}-{fps}fps-{frames}f.y4m"
    return clip(Path(tempfile.gettempdir()) / "pulseroom-clips" / name, width, height, fps, seconds)


def vp8_kbps(path: Path, width: int, height: int, quantizer: int = 45) -> float:
    """What libvpx's VP8 spends on the clip at ``path``, scaled to ``width`` x ``height``,
    at a fixed ``quantizer`` (0-63, WebRTC lets VP8 go up to 56): kbit/s of the inter
    frames of one pass through the clip, the first (key) frame left out.

    Set up like WebRTC's encoder (realtime, fixed speed -6, no look-ahead), so the
    figure says how much bitrate the picture needs at that quality.
    """
    import av
    from av.video.frame import PictureType

    with av.open(str(path)) as container:
        fps = Fraction(container.streams.video[0].average_rate or 30)
        encoder = av.CodecContext.create("libvpx", "w")
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.time_base = 1 / fps
        encoder.bit_rate = 50_000_000  # a ceiling far above what any quantizer here needs
        encoder.gop_size = 100_000
        q = str(quantizer)
        encoder.options = {
            "deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0", "qmin": q, "qmax": q,
        }  # fmt: skip
        sizes: list[int] = []
        for index, frame in enumerate(container.decode(video=0)):
            scaled = frame.reformat(width=width, height=height, format="yuv420p")
            scaled.pts = index
            # The y4m decoder marks every frame I, and libvpx makes each such a key frame.
            scaled.pict_type = PictureType.NONE
            sizes += [packet.size for packet in encoder.encode(scaled)]
    sizes += [packet.size for packet in encoder.encode(None)]
    return float(sum(sizes[1:]) * 8 * fps / (len(sizes) - 1) / 1000)


def _frame_count(fps: int, seconds: float) -> int:
    """Frames in the clip: ``seconds`` of them, rounded to whole grain cycles."""
    return max(GRAIN_FRAMES, round(fps * seconds) // GRAIN_FRAMES * GRAIN_FRAMES)


def _texture(
    rng: np.random.Generator, height: int, width: int, slope: float, finest: float = 0.0
) -> np.ndarray:
    """Tileable noise with a natural picture's 1/f^slope spectrum, scaled to mean 0, sd 1.

    Shaped in the frequency domain, so it wraps seamlessly and can scroll forever. With
    ``finest`` > 0 only detail above that frequency (cycles a pixel) is kept: 1/8 keeps
    what has a period under 8 pixels, which a 4x smaller picture cannot show.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.hypot(fy, fx)
    radius[0, 0] = 1.0
    spectrum = np.fft.rfft2(rng.standard_normal((height, width))) / radius**slope
    spectrum[radius < finest] = 0.0
    spectrum[0, 0] = 0.0
    texture = np.fft.irfft2(spectrum, s=(height, width))
    return ((texture - texture.mean()) / texture.std()).astype(np.float32)


class _Painter:
    """Draws frame ``index`` of a clip ``frames`` long; everything precomputable is, once."""

    def __init__(self, width: int, height: int, frames: int) -> None:
        self.width, self.height, self.frames = width, height, frames
        rng = np.random.default_rng(14)  # the same picture on every machine
        # Large soft shapes that move as one (cheap to predict at any size), and two layers
        # of fine detail that move apart: costly at 720p, gone when scaled down to 180p,
        # like the detail of a real scene.
        self.coarse = _texture(rng, height, width, 1.8)
        self.fine = tuple(_texture(rng, height, width, 0.5, finest=1 / 8) for _ in range(2))
        self.grain = rng.normal(0.0, 1.5, (GRAIN_FRAMES, height, width)).astype(np.float32)
        self.sway = 0.04  # how far the layers sway, as a share of the picture
        self.y = np.arange(height, dtype=np.float32)[:, None]
        self.x = np.arange(width, dtype=np.float32)[None, :]
        # Colour: smooth blotches that travel with the first layer. Changing colour in
        # place would cost a residual in every block, at every size.
        self.colour = tuple(
            np.clip(128.0 + 36.0 * _texture(rng, height // 2, width // 2, 2.2), 16, 240)
            for _ in range(2)
        )
        self.scale = min(width, height)
        # Discs: (radius, x amplitude, y amplitude, x cycles, y cycles, phase, stripes, luma)
        self.discs = [
            (0.11, 0.38, 0.30, 1, 2, 0.0, 6, 200.0),
            (0.08, 0.30, 0.36, 2, 1, 1.3, 8, 60.0),
            (0.14, 0.22, 0.20, 1, 1, 2.1, 5, 230.0),
            (0.06, 0.42, 0.40, 3, 2, 0.7, 10, 30.0),
            (0.09, 0.35, 0.25, 2, 3, 4.0, 7, 170.0),
        ]

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Y, U and V planes (uint8) of frame ``index``."""
        phase = 2 * np.pi * index / self.frames
        h, w, sway = self.height, self.width, self.sway
        # Whole-pixel offsets (even, for the half-size colour planes) on sine paths: back
        # where they started after one loop.
        first = (
            2 * round(sway * h / 2 * np.sin(phase)),
            2 * round(sway * w / 2 * np.cos(phase)),
        )
        second = (round(sway * h * np.sin(2 * phase + 1)), -round(sway * w * np.sin(phase)))
        luma = self._background(first, second, phase)
        self._draw_discs(luma, phase)
        luma += self.grain[index % GRAIN_FRAMES]
        self._draw_counter(luma, index)
        u, v = (np.roll(c, (first[0] // 2, first[1] // 2), axis=(0, 1)) for c in self.colour)
        return (np.clip(luma, 16, 235).astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8))

    def _background(
        self, first: tuple[int, int], second: tuple[int, int], phase: float
    ) -> np.ndarray:
        """The coarse layer and the two fine ones blended through a drifting soft mask.

        Where the mask is between 0 and 1 a block shows two motions at once, which no
        single motion vector predicts: the encoder has to spend bits, as on a real scene.
        """
        h, w = self.height, self.width
        coarse = np.roll(self.coarse, first, axis=(0, 1))
        one = np.roll(self.fine[0], first, axis=(0, 1))
        two = np.roll(self.fine[1], second, axis=(0, 1))
        mask = 0.5 + 0.5 * np.sin(self.x * (6 * np.pi / w) + self.y * (4 * np.pi / h) + 2 * phase)
        return 128.0 + 40.0 * coarse + 8.0 * (mask * one + (1.0 - mask) * two)

    def _draw_discs(self, luma: np.ndarray, phase: float) -> None:
        """Discs with turning stripes, each on its own looping (Lissajous) path."""
        h, w, s = self.height, self.width, self.scale
        for size, ax, ay, kx, ky, offset, stripes, level in self.discs:
            radius = size * s
            cx = w / 2 + ax * w * np.sin(kx * phase + offset)
            cy = h / 2 + ay * h * np.cos(ky * phase + offset)
            top, bottom = max(0, int(cy - radius)), min(h, int(cy + radius) + 1)
            left, right = max(0, int(cx - radius)), min(w, int(cx + radius) + 1)
            if top >= bottom or left >= right:
                continue
            dy = self.y[top:bottom] - cy
            dx = self.x[:, left:right] - cx
            inside = dx**2 + dy**2 <= radius**2
            angle = np.arctan2(dy, dx)
            stripes_luma = level + 45.0 * np.sign(np.sin(stripes * angle + phase))
            box = luma[top:bottom, left:right]
            box[inside] = stripes_luma[inside]

    def _draw_counter(self, luma: np.ndarray, index: int) -> None:
        """The frame number in large digits, top left: every frame differs visibly."""
        cell = max(2, self.scale // 60)
        for place, digit in enumerate(f"{index:03d}"):
            glyph = np.array([[c == "1" for c in row] for row in DIGITS[digit]])
            block = np.kron(glyph, np.ones((cell, cell), dtype=bool))
            top, left = cell * 2, cell * (2 + place * 6)
            region = luma[top : top + block.shape[0], left : left + block.shape[1]]
            region[...] = np.where(block, 235.0, 20.0)
