# One rule per figure: its inputs are the table it draws, the shared style and its code (its module and
# the figure modules it imports), and its params are only its own options, so changing one figure
# reruns that figure alone, and changing a shared module reruns the figures that import it.

from seqpref.figures import sources as figure_sources

# figure -> (table it draws, report category)
FIGURE_SOURCES = {
    "method_comparison": ("transfer", "Methods"),
    "margin_trajectory": ("summary", "Methods"),
    "transfer_heatmap": ("summary", "Transfer and degradation"),
    "pair_scatter": ("pairs", "Pairs"),
    "flip_plot": ("pairs", "Pairs"),
    "quartile_bars": ("quartiles", "Pairs"),
    "training_curves": ("training", "Training"),
    "gradient_cosine": ("diagnostics", "Mechanisms"),
    "adapter_movement": ("movement", "Mechanisms"),
    "sham_control": ("controls", "Transfer and degradation"),
    "pareto_front": ("pareto", "Methods"),
}


for _figure, (_table, _category) in FIGURE_SOURCES.items():

    rule:
        name:
            f"plot_{_figure}"
        input:
            table=f"{RESULTS}/tables/{_table}.parquet",
            style=str(FIGURE_CODE / "seqpref.mplstyle"),
            code=figure_sources.figure_code(_figure),  # its module and the shared ones it imports
        output:
            png=report(
                f"{RESULTS}/figures/{_figure}.png",
                caption=f"../report/{_figure}.rst",
                category=_category,
            ),
            pdf=f"{RESULTS}/figures/{_figure}.pdf",
        log:
            f"{RESULTS}/logs/figures/{_figure}.log",
        localrule: True
        conda:
            ENV
        params:
            module=f"seqpref.figures.{_figure}",
            options=as_json(config["figures"][_figure]),
        shell:
            step("{params.module}") + " {input.table} {input.style} {output.png} {output.pdf}"
            " --options {params.options:q} > {log} 2>&1"
