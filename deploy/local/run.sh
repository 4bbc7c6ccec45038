#!/usr/bin/env bash
# Starts a whole Herald on this machine: its own nats-server and
# redis-server on free loopback ports (unless HERALD_NATS_URL /
# HERALD_REDIS_URL point elsewhere), the intake, router, delivery and
# broadcast services, loads the example contacts and groups, sends a first
# notification and shows where it landed.
#
# Nothing runs without a credential: `herald setup` makes every service's
# and role's NATS key and Redis password under run/secrets (kept across
# runs, owner-only), nats-server and redis-server start with the
# configurations it writes (no anonymous access), and each process
# connects as itself. A coordinator token for emergency broadcasts is made
# for this run (in run/herald.env). Everything lives under ./run; Ctrl-C
# stops it all.
#
# HERALD_RUN_ONCE=1 stops after the first notification (used to check this
# script itself).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
run="$root/run"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
mkdir -p "$run/logs" "$run/nats" "$run/redis" "$run/outbox"
chmod 700 "$run"

deploy/local/deps.sh
echo "building Herald (the first build takes a few minutes)"
cargo build --quiet --bins
"$bin/herald" setup --dir "$run/secrets" --store-dir "$run/nats" >"$run/logs/setup.log"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p=$1
  while ! port_free "$p"; do p=$((p + 1)); done
  echo "$p"
}
http_ok() { # port path
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    read -r _ status _ <&3 || true
    [ "$status" = "200" ]
  ) 2>/dev/null
}

pids=()
cleanup() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo
    echo "stopping Herald"
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap cleanup INT TERM EXIT

if [ -z "${HERALD_NATS_URL:-}" ]; then
  nats_port=$(free_port 14222)
  # JetStream and its store are in the configuration herald setup wrote.
  nats_bin=nats-server
  [ -x "$root/tools/bin/nats-server" ] && nats_bin="$root/tools/bin/nats-server"
  "$nats_bin" -c "$run/secrets/nats-server.conf" -a 127.0.0.1 -p "$nats_port" \
    -l "$run/logs/nats.log" &
  pids+=($!)
  export HERALD_NATS_URL="nats://127.0.0.1:$nats_port"
  export HERALD_NATS_CREDENTIALS_DIR="$run/secrets/nats"
  export HERALD_NATS_TLS_CA_FILE="$run/secrets/tls/ca.pem"
fi
if [ -z "${HERALD_REDIS_URL:-}" ]; then
  redis_port=$(free_port 16379)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes \
    --aclfile "$run/secrets/redis/users.acl" \
    --dir "$run/redis" --logfile "$run/logs/redis.log" --daemonize no &
  pids+=($!)
  export HERALD_REDIS_URL="redis://127.0.0.1:$redis_port"
  export HERALD_REDIS_CREDENTIALS_DIR="$run/secrets/redis"
fi

export HERALD_INTAKE_GRPC_ADDR="127.0.0.1:$(free_port 50051)"
export HERALD_INTAKE_HTTP_ADDR="127.0.0.1:$(free_port 19101)"
# The HTTP/JSON API on a listener of its own, apart from health and metrics.
export HERALD_INTAKE_PUBLIC_ADDR="127.0.0.1:$(free_port 18080)"
# Where the approve and deny links of approval rules lead, if any are set.
export HERALD_APPROVALS_PUBLIC_URL="http://$HERALD_INTAKE_PUBLIC_ADDR"
export HERALD_ROUTER_HTTP_ADDR="127.0.0.1:$(free_port $(( ${HERALD_INTAKE_HTTP_ADDR##*:} + 1 )))"
export HERALD_DELIVERY_HTTP_ADDR="127.0.0.1:$(free_port $(( ${HERALD_ROUTER_HTTP_ADDR##*:} + 1 )))"
export HERALD_SLA_HTTP_ADDR="127.0.0.1:$(free_port $(( ${HERALD_DELIVERY_HTTP_ADDR##*:} + 1 )))"
export HERALD_ESCALATION_HTTP_ADDR="127.0.0.1:$(free_port $(( ${HERALD_SLA_HTTP_ADDR##*:} + 1 )))"
# Where the acknowledgement links of escalation alerts lead.
export HERALD_ESCALATION_PUBLIC_URL="http://$HERALD_ESCALATION_HTTP_ADDR"
# Survey links are signed with a secret made once for this checkout and
# kept in run/ (so links stay valid across runs); never printed.
if [ -z "${HERALD_ESCALATION_SURVEY_SECRET:-}" ]; then
  [ -s "$run/survey.secret" ] || (umask 077; head -c 24 /dev/urandom | base64 > "$run/survey.secret")
  HERALD_ESCALATION_SURVEY_SECRET=$(cat "$run/survey.secret")
  export HERALD_ESCALATION_SURVEY_SECRET
fi
export HERALD_BROADCAST_HTTP_ADDR="127.0.0.1:$(free_port $(( ${HERALD_ESCALATION_HTTP_ADDR##*:} + 1 )))"
export HERALD_BROADCAST_PUBLIC_URL="http://$HERALD_BROADCAST_HTTP_ADDR"
# Secrets for this run only: the key that signs confirmation links, and one
# coordinator's token (Herald keeps its SHA-256, never the token).
HERALD_BROADCAST_LINK_SECRET="run-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export HERALD_BROADCAST_LINK_SECRET
coordinator_token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
coordinator_hash=$(printf '%s' "$coordinator_token" | sha256sum | cut -d' ' -f1)
export HERALD_BROADCAST_COORDINATORS="[{ id = \"local-coordinator\", token_sha256 = \"$coordinator_hash\" }]"
# And an API key for one calling system on intake's gRPC and HTTP ports
# (Herald keeps its SHA-256 only): `herald send --grpc` and the curl example
# use it from run/herald.env.
grpc_key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
grpc_hash=$(printf '%s' "$grpc_key" | sha256sum | cut -d' ' -f1)
export HERALD_INTAKE_API_KEYS="[{ system = \"local-system\", key_sha256 = [\"$grpc_hash\"] }]"
export HERALD_DELIVERY_OUTBOX_DIR="$run/outbox"
export HERALD_CONTENT_TEMPLATES_DIR="$root/config/templates"

# The streams, declared once by the one identity allowed to.
for _ in $(seq 1 50); do
  "$bin/herald" provision >"$run/logs/provision.log" 2>&1 && break
  sleep 0.2
done
"$bin/herald" provision >"$run/logs/provision.log"

cat > "$run/herald.env" <<ENV
export HERALD_NATS_URL=$HERALD_NATS_URL
export HERALD_REDIS_URL=$HERALD_REDIS_URL
export HERALD_CONTENT_TEMPLATES_DIR=$HERALD_CONTENT_TEMPLATES_DIR
export HERALD_COORDINATOR_TOKEN=$coordinator_token
export HERALD_API_KEY=$grpc_key
export HERALD_API_URL=http://$HERALD_INTAKE_PUBLIC_ADDR
export PATH="$bin:\$PATH"
ENV
for var in HERALD_NATS_CREDENTIALS_DIR HERALD_NATS_TLS_CA_FILE; do
  if [ -n "${!var:-}" ]; then echo "export $var=${!var}" >> "$run/herald.env"; fi
done

for svc in intake router delivery sla escalation broadcast; do
  "$bin/herald-$svc" >"$run/logs/$svc.log" 2>&1 &
  pids+=($!)
done

for pair in intake:$HERALD_INTAKE_HTTP_ADDR router:$HERALD_ROUTER_HTTP_ADDR delivery:$HERALD_DELIVERY_HTTP_ADDR \
            sla:$HERALD_SLA_HTTP_ADDR escalation:$HERALD_ESCALATION_HTTP_ADDR broadcast:$HERALD_BROADCAST_HTTP_ADDR; do
  name=${pair%%:*}; port=${pair##*:}
  for _ in $(seq 1 150); do
    http_ok "$port" /readyz && break
    sleep 0.2
  done
  if ! http_ok "$port" /readyz; then
    echo "$name did not become ready; its log:" >&2
    tail -n 20 "$run/logs/$name.log" >&2
    exit 1
  fi
done
echo "Herald is up: intake (gRPC $HERALD_INTAKE_GRPC_ADDR, HTTP http://$HERALD_INTAKE_PUBLIC_ADDR), router, delivery, sla, escalation, broadcast; logs in run/logs/"
echo "every process connects with its own credential (run/secrets; see run/logs/setup.log)"

"$bin/herald" contacts import config/contacts.example.yaml
"$bin/herald" groups import config/groups.example.yaml
echo
echo "sending a first notification:"
echo "  herald send --to alice --template inquiry_received --param reference=INQ-1001 --wait"
"$bin/herald" send --to alice --template inquiry_received --param reference=INQ-1001 --wait
echo
latest=$(ls -t "$run/outbox/email"/*.eml | head -n 1)
echo "it landed in the outbox (no SMTP server is configured): ${latest#$root/}"
echo "------------------------------------------------------------------------"
cat "$latest"
echo
echo "------------------------------------------------------------------------"
http_request='{"idempotencyKey":"make-run-http-'"$(date +%s)"'","communicationType":"COMMUNICATION_TYPE_INITIAL_INQUIRY","recipients":[{"contactId":"alice"}],"templateId":"inquiry_received","params":{"reference":"INQ-1003"}}'
if command -v curl >/dev/null; then
  echo "and one as another system sends it, JSON over HTTP with its API key:"
  echo "  curl -H \"Authorization: Bearer \$HERALD_API_KEY\" -H 'Content-Type: application/json' \\"
  echo "       -d '$http_request' http://$HERALD_INTAKE_PUBLIC_ADDR/v1/notifications"
  curl -sS -H "Authorization: Bearer $grpc_key" -H 'Content-Type: application/json' \
    -d "$http_request" "http://$HERALD_INTAKE_PUBLIC_ADDR/v1/notifications"
  echo
  echo "(the API is described at http://$HERALD_INTAKE_PUBLIC_ADDR/openapi.json)"
  echo "------------------------------------------------------------------------"
fi
case_id="DEMO-$(date +%s)"
echo "opening a case (an email inquiry from Alice) and showing its clock:"
echo "  herald case open $case_id --client alice --channel email --team support --staff fl-sam --reference INQ-1001"
"$bin/herald" case open "$case_id" --client alice --channel email --team support --staff fl-sam \
  --reference INQ-1001 --by make-run
for _ in $(seq 1 50); do
  "$bin/herald" case show "$case_id" >/dev/null 2>&1 && break
  sleep 0.1
done
"$bin/herald" case show "$case_id"
echo "------------------------------------------------------------------------"
cat <<HELP
Try more from another terminal:
  source run/herald.env
  herald send --to bob --template inquiry_received --param reference=INQ-1002 --wait   # Bob prefers SMS: see run/outbox/sms
  herald send --email you@example.org --template incident_alert --type incident --priority critical \\
      --param reference=INC-7 --param summary="Portal outage" --phone +447700900123 --wait
  herald trail <notification id>
  herald contacts show alice
  herald case ack $case_id --by fl-sam          # stops the clock; herald case show $case_id
  herald case escalate $case_id                 # the team lead is told, and Alice
  herald trail $case_id --case                  # every step of the case
  herald broadcast start drill-1 --severity minor --group incident-team \\
      --subject "Drill" --body "This is a drill." --speak "This is a drill." \\
      --cycles 2 --interval 1m --duration 3m      # email + call to each; see run/outbox
  herald broadcast status drill-1 --recipients  # open a confirmation link from run/outbox/email
Health and metrics: http://$HERALD_INTAKE_HTTP_ADDR/metrics (also router, delivery, sla, escalation, broadcast)
Ctrl-C stops everything.
HELP

if [ -n "${HERALD_RUN_ONCE:-}" ]; then
  exit 0
fi
wait -n "${pids[@]}" || true
echo "a Herald process exited; see run/logs/" >&2
