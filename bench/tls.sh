# shellcheck shell=bash
# bench/tls.sh: sourced by bench.sh for TLS=h2,h1 (not run on its own).
#
# A second CNCF distribution registry (the harness's /usr/bin/docker-registry) serving the
# harness registry's storage directory over TLS, so the same blobs are pulled through TLS with
# and without HTTP/2. Its config is the harness's (/var/tmp/acrbench/registry-config.yml) with
# another loopback `http.addr`, `http.tls.certificate`/`key` and, for `h1`,
# `http.http2.disabled: true` (distribution 2.8's nextProtos then offers only http/1.1 in ALPN;
# by default it offers h2 and http/1.1). Both registries only read the storage: uploads are
# not purged (the harness config disables upload purging), nothing is pushed.
#
# The certificates are made once with openssl under TLS_DIR (default OUT/tls, outside the
# repository): a self-signed CA (ca/ca.crt: the directory skopeo's --src-cert-dir and podman's
# --cert-dir read, holding only the CA) and an RSA 2048 server certificate for the IP 127.0.0.1
# (subjectAltName IP, serverAuth), as a registry behind a public CA would present.

# The registry variants: name → "http2.disabled value".
declare -A TLS_HTTP2_DISABLED=([h2]=false [h1]=true)
# Port of each variant: TLS_PORT + this (the first free one from there).
# shellcheck disable=SC2034 # read by bench.sh and tls_protocols.sh
declare -A TLS_PORT_OFFSET=([h2]=0 [h1]=1)
# What curl must negotiate against each variant (its %{http_version}).
declare -A TLS_EXPECT_VERSION=([h2]=2 [h1]=1.1)
# Started registries: variant → pid (only these are ever stopped).
declare -A TLS_PIDS=()
# host:port of the registry tls_start started last (read by the caller).
TLS_HOST=

# Make the CA and the server certificate once; keep them while the server certificate still
# verifies against the CA for 127.0.0.1.
tls_certs() { # DIR
    local d=$1
    if [[ -s $d/ca/ca.crt && -s $d/server.crt && -s $d/server.key ]] &&
        openssl verify -CAfile "$d/ca/ca.crt" -verify_ip 127.0.0.1 "$d/server.crt" >/dev/null 2>&1; then
        return 0
    fi
    echo "== making a test CA and a server certificate for 127.0.0.1 in $d"
    mkdir -p "$d/ca"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=acrbench test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$d/ca.key" -out "$d/ca/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$d/server.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca/ca.crt" -CAkey "$d/ca.key" -CAserial "$d/ca.srl" -CAcreateserial \
        -days 3650 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
    openssl verify -CAfile "$d/ca/ca.crt" -verify_ip 127.0.0.1 "$d/server.crt" >/dev/null
}

# The harness's registry config, served at 127.0.0.1:PORT over TLS (VARIANT h1: no HTTP/2).
# Refuses a source config that already has keys this would have to merge (tls, http2, debug:
# a second debug listener would collide with the first). ACCESSLOG=1 turns the access log on
# and the log level to info (tls_protocols.sh; never for timed runs).
tls_config() { # SOURCE_CONFIG PORT DIR VARIANT [ACCESSLOG]
    local src=$1 port=$2 d=$3 variant=$4 accesslog=${5:-0}
    if awk '/^http:/ {h = 1; next} /^[^ #]/ {h = 0} h && /^  (tls|http2|debug|net):/ {bad = 1} END {exit !bad}' "$src"; then
        echo "$src already sets http.tls, http.http2, http.debug or http.net: cannot derive a TLS config" >&2
        return 1
    fi
    awk -v addr="127.0.0.1:$port" -v cert="$d/server.crt" -v key="$d/server.key" \
        -v disabled="${TLS_HTTP2_DISABLED[$variant]}" -v accesslog="$accesslog" '
        /^http:/ {
            print
            print "  addr: " addr
            print "  tls:"
            print "    certificate: " cert
            print "    key: " key
            print "  http2:"
            print "    disabled: " disabled
            h = 1
            next
        }
        /^[^ #]/ { h = 0; l = /^log:/ }
        h && /^  addr:/ { next }
        l && accesslog && /^  level:/ { print "  level: info"; next }
        l && /^  accesslog:/ { a = 1; print; next }
        a && accesslog && /^    disabled:/ { print "    disabled: false"; a = 0; next }
        { print }' "$src"
}

# A free loopback TCP port from BASE upwards.
tls_free_port() { # BASE
    local port=$1
    while [[ -n $(ss -ltnH "sport = :$port") ]]; do
        port=$((port + 1))
    done
    echo "$port"
}

# Start the VARIANT registry on a free port from PORT; set TLS_HOST to its host:port once /v2/
# answers over verified TLS and curl negotiated the expected protocol (h2 or http/1.1), else
# stop it and fail. (Not in a command substitution: the pid must stay in this shell.)
tls_start() { # VARIANT PORT SOURCE_CONFIG DIR [ACCESSLOG]
    local variant=$1 port config log pid version i
    port=$(tls_free_port "$2")
    config=$4/registry-$variant.yml
    log=$4/registry-$variant.log
    tls_config "$3" "$port" "$4" "$variant" "${5:-0}" >"$config"
    /usr/bin/docker-registry serve "$config" >"$log" 2>&1 &
    pid=$!
    TLS_PIDS[$variant]=$pid
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || { echo "TLS registry $variant exited; see $log" >&2; tail -5 "$log" >&2; return 1; }
        curl -sf -o /dev/null --cacert "$4/ca/ca.crt" "https://127.0.0.1:$port/v2/" && break
        sleep 0.1
    done
    version=$(curl -s -o /dev/null -w '%{http_version}' --cacert "$4/ca/ca.crt" "https://127.0.0.1:$port/v2/" || true)
    if [[ $version != "${TLS_EXPECT_VERSION[$variant]}" ]]; then
        echo "TLS registry $variant on port $port: curl negotiated HTTP '$version', expected ${TLS_EXPECT_VERSION[$variant]}; see $log" >&2
        tls_stop "$variant"
        return 1
    fi
    # shellcheck disable=SC2034 # read by the caller
    TLS_HOST=127.0.0.1:$port
}

# Stop the VARIANT registry this script started (only its recorded pid).
tls_stop() { # VARIANT
    local pid=${TLS_PIDS[$1]:-}
    [[ -n $pid ]] || return 0
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "TLS_PIDS[$1]"
}

tls_stop_all() {
    local variant
    for variant in "${!TLS_PIDS[@]}"; do
        tls_stop "$variant"
    done
}
