# Provenance: input hashes, the resolved config, package versions, the commit and seeds.


rule provenance:
    input:
        raw=raw_inputs,
        instrument_keys=instrument_key_files,
        validation="results/data/validation_report.json",
    output:
        report(
            "results/provenance.json",
            caption="../report/provenance.rst",
            category="Data",
        ),
    params:
        # provenance.json records the resolved config
        config=config_digest(config),
    conda:
        "../envs/alliance.yaml"
    log:
        "logs/provenance.log",
    script:
        "../scripts/provenance.py"
