"""`--resume` state survives a run that ended between the two renames of its save."""

from __future__ import annotations

import torch

from DiffusionSegLib.training.checkpoint import (
    STATE_DIR,
    load_training_state,
    save_training_state,
)


def _save(folder, value: float) -> None:
    weight = torch.nn.Parameter(torch.full((3,), value))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    save_training_state(folder, {"w": weight.data}, None, optimizer, {"step": int(value)})


def test_state_left_under_its_old_name_is_resumed_and_replaced(tmp_path):
    _save(tmp_path, 1.0)
    _save(tmp_path, 2.0)
    assert load_training_state(tmp_path)[3]["step"] == 2
    # the moment between `final -> old` and `temp -> final`: only the old name holds a state
    (tmp_path / STATE_DIR).rename(tmp_path / (STATE_DIR + ".old"))
    weights, _, _, info = load_training_state(tmp_path)
    assert info["step"] == 2 and torch.equal(weights["w"], torch.full((3,), 2.0))
    _save(tmp_path, 3.0)          # the next save completes the swap and removes the old name
    assert load_training_state(tmp_path)[3]["step"] == 3
    assert not (tmp_path / (STATE_DIR + ".old")).exists()
    _save(tmp_path, 4.0)
    assert load_training_state(tmp_path)[3]["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_DIR]
