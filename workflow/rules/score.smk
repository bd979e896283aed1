# Every objective's eval pairs scored after every stage, against the base model.


rule score_stage:
    """Every objective's eval pairs under stage k's adapter, against the base model (score_sham_stage and
    score_front are this rule with another adapter)."""
    input:
        unpack(lambda wc: adapter_files(RUN.format(**wc), wc.stage)),
        base=base_inputs,
        eval=eval_inputs,
    output:
        f"{RESULTS}/scores/{RUN}/stage{{stage}}.parquet",
    log:
        f"{RESULTS}/logs/score_stage/{RUN}/stage{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score_stage/{RUN}/stage{{stage}}.tsv"
    wildcard_constraints:
        stage="[1-9][0-9]*",
    conda:
        ENV
    threads: 1
    resources:
        **gpu_resources("score"),
        share_prompt=share_prompt_flag(),
    params:
        base=base_model(),
        adapter=lambda wc, input: os.path.dirname(input.weights),
        objectives=eval_objective_args,
        options=score_options(),
        run=lambda wc: as_json(
            {
                **run_of(wc),
                "stage": int(wc.stage),
                "trained_objective": plan.trained_at(wc.method, wc.order, int(wc.stage)),
            }
        ),
    shell:
        step("seqpref.score", "gpu") + " {output} --run {params.run:q} {params.objectives}"
        " --adapter {params.adapter} --base {params.base} --options {params.options:q}"
        " --share-prompt {resources.share_prompt} > {log} 2>&1"


rule score_base_stage:
    """Stage 0: the base model itself, scored from the base log-probs (no forward pass)."""
    input:
        eval=eval_inputs,
    output:
        f"{RESULTS}/scores/{RUN}/stage0.parquet",
    log:
        f"{RESULTS}/logs/score_stage/{RUN}/stage0.log",
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        objectives=eval_objective_args,
        options=score_options(),
        run=lambda wc: as_json({**run_of(wc), "stage": 0, "trained_objective": None}),
    shell:
        step("seqpref.score", "torch")
        + " {output} --run {params.run:q} {params.objectives} --options {params.options:q} > {log} 2>&1"
