# attnbench pipeline: prepare -> train -> evaluate -> aggregate -> notebook -> report.
#
#   snakemake --cores 8 --resources gpu=1          # the grid of params.yaml
#   snakemake --cores 2 --config scale=smoke       # the whole grid in minutes
#   snakemake --profile workflow/profiles/slurm    # the same DAG on a SLURM cluster
#
# Every rule calls the `attnbench` CLI; no task logic lives here.
from glob import glob

from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/pipeline.smk"
include: "workflow/rules/bench.smk"


rule all:
    input:
        "reports/index.html",
    default_target: True
