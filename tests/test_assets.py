"""Tests for fullcap.assets: resolution order, manifest, hashing, safetensors loading."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fullcap import assets
from fullcap.assets import (
    AssetError,
    asset_path,
    load_manifest,
    load_safetensors,
    sha256_file,
    update_manifest,
    verify_asset,
)

ENV = "FULLCAP_TEST_ASSET_DIR"


@pytest.fixture
def pkg_dir(tmp_path, monkeypatch) -> Path:
    """A fake packaged asset folder with a manifest registering 'model.bin'."""
    d = tmp_path / "pkg"
    d.mkdir()
    manifest = {"model.bin": {"sha256": "0" * 64, "size": 1, "rebuild": "fullcap make-model"}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(assets, "packaged_asset_dir", lambda: d)
    monkeypatch.delenv(ENV, raising=False)
    return d


def _touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_real_packaged_dir_and_manifest():
    d = assets.packaged_asset_dir()
    assert d == Path(assets.__file__).parent / "assets"
    assert asset_path("manifest.json", env_var=ENV) == d / "manifest.json"
    assert isinstance(load_manifest(), dict)


def test_resolution_order(pkg_dir, tmp_path, monkeypatch):
    pkg_file = _touch(pkg_dir / "model.bin")
    other_pkg = _touch(pkg_dir / "other.bin")
    assert asset_path("model.bin", env_var=ENV) == pkg_file
    env_dir = tmp_path / "env"
    env_file = _touch(env_dir / "model.bin")
    monkeypatch.setenv(ENV, str(env_dir))
    assert asset_path("model.bin", env_var=ENV) == env_file
    # The env dir lacks other.bin: fall through to the package.
    assert asset_path("other.bin", env_var=ENV) == other_pkg
    # An explicit override (a file, or a directory holding the name) beats both.
    over_file = _touch(tmp_path / "custom" / "my_model.bin")
    assert asset_path("model.bin", override=over_file, env_var=ENV) == over_file
    over_dir_file = _touch(tmp_path / "custom" / "model.bin")
    assert asset_path("model.bin", override=str(over_file.parent), env_var=ENV) == over_dir_file


def test_missing_override_does_not_fall_back(pkg_dir, tmp_path):
    _touch(pkg_dir / "model.bin")
    missing = tmp_path / "nope.bin"
    with pytest.raises(AssetError, match=r"nope\.bin"):
        asset_path("model.bin", override=missing, env_var=ENV)


def test_missing_asset_message(pkg_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "envdir"))
    with pytest.raises(AssetError) as info:
        asset_path("model.bin", env_var=ENV)
    msg = str(info.value)
    assert "'model.bin'" in msg
    assert str(tmp_path / "envdir" / "model.bin") in msg
    assert str(pkg_dir / "model.bin") in msg
    assert "`fullcap make-model`" in msg
    with pytest.raises(AssetError, match="no command to create it is registered"):
        asset_path("unregistered.bin", env_var=ENV)
    with pytest.raises(ValueError, match="relative"):
        asset_path("../escape.bin", env_var=ENV)


def test_sha256_file_streams_large_file(tmp_path):
    data = bytes(range(256)) * (5 * 4096 + 17)  # > 5 MiB, not a multiple of the chunk
    path = _touch(tmp_path / "big.bin", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_verify_asset(tmp_path):
    path = _touch(tmp_path / "a.bin", b"hello")
    good = hashlib.sha256(b"hello").hexdigest()
    assert verify_asset(path, good, "cmd") == path
    assert verify_asset(path, good.upper(), "cmd") == path
    assert verify_asset(path, None, "cmd") == path  # explicit None skips the hash
    bad = "f" * 64
    with pytest.raises(AssetError) as info:
        verify_asset(path, bad, "fullcap bodymodel build")
    msg = str(info.value)
    assert f"hash mismatch: expected {bad}, got {good}" in msg
    assert "corrupt or from another version" in msg
    assert "rebuild it with `fullcap bodymodel build`" in msg
    with pytest.raises(AssetError, match="does not exist"):
        verify_asset(tmp_path / "missing.bin", None, "cmd")


def test_update_and_load_manifest(tmp_path):
    manifest = tmp_path / "manifest.json"
    assert load_manifest(manifest) == {}
    f1 = _touch(tmp_path / "one.bin", b"abc")
    entry = update_manifest("one.bin", f1, "fullcap build one", manifest=manifest)
    assert entry == {
        "sha256": hashlib.sha256(b"abc").hexdigest(),
        "size": 3,
        "rebuild": "fullcap build one",
    }
    f2 = _touch(tmp_path / "two.bin", b"defg")
    update_manifest("two.bin", f2, "fullcap build two", manifest=manifest)
    data = load_manifest(manifest)
    assert data["one.bin"] == entry and data["two.bin"]["size"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json",
        "one.bin",
        "two.bin",
    ]  # no temp files left
    manifest.write_text("{not json")
    with pytest.raises(AssetError, match="unreadable"):
        load_manifest(manifest)


def test_load_safetensors(tmp_path):
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int32)}
    path = tmp_path / "t.safetensors"
    save_file(tensors, path)
    out = load_safetensors(path, expected_sha256=sha256_file(path))
    assert out.keys() == tensors.keys()
    for k in tensors:
        assert torch.equal(out[k], tensors[k])
    with pytest.raises(AssetError, match="hash mismatch"):
        load_safetensors(path, expected_sha256="0" * 64, rebuild="fullcap x")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_load_safetensors_corrupt(tmp_path, damage):
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.randn(64, 64)}, path)
    raw = path.read_bytes()
    raw = {"truncate": raw[: len(raw) // 2], "garbage": b"\xff" * 100, "empty": b""}[damage]
    path.write_bytes(raw)
    with pytest.raises(AssetError) as info:
        load_safetensors(path, rebuild="fullcap bodymodel build")
    assert str(path) in str(info.value)
    assert "rebuild it with `fullcap bodymodel build`" in str(info.value)
