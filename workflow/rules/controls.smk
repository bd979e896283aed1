# The sham stage (controls.sham): stage k retrained on its objective's train pairs with a seeded
# random half of them swapped, continuing the same stage k-1 adapter (by default against the stage k-1
# model's log-probs as its DPO reference: controls.sham_design), and scored like any stage, so that the
# aggregate can tell a change caused by stage k's preferences from drift (seqpref.controls).


rule prepare_sham:
    """Stage k's train pairs with a seeded half swapped, and their base log-probs swapped with them."""
    input:
        pairs=lambda wc: data_path(wc.setting, wc.objective, "train"),
        base_logps=lambda wc: base_logps_path(wc.setting, wc.objective, "train"),
    output:
        pairs=f"{RESULTS}/sham/{{setting}}/{{objective}}/seed{{seed}}/train.parquet",
        base_logps=f"{RESULTS}/sham/{{setting}}/{{objective}}/seed{{seed}}/base_logps.parquet",
    log:
        f"{RESULTS}/logs/prepare_sham/{{setting}}/{{objective}}/seed{{seed}}.log",
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        step("seqpref.controls") + " sham {input.pairs} {input.base_logps} {output.pairs} {output.base_logps}"
        " --seed {wildcards.seed} > {log} 2>&1"


rule sham_reference:
    """The sham's DPO reference (controls.sham_design previous_reference): the stage k-1 model's log-probs of
    the sham's train pairs, so that every sham pair starts at margin 0."""
    input:
        unpack(sham_reference_inputs),
    output:
        f"{RESULTS}/sham/{RUN}/reference{{stage}}.parquet",
    log:
        f"{RESULTS}/logs/sham_reference/{RUN}/reference{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sham_reference/{RUN}/reference{{stage}}.tsv"
    wildcard_constraints:
        method="|".join(methods.names(methods.SEQUENTIAL)),
        stage="[2-9]|[1-9][0-9]+",
    conda:
        ENV
    resources:
        **gpu_resources("logps"),
        share_prompt=share_prompt_flag(),
    params:
        base=base_model(),
        adapter=lambda wc, input: os.path.dirname(input.weights),
        options=base_logps_options,
    shell:
        step("seqpref.logps", "gpu") + " {params.base} {input.pairs} {output} --adapter {params.adapter}"
        " --options {params.options:q} --share-prompt {resources.share_prompt} > {log} 2>&1"


rule train_sham_stage:
    """The sham of sequential stage k >= 2: same options, steps and previous adapter as stage k; with
    controls.sham_match_distance, its learning rate scaled after a pilot so that it moves as far as stage k."""
    input:
        unpack(sham_train_inputs),
    output:
        **trained_outputs("sham"),
    log:
        f"{RESULTS}/logs/train_stage/{RUN}/sham{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_stage/{RUN}/sham{{stage}}.tsv"
    wildcard_constraints:
        method="|".join(methods.names(methods.SEQUENTIAL)),
        stage="[2-9]|[1-9][0-9]+",
    conda:
        ENV
    threads: 1
    resources:
        **train_resources(),
    params:
        **train_params("sham"),
        previous=lambda wc, input: os.path.dirname(input.previous),
        earlier=lambda wc: earlier_objective_args(wc) if methods.get(wc.method).batches else "",
        match=lambda wc, input: f"--match-distance {input.real_log}" if "real_log" in input.keys() else "",
        run=lambda wc: stage_run(wc, arm="sham"),
    shell:
        step("seqpref.train", "gpu")
        + " {params.base} {input.pairs} {input.base_logps} {params.out_dir} {output.train_log}"
        " --previous {params.previous} --options {params.options:q} --method-options {params.method_options:q}"
        " --run {params.run:q} {params.earlier} {params.match}"
        " --checkpoint-dir {params.checkpoint_dir} --checkpoint-every {resources.checkpoint_every}"
        " --share-prompt {resources.share_prompt} > {log} 2>&1"


use rule score_stage as score_sham_stage with:
    """The sham stage k's adapter scored as stage k's."""
    input:
        unpack(lambda wc: sham_adapter_files(RUN.format(**wc), wc.stage)),
        base=base_inputs,
        eval=eval_inputs,
    output:
        f"{RESULTS}/scores/{RUN}/sham{{stage}}.parquet",
    log:
        f"{RESULTS}/logs/score_stage/{RUN}/sham{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score_stage/{RUN}/sham{{stage}}.tsv"
    wildcard_constraints:
        method="|".join(methods.names(methods.SEQUENTIAL)),
        stage="[2-9]|[1-9][0-9]+",
