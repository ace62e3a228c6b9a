#!/usr/bin/env bash
# Upgrade the eventapp job manager on Kubernetes through a savepoint:
#
#   deploy/kubernetes/upgrade.sh NEW_IMAGE [--drain]
#
# 1. hold: a restart of the current pod spec will wait instead of running the old version again
#    (deploy/bin/eventapp-entrypoint explains why);
# 2. stop with savepoint: `eventapp stop JOB --savepoint DIR` in the pod (every split takes a final
#    savepoint, the job manager exits 0); the savepoint path is read from its output, or found in the
#    fresh, per-upgrade DIR if the exec was cut off when the container exited;
# 3. one patch of the StatefulSet: the new image and EVENTAPP_FROM_SAVEPOINT=PATH together (one new
#    revision, one pod replacement; `kubectl set image` + `kubectl set env` would make two);
# 4. wait until the new pod is ready (/readyz: every split restored and processing).
# A failure before step 3 releases the hold: the old version resumes from its last checkpoint.
#
# Environment (default): KUBECTL (kubectl), NAMESPACE (kubectl's current one), STATEFULSET (eventapp),
# CONTAINER (eventapp), JOB_NAME (fraud-detection), SAVEPOINT_DIR (/savepoints, the
# persistent volume of statefulset.yaml),
# REST_URL (http://127.0.0.1:8081), ROLLOUT_TIMEOUT (15m).
# Exit codes: 0 upgraded, 1 failed (the message says in which state it left the job), 2 usage.
set -euo pipefail

usage() {
    echo "usage: $0 NEW_IMAGE [--drain]" >&2
    exit 2
}

log() { printf 'upgrade: %s\n' "$*" >&2; }

[ "$#" -ge 1 ] || usage
image="$1"
shift
drain=""
for arg in "$@"; do
    case "$arg" in
    --drain) drain="--drain" ;;
    *) usage ;;
    esac
done
# Both values go into a JSON patch: refuse anything that would need quoting.
safe='^[A-Za-z0-9._:/@+-]+$'
[[ "$image" =~ $safe ]] || { log "not an image reference: $image"; exit 2; }

kubectl_cmd=("${KUBECTL:-kubectl}")
if [ -n "${NAMESPACE:-}" ]; then
    kubectl_cmd+=(--namespace "$NAMESPACE")
fi
sts="${STATEFULSET:-eventapp}"
container="${CONTAINER:-eventapp}"
job="${JOB_NAME:-fraud-detection}"
rest_url="${REST_URL:-http://127.0.0.1:8081}"
timeout="${ROLLOUT_TIMEOUT:-15m}"
pod="$sts-0"
# A directory of its own for this upgrade: the savepoint can be found in it without the exec's output.
target="${SAVEPOINT_DIR:-/savepoints}/upgrade-$(date -u +%Y%m%dT%H%M%SZ)"

k() { "${kubectl_cmd[@]}" "$@"; }
in_pod() { k exec "$pod" -c "$container" -- "$@"; }

held=0
on_exit() {
    local status=$?
    if [ "$status" -ne 0 ] && [ "$held" -eq 1 ]; then
        log "failed before the new version was applied: releasing the hold (the old version resumes from its last checkpoint)"
        in_pod eventapp-entrypoint release \
            || log "could not release the hold: run '${kubectl_cmd[*]} exec $pod -c $container -- eventapp-entrypoint release'"
    fi
    exit "$status"
}
trap on_exit EXIT

# The savepoint directory under $target, found by listing it (retried while the container restarts).
find_savepoint() {
    local attempt found
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        if found="$(in_pod find "$target" -mindepth 1 -maxdepth 1 -type d 2>/dev/null)"; then
            if [ "$(printf '%s\n' "$found" | grep -c .)" -eq 1 ]; then
                printf '%s\n' "$found"
                return 0
            fi
            log "expected one savepoint in $target, found: ${found:-nothing}"
            return 1
        fi
        log "pod not reachable yet (attempt $attempt), retrying"
        sleep 3
    done
    return 1
}

log "checking that $pod is ready"
k wait --for=condition=Ready "pod/$pod" --timeout=60s >/dev/null

in_pod eventapp-entrypoint hold
held=1

log "stopping job $job with a savepoint under $target${drain:+ (drain)}"
stop_status=0
output="$(in_pod eventapp-entrypoint stop "$job" --savepoint "$target" ${drain:+"$drain"} \
    --rest-url "$rest_url")" || stop_status=$?
# The last word of the output that is a path under $target (the output may say "Path: ...").
savepoint="$(printf '%s\n' "$output" | awk -v prefix="$target/" \
    '{ for (i = 1; i <= NF; i++) if (index($i, prefix) == 1) found = $i } END { print found }')"
if [ -z "$savepoint" ]; then
    log "no savepoint path in the output of eventapp stop (exit $stop_status): looking in $target"
    savepoint="$(find_savepoint)" || {
        log "no savepoint: the job was not upgraded"
        exit 1
    }
fi
[[ "$savepoint" =~ $safe ]] || { log "unexpected savepoint path: $savepoint"; exit 1; }
log "savepoint: $savepoint"

patch="$(printf '{"spec":{"template":{"spec":{"containers":[{"name":"%s","image":"%s","env":[{"name":"EVENTAPP_FROM_SAVEPOINT","value":"%s"}]}]}}}}' \
    "$container" "$image" "$savepoint")"
k patch statefulset "$sts" --type strategic --patch "$patch"
# From here on the hold must stay: the new pod (new spec, new savepoint) lifts it when it starts.
held=0

log "waiting for the new pod to be ready (timeout $timeout)"
if ! k rollout status "statefulset/$sts" --timeout="$timeout"; then
    log "not ready after $timeout: the new version runs from $savepoint but is not processing yet;"
    log "see '${kubectl_cmd[*]} logs $pod -c $container'. Roll back: $0 OLD_IMAGE (a new savepoint)."
    exit 1
fi
log "upgraded to $image from $savepoint"
