#!/usr/bin/env bash
# Cancel jobs started by submit.sh (Snakemake calls `cancel.sh <jobid>...` on Ctrl-C).
# Only ids listed in jobs.tsv are touched; each job's whole process group is ended.
set -uo pipefail

state="${CLUSTER_GENERIC_TEST_STATE:-$PWD/.snakemake/cluster-generic-test}"
for jobid in "$@"; do
    if [[ "$jobid" =~ ^[0-9]+$ ]] && cut -f1 "$state/jobs.tsv" 2>/dev/null | grep -qx "$jobid"; then
        kill -TERM -- "-$jobid" 2>/dev/null || true
    fi
done
exit 0
