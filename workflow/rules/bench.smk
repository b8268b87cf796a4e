# Attention kernel benchmark: time and peak memory of every registered mechanism per length
# (params.yaml `bench`), read by the report's Performance section. Its own rule, so the grid never
# waits for it; it asks for every core it is given to keep other jobs off them while it times.


rule bench_attention:
    input:
        SRC,
    output:
        csv="data/bench/attention.csv",
        json="data/bench/attention.json",
    params:
        bench=lambda w: json.dumps(PARAMS.get("bench", {}), sort_keys=True),
        scale=PARAMS["scale"],
    threads: _every_core()
    # before the runs: started after them it would wait for every core while the last run keeps one
    priority: 1_000_000
    log:
        "logs/bench/attention.log",
    shell:
        "{CLI} --threads 1 bench-attention --out {output.csv} > {log} 2>&1"
