"""Adam for the training loops, without `torch.optim.Optimizer`'s start-up cost.

`torch.optim.Optimizer` wraps its methods (constructor included) in `torch._disable_dynamo`, whose
first call imports `torch._dynamo`, and `Optimizer.step` imports it again on every call. On the 2-core
CPU machine that import is about 1.2 s of every training job's start-up (measured with
`python -X importtime`; a training job's whole start-up was 3.6 s), spent on a compiler this project
never calls. Issue 10 asks for a per-job overhead under 3 s.

`Adam` below keeps the optimizer state itself and calls torch's own functional Adam update,
`torch.optim.adam.adam`, with the arguments `torch.optim.Adam.step` passes for a single parameter group
(no amsgrad, no fused or capturable kernels): the same arithmetic, which tests/test_optim.py checks step
by step against `torch.optim.Adam`, and the same lazy state (a parameter's moments are created at its
first step with a gradient).

`fused=True` (the shared loop's `train.fused_adam`) takes torch's fused kernel instead: one pass over each
parameter rather than a chain of element-wise ops, the same update up to float rounding (checked against
`torch.optim.Adam(fused=True)`); on the CPU it saves about a tenth of a Multi30k translation step.
`foreach` as in torch.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.adam import adam as _adam_update


class Adam:
    """Single-group Adam (L2 `weight_decay` as in `torch.optim.Adam`), state_dict/load_state_dict for resume."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, foreach: bool | None = None,
                 fused: bool | None = None) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        self.lr, self.weight_decay, self.betas, self.eps = float(lr), float(weight_decay), tuple(betas), float(eps)
        self.foreach, self.fused = foreach, fused
        self.state: dict[int, dict[str, torch.Tensor]] = {}   # parameter index -> step, exp_avg, exp_avg_sq

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("Adam does not support sparse gradients")
            state = self.state.get(i)
            if state is None:
                state = self.state[i] = {
                    # on the CPU, as torch.optim.Adam keeps it (the fused kernel wants it beside the parameter)
                    "step": torch.tensor(0.0, dtype=torch.float32, device=p.device if self.fused else "cpu"),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        _adam_update(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                     has_complex=any(torch.is_complex(p) for p in params), beta1=self.betas[0], beta2=self.betas[1],
                     lr=self.lr, weight_decay=self.weight_decay, eps=self.eps, maximize=False, foreach=self.foreach,
                     capturable=False, differentiable=False, fused=self.fused, grad_scale=None, found_inf=None,
                     decoupled_weight_decay=False)

    def state_dict(self) -> dict:
        return {"kind": "attnbench.optim.Adam", "lr": self.lr, "weight_decay": self.weight_decay,
                "betas": list(self.betas), "eps": self.eps, "n_params": len(self.params),
                "state": {i: {k: v.clone() for k, v in s.items()} for i, s in self.state.items()}}

    def load_state_dict(self, saved: dict) -> None:
        if not isinstance(saved, dict) or saved.get("kind") != "attnbench.optim.Adam":
            raise ValueError("not an attnbench.optim.Adam state (a checkpoint written by an older attnbench?)")
        if saved["n_params"] != len(self.params):
            raise ValueError(f"optimizer state is for {saved['n_params']} parameters, this model has {len(self.params)}")
        state = {}
        for i, s in saved["state"].items():
            p = self.params[int(i)]
            if s["exp_avg"].shape != p.shape:
                raise ValueError(f"optimizer state of parameter {i} has shape {tuple(s['exp_avg'].shape)}, "
                                 f"the parameter {tuple(p.shape)}")
            state[int(i)] = {"step": s["step"].to(p.device if self.fused else "cpu", torch.float32),
                             "exp_avg": s["exp_avg"].to(p.device, p.dtype),
                             "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype)}
        self.state = state
