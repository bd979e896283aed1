# One rule per figure: its inputs are the table it draws, the shared style and its own code, and its
# params are only its own options, so changing one figure reruns that figure alone.


localrules:
    plot_transfer_heatmap,
    plot_pair_scatter,
    plot_training_curves,


def figure_rule_inputs(name, table):
    return {
        "table": f"{RESULTS}/tables/{table}.parquet",
        "style": str(FIGURE_CODE / "seqpref.mplstyle"),
        "code": str(FIGURE_CODE / f"{name}.py"),
    }


rule plot_transfer_heatmap:
    input:
        **figure_rule_inputs("transfer_heatmap", "summary"),
    output:
        png=report(
            f"{RESULTS}/figures/transfer_heatmap.png",
            caption="../report/transfer_heatmap.rst",
            category="Transfer and degradation",
        ),
        pdf=f"{RESULTS}/figures/transfer_heatmap.pdf",
    params:
        options=as_json(config["figures"]["transfer_heatmap"]),
    log:
        f"{RESULTS}/logs/figures/transfer_heatmap.log",
    shell:
        "{PYTHON} -m seqpref.figures.transfer_heatmap {input.table} {input.style} {output.png} {output.pdf}"
        " --options {params.options:q} > {log} 2>&1"


rule plot_pair_scatter:
    input:
        **figure_rule_inputs("pair_scatter", "pairs"),
    output:
        png=report(
            f"{RESULTS}/figures/pair_scatter.png",
            caption="../report/pair_scatter.rst",
            category="Pairs",
        ),
        pdf=f"{RESULTS}/figures/pair_scatter.pdf",
    params:
        options=as_json(config["figures"]["pair_scatter"]),
    log:
        f"{RESULTS}/logs/figures/pair_scatter.log",
    shell:
        "{PYTHON} -m seqpref.figures.pair_scatter {input.table} {input.style} {output.png} {output.pdf}"
        " --options {params.options:q} > {log} 2>&1"


rule plot_training_curves:
    input:
        **figure_rule_inputs("training_curves", "training"),
    output:
        png=report(
            f"{RESULTS}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
        pdf=f"{RESULTS}/figures/training_curves.pdf",
    params:
        options=as_json(config["figures"]["training_curves"]),
    log:
        f"{RESULTS}/logs/figures/training_curves.log",
    shell:
        "{PYTHON} -m seqpref.figures.training_curves {input.table} {input.style} {output.png} {output.pdf}"
        " --options {params.options:q} > {log} 2>&1"
