"""Atomic writes keep the old content when writing fails."""

import stat

import pytest

from sparse3d.io.atomic import write_atomic, write_json_atomic


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"a": 1})

    def half_write(tmp):
        tmp.write_text('{"a": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_write)
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_written_files_get_the_usual_mode_not_mkstemps_private_one(tmp_path):
    path = tmp_path / "eval.json"
    write_json_atomic(path, {"psnr": 1.0})
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives a new file under this process's umask
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
