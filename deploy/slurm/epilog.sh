#!/bin/bash
# SLURM Epilog: end the tracker runs of the job that just ended (finished, failed, or
# killed; see `tracker slurm epilog --help` and docs/slurm.md). Install it on every
# compute node and point slurm.conf at it:
#   Epilog=/etc/slurm/tracker-epilog.sh
# with its settings in tracker-epilog.env beside slurm.conf (or TRACKER_EPILOG_CONF):
#   TRACKER_SERVER=tracker.example.org:50051
#   TRACKER_API_KEY=trk_...           # an operator key
#   TRACKER_CLI=/opt/tracker/bin/tracker
#   TRACKER_EPILOG_LOG=/var/log/slurm/tracker-epilog.log   # default: syslog
#   TRACKER_EPILOG_TIMEOUT_S=30
#   TRACKER_EPILOG_NO_SCONTROL=1      # decide from the exit code alone
# SLURM drains a node whose epilog fails, and a slow epilog holds the node in
# COMPLETING: whatever happens here, this script is bounded in time and exits 0.

conf="${TRACKER_EPILOG_CONF:-$(dirname "${SLURM_CONF:-/etc/slurm/slurm.conf}")/tracker-epilog.env}"
if [ -r "$conf" ]; then
    set -a
    # shellcheck source=/dev/null
    . "$conf"
    set +a
fi

say() {
    if [ -n "${TRACKER_EPILOG_LOG:-}" ]; then
        printf '%s job %s: %s\n' "$(date -u +%FT%TZ)" "${SLURM_JOB_ID:-?}" "$*" \
            >>"$TRACKER_EPILOG_LOG" 2>/dev/null
    else
        logger -t tracker-epilog "job ${SLURM_JOB_ID:-?}: $*" 2>/dev/null
    fi
    return 0
}

if [ -z "${SLURM_JOB_ID:-}" ] || [ -z "${TRACKER_SERVER:-}" ]; then
    exit 0  # not a job, or tracker not configured on this node
fi

# The epilog runs on every node of the job; the job's first node speaks for it.
first=$(scontrol show hostnames "${SLURM_NODELIST:-}" 2>/dev/null | head -n 1)
if [ -n "$first" ] && [ -n "${SLURMD_NODENAME:-}" ] && [ "$first" != "$SLURMD_NODENAME" ]; then
    exit 0
fi

args=(--job-id "$SLURM_JOB_ID" --exit-code "${SLURM_JOB_EXIT_CODE:-0}")
if [ "${TRACKER_EPILOG_NO_SCONTROL:-0}" = "1" ]; then
    args+=(--no-scontrol)
fi
out=$(timeout --kill-after=5 "${TRACKER_EPILOG_TIMEOUT_S:-30}" \
    "${TRACKER_CLI:-tracker}" --timeout 10 slurm epilog "${args[@]}" 2>&1)
status=$?
say "exit ${SLURM_JOB_EXIT_CODE:-0}, tracker said (status $status): $out"
exit 0
