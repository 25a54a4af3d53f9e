# From raw data to the tidy analysis dataset: gate -> validate -> ingest -> summary.


rule key_fingerprint:
    input:
        # after the gate and validation, whose messages about the data come first (ancient:
        # an order only; the file's date is no reason to write the fingerprint again)
        validation=ancient("results/data/validation_report.json"),
    output:
        "results/data/key_fingerprint.txt",
    params:
        # a new key changes this file, so every step that writes pseudonyms reruns
        fingerprint=key_fingerprint,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/key_fingerprint.log",
    script:
        "../scripts/key_fingerprint.py"


rule deid_gate:
    input:
        raw=raw_inputs,
    output:
        "results/data/deid_report.json",
    params:
        reading=reading_settings(),
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/deid_gate.log",
    script:
        "../scripts/deid_gate.py"


rule validate_data:
    input:
        raw=raw_inputs,
        gate="results/data/deid_report.json",
        instrument_keys=instrument_key_files,
    output:
        "results/data/validation_report.json",
    params:
        reading=reading_settings(),
        instruments=config_digest(config["instruments"]),
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/validate_data.log",
    script:
        "../scripts/validate_data.py"


rule ingest:
    input:
        raw=raw_inputs,
        validation="results/data/validation_report.json",
        fingerprint="results/data/key_fingerprint.txt",
        instrument_keys=instrument_key_files,
    output:
        administrations="results/interim/administrations.parquet",
        clients="results/interim/clients.parquet",
        switches=report(
            "results/data/therapist_switches.csv",
            caption="../report/therapist_switches.rst",
            category="1 Data",
            labels=result_labels("switches", "CSV"),
        ),
    params:
        reading=reading_settings(),
        instruments=config_digest(config["instruments"]),
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/ingest.log",
    script:
        "../scripts/ingest.py"


rule data_summary:
    input:
        administrations="results/interim/administrations.parquet",
        clients="results/interim/clients.parquet",
        switches="results/data/therapist_switches.csv",
    output:
        summary=report(
            "results/data/summary.json",
            caption="../report/summary.rst",
            category="1 Data",
            labels=result_labels("summary", "JSON"),
        ),
        completion=report(
            "results/data/completion.csv",
            caption="../report/completion.rst",
            category="1 Data",
            labels=result_labels("completion", "CSV"),
        ),
        figure=report(
            "results/figures/missingness.png",
            caption="../report/missingness.rst",
            category="1 Data",
            labels=result_labels("Missingness (figure)"),
        ),
        pdf="results/figures/missingness.pdf",
        # the figure's facts (sessions drawn, N), included by missingness.rst
        caption="results/figures/missingness_caption.rst",
    resources:
        mem_mb=input_sized_mem_mb,
        runtime=input_sized_runtime,
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/data_summary.log",
    script:
        "../scripts/data_summary.py"
