"""Not enough disk: refused before training, and nothing saved is touched."""

import shutil
from collections import namedtuple

from fastnn.cli import main

Usage = namedtuple("Usage", "total used free")


def test_save_refused_before_training_when_the_disk_is_full(tmp_path, capsys, monkeypatch):
    model = tmp_path / "model.npz"
    model.write_bytes(b"precious")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 1000, 1000))
    rc = main(["train", "-d", "digits", "-e", "1", "--no-progress", "--save", str(model)])
    out, err = capsys.readouterr()
    assert rc == 1 and "epoch" not in out
    assert "needs about" in err and "are free there" in err and len(err.strip().splitlines()) == 1
    assert model.read_bytes() == b"precious"
    rc = main(["train", "-d", "digits", "-e", "1", "--no-progress", "--checkpoint",
               str(tmp_path / "ck")])
    assert rc == 1 and "checkpoint" in capsys.readouterr().err
