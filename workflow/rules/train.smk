# One LoRA stage: stage k continues stage k-1's adapter; the reference is always the base model.


rule train_stage:
    """A sequential stage (dpo, spo, replay): the stage's objective only (replay: and a share of the earlier ones')."""
    input:
        unpack(train_inputs),
    output:
        **trained_outputs("stage"),
        diagnostics=f"{RESULTS}/diagnostics/{RUN}/stage{{stage}}.parquet",
    log:
        f"{RESULTS}/logs/train_stage/{RUN}/stage{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_stage/{RUN}/stage{{stage}}.tsv"
    wildcard_constraints:
        method="|".join(methods.names(methods.SEQUENTIAL)),
    conda:
        ENV
    threads: 1
    resources:
        **train_resources(),
    params:
        **train_params("stage"),
        previous=lambda wc, input: f"--previous {os.path.dirname(input.previous)}" if "previous" in input.keys() else "",
        earlier=earlier_objective_args,
        diagnostics=as_json(config["diagnostics"]),
        run=lambda wc: stage_run(wc),
    shell:
        step("seqpref.train", "gpu")
        + " {params.base} {input.pairs} {input.base_logps} {params.out_dir} {output.train_log}"
        " {params.previous} --options {params.options:q} --method-options {params.method_options:q}"
        " --run {params.run:q} {params.earlier}"
        " --diagnostics {params.diagnostics:q} --diagnostics-out {output.diagnostics}"
        " --checkpoint-dir {params.checkpoint_dir} --checkpoint-every {resources.checkpoint_every}"
        " --share-prompt {resources.share_prompt} > {log} 2>&1"


rule train_joint_stage:
    """A joint stage (mix, alright, maxright): every objective, the sequential stage's step budget."""
    input:
        unpack(joint_train_inputs),
    output:
        **trained_outputs("stage"),
    log:
        f"{RESULTS}/logs/train_stage/{RUN}/stage{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_stage/{RUN}/stage{{stage}}.tsv"
    wildcard_constraints:
        method="|".join(methods.names(methods.JOINT)),
    conda:
        ENV
    threads: 1
    resources:
        **train_resources(),
    params:
        **train_params("stage"),
        previous=lambda wc, input: f"--previous {os.path.dirname(input.previous)}" if "previous" in input.keys() else "",
        objectives=joint_objective_args,
        run=lambda wc: as_json({**run_of(wc), "stage": int(wc.stage), "objective": plan.JOINT}),
    shell:
        step("seqpref.joint", "gpu") + " {params.base} {params.out_dir} {output.train_log} --stage {wildcards.stage}"
        " {params.objectives} {params.previous} --options {params.options:q}"
        " --method-options {params.method_options:q}"
        " --run {params.run:q} --checkpoint-dir {params.checkpoint_dir} --checkpoint-every {resources.checkpoint_every}"
        " --share-prompt {resources.share_prompt} > {log} 2>&1"


rule adapter_movement:
    """How far each stage moved the effective LoRA update ΔW = (α/r)·B·A, per module (adapters only)."""
    input:
        lambda wc: [adapter_files(RUN.format(**wc), k)["weights"] for k in range(1, plan.n_stages(wc.order) + 1)],
    output:
        f"{RESULTS}/movement/{RUN}.parquet",
    log:
        f"{RESULTS}/logs/adapter_movement/{RUN}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        adapters=lambda wc, input: " ".join(os.path.dirname(f) for f in input),
        run=lambda wc: as_json(run_of(wc)),
    shell:
        step("seqpref.movement", "torch") + " {output} {params.adapters} --run {params.run:q} > {log} 2>&1"
