# Post-hoc methods (merge): stages built from other runs' adapters, scored like any stage.


rule merge_stage:
    """A merge run's stage k: the single-objective adapters of the first k objectives merged (seqpref.methods.merge)."""
    input:
        adapters=merge_stage_adapters,
        base=base_inputs,
    output:
        weights=f"{RESULTS}/adapters/{RUN}/stage{{stage}}/adapter_model.safetensors",
        config=f"{RESULTS}/adapters/{RUN}/stage{{stage}}/adapter_config.json",
    log:
        f"{RESULTS}/logs/merge_stage/{RUN}/stage{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/merge_stage/{RUN}/stage{{stage}}.tsv"
    wildcard_constraints:
        method="merge",
        stage="[1-9][0-9]*",
    conda:
        ENV
    resources:
        **gpu_resources("merge"),
    params:
        base=base_model(),
        out_dir=lambda wc, output: os.path.dirname(output.weights),
        adapters=lambda wc, input: " ".join(f"--adapter {os.path.dirname(p)}" for p in input.adapters),
        weights=lambda wc: as_json(merge_weights(stage=int(wc.stage))),
        options=as_json(merge_options()),
        run=lambda wc: as_json({**run_of(wc), "stage": int(wc.stage)}),
    shell:
        step("seqpref.methods.merge", "gpu") + " {params.base} {params.out_dir} {params.adapters}"
        " --weights {params.weights:q} --options {params.options:q} --run {params.run:q} > {log} 2>&1"


use rule merge_stage as merge_front with:
    """Point i of a two-objective setting's merge front: the two single-objective adapters merged with
    weights (λ_i·s, (1 − λ_i)·s)."""
    input:
        adapters=single_objective_adapters,
        base=base_inputs,
    output:
        weights=f"{RESULTS}/adapters/{RUN}/front{{point}}/adapter_model.safetensors",
        config=f"{RESULTS}/adapters/{RUN}/front{{point}}/adapter_config.json",
    log:
        f"{RESULTS}/logs/merge_front/{RUN}/front{{point}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/merge_front/{RUN}/front{{point}}.tsv"
    wildcard_constraints:
        method="merge",
        point=r"\d+",
    params:
        weights=lambda wc: as_json(merge_weights(point=int(wc.point))),
        run=lambda wc: as_json({**run_of(wc), "point": int(wc.point)}),


use rule score_stage as score_front with:
    """Every objective's eval pairs under merge front point i (recorded as the run's last stage)."""
    input:
        weights=f"{RESULTS}/adapters/{RUN}/front{{point}}/adapter_model.safetensors",
        config=f"{RESULTS}/adapters/{RUN}/front{{point}}/adapter_config.json",
        base=base_inputs,
        eval=eval_inputs,
    output:
        f"{RESULTS}/scores/{RUN}/front{{point}}.parquet",
    log:
        f"{RESULTS}/logs/score_stage/{RUN}/front{{point}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score_stage/{RUN}/front{{point}}.tsv"
    wildcard_constraints:
        method="merge",
        point=r"\d+",
    params:
        run=lambda wc: as_json(
            {
                **run_of(wc),
                "stage": plan.n_stages(wc.order),
                "trained_objective": plan.trained_at(wc.method, wc.order, plan.n_stages(wc.order)),
            }
        ),
