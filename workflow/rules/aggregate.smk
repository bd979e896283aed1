# Pair scores and training logs into the tables every figure reads (Parquet in, Parquet out).


localrules:
    aggregate,
    pareto,
    collect_training,
    collect_diagnostics,
    collect_movement,


rule aggregate:
    input:
        **sham_train_logs(),
        scores=score_files(),
        sham=sham_score_files(),
    output:
        pairs=f"{RESULTS}/tables/pairs.parquet",
        summary=f"{RESULTS}/tables/summary.parquet",
        transfer=f"{RESULTS}/tables/transfer.parquet",
        quartiles=f"{RESULTS}/tables/quartiles.parquet",
        controls=f"{RESULTS}/tables/controls.parquet",
    log:
        f"{RESULTS}/logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    conda:
        ENV
    params:
        options=as_json(config["labels"]),
        sham=lambda wc, input: (
            (
                f"--sham {' '.join(input.sham)} --sham-logs {' '.join(input.sham_logs)}"
                f" --stage-logs {' '.join(input.stage_logs)}"
            )
            if input.sham
            else ""
        ),
    shell:
        step("seqpref.aggregate") + " summary --pairs {output.pairs} --summary {output.summary}"
        " --transfer {output.transfer} --quartiles {output.quartiles} --controls {output.controls}"
        " {input.scores} {params.sham} --options {params.options:q} > {log} 2>&1"


rule verdicts:
    """The verdict table the report opens with: per run, objective and stage after its own, the change
    with its interval and what it covers, the label, the control's label or why it is not valid, and the
    budget spent through that stage."""
    input:
        summary=f"{RESULTS}/tables/summary.parquet",
        controls=f"{RESULTS}/tables/controls.parquet",
        training=f"{RESULTS}/tables/training.parquet",
    output:
        report(
            f"{RESULTS}/tables/verdicts.tsv",
            caption="../report/verdicts.rst",
            category="1. Verdicts",
        ),
    log:
        f"{RESULTS}/logs/verdicts.log",
    benchmark:
        f"{RESULTS}/benchmarks/verdicts.tsv"
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        step("seqpref.verdicts") + " {input.summary} {input.controls} {output} --training {input.training} > {log} 2>&1"


rule pareto:
    """Every run's final point on a two-objective setting's objectives, the merge front, dominance and
    each method's hypervolume against the base (seqpref.pareto)."""
    input:
        pairs=f"{RESULTS}/tables/pairs.parquet",
        training=f"{RESULTS}/tables/training.parquet",
        front=front_score_files(),
    output:
        points=f"{RESULTS}/tables/pareto.parquet",
        hypervolume=f"{RESULTS}/tables/hypervolume.parquet",
    log:
        f"{RESULTS}/logs/pareto.log",
    conda:
        ENV
    params:
        front=lambda wc, input: " ".join(f"--front {path} {lam}" for path, lam in zip(input.front, front_lambdas())),
        objectives=as_json({setting: plan.objectives(config, setting) for setting in config["settings"]}),
        options=as_json(config["labels"]),
    shell:
        step("seqpref.pareto") + " {input.pairs} {params.front} --objectives {params.objectives:q}"
        " --points {output.points} --hypervolume {output.hypervolume} --options {params.options:q}"
        " --training {input.training} > {log} 2>&1"


rule collect_training:
    input:
        train_logs(),
    output:
        f"{RESULTS}/tables/training.parquet",
    log:
        f"{RESULTS}/logs/collect_training.log",
    conda:
        ENV
    shell:
        step("seqpref.aggregate") + " collect training {output} {input} > {log} 2>&1"


rule collect_diagnostics:
    input:
        diagnostics_files(),
    output:
        f"{RESULTS}/tables/diagnostics.parquet",
    log:
        f"{RESULTS}/logs/collect_diagnostics.log",
    conda:
        ENV
    shell:
        step("seqpref.aggregate") + " collect diagnostics {output} {input} > {log} 2>&1"


rule collect_movement:
    input:
        movement_files(),
    output:
        f"{RESULTS}/tables/movement.parquet",
    log:
        f"{RESULTS}/logs/collect_movement.log",
    conda:
        ENV
    shell:
        step("seqpref.aggregate") + " collect movement {output} {input} > {log} 2>&1"
