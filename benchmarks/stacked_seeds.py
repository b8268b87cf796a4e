"""Issue 23, measured before choosing: is one training step of several seeds of a model cheaper as one
stacked model than as separate models, on one CPU thread?

The stacked form is the one the issue suggests: the seeds' parameters stacked with
``torch.func.stack_module_state`` and the task's own loss run through ``functional_call`` under
``vmap`` (random draws different per seed), so three small matrix products become one larger one.
The separate form is what the pipeline does today, one model after another. Both take the same
training batch (the shapes of a real step; timing only, the values do not matter), forward and
backward; CPU time of the process, median of 6 rounds after a warm-up round, the two forms timed in
alternating order.

    python benchmarks/stacked_seeds.py TASK RUN [SEEDS]     # e.g. captioning soft-attend 3

Run it in a checkout whose data/prepared/TASK/synthetic exists (`attnbench prepare --task TASK`).
Prints the two times and their ratio (stacked / separate: below 1 means stacking pays), or why the
model cannot be run under vmap.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from attnbench import paths, tasks
from attnbench.config import resolve_run
from attnbench.validation import load_params

ROUNDS = 7


def main(task_name: str, run: str, n_seeds: int) -> str:
    torch.set_num_threads(1)
    params = load_params()
    cfg = resolve_run(params, task_name, run, 0)
    task = tasks.get(task_name)
    data = task.load(paths.prepared_dir(task_name, "synthetic"), cfg)
    batch = next(iter(task.batches(data, cfg, torch.Generator().manual_seed(0))))
    cpu = torch.device("cpu")

    class Loss(nn.Module):
        """The task's training loss of one batch as a module's forward, so functional_call can run it."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, b):
            return task.loss(self.model, b, cpu)[0]

    models = []
    for seed in range(n_seeds):
        torch.manual_seed(seed)
        models.append(Loss(task.build_model(cfg, data)).train())

    def separate() -> None:
        for m in models:
            m.zero_grad(set_to_none=True)
            m(batch).backward()

    stacked_params, stacked_buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")
    loss_of_each = vmap(lambda p, b: functional_call(skeleton, (p, b), (batch,)), randomness="different")

    def stacked() -> None:
        for v in stacked_params.values():
            v.grad = None
        loss_of_each(stacked_params, stacked_buffers).sum().backward()

    try:
        stacked()
    except Exception as exc:  # noqa: BLE001 - the finding is that it cannot run
        return (f"{task_name}/{run}: the stacked step does not run under vmap: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}")
    times: dict[str, list[float]] = {"separate": [], "stacked": []}
    for r in range(ROUNDS):
        order = (("separate", separate), ("stacked", stacked))
        for name, step in (order if r % 2 == 0 else order[::-1]):
            t0 = time.process_time()
            step()
            times[name].append(time.process_time() - t0)
    sep, stk = (statistics.median(times[k][1:]) for k in ("separate", "stacked"))
    return (f"{task_name}/{run}: {n_seeds} seeds, one training step, CPU seconds: separate {sep:.3f}, "
            f"stacked {stk:.3f}, ratio {stk / sep:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", help="task name from params.yaml (e.g. captioning)")
    parser.add_argument("run", help="run name of the task (e.g. soft-attend)")
    parser.add_argument("seeds", nargs="?", type=int, default=3, help="seeds stacked (default: %(default)s)")
    args = parser.parse_args()
    print(main(args.task, args.run, args.seeds))
