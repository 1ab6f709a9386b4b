"""model.checkpoint.load: every unusable file is one line naming it (which way it fails), read
weights-only, and no message ever suggests an unsafe load."""
import collections

import pytest
import torch

from model.checkpoint import CheckpointError, load


class Foreign:
    """A class torch's weights-only allowlist lacks."""


def _saved(path, obj, **kwargs):
    torch.save(obj, path, **kwargs)
    return path


@pytest.fixture
def good(tmp_path):
    return _saved(tmp_path / "good.ckpt", {"state_dict": {"w": torch.arange(3.0)}, "epoch": 2})


def _cut(src, dst, keep):
    data = src.read_bytes()
    dst.write_bytes(data[:keep(len(data))])
    return dst


CASES = {
    # name: (make the file from `good` in tmp_path, words the message must hold)
    "half": (lambda good, d: _cut(good, d / "half.ckpt", lambda n: n // 2), "truncated"),
    "last bytes cut": (lambda good, d: _cut(good, d / "cut.ckpt", lambda n: n - 10), "truncated"),
    "empty": (lambda good, d: _cut(good, d / "empty.ckpt", lambda n: 0), "empty"),
    "random bytes": (lambda good, d: (d / "junk.ckpt").write_bytes(bytes(range(256)) * 4) and d / "junk.ckpt",
                     "unreadable or truncated"),
    "text": (lambda good, d: (d / "notes.ckpt").write_text("hello\n") and d / "notes.ckpt", "unreadable or truncated"),
    "old format cut": (lambda good, d: _cut(_saved(d / "old.pt", {"w": torch.zeros(100)},
                                                   _use_new_zipfile_serialization=False),
                                            d / "oldcut.ckpt", lambda n: n - 20), "unreadable or truncated"),
    "foreign class": (lambda good, d: _saved(d / "foreign.ckpt", {"obj": Foreign()}), "test_checkpoint.Foreign"),
    "a folder": (lambda good, d: (d / "dir.ckpt").mkdir() or d / "dir.ckpt", "is a folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_unusable_file_is_one_line_naming_it(case, good, tmp_path):
    make, words = CASES[case]
    path = make(good, tmp_path)
    with pytest.raises(CheckpointError) as e:
        load(path, "decoder checkpoint")
    text = str(e.value)
    assert text.startswith(f"{path}: ") and "\n" not in text and words in text, text
    assert "weights_only" not in text and "trust" not in text, text


def test_a_whole_file_loads_and_a_missing_one_is_named(good, tmp_path):
    assert torch.equal(load(good)["state_dict"]["w"], torch.arange(3.0))
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt: decoder checkpoint not found"):
        load(tmp_path / "nowhere.ckpt", "decoder checkpoint")
    # inert_classes: a foreign class in the metadata (mmpose's configs) is read as a plain dict
    obj = load(_saved(tmp_path / "meta.pth", {"meta": Foreign(), "w": torch.ones(1)}), inert_classes=True)
    assert isinstance(obj["meta"], collections.OrderedDict) and torch.equal(obj["w"], torch.ones(1))
