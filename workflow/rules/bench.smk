# Attention kernel benchmark: time and peak memory of every registered mechanism per length
# (params.yaml `bench`), read by the report's Performance section. Its own rule, so the grid never
# waits for it. One core, started first: it times CPU time with one thread (less inflated by a job on
# another core than the wall time), records the load average, and takes the ratios it checks from
# pairs timed seconds apart, so the grid's jobs run on the other cores meanwhile (issue 23: on 2 cores
# it held both for 9-10 minutes while one thread worked).


rule bench_attention:
    input:
        SRC,
    output:
        csv="data/bench/attention.csv",
        json="data/bench/attention.json",
    params:
        bench=lambda w: json.dumps(PARAMS.get("bench", {}), sort_keys=True),
        scale=PARAMS["scale"],
    threads: 1
    # before the runs: at the end, the report would wait for its 10 minutes while the last jobs end
    priority: 1_000_000
    log:
        "logs/bench/attention.log",
    shell:
        "{CLI} --threads 1 bench-attention --out {output.csv} > {log} 2>&1"
