"""The weights catalogue, download, cache and conversion on local files (file:// URLs and paths;
never the network): resume, checksum, offline message, request-only entries, cached conversion
rebuilt when corrupt, unknown formats, and tools/weights.py."""

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import pytest
import torch

from fx_d2.model_zoo import (
    ChecksumMismatchError,
    UnknownWeightsFormatError,
    WeightsDownloadError,
    WeightsEntry,
    WeightsNotAvailableError,
    download,
    fetch_weights,
    get_entry,
    list_entries,
    register_weights,
    resolve_weights,
)
from fx_d2.model_zoo.catalog import WEIGHTS_CATALOG
from fx_d2.modeling.backbone import FXSwinTransformer
from fx_d2.testing.scripts import load_script

_CLI = Path(__file__).resolve().parents[2] / "tools" / "weights.py"
weights_cli = load_script(_CLI, "weights_cli")

ARCH = dict(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), window_size=7)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("FX_D2_CACHE", str(root))
    return root


def swin_file(path):
    """Microsoft's Swin release layout (``{"model": trunk + classifier}``) for the tiny arch."""
    torch.manual_seed(0)
    sd = {k: v for k, v in FXSwinTransformer(**ARCH).state_dict().items()
          if not re.match(r"^norm\d\.", k)}  # fmt: skip
    sd.update({"head.weight": torch.randn(10, 256), "head.bias": torch.randn(10)})
    torch.save({"model": sd}, str(path))
    return str(path)


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_catalogue_entries_are_complete():
    names = [e.name for e in list_entries()]
    assert {"swin_b_in22k", "ark6_swin_b", "foundation_x", "foundation_x_student"} <= set(names)
    for entry in list_entries():
        assert entry.public or (entry.request_url.startswith("https://") and entry.request_note)
        assert os.path.isfile(Path(__file__).resolve().parents[2] / entry.config), entry.config
    assert get_entry("swin_b_in22k").url.startswith("https://github.com/SwinTransformer/")
    with pytest.raises(KeyError, match="foundation_x"):
        get_entry("no_such_weights")


def test_download_resumes_verifies_and_is_atomic(tmp_path, caplog):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 << 20))
    dst = str(tmp_path / "dl" / "w.pth")
    Path(dst).parent.mkdir()
    Path(dst + ".part").write_bytes(src.read_bytes()[: 1 << 20])  # an interrupted transfer
    with caplog.at_level(logging.INFO, logger="fx_d2.model_zoo.download"):
        assert download(src.as_uri(), dst, _sha(src), progress=False) == dst
    assert "resuming at byte 1048576" in caplog.text
    assert _sha(dst) == _sha(src) and not os.path.exists(dst + ".part")


def test_checksum_mismatch_names_both_digests_and_keeps_the_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"not the weights you expect")
    dst = str(tmp_path / "w.pth")
    with pytest.raises(ChecksumMismatchError) as err:
        download(str(src), dst, "0" * 64, progress=False)
    assert "0" * 64 in str(err.value) and _sha(src) in str(err.value)
    assert not os.path.exists(dst) and Path(err.value.kept_at).read_bytes() == src.read_bytes()


def test_unreachable_url_names_it_and_the_manual_command(tmp_path):
    url = "http://127.0.0.1:9/weights.pth"  # loopback discard port: refused, no network needed
    with pytest.raises(WeightsDownloadError, match=r"127\.0\.0\.1:9/weights\.pth.*curl -L -C -"):
        download(url, str(tmp_path / "w.pth"), timeout=5, progress=False)


def test_request_only_entry_says_where_to_ask_and_where_to_put_the_file(tmp_path, cache, capsys):
    entry = get_entry("foundation_x")
    with pytest.raises(WeightsNotAvailableError) as err:
        fetch_weights(entry)
    message = str(err.value)
    assert "https://forms.gle/7ynYFcoiKYYwQNWG8" in message
    assert str(cache / "weights" / entry.filename) in message
    assert weights_cli.main(["get", "foundation_x"]) == 2
    assert "forms.gle" in capsys.readouterr().err
    placed = cache / "weights" / entry.filename
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"x")
    assert fetch_weights(entry) == str(placed)


def test_public_entry_downloads_and_checks_the_catalogue_digest(tmp_path, cache):
    src = swin_file(tmp_path / "swin.pth")
    entry = WeightsEntry("test_swin_local", "tiny", "swin", "configs/Base-FoundationX.yaml",
                         "tiny_swin.pth", url=Path(src).as_uri(), sha256=_sha(src),
                         trunk_only=True)  # fmt: skip
    register_weights(entry)
    try:
        assert weights_cli.main(["get", entry.name, "--no-progress"]) == 0
        assert _sha(cache / "weights" / "tiny_swin.pth") == _sha(src)
        register_weights(entry.replace(sha256="f" * 64), replace=True)
        with pytest.raises(ValueError, match="differs from the catalogue"):
            fetch_weights(get_entry(entry.name))  # the cached file is another one now
    finally:
        WEIGHTS_CATALOG.remove(entry.name)


def test_conversion_is_cached_by_digest_and_rebuilt_when_corrupt(tmp_path, caplog):
    src = swin_file(tmp_path / "swin.pth")
    first = resolve_weights(Path(src).as_uri(), progress=False)
    assert first.format == "swin" and first.trunk_only and first.path != first.source
    data = torch.load(first.path, weights_only=True)
    assert data["fx_d2_source"]["sha256"] == _sha(src)
    assert any(k.startswith("backbone.patch_embed.") for k in data["model"])
    stamp = os.stat(first.path).st_mtime_ns
    assert resolve_weights(src, progress=False).path == first.path  # same bytes: reused
    assert os.stat(first.path).st_mtime_ns == stamp
    Path(first.path).write_bytes(b"truncated")
    with caplog.at_level(logging.WARNING, logger="fx_d2.model_zoo.cache"):
        again = resolve_weights(src, progress=False)
    assert "unusable" in caplog.text
    assert torch.load(again.path, weights_only=True)["fx_d2_source"]["sha256"] == _sha(src)


def test_unknown_format_lists_the_formats_tried(tmp_path, capsys):
    path = tmp_path / "mystery.pth"
    torch.save({"state_dict": {"encoder.conv1.weight": torch.zeros(2)}}, str(path))
    with pytest.raises(UnknownWeightsFormatError) as err:
        resolve_weights(str(path))
    for fmt in ("fx_d2", "foundation_x", "ark", "timm", "swin"):
        assert f"{fmt}:" in str(err.value)
    assert weights_cli.main(["convert", str(path)]) == 1
    assert "mystery.pth" in capsys.readouterr().err


def test_weights_cli_list_and_convert(tmp_path, capsys):
    assert weights_cli.main(["list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [w["name"] for w in listed["weights"]][:4] == [e.name for e in list_entries()][:4]
    assert weights_cli.main(["convert", swin_file(tmp_path / "s.pth"), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "swin" and os.path.isfile(report["converted"])
    with pytest.raises(FileNotFoundError, match="neither a catalogue name"):
        resolve_weights(str(tmp_path / "absent.pth"))


def test_each_file_is_read_once_per_resolve(tmp_path, monkeypatch):
    """Detecting the format and converting share one read of the source; a cached conversion
    is checked with one read and the source is not read at all."""
    import fx_d2.checkpoint.convert as convert_module
    import fx_d2.model_zoo.cache as cache_module
    import fx_d2.model_zoo.resolve as resolve_module

    reads = []
    for module in (convert_module, cache_module, resolve_module):
        real = module.load_checkpoint

        def spy(path, *args, _real=real, **kwargs):
            reads.append(os.path.basename(str(path)))
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(module, "load_checkpoint", spy)
    src = swin_file(tmp_path / "swin.pth")
    first = resolve_weights(src, progress=False)
    assert reads == ["swin.pth"]
    reads.clear()
    assert resolve_weights(src, progress=False).path == first.path
    assert reads == [os.path.basename(first.path)]
