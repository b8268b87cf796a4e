# One rule per pipeline step; each is one `attnbench` command with a log (and a benchmark for
# the jobs whose time and memory the report shows).


rule prepare:
    input:
        SRC,
        SCHEMAS,
    output:
        directory("data/prepared/{task}"),
    params:
        cfg=data_config,
    log:
        "logs/{task}/prepare.log",
    shell:
        "{CLI} prepare --task {wildcards.task} > {log} 2>&1"


rule train:
    input:
        SRC,
        "data/prepared/{task}",
    output:
        model="data/results/{task}/{run}/seed{seed}/model.pt",
        log_csv="data/results/{task}/{run}/seed{seed}/train_log.csv",
        info="data/results/{task}/{run}/seed{seed}/train_info.json",
    params:
        cfg=train_config,
    threads: PARAMS["threads"]
    priority: run_priority
    resources:
        gpu=GPU,
    log:
        "logs/{task}/{run}/seed{seed}.train.log",
    benchmark:
        "logs/benchmarks/{task}/{run}/seed{seed}.train.tsv"
    shell:
        "{CLI} --threads {threads} train --task {wildcards.task} --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


rule evaluate:
    input:
        SRC,
        "data/prepared/{task}",
        model="data/results/{task}/{run}/seed{seed}/model.pt",
    output:
        metrics="data/results/{task}/{run}/seed{seed}/metrics.json",
        attention="data/results/{task}/{run}/seed{seed}/attention.npz",
        samples="data/results/{task}/{run}/seed{seed}/samples.jsonl",
    params:
        cfg=run_config,
    threads: PARAMS["threads"]
    priority: run_priority
    resources:
        gpu=GPU,
    log:
        "logs/{task}/{run}/seed{seed}.evaluate.log",
    benchmark:
        "logs/benchmarks/{task}/{run}/seed{seed}.evaluate.tsv"
    shell:
        "{CLI} --threads {threads} evaluate --task {wildcards.task} --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


rule aggregate:
    input:
        SRC,
        REPORT_SRC,
        lambda w: run_files(w.task, ("metrics.json", "train_info.json", "train_log.csv")),
    output:
        csv="data/summary/{task}.csv",
        json="data/summary/{task}.json",
    log:
        "logs/{task}/aggregate.log",
    shell:
        "{CLI} aggregate --task {wildcards.task} > {log} 2>&1"


rule notebook:
    input:
        SRC,
        REPORT_SRC,
        "workflow/notebooks/{task}.ipynb",
        "data/summary/{task}.csv",
    output:
        ipynb="reports/notebooks/{task}.ipynb",
        html="reports/notebooks/{task}.html",
    log:
        "logs/{task}/notebook.log",
    shell:
        "{CLI} notebook --task {wildcards.task} > {log} 2>&1"


rule report:
    input:
        SRC,
        REPORT_SRC,
        expand("data/summary/{task}.csv", task=TASKS),
        expand("reports/notebooks/{task}.html", task=TASKS),
        [f for t in TASKS for f in run_files(t, ("attention.npz", "samples.jsonl"))],
        "data/bench/attention.csv",
    output:
        "reports/index.html",
    threads: _every_core()  # the last step: its task sections are drawn side by side, one process per core
    log:
        "logs/report.log",
    shell:
        "{CLI} --threads {threads} report > {log} 2>&1"
