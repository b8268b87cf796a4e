"""attnbench.optim.Adam: torch.optim.Adam's arithmetic, a resumable state, and no torch._dynamo import."""
from __future__ import annotations

import io

import pytest
import torch

from attnbench.optim import Adam

from .conftest import BIN, run, tiny_translation_copy


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3), torch.nn.Linear(3, 2))


def _steps(model, opt, start: int, stop: int) -> None:
    for step in range(start, stop):
        gen = torch.Generator().manual_seed(step)
        x = torch.randn(4, 6, generator=gen)
        opt.zero_grad(set_to_none=True)
        out = model(x)
        # on odd steps the last layer gets no gradient: its state must stay as it was (lazy, per parameter)
        loss = (out ** 2).sum() if step % 2 == 0 else (model[0](x) ** 2).sum()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("weight_decay,fused", [(0.0, False), (0.01, False), (0.0, True)])
def test_same_parameters_as_torch_adam_step_by_step(weight_decay, fused):
    """fused=True: torch.optim.Adam(fused=True)'s parameters (the same kernel)."""
    ours, theirs = _model(), _model()
    opt_ours = Adam(ours.parameters(), lr=0.01, weight_decay=weight_decay, fused=fused)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=0.01, weight_decay=weight_decay, fused=fused)
    for step in range(7):
        _steps(ours, opt_ours, step, step + 1)
        _steps(theirs, opt_theirs, step, step + 1)
        for a, b in zip(ours.parameters(), theirs.parameters()):
            assert torch.equal(a, b), f"parameters differ after step {step}"
    # the layer that only had gradients on even steps has a step count of 4, the first layer 7
    assert opt_ours.state[0]["step"].item() == 7 and opt_ours.state[len(opt_ours.params) - 1]["step"].item() == 4


def test_resume_from_a_saved_state_equals_an_uninterrupted_run():
    straight = _model()
    opt = Adam(straight.parameters(), lr=0.01, weight_decay=0.01)
    _steps(straight, opt, 0, 6)

    first = _model()
    opt_first = Adam(first.parameters(), lr=0.01, weight_decay=0.01)
    _steps(first, opt_first, 0, 3)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": opt_first.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)   # as training.load_checkpoint reads it

    resumed = _model(seed=1)
    resumed.load_state_dict(saved["model"])
    opt_resumed = Adam(resumed.parameters(), lr=0.01, weight_decay=0.01)
    opt_resumed.load_state_dict(saved["optimizer"])
    _steps(resumed, opt_resumed, 3, 6)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_a_foreign_or_mismatched_state_is_refused():
    model = _model()
    opt = Adam(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="older attnbench"):
        opt.load_state_dict(torch.optim.Adam(model.parameters(), lr=0.01).state_dict())
    other = Adam(torch.nn.Linear(2, 2).parameters(), lr=0.01)
    with pytest.raises(ValueError, match="2 parameters, this model has 6"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="empty"):
        Adam([], lr=0.01)


def test_a_training_job_does_not_import_torch_dynamo(tmp_path):
    """The point of the class: a training process never loads the compiler stack (about 1.2 s on CPU)."""
    work = tiny_translation_copy(tmp_path / "w", runs=("rnn-additive",))
    cli = str(BIN / "attnbench")
    run([cli, "prepare", "--task", "translation"], work)
    proc = run([cli, "train", "--task", "translation", "--run", "rnn-additive", "--seed", "0"], work,
               env={"PYTHONPROFILEIMPORTTIME": "1"})
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" in imported and "attnbench.optim" in imported   # the import profile is there
    assert "torch._dynamo" not in imported
    assert (work / "data/results/translation/synthetic/rnn-additive/seed0/model.pt").is_file()


def test_fused_state_saves_and_resumes():
    """fused=True: the state saves and loads like the default's, and the resumed run stays on torch's fused Adam."""
    ours, theirs = _model(), _model()
    opt_ours = Adam(ours.parameters(), lr=0.01, fused=True)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=0.01, fused=True)
    for step in range(5):
        _steps(ours, opt_ours, step, step + 1)
        _steps(theirs, opt_theirs, step, step + 1)
    again = Adam(ours.parameters(), lr=0.01, fused=True)
    again.load_state_dict(opt_ours.state_dict())
    _steps(ours, again, 5, 6)
    _steps(theirs, opt_theirs, 5, 6)
    assert all(torch.allclose(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
