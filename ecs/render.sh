#!/usr/bin/env bash
# Prints an ecs/*.json file with its ${VARIABLE} placeholders replaced by the values of the
# environment variables of the same name, JSON-escaped, ready for
#   aws ecs register-task-definition --cli-input-json file://<output>
#
#   AGENT_VERSION=1.2.3 STS_API_KEY=... STS_STS_URL=https://sts.example.com/stsAgent \
#     ecs/render.sh ecs/node-daemon-task-definition.json > node-daemon.json
#
# Only the variables listed below are replaced (see ecs/README.md); an unset or empty one
# takes its default, and an empty value means "unset" to the daemon (its built-in default).
# AGENT_VERSION has no default. Any other ${...} left in the output is an error.
# Optional lines: a line holding the placeholder of an empty STS_RELAY_TOKEN_SECRET (the ARN
# of a Secrets Manager secret or SSM parameter holding the relay token) or
# STS_EXECUTION_ROLE_ARN (the role that lets ECS read it) is left out, so without them the
# task definitions carry no `secrets` and no execution role.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

if [[ $# -ne 1 || ! -f $1 ]]; then
    echo "usage: $0 ecs/<file>.json > rendered.json" >&2
    exit 64
fi

# name=default; no default after `=` means empty.
variables=(
    AGENT_VERSION=
    STS_API_KEY=
    STS_STS_URL=
    STS_PROCESS_AGENT_URL=
    STS_APM_URL=
    STS_SKIP_SSL_VALIDATION=false
    STS_PROCESS_AGENT_ENABLED=true
    STS_APM_ENABLED=true
    STS_NETWORK_TRACING_ENABLED=true
    STS_PROCESS_BLACKLIST_PATTERNS=
    STS_LOG_LEVEL=info
    STS_OTLP_ENDPOINT=
    STS_OTLP_PROTOCOL=http/protobuf
    STS_DAEMON_ADDR=
    STS_RELAY_TOKEN_SECRET=
    STS_EXECUTION_ROLE_ARN=
)
optional=(STS_RELAY_TOKEN_SECRET STS_EXECUTION_ROLE_ARN)

json_escape() {
    # shellcheck disable=SC1003 # a lone backslash, quoted
    local s=$1 bs='\' dq='"'
    s=${s//"$bs"/"$bs$bs"}
    s=${s//"$dq"/"$bs$dq"}
    s=${s//$'\n'/"${bs}n"}
    s=${s//$'\r'/"${bs}r"}
    s=${s//$'\t'/"${bs}t"}
    if [[ $s =~ [[:cntrl:]] ]]; then
        echo "render.sh: a value holds a control character" >&2
        exit 65
    fi
    printf '%s' "$s"
}

text=$(<"$1")
if [[ -n ${STS_RELAY_TOKEN_SECRET:-} && $text == *'"executionRoleArn"'* && -z ${STS_EXECUTION_ROLE_ARN:-} ]]; then
    echo "render.sh: STS_RELAY_TOKEN_SECRET needs STS_EXECUTION_ROLE_ARN (a role allowed to read the secret)" >&2
    exit 65
fi
for name in "${optional[@]}"; do
    if [[ -z ${!name:-} ]]; then
        kept=
        while IFS= read -r line; do
            [[ $line == *"\${$name}"* ]] || kept+=$line$'\n'
        done <<<"$text"
        text=${kept%$'\n'}
    fi
done
for entry in "${variables[@]}"; do
    name=${entry%%=*}
    default=${entry#*=}
    value=${!name:-$default}
    placeholder="\${$name}"
    if [[ $text == *"$placeholder"* && -z $value && $name == AGENT_VERSION ]]; then
        echo "render.sh: set AGENT_VERSION (the image tag to run)" >&2
        exit 65
    fi
    escaped=$(json_escape "$value")
    text=${text//"$placeholder"/"$escaped"}
done

if [[ $text =~ \$\{[A-Za-z_][A-Za-z0-9_]*\} ]]; then
    echo "render.sh: $1 holds a placeholder render.sh does not know: ${BASH_REMATCH[0]}" >&2
    exit 65
fi
if [[ $text == *'"STS_STS_URL"'* && -z ${STS_STS_URL:-} && -z ${STS_OTLP_ENDPOINT:-} ]]; then
    echo "render.sh: note: STS_STS_URL is unset, the daemon will collect but send nothing" >&2
fi
printf '%s\n' "$text"
