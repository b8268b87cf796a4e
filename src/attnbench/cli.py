"""attnbench command line: one command per pipeline step; Snakemake rules and DVC stages call these.

    attnbench validate                      check params.yaml (exit 2 with the key path on error)
    attnbench runs                          list task/run/seed of the grid
    attnbench data list|info|fetch          the registry of public datasets; fetch -> data/raw/NAME/
    attnbench prepare   --task T [--dataset D]                data -> data/prepared/T/D/
    attnbench train     --task T [--dataset D] --run R --seed S  -> data/results/T/D/R/seedS/
    attnbench evaluate  --task T [--dataset D] --run R --seed S
    attnbench translate --task translation [--dataset D] --run R --seed S [SENTENCE ...]   a trained run's output
    attnbench predict   --task intent [--dataset D] --run R --seed S [UTTERANCE ...]      intent, probability, token weights
    attnbench score     --task translation [--dataset D] --run R --seed S --source F --target F
                                            -> data/scores/T/D/R/seedS/NAME/ (other test files, no retraining)
    attnbench aggregate --task T [--dataset D]                -> data/summary/T/D.{csv,json}
    attnbench notebook  --task T [--dataset D]                -> reports/notebooks/T/D.{ipynb,html}
    attnbench report                        Jinja -> reports/index.html
    attnbench dvc-yaml [--write]            the dvc.yaml that params.yaml describes (checked by the tests)
    attnbench bench-attention [--out CSV]   time/memory of every attention mechanism -> data/bench/attention.csv

Global options come before the command: --params FILE, --scale, --device, --set KEY=VALUE.
--dataset defaults to `synthetic` (the task's embedded generator); `attnbench runs` lists the grid.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from . import __version__
from . import io as aio
from . import paths
from .config import ParamsError, dataset_options, for_dataset, resolve_run, run_list
from .errors import DataError
from .helptext import HelpWithExamples, examples
from .validation import check_dataset, params_from_args

log = logging.getLogger("attnbench")


def _params(args) -> dict:
    """The CLI's params: params.yaml with the command line's overrides, checked (`params_from_args`); a
    --task that params.yaml does not list is refused with the tasks it does."""
    params = params_from_args(args)
    task = getattr(args, "task", None)
    if task is not None and task not in params["tasks"]:
        raise ParamsError(f"--task {task}: {args.params} has no task named {task!r}; expected one of: "
                          f"{', '.join(params['tasks'])}")
    return params


def _run_cfg(params: dict, args) -> dict:
    """The run's resolved configuration; a run or seed outside the grid is refused with the grid's values."""
    runs = list(params["tasks"][args.task]["runs"])
    if args.run not in runs:
        raise ParamsError(f"--run {args.run}: not a run of the grid; {args.params}'s tasks.{args.task}.runs are: "
                          f"{', '.join(runs)}")
    if args.seed not in params["seeds"]:
        raise ParamsError(f"--seed {args.seed}: not a seed of the grid; {args.params}'s seeds are: "
                          f"{', '.join(map(str, params['seeds']))} (add {args.seed} to `seeds` to run it)")
    return resolve_run(params, args.task, args.run, args.seed, args.dataset)


def _command(args, *step: str) -> str:
    """The command line of another step with this one's global options (the same params file and
    overrides), for a message that says what to run first."""
    words = ["attnbench"]
    if args.params != "params.yaml":
        words += ["--params", str(args.params)]
    if args.scale:
        words += ["--scale", args.scale]
    for item in args.set:
        words += ["--set", item]
    return " ".join(shlex.quote(w) for w in [*words, *step])


def cmd_validate(args) -> int:
    params = _params(args)
    runs = run_list(params)
    print(f"{args.params}: valid ({len(runs)} runs, scale {params['scale']}, device {params['device']})")
    return 0


def cmd_runs(args) -> int:
    for spec in run_list(_params(args)):
        print(spec.key)
    return 0


def cmd_prepare(args) -> int:
    from . import tasks

    params = _params(args)
    task = tasks.get(args.task)
    fetch = dataset_options(params, args.task, args.dataset).get("fetch")
    if fetch:  # a registry dataset: its files verified in data/raw/<name>/ first (mirror, then network)
        from . import datasets

        datasets.fetch(fetch, paths.RAW, mirror=datasets.mirror_dir(params))
        check_dataset(params, args.task, args.dataset, args.params)   # its files exist now
    out = paths.prepared_dir(args.task, args.dataset)
    t0 = time.perf_counter()
    manifest = task.prepare(for_dataset(params, args.task, args.dataset), out)
    log.info("prepared %s/%s in %.1fs: %s", args.task, args.dataset, time.perf_counter() - t0, manifest)
    return 0


class _JobClock:
    """Per-job overhead, for the report's throughput table: the process's start (from the OS), the moment
    the job is ready to work (imports, parameters, data loaded) and its end, written to
    logs/timing/<task>/<dataset>/<run>/seed<S>.<step>.json when the job succeeds. Not a pipeline output."""

    def __init__(self, args, step: str):
        import psutil

        self.path = paths.timing_json(args.task, args.dataset, args.run, args.seed, step)
        self.times = {"step": step, "started_at": psutil.Process().create_time()}

    def ready(self) -> None:
        self.times["ready_at"] = time.time()
        self.times["startup_s"] = round(self.times["ready_at"] - self.times["started_at"], 3)
        log.info("job start-up (process, imports, parameters, data): %.2fs", self.times["startup_s"])

    def done(self) -> None:
        self.times["finished_at"] = time.time()
        self.times["wall_s"] = round(self.times["finished_at"] - self.times["started_at"], 3)
        aio.write_json(self.path, self.times)


def _setup(params: dict, args, step: str):
    from . import tasks
    from .training import deterministic_kernels, pick_device, set_threads

    clock = _JobClock(args, step)
    set_threads(params["threads"])
    cfg = _run_cfg(params, args)
    task = tasks.get(args.task)
    device = pick_device(params["device"])
    deterministic_kernels(device)
    prepared = paths.prepared_dir(args.task, args.dataset)
    try:
        data = task.load(prepared, cfg)
    except FileNotFoundError as exc:
        if (prepared / "manifest.json").is_file():
            raise  # prepared, but a file is missing: the error names it
        first = _command(args, "prepare", "--task", args.task, "--dataset", args.dataset)
        raise DataError(f"{args.task}/{args.dataset} is not prepared yet ({exc.filename or prepared} does not "
                        f"exist); run `{first}` first") from None
    clock.ready()
    return task, cfg, device, data, clock


def cmd_train(args) -> int:
    params = _params(args)
    task, cfg, device, data, clock = _setup(params, args, "train")
    log.info("training %s/%s/%s seed %d on %s with %d thread(s)", args.task, args.dataset, args.run, args.seed, device,
             params["threads"])
    info = task.fit(data, cfg, paths.run_dir(args.task, args.dataset, args.run, args.seed),
                    paths.state_dir(args.task, args.dataset, args.run, args.seed), device)
    log.info("done: %s", info)
    clock.done()
    return 0


def cmd_evaluate(args) -> int:
    params = _params(args)
    task, cfg, device, data, clock = _setup(params, args, "evaluate")
    out = paths.run_dir(args.task, args.dataset, args.run, args.seed)
    if not (out / "model.pt").is_file():
        first = _command(args, "train", "--task", args.task, "--dataset", args.dataset, "--run", args.run,
                         "--seed", str(args.seed))
        raise DataError(f"{args.task}/{args.dataset}/{args.run} seed {args.seed} is not trained yet "
                        f"({out / 'model.pt'} does not exist); run `{first}` first")
    model = task.load_trained(data, cfg, out, device)
    task.keep_on_device(data, device)
    metrics = task.evaluate(model, data, cfg, device, out)
    metrics = {"task": args.task, "dataset": args.dataset, "run": args.run, "seed": args.seed, "model": cfg["model"],
               "attention": cfg["attention"], "parameters": sum(p.numel() for p in model.parameters()), **metrics}
    aio.write_json(out / "metrics.json", metrics)
    log.info("%s/%s/%s seed %d: %s", args.task, args.dataset, args.run, args.seed,
             {k: metrics.get(k) for k in task.metric_columns})
    clock.done()
    return 0


def _trained_run(args, step: str, use_module):
    """cfg, task, device, data and model of a trained run of `use_module`'s task (`translate` and `score`:
    translation's use.py; `predict`: intent's)."""
    from . import tasks
    from .training import pick_device, set_threads

    if args.task != use_module.TASK:
        raise ParamsError(f"{step}: --task: value {args.task!r} is not allowed; expected: {use_module.TASK}")
    params = _params(args)
    set_threads(params["threads"])
    cfg = _run_cfg(params, args)
    task = tasks.get(args.task)
    device = pick_device(params["device"])
    data, model = use_module.load_run(task, cfg, device, args.params)
    return cfg, task, device, data, model


def _add_inputs(p, dest: str, one: str, verb: str) -> None:
    """The lines a command reads (`_input_lines`): positional arguments, else --input FILE, else standard input."""
    p.add_argument(dest, nargs="*", metavar=one.upper(), help=f"{dest} to {verb} (default: --input, else standard input)")
    p.add_argument("--input", metavar="FILE", help=f"a text file, one {one} a line ('-': standard input)")


def _input_lines(args, what: str) -> list[str]:
    """The lines to translate or classify: the positional arguments, --input FILE (UTF-8, gzip allowed), or
    standard input."""
    from .tasks.common import read_utf8_lines

    if getattr(args, what) and args.input:
        raise ParamsError(f"{args.command}: give {what} as arguments or --input FILE, not both")
    if getattr(args, what):
        return list(getattr(args, what))
    if args.input and args.input != "-":
        return read_utf8_lines(Path(args.input), DataError)
    return sys.stdin.read().splitlines()


def cmd_translate(args) -> int:
    from .tasks.translation import use

    if args.beam < 1:
        raise ParamsError(f"translate: --beam: value {args.beam} is not allowed; expected an integer >= 1")
    lines = _input_lines(args, "sentences")
    cfg, task, device, data, model = _trained_run(args, "translate", use)
    beam = dict(task.beam_settings(cfg), beam_size=args.beam)
    results = use.translate(model, data, lines, cfg, device, beam=beam)
    for item in results:
        print(item.text)
    if args.attention:
        for n, (item, path) in enumerate(zip(results, use.heat_map_paths(args.attention, len(results))), start=1):
            use.heat_map(item, path, title=f"{args.run} seed {args.seed}, sentence {n}")
            log.info("attention of sentence %d: %s", n, path)
    return 0


def cmd_score(args) -> int:
    from .tasks.translation import use

    if bool(args.tsv) == bool(args.source and args.target) or (args.source is None) != (args.target is None):
        raise ParamsError("score: give --source FILE --target FILE, or --tsv FILE")
    cfg, task, device, data, model = _trained_run(args, "score", use)
    source = args.tsv or args.source
    name = use.score_name(source, args.name)
    test = data.with_test(use.read_test_pairs(data, source, args.target))
    out = paths.score_dir(args.task, args.dataset, args.run, args.seed, name)
    metrics = task.evaluate(model, test, cfg, device, out)
    files = {"tsv": str(args.tsv)} if args.tsv else {"source": str(args.source), "target": str(args.target)}
    metrics = {"task": args.task, "dataset": args.dataset, "run": args.run, "seed": args.seed, "model": cfg["model"],
               "attention": cfg["attention"], "scored_files": files, **metrics}
    aio.write_json(out / "metrics.json", metrics)
    shown = {k: metrics[k] for k in ("bleu", "bleu_beam", "chrf", "test_sentences") if k in metrics}
    print(f"{out / 'metrics.json'}: {shown} ({metrics['bleu_signature']})")
    return 0


def cmd_predict(args) -> int:
    import json

    from .tasks.intent import use

    if args.top < 1:
        raise ParamsError(f"predict: --top: value {args.top} is not allowed; expected an integer >= 1")
    lines = _input_lines(args, "utterances")
    cfg, task, device, data, model = _trained_run(args, "predict", use)
    log.info("%s seed %d: token weights are %s", args.run, args.seed, use.weight_kind(task, cfg))
    for item in use.predict(task, model, data, cfg, lines, device, top=args.top):
        print(json.dumps(item.as_dict(), ensure_ascii=False) if args.json else use.render(item))
    return 0


def cmd_aggregate(args) -> int:
    from .report.aggregate import aggregate

    aggregate(for_dataset(_params(args), args.task, args.dataset), args.task)
    return 0


def cmd_notebook(args) -> int:
    from .report.notebook import run_notebook

    run_notebook(for_dataset(_params(args), args.task, args.dataset), args.task)
    return 0


def cmd_report(args) -> int:
    from .report import render_report

    import os

    # --threads as given (Snakemake passes its job's threads), else every CPU (dvc repro, by hand)
    render_report(_params(args), paths.report_html(), workers=args.threads or os.cpu_count() or 1)
    return 0


def cmd_bench_attention(args) -> int:
    from . import kernel_bench as bench

    params = _params(args)
    lengths = [int(v) for v in args.lengths.split(",")] if args.lengths else None
    only = args.only.split(",") if args.only else None
    device = args.device or params["device"]
    bench.main(params, Path(args.out), device=device, lengths=lengths, only=only,
               threads=args.threads or params["threads"])
    return 0


def cmd_dvc_yaml(args) -> int:
    from . import dvcgen

    text = dvcgen.render(_params(args))
    if args.write:
        aio.write_text(Path(args.out), text)
        log.info("wrote %s", args.out)
    else:
        sys.stdout.write(text)
    return 0


def cmd_run_costs(args) -> int:
    from . import priorities as schedule

    costs = schedule.measured_costs()
    if not costs:
        log.error("no Snakemake benchmark files with both a train and an evaluate job under %s", schedule.BENCHMARKS)
        return 1
    if args.write:
        params = _params(args)
        schedule.write_costs(costs, note=f"Measured at scale {params['scale']} from {schedule.BENCHMARKS}/ "
                                         f"({len(costs)} runs).")
        log.info("wrote %s (%d runs)", schedule.COSTS_TSV, len(costs))
    else:
        for (task, run), seconds in sorted(costs.items(), key=lambda kv: -kv[1]):
            print(f"{task}\t{run}\t{seconds:.0f}")
    return 0


EXAMPLES = {  # command -> (example command line, what it does), shown at the end of its --help
    "validate": (("attnbench validate", "check params.yaml"),
                 ("attnbench --params my.yaml --scale smoke validate", "check another file at smoke scale")),
    "runs": (("attnbench runs", "every task/dataset/run/seed of the grid"),
             ("attnbench --set grid=findings runs", "the committed findings' grid")),
    "prepare": (("attnbench prepare --task translation", "the task's embedded synthetic data"),
                ("attnbench prepare --task intent --dataset banking77", "fetch, verify and read a public dataset")),
    "train": (("attnbench train --task translation --run rnn-additive --seed 0", "after `prepare --task translation`"),
              ("attnbench --scale smoke --device cpu train --task intent --run self-attention --seed 0",
               "global options come before the command")),
    "evaluate": (("attnbench evaluate --task translation --run rnn-additive --seed 0", "after `train` of that run"),),
    "translate": (("attnbench translate --task translation --dataset multi30k-en-fr --run rnn-general --seed 0 "
                   "\"A man is riding a bike.\" --attention heat.png", "one sentence, and its attention drawn in heat.png"),
                  ("attnbench translate --task translation --dataset multi30k-en-fr --run transformer --seed 0 "
                   "--beam 5 < sentences.txt > translations.txt", "one sentence a line, beam search of width 5")),
    "score": (("attnbench score --task translation --dataset multi30k-en-fr --run transformer --seed 0 "
               "--source test2017.en.gz --target test2017.fr.gz", "-> data/scores/translation/multi30k-en-fr/"
               "transformer/seed0/test2017/"),
              ("attnbench score --task translation --dataset multi30k-en-fr --run rnn-general --seed 0 "
               "--tsv pairs.tsv --name mine", "source<TAB>reference lines, results under .../mine/")),
    "predict": (("attnbench predict --task intent --dataset banking77 --run self-attention --seed 0 "
                 "\"my card still hasn't arrived\"", "the intent, its probability and each token's weight"),
                ("attnbench predict --task intent --dataset banking77 --run tfidf --seed 0 --json < questions.txt",
                 "one utterance a line, JSON out")),
    "aggregate": (("attnbench aggregate --task translation", "-> data/summary/translation/synthetic.{csv,json}"),
                  ("attnbench aggregate --task load --dataset etth2", "one task on one real dataset")),
    "notebook": (("attnbench notebook --task translation", "after `aggregate --task translation`"),),
    "report": (("attnbench report", "-> reports/index.html"),
               ("attnbench --threads 2 report", "draw the task sections in 2 processes")),
    "run-costs": (("attnbench run-costs", "print each run's measured seconds, longest first"),
                  ("attnbench run-costs --write", "replace workflow/run_costs.tsv with them")),
    "dvc-yaml": (("attnbench dvc-yaml --write", "regenerate dvc.yaml after adding a task or a source file"),),
    "bench-attention": (("attnbench --threads 1 bench-attention", "every mechanism at params.yaml's lengths, on the CPU"),
                        ("attnbench --device cuda bench-attention --lengths 1024,4096,16384",
                         "on a GPU, longer inputs (--device is a global option: before the command)")),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"attnbench {__version__}")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--scale", choices=["smoke", "default", "full"], help="override params.yaml's scale")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override params.yaml's device")
    parser.add_argument("--threads", type=int, help="torch threads for this job; for `report`, the processes drawing task sections "
                             "side by side (default: params.yaml's threads; every CPU for `report`)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any params.yaml key by its dotted path, e.g. tasks.translation.train.lr=0.001")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help, task=False, run=False):
        p = sub.add_parser(name, help=help, description=help, epilog=examples(*EXAMPLES[name]),
                           formatter_class=HelpWithExamples)
        if task:
            p.add_argument("--task", required=True, help="task name from params.yaml (e.g. translation)")
            p.add_argument("--dataset", default="synthetic",
                           help="dataset of the task: synthetic (default) or a name under tasks.<task>.dataset_options")
        if run:
            p.add_argument("--run", required=True, help="run name from tasks.<task>.runs (e.g. rnn-additive)")
            p.add_argument("--seed", required=True, type=int, help="seed from params.yaml's seeds")
        p.set_defaults(func=func)
        return p

    add("validate", cmd_validate, "check params.yaml against its schema and the registries")
    add("runs", cmd_runs, "list every task/run/seed of the grid")
    add("prepare", cmd_prepare, "generate, or fetch and read, a task's dataset into data/prepared/<task>/<dataset>/", task=True)
    add("train", cmd_train, "train one run (resumes from its last epoch checkpoint)", task=True, run=True)
    add("evaluate", cmd_evaluate, "evaluate one trained run into its metrics.json and exports", task=True, run=True)
    p = add("translate", cmd_translate, "translate sentences with a trained translation run", task=True, run=True)
    p.description = ("Translate sentences with a trained run: from the arguments, from --input FILE, or one a line "
                     "from standard input; one translation a line on standard output. The input is preprocessed "
                     "as the dataset's prepare step did (e.g. Moses tokenisation and lowercasing) and the output "
                     "detokenised as evaluation does.")
    _add_inputs(p, "sentences", "sentence", "translate")
    p.add_argument("--beam", type=int, default=1, metavar="K", help="beam search of width K (default 1: greedy; the "
                                                                    "length penalty of the run's eval settings)")
    p.add_argument("--attention", metavar="DIR_OR_FILE", help="write a PNG heat map of the attention per sentence: "
                                                              "FILE.png (FILE-1.png, ... for several) or DIR/sentence-N.png")
    p = add("predict", cmd_predict, "classify utterances with a trained intent run", task=True, run=True)
    p.description = ("Classify utterances with a trained intent run: from the arguments, from --input FILE, or one a "
                     "line from standard input. Each gets a line: the intent, its probability (a linear SVM's score "
                     "where the run has no probabilities), the next most likely intents, and the tokens as the model "
                     "read them with the weight its pooling gave each (* marks a word outside the vocabulary). The "
                     "input is tokenised as the dataset's prepare step did.")
    _add_inputs(p, "utterances", "utterance", "classify")
    p.add_argument("--top", type=int, default=3, metavar="K", help="show the K most likely intents (default 3)")
    p.add_argument("--json", action="store_true", help="one JSON object a line (text, intent, probability, score, "
                                                        "alternatives, tokens, unknown, weights)")
    p = add("score", cmd_score, "score a trained translation run on other parallel test files", task=True, run=True)
    p.description = ("Score a trained run on any parallel test files without retraining: the same preprocessing, "
                     "decoding and sacreBLEU signature as `evaluate`, written to data/scores/<task>/<dataset>/<run>/"
                     "seed<S>/<name>/ (the run's own metrics are never touched). Prepared data that do not match "
                     "the run's training config are refused.")
    p.add_argument("--source", metavar="FILE", help="source sentences, one a line (gzip allowed)")
    p.add_argument("--target", metavar="FILE", help="their reference translations, line-aligned")
    p.add_argument("--tsv", metavar="FILE", help="instead of --source/--target: source<TAB>reference lines")
    p.add_argument("--name", help="the results' folder name (default: the source file's name up to its first dot)")
    add("aggregate", cmd_aggregate, "collect a task's runs on one dataset into data/summary/<task>/<dataset>.{csv,json}", task=True)
    add("notebook", cmd_notebook, "execute a task's analysis notebook with papermill and export it to HTML", task=True)
    add("report", cmd_report, "render reports/index.html from every task's results")
    p = sub.add_parser("run-costs", help="each run's train + evaluate seconds from logs/benchmarks/ (the order "
                                         "Snakemake starts runs in: longest first)",
                       epilog=examples(*EXAMPLES["run-costs"]), formatter_class=HelpWithExamples,
                       description="Print each run's train + evaluate seconds (mean over seeds) from this "
                                   "checkout's Snakemake benchmark files; with --write, replace "
                                   "workflow/run_costs.tsv, from which Snakemake orders the runs longest first.")
    p.add_argument("--write", action="store_true", help="write workflow/run_costs.tsv instead of printing")
    p.set_defaults(func=cmd_run_costs)
    p = sub.add_parser("dvc-yaml", help="print (or --write) the dvc.yaml that params.yaml and the package describe",
                       epilog=examples(*EXAMPLES["dvc-yaml"]), formatter_class=HelpWithExamples,
                       description="Generate dvc.yaml from params.yaml (every task's prepare/train/evaluate/aggregate/"
                                   "notebook stages over its datasets, runs and seeds) and the package's files (the code "
                                   "dependencies). Run it with --write after adding a task or a source file; the tests "
                                   "fail while the committed dvc.yaml is stale.")
    p.add_argument("--write", action="store_true", help="write the file instead of printing it")
    p.add_argument("--out", default="dvc.yaml", help="where --write writes (default: %(default)s)")
    p.set_defaults(func=cmd_dvc_yaml)
    from . import datasets

    datasets.add_cli(sub)
    from .report import findings

    findings.add_cli(sub)
    p = sub.add_parser("bench-attention", help="time forward+backward and peak memory of every attention mechanism",
                       description="Time forward+backward and measure peak memory of every registered attention "
                                   "mechanism and torch's SDPA / nn.MultiheadAttention, per length "
                                   "(params.yaml's bench section); writes a CSV and a JSON summary beside it. "
                                   "The device and the thread count are the global options --device and "
                                   "--threads, given before the command.",
                       epilog=examples(*EXAMPLES["bench-attention"]), formatter_class=HelpWithExamples)
    p.add_argument("--out", default="data/bench/attention.csv", help="CSV to write (default: %(default)s)")
    p.add_argument("--lengths", help="comma-separated lengths instead of bench.scales.<scale>.lengths "
                                     "(e.g. 1024,4096,16384 on a GPU: see the examples)")
    p.add_argument("--only", help="comma-separated entry names to run (default: all)")
    p.set_defaults(func=cmd_bench_attention)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        return args.func(args)
    except ParamsError as exc:
        print(f"attnbench: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one clear line for users; the traceback goes to the log
        from .errors import DataError, OutputError
        from .training import TrainingError

        if isinstance(exc, (DataError, OutputError, TrainingError, FileNotFoundError, KeyError)):
            log.debug("details", exc_info=True)
            # a KeyError's str() is the repr of its message: print the message itself, without the quotes
            text = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else exc
            print(f"attnbench: error: {text}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
