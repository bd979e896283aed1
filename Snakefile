# seqpref: sequential preference alignment, scored pair by pair against a fixed base model.
# Run `snakemake --cores N` (the lab study in config/config.yaml); see README.md.

from snakemake.utils import min_version

min_version("9.20")


# the lab study by default; a config given with --configfile (e.g. config/paper.yaml) replaces it
# rather than being merged into it (list config/config.yaml first to layer a file on the lab)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/controls.smk"
include: "workflow/rules/posthoc.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
