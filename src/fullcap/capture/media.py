"""Frames from an image file, a directory of images, a video file or a webcam.

``open_media(input)`` gives a :class:`MediaSource`: iterate it for :class:`Frame` objects
(RGB channel order, as decoded: uint8 or uint16, 1, 3 or 4 channels; the capture pipeline
converts). Videos are read with OpenCV's FFmpeg backend; each frame's time is the container's
presentation time (``CAP_PROP_POS_MSEC``), or ``index / fps`` where the container gives none.
Images: ``time_s = index / nominal_fps`` (0.0 for a single image).

Damaged input: what decodes is kept. A file in a directory that does not decode is skipped
and listed in ``problems``; a video that stops decoding early ends there, with a problem
saying at which frame (and how many the container announced). Errors that leave nothing to
process raise :class:`MediaError` with a message that says what to do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Frame",
    "MediaError",
    "MediaSource",
    "open_media",
    "read_image",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


class MediaError(ValueError):
    """The input cannot be read at all (missing, unsupported, corrupt, empty)."""


@dataclass(frozen=True)
class Frame:
    """index: 0-based; image: (H, W, C) RGB(A) or (H, W) grey, uint8 or uint16; time_s:
    seconds; source: file name; notes: what was noticed while decoding it."""

    index: int
    image: np.ndarray
    time_s: float
    source: str
    notes: tuple[str, ...] = ()


def read_image(path: Path) -> tuple[np.ndarray, list[str]]:
    """Decode one image file (RGB(A) channel order, native bit depth) and notes.

    Raises MediaError when it does not decode.
    """
    data = path.read_bytes()
    if not data:
        raise MediaError(f"{path} is empty (0 bytes)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise MediaError(f"{path} could not be decoded as an image (corrupt or not an image)")
    notes = []
    if path.suffix.lower() in (".jpg", ".jpeg") and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        notes.append(f"{path.name}: JPEG is truncated; kept the part that decoded")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image, notes


class MediaSource:
    """Frames of one input; iterate once.

    kind: "image", "images", "video" or "webcam"; name: what results call the source;
    fps: the video's (or the nominal) rate; expected_frames: announced count or None;
    problems: files skipped / where decoding stopped (filled while iterating);
    stopped_early: decoding ended before the announced end.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        fps: float,
        files: list[Path] | None = None,
        capture: cv2.VideoCapture | None = None,
        expected_frames: int | None = None,
        max_frames: int | None = None,
    ):
        self.kind, self.name, self.fps = kind, name, fps
        self._files, self._cap = files, capture
        self.expected_frames = expected_frames
        self.max_frames = max_frames
        self.problems: list[str] = []
        self.stopped_early = False

    def __iter__(self) -> Iterator[Frame]:
        try:
            if self._files is not None:
                yield from self._images()
            else:
                yield from self._video()
        finally:
            self.close()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()

    def _images(self) -> Iterator[Frame]:
        index = 0
        for path in self._files:
            if self.max_frames is not None and index >= self.max_frames:
                return
            try:
                image, notes = read_image(path)
            except (MediaError, OSError) as exc:
                self.problems.append(f"skipped {path.name}: {exc}")
                continue
            t = 0.0 if self.kind == "image" else index / self.fps
            yield Frame(index, image, t, path.name, tuple(notes))
            index += 1
        if index == 0:
            raise MediaError("; ".join(self.problems) or "no image could be read")

    def _video(self) -> Iterator[Frame]:
        cap, index, t_prev = self._cap, 0, -1.0
        start = time.monotonic()
        while self.max_frames is None or index < self.max_frames:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            if self.kind == "webcam":
                t = time.monotonic() - start
            else:
                t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if not np.isfinite(t) or t <= t_prev:  # no usable container time
                    t = index / self.fps
            t_prev = t
            yield Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), t, self.name)
            index += 1
        if self.kind == "video":
            n = self.expected_frames
            done = self.max_frames is not None and index >= self.max_frames
            if index == 0:
                raise MediaError(f"{self.name}: no frame could be decoded (corrupt or truncated)")
            if not done and n is not None and index < n - 1:
                self.stopped_early = True
                self.problems.append(
                    f"{self.name}: decoding stopped after frame {index - 1} "
                    f"({index} of {n} frames the container announced); kept what decoded"
                )


def _is_webcam(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    if text.startswith("webcam:") and text[7:].isdigit():
        return int(text[7:])
    return None


def open_media(
    source: str | Path | int, nominal_fps: float = 30.0, max_frames: int | None = None
) -> MediaSource:
    """Open an image file, a directory of images (sorted by file name), a video file or a
    webcam (an int, "0", or "webcam:0").

    Raises:
        MediaError: missing path, unsupported format, nothing readable.
    """
    if nominal_fps <= 0:
        raise ValueError(f"nominal_fps must be positive, got {nominal_fps}")
    cam = source if isinstance(source, int) else _is_webcam(str(source))
    if cam is not None and not Path(str(source)).exists():
        cap = cv2.VideoCapture(cam)
        if not cap.isOpened():
            raise MediaError(f"cannot open webcam {cam}: no such camera or no permission")
        fps = cap.get(cv2.CAP_PROP_FPS) or nominal_fps
        return MediaSource("webcam", f"webcam:{cam}", fps, capture=cap, max_frames=max_frames)
    path = Path(source)
    if not path.exists():
        raise MediaError(f"input {path} does not exist")
    if path.is_dir():
        everything = sorted(p for p in path.iterdir() if p.is_file())
        files = [p for p in everything if p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise MediaError(
                f"directory {path} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
            )
        return MediaSource("images", path.name, nominal_fps, files=files, max_frames=max_frames)
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        read_image(path)  # fail now, before any output is made
        return MediaSource("image", path.name, nominal_fps, files=[path], max_frames=max_frames)
    if ext in VIDEO_EXTENSIONS:
        if path.stat().st_size == 0:
            raise MediaError(f"video {path} is empty (0 bytes)")
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            raise MediaError(
                f"cannot open video {path}: corrupt, truncated before its header, or a codec "
                "FFmpeg in OpenCV cannot decode; convert it (e.g. to H.264 MP4) and retry"
            )
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if np.isfinite(fps) and fps > 0 else nominal_fps
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        return MediaSource(
            "video",
            path.name,
            fps,
            capture=cap,
            expected_frames=count if count > 0 else None,
            max_frames=max_frames,
        )
    raise MediaError(
        f"unsupported input {path.name!r}: use an image ({', '.join(IMAGE_EXTENSIONS)}), a "
        f"directory of images, a video ({', '.join(VIDEO_EXTENSIONS)}) or a webcam index"
    )
