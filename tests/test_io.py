"""File writing: atomic renames leave ordinary (umask-derived) modes, whatever wrote the temporary file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_get_umask_modes(tmp_path: Path, umask: int) -> None:
    import torch
    from safetensors.torch import save_file

    from t2i_unlearn.toy.judges import ToyJudge, save_judge
    from t2i_unlearn.utils.io import atomic_directory, atomic_save_safetensors, atomic_torch_save, atomic_write_json, current_umask

    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_save_safetensors(tmp_path / "w.safetensors", {"a": torch.zeros(2)}, metadata={"format": "pt"})
        atomic_write_json(tmp_path / "x.json", {"a": 1})
        atomic_torch_save(tmp_path / "s.pt", {"a": torch.zeros(1)})
        save_judge(ToyJudge({"texture": ["plain", "striped"]}, width=4), tmp_path / "judge")
        with atomic_directory(tmp_path / "folder") as tmp:
            # what diffusers' save_pretrained and safetensors' save_file leave: private files and folders
            save_file({"a": torch.zeros(2)}, str(tmp / "model.safetensors"))
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "f.bin").write_bytes(b"x")
            os.chmod(tmp / "sub" / "f.bin", 0o600)
    finally:
        os.umask(old)
    files = [tmp_path / name for name in ("w.safetensors", "x.json", "s.pt", "folder/model.safetensors", "folder/sub/f.bin")]
    files += sorted((tmp_path / "judge").iterdir())
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: oct(0o666 & ~umask) for p in files}
    for folder in (tmp_path / "folder", tmp_path / "folder" / "sub"):
        assert _mode(folder) == 0o777 & ~umask
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]  # no temporary left behind
