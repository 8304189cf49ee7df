"""Tests for fullcap.io: atomic writes and PNG saving."""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from fullcap import io as fio
from fullcap.io import atomic_path, atomic_write_bytes, atomic_write_text, save_png


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_atomic_write_bytes_and_text(tmp_path):
    p = tmp_path / "a.bin"
    assert atomic_write_bytes(p, b"\x00\x01abc") == p
    assert p.read_bytes() == b"\x00\x01abc"
    atomic_write_bytes(str(p), b"new")  # overwrite, str path
    assert p.read_bytes() == b"new"
    t = tmp_path / "b.txt"
    atomic_write_text(t, "héllo\nworld\n")
    assert t.read_bytes() == "héllo\nworld\n".encode()
    assert _listing(tmp_path) == ["a.bin", "b.txt"]


def test_atomic_path_success_keeps_suffix_and_dir(tmp_path):
    target = tmp_path / "out.npy"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npy" and tmp != target
        assert tmp.exists() and not target.exists()
        np.save(tmp, np.arange(3))
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    assert _listing(tmp_path) == ["out.npy"]


def test_atomic_path_failure_leaves_target_untouched(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("original")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "original"
    assert _listing(tmp_path) == ["keep.txt"]


def test_missing_directory_error_names_path(tmp_path):
    target = tmp_path / "nope" / "x.bin"
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        atomic_write_bytes(target, b"x")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        atomic_write_text(tmp_path / "file" / "x.txt", "x")
    with pytest.raises(IsADirectoryError):
        atomic_write_text(tmp_path, "x")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions"
)
def test_unwritable_directory_real(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=re.escape(str(d))):
            atomic_write_bytes(d / "x.bin", b"x")
    finally:
        d.chmod(0o700)


def test_unwritable_directory_message(tmp_path, monkeypatch):
    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fio.os, "open", deny)
    with pytest.raises(
        PermissionError, match=r"no permission .* directory " + re.escape(str(tmp_path))
    ):
        atomic_write_bytes(tmp_path / "x.bin", b"x")


def test_save_png_rgb_channel_order(tmp_path):
    img = np.zeros((5, 7, 3), np.uint8)
    img[..., 0] = 200  # red
    img[1, 2] = (10, 20, 30)
    p = save_png(tmp_path / "img.png", img)
    back = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)  # BGR
    assert back.shape == (5, 7, 3)
    np.testing.assert_array_equal(back[..., ::-1], img)
    assert _listing(tmp_path) == ["img.png"]


def test_save_png_rgba_and_gray(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    save_png(tmp_path / "a.png", rgba)
    back = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)  # BGRA
    np.testing.assert_array_equal(back[..., [2, 1, 0, 3]], rgba)
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    save_png(tmp_path / "g.png", gray)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "g.png"), cv2.IMREAD_UNCHANGED), gray)


def test_save_png_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        save_png(tmp_path / "x.png", np.zeros((4, 4, 2), np.uint8))
    assert _listing(tmp_path) == []
