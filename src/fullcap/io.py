"""Atomic file writes: a reader never sees a half-written file.

Data is written to a temporary file in the destination's directory (same filesystem) and then
``os.replace``d onto the destination, which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "save_png"]


def _check_destination(path: Path) -> None:
    """Raise a clear error if ``path`` cannot be a file in an existing directory."""
    parent = path.parent
    if not parent.exists():
        raise FileNotFoundError(f"cannot write {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {parent} is not a directory")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is an existing directory")


def _create_temp(path: Path) -> Path:
    """Create an empty, uniquely named file next to ``path`` (normal umask permissions)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except PermissionError as e:
        raise PermissionError(
            f"cannot write {path}: no permission to create files in directory {path.parent}"
        ) from e
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: {e.strerror}", str(tmp)) from e
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` if the block succeeds.

    The temporary file exists (empty) when the block starts and keeps ``path``'s suffix, so
    writers that look at the extension behave. If the block raises, the temporary file is
    deleted, ``path`` is left untouched and the exception propagates.

    Example::

        with atomic_path("out/model.safetensors") as tmp:
            safetensors.torch.save_file(tensors, tmp)
    """
    path = Path(path)
    _check_destination(path)
    tmp = _create_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed and fsynced first); return the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (``encoding``, no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


def save_png(path: str | os.PathLike[str], image_rgb: np.ndarray) -> Path:
    """Save an RGB(A) uint8 image as PNG, atomically.

    Args:
        path: destination file.
        image_rgb: ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA uint8 image (or ``(H, W)`` grey).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8:
        raise ValueError(f"image_rgb must be uint8, got {image.dtype} (for {path})")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(
            f"image_rgb must have shape (H, W, 3), (H, W, 4) or (H, W), got {image.shape} "
            f"(for {path})"
        )
    if image.ndim == 3:
        code = cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        image = cv2.cvtColor(np.ascontiguousarray(image), code)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"PNG encoding failed for {path} (image shape {image.shape})")
    return atomic_write_bytes(path, buf.tobytes())
