"""Execute a task's analysis notebook with papermill and export it to self-contained HTML.

    tasks/<task>/notebook.ipynb      --papermill-->  reports/notebooks/<task>/<dataset>.ipynb
                                     --nbconvert-->  reports/notebooks/<task>/<dataset>.html

A task without a notebook of its own gets `workflow/notebooks/_generic.ipynb` (its leaderboard and
training curves from the summary and the per-epoch logs).

Both outputs appear under their final names only when every cell ran: a failing cell raises
`NotebookError` naming the cell, and nothing is left behind. The HTML embeds its images and
loads no script from another host (no require.js, MathJax or mermaid CDN).
"""
from __future__ import annotations

import logging
import os
import re
import time
import warnings
from pathlib import Path

from .. import io as aio
from .. import paths
from ..errors import DataError

log = logging.getLogger("attnbench.notebook")
KERNEL = "python3"
OFFLINE_TEMPLATE = Path(__file__).parent / "templates" / "notebook_offline.html.j2"


class NotebookError(DataError):
    """A notebook cell failed; the message names the notebook and the cell."""


GENERIC = paths.GENERIC_NOTEBOOK.stem  # the notebook of a task without its own


def notebook_source(task: str) -> Path:
    """The task's own `src/attnbench/tasks/<task>/notebook.ipynb`, else the generic notebook
    `workflow/notebooks/_generic.ipynb` (each of the working directory, else of the repository)."""
    from ..config import REPO_ROOT

    candidates = [root / relative for relative in (paths.task_notebook(task), paths.GENERIC_NOTEBOOK)
                  for root in (Path.cwd(), REPO_ROOT)]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no analysis notebook for task {task!r}: looked for "
                            + " and ".join(str(p) for p in candidates))


def parameters(task: str, dataset: str) -> dict[str, str]:
    """What papermill injects: paths relative to the working directory (the notebook runs there)."""
    return {"task": task, "dataset": dataset, "results_dir": (paths.RESULTS / task / dataset).as_posix(),
            "prepared_dir": paths.prepared_dir(task, dataset).as_posix(),
            "summary_csv": paths.summary_csv(task, dataset).as_posix()}


def export_html(notebook_path: Path) -> str:
    """The executed notebook as one HTML page: images embedded, no external scripts."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_template_paths=[str(OFFLINE_TEMPLATE.parent)],
                            template_file=OFFLINE_TEMPLATE.name, embed_images=True)
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook_path), as_version=4))
    return body


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ARROW = re.compile(r"^\s*-+>")


def _cell_error(exc: Exception, source: Path) -> NotebookError:
    """Name the failing cell (execution count, position, first code line), the failing line and the error."""
    count = getattr(exc, "exec_count", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    index = getattr(exc, "cell_index", None)
    where = f"cell In [{count}]" if count is not None else "a cell"
    if index is not None:
        where += f" (cell {index + 1} of the notebook"
        code = [ln for ln in (getattr(exc, "source", "") or "").splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        where += f", starting `{code[0].strip()[:60]}`)" if code else ")"
    line, in_cell = "", False
    for text in (_ANSI.sub("", ln) for tb in getattr(exc, "traceback", None) or [] for ln in tb.splitlines()):
        if text.startswith("Cell In["):
            in_cell = True  # the next marked line is the notebook's own failing line
        elif in_cell and _ARROW.match(text):
            line, in_cell = "\n  at line " + _ARROW.sub("", text).strip(), False
    return NotebookError(f"{source}: {where} failed: {ename}: {evalue}{line}")


def run_notebook(params: dict, task: str) -> Path:
    """Execute the task's notebook on the dataset of `params` (a `config.for_dataset` view); write
    reports/notebooks/<task>/<dataset>.ipynb and .html; return the .ipynb path."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    if task not in params["tasks"]:
        raise KeyError(f"unknown task {task!r}; expected one of: {', '.join(params['tasks'])}")
    source = notebook_source(task)
    dataset = params["dataset"]
    out_ipynb, out_html = paths.notebook(task, dataset), paths.notebook(task, dataset, "html")
    summary = paths.summary_csv(task, dataset)
    if not summary.is_file():
        raise FileNotFoundError(f"{summary} does not exist; run `attnbench aggregate --task {task} --dataset {dataset}` first")
    t0 = time.perf_counter()
    try:
        with aio.atomic_path(out_ipynb) as tmp_nb, aio.atomic_path(out_html) as tmp_html:
            try:
                with warnings.catch_warnings():  # the temporary name does not end in .ipynb, by design
                    warnings.filterwarnings("ignore", message="The specified file .* does not end in")
                    pm.execute_notebook(str(source), str(tmp_nb), parameters=parameters(task, dataset), kernel_name=KERNEL,
                                        cwd=os.getcwd(), progress_bar=False, log_output=False, report_mode=False)
            except PapermillExecutionError as exc:
                raise _cell_error(exc, source) from exc
            tmp_html.write_text(export_html(tmp_nb), encoding="utf-8")
    except BaseException:
        # outputs of an earlier run no longer describe these results: a failed run leaves none
        out_ipynb.unlink(missing_ok=True)
        out_html.unlink(missing_ok=True)
        raise
    log.info("executed %s -> %s and %s in %.1fs", source, out_ipynb, out_html, time.perf_counter() - t0)
    return out_ipynb
