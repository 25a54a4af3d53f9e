#!/usr/bin/env bash
# Status of a job started by submit.sh, as Snakemake's cluster-generic executor expects it:
# prints exactly one of running, success, failed.
# Usage (by Snakemake): status.sh <jobid>
set -euo pipefail

jobid="$1"
state="${CLUSTER_GENERIC_TEST_STATE:-$PWD/.snakemake/cluster-generic-test}"

exit_status() {
    if [[ "$(cat "$state/$jobid.exit")" == "0" ]]; then echo success; else echo failed; fi
}

if [[ -f "$state/$jobid.exit" ]]; then
    exit_status
elif kill -0 "$jobid" 2>/dev/null; then
    echo running
else
    # The process may have ended between the two checks: look for its exit file once more.
    sleep 1
    if [[ -f "$state/$jobid.exit" ]]; then exit_status; else echo failed; fi
fi
