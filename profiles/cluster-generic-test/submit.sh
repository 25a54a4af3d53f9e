#!/usr/bin/env bash
# A local stand-in for a cluster's submit command (sbatch, qsub) for Snakemake's cluster-generic
# executor plugin, used by the tests to show that every job runs as its own process and that
# jobs exchange only files.
#
# Snakemake calls `submit.sh [ARGUMENT...] <jobscript>`: the arguments are what the submit
# command of the profile or of --cluster-generic-submit-cmd puts before the job script, e.g.
# `--mem-mb={resources.mem_mb} --runtime={resources.runtime}` (as sbatch gets --mem and --time),
# filled in by Snakemake per job; they are only recorded. The job script is started in the
# background, in a new session (its own process group, detached from Snakemake's terminal and
# pipes), and the job id printed on stdout is that process's id. When the job ends, its exit
# status is written to <state>/<jobid>.exit, which status.sh reads. The job's output goes to
# <state>/<jobid>.log, <state>/jobs.tsv lists job id, rule and job script of every submission, and
# <state>/submissions.tsv job id, rule and the arguments before the job script.
# <state> is $CLUSTER_GENERIC_TEST_STATE or .snakemake/cluster-generic-test in the working
# directory.
set -euo pipefail

jobscript="${!#}"
state="${CLUSTER_GENERIC_TEST_STATE:-$PWD/.snakemake/cluster-generic-test}"
mkdir -p "$state"

# All of the job's file descriptors are redirected: Snakemake reads this script's stdout to the
# end, which would otherwise wait for the job to finish.
setsid bash -c '
    bash "$1" >"$2/$$.log" 2>&1
    status=$?
    echo "$status" >"$2/$$.exit.part"
    mv "$2/$$.exit.part" "$2/$$.exit"
' job "$jobscript" "$state" </dev/null >/dev/null 2>&1 &
jobid=$!

rule=$(grep -o '"rule": *"[^"]*"' "$jobscript" | head -n 1 | sed 's/.*: *"\(.*\)"/\1/' || true)
printf '%s\t%s\t%s\n' "$jobid" "${rule:-unknown}" "$jobscript" >>"$state/jobs.tsv"
printf '%s\t%s\t%s\n' "$jobid" "${rule:-unknown}" "${*:1:$#-1}" >>"$state/submissions.tsv"
echo "$jobid"
