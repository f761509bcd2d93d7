# Shell pieces bench/edge and bench/federation share (sourced, not run): their work directory
# and the processes they start, waiting for a listener, and Kamailio as a TLS relay.

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS"; cp "$work"/*.log "$KEEP_LOGS"/; fi
  rm -rf "$work"
}
trap cleanup EXIT

# wait_tcp ADDR PORT LOG: until something listens there (else LOG, and fail)
wait_tcp() {
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done
  cat "$3" >&2
  return 1
}

# need_kamailio: Debian's Kamailio with its TLS module, installed when missing
need_kamailio() {
  command -v kamailio >/dev/null && ls /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so >/dev/null 2>&1 || {
    echo "bench: installing kamailio and kamailio-tls-modules" >&2
    apt-get install -y -qq kamailio kamailio-tls-modules >/dev/null
  }
}

# kamailio_tls_cfg FILE CERT KEY: its tls module's configuration, the same certificate as
# server and as client, verifying nothing (the Front End behind it authenticates)
kamailio_tls_cfg() {
  local side
  for side in server client; do
    printf '[%s:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\ncertificate = %s\nprivate_key = %s\n\n' \
      "$side" "$2" "$3"
  done >"$1"
}

# kamailio_pids PID...: those Kamailios and their workers, comma-separated (the workers are
# forked after the listeners open: waits for at least MIN_WORKERS, default 3, of each)
kamailio_pids() {
  local k
  for k in "$@"; do
    for _ in $(seq 100); do [ "$(pgrep -c -P "$k")" -ge "${MIN_WORKERS:-3}" ] && break; sleep 0.1; done
  done
  for k in "$@"; do echo "$k"; pgrep -P "$k" || true; done | paste -sd,
}
