# One rule per pipeline step; each is one `attnbench` command with a log (and a benchmark for
# the jobs whose time and memory the report shows).


rule fetch:
    output:
        directory("data/raw/{name}"),
    log:
        "logs/fetch/{name}.log",
    shell:
        "{CLI} data fetch {wildcards.name} > {log} 2>&1"


rule prepare:
    input:
        SRC,
        SCHEMAS,
        fetched,
    output:
        directory("data/prepared/{task}/{dataset}"),
    params:
        cfg=data_config,
    log:
        "logs/{task}/{dataset}/prepare.log",
    shell:
        "{CLI} prepare --task {wildcards.task} --dataset {wildcards.dataset} > {log} 2>&1"


rule train:
    input:
        SRC,
        "data/prepared/{task}/{dataset}",
    output:
        model="data/results/{task}/{dataset}/{run}/seed{seed}/model.pt",
        log_csv="data/results/{task}/{dataset}/{run}/seed{seed}/train_log.csv",
        info="data/results/{task}/{dataset}/{run}/seed{seed}/train_info.json",
    params:
        cfg=train_config,
    threads: PARAMS["threads"]
    priority: run_priority
    resources:
        gpu=GPU,
    log:
        "logs/{task}/{dataset}/{run}/seed{seed}.train.log",
    benchmark:
        "logs/benchmarks/{task}/{dataset}/{run}/seed{seed}.train.tsv"
    shell:
        "{CLI} --threads {threads} train --task {wildcards.task} --dataset {wildcards.dataset} --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


rule evaluate:
    input:
        SRC,
        "data/prepared/{task}/{dataset}",
        model="data/results/{task}/{dataset}/{run}/seed{seed}/model.pt",
    output:
        metrics="data/results/{task}/{dataset}/{run}/seed{seed}/metrics.json",
        attention="data/results/{task}/{dataset}/{run}/seed{seed}/attention.npz",
        samples="data/results/{task}/{dataset}/{run}/seed{seed}/samples.jsonl",
    params:
        cfg=run_config,
    threads: PARAMS["threads"]
    priority: run_priority
    resources:
        gpu=GPU,
    log:
        "logs/{task}/{dataset}/{run}/seed{seed}.evaluate.log",
    benchmark:
        "logs/benchmarks/{task}/{dataset}/{run}/seed{seed}.evaluate.tsv"
    shell:
        "{CLI} --threads {threads} evaluate --task {wildcards.task} --dataset {wildcards.dataset} --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


rule aggregate:
    input:
        SRC,
        REPORT_SRC,
        lambda w: run_files(w.task, w.dataset, ("metrics.json", "train_info.json", "train_log.csv")),
    output:
        csv="data/summary/{task}/{dataset}.csv",
        json="data/summary/{task}/{dataset}.json",
    log:
        "logs/{task}/{dataset}/aggregate.log",
    shell:
        "{CLI} aggregate --task {wildcards.task} --dataset {wildcards.dataset} > {log} 2>&1"


rule notebook:
    input:
        SRC,
        REPORT_SRC,
        notebook_source,
        "data/summary/{task}/{dataset}.csv",
    output:
        ipynb="reports/notebooks/{task}/{dataset}.ipynb",
        html="reports/notebooks/{task}/{dataset}.html",
    log:
        "logs/{task}/{dataset}/notebook.log",
    shell:
        "{CLI} notebook --task {wildcards.task} --dataset {wildcards.dataset} > {log} 2>&1"


rule report:
    input:
        SRC,
        REPORT_SRC,
        [f"data/summary/{t}/{d}.csv" for t, d in SLOTS],
        [f"reports/notebooks/{t}/{d}.html" for t, d in SLOTS],
        [f for t, d in SLOTS for f in run_files(t, d, ("attention.npz", "samples.jsonl"))],
        "data/bench/attention.csv",
        glob("benchmarks/results/*/summary.json"),  # benchmarks/gpu.sh's committed CPU/GPU figures
        glob("results/findings/*/*.json"),  # the committed findings the report's Findings section shows
    output:
        "reports/index.html",
    threads: _every_core()  # the last step: its task sections are drawn side by side, one process per core
    log:
        "logs/report.log",
    shell:
        "{CLI} --threads {threads} report > {log} 2>&1"


# The findings rules exist only under `--config grid=findings` (make findings): in the default grid the
# committed results/findings/ files are inputs of the report, never outputs to regenerate from its runs.
if PARAMS.get("grid") == "findings":

    rule findings:
        input:
            SRC,
            REPORT_SRC,
            lambda w: run_files(w.task, w.dataset, ("metrics.json", "train_info.json", "samples.jsonl")),
        output:
            finding="results/findings/{task}/{dataset}.json",
            per_item="results/findings/{task}/{dataset}.items.json.gz",
        log:
            "logs/{task}/{dataset}/findings.log",
        shell:
            "{CLI} findings collect --task {wildcards.task} --dataset {wildcards.dataset} > {log} 2>&1"


    # `make findings` (with --config grid=findings): every finding of the grid, or one task's (findings_<task>)
    rule findings_all:
        input:
            [f"results/findings/{t}/{d}.json" for t, d in SLOTS],


    for _task in TASKS:

        rule:
            name:
                f"findings_{_task}"
            input:
                [f"results/findings/{_task}/{d}.json" for d in dataset_names(PARAMS, _task)],
