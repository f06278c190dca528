"""Atomic replacement: a file appears whole or not at all, and a failed writer leaves no trace."""
import pytest

from spectral_peft.studies.atomic import replacing, write_text


def test_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("old\n")
    write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_a_writer_that_raises_keeps_the_old_file(tmp_path):
    target = tmp_path / "summary.csv"
    target.write_text("complete\n")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half a fi")
        assert target.read_text() == "complete\n"  # readers still see the old file while writing
        raise RuntimeError("interrupted")
    assert target.read_text() == "complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv"]


def test_the_temporary_keeps_the_suffix(tmp_path):
    import numpy as np

    target = tmp_path / "run.npz"
    with replacing(target) as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path
        np.savez_compressed(tmp, x=np.arange(3))  # numpy would append ".npz" to any other name
    assert np.load(target)["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]


def test_write_json_keeps_key_order_unless_asked_and_writes_what_json_cannot_as_str(tmp_path):
    import json
    from pathlib import PurePosixPath

    from spectral_peft.studies.atomic import write_json

    target = tmp_path / "manifest.json"
    write_json(target, {"b": 1, "a": PurePosixPath("runs/x")})
    text = target.read_text()
    assert text.endswith("}\n") and text.index('"b"') < text.index('"a"')
    assert json.loads(text) == {"b": 1, "a": "runs/x"}
    write_json(target, {"b": 1, "a": 2}, sort_keys=True)
    assert target.read_text().index('"a"') < target.read_text().index('"b"')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
