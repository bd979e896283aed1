# The base model, the objectives' pairs, and the base model's log-probs of every split.


localrules:
    data_report,


if base_kind() == "lab":

    rule build_base_model:
        """The lab's tiny Llama: a BPE tokenizer and a model built from a config, briefly pretrained."""
        output:
            BASE_FILES,
        log:
            f"{RESULTS}/logs/build_base_model.log",
        benchmark:
            f"{RESULTS}/benchmarks/build_base_model.tsv"
        conda:
            ENV
        threads: 2
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            out_dir=lambda wc, output: os.path.dirname(output[0]),
            options=as_json(config["lab"]["model"]),
        shell:
            step("seqpref.base_model") + " {params.out_dir} --options {params.options:q} > {log} 2>&1"


if base_kind() == "gguf":

    rule import_base_model:
        """A GGUF file imported once into an ordinary HF directory (safetensors, tokenizer, chat
        template, import.json with the file's sha256); every later step loads that directory."""
        input:
            gguf=gguf_file(),
        output:
            BASE_FILES,
        log:
            f"{RESULTS}/logs/import_base_model.log",
        benchmark:
            f"{RESULTS}/benchmarks/import_base_model.tsv"
        conda:
            ENV
        resources:
            mem_mb=lambda wc, input: 8 * int(os.path.getsize(input.gguf) / 2**20) + 2000,
            runtime=30,
        params:
            source=config["base_model"],
            out_dir=lambda wc, output: os.path.dirname(output[0]),
        shell:
            step("seqpref.gguf_import") + " {params.source:q} {params.out_dir} > {log} 2>&1"


rule prepare_data:
    """Read, validate and split one objective; the base tokenizer measures token lengths and drops
    pairs whose prompt alone fills max_length (every drop is listed in report.json)."""
    input:
        base=base_inputs,
    output:
        train=f"{RESULTS}/data/{{setting}}/{{objective}}/train.parquet",
        eval=f"{RESULTS}/data/{{setting}}/{{objective}}/eval.parquet",
        report=f"{RESULTS}/data/{{setting}}/{{objective}}/report.json",
    log:
        f"{RESULTS}/logs/prepare_data/{{setting}}/{{objective}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_data/{{setting}}/{{objective}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=lambda wc: data_memory_mb(wc.setting, wc.objective),
        runtime=60,
    params:
        out_dir=lambda wc, output: os.path.dirname(output.report),
        spec=lambda wc: as_json(config["settings"][wc.setting]["objectives"][wc.objective]),
        lab_seed=config["lab"]["seed"],
        tokenizer=base_model(),
        max_length=config["train"]["max_length"],
        siblings=lambda wc: as_json(
            {o: spec for o, spec in config["settings"][wc.setting]["objectives"].items() if o != wc.objective}
        ),
    shell:
        step("seqpref.data") + " {params.out_dir} --spec {params.spec:q} --lab-seed {params.lab_seed}"
        " --setting {wildcards.setting} --objective {wildcards.objective}"
        " --tokenizer {params.tokenizer} --max-length {params.max_length} --siblings {params.siblings:q}"
        " > {log} 2>&1"


rule data_report:
    """Every objective's data report in one table: rows kept and dropped by reason, token lengths,
    truncated pairs."""
    input:
        data_reports(),
    output:
        report(
            f"{RESULTS}/tables/data_report.tsv",
            caption="../report/data_report.rst",
            category="Data",
        ),
    log:
        f"{RESULTS}/logs/data_report.log",
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        step("seqpref.data_report") + " {output} {input} > {log} 2>&1"


rule base_logps:
    """Base-model log-probs of one split: the training reference and the evaluation reference of every run."""
    input:
        base=base_inputs,
        pairs=f"{RESULTS}/data/{{setting}}/{{objective}}/{{split}}.parquet",
    output:
        f"{RESULTS}/base_logps/{{setting}}/{{objective}}/{{split}}.parquet",
    log:
        f"{RESULTS}/logs/base_logps/{{setting}}/{{objective}}/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/base_logps/{{setting}}/{{objective}}/{{split}}.tsv"
    conda:
        ENV
    resources:
        **gpu_resources("logps"),
        share_prompt=share_prompt_flag(),
    params:
        base=base_model(),
        options=base_logps_options,
    shell:
        step("seqpref.logps", "gpu") + " {params.base} {input.pairs} {output} --options {params.options:q}"
        " --share-prompt {resources.share_prompt} > {log} 2>&1"
