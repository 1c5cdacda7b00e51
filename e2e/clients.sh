#!/usr/bin/env bash
# Real third-party S3 clients (aws CLI, boto3, rclone, s3cmd) against a freshly
# started coffer-server, once over plain HTTP and once over HTTPS with a private
# CA made here with openssl (each client told to trust it its own way): every
# check prints "ok: ..." or fails loudly with what differed, and the server log tail. Builds nothing: the server binary comes from
# COFFER_BIN (default target/debug/coffer-server, else target/release/...).
# Missing clients are installed (pip / apt-get), so it runs on a fresh Debian CI box.
set -euo pipefail
# No load balancer waits on these servers: stop at once (see --shutdown-delay).
export COFFER_SHUTDOWN_DELAY=0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STARTED=$SECONDS

# ---------------------------------------------------------------- helpers

say() { printf '\n== %s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

# expect_eq WHAT ACTUAL EXPECTED
expect_eq() {
    if [[ "$2" != "$3" ]]; then
        fail "$1: expected [$3], got [$2]"
    fi
    ok "$1"
}

# expect_out WHAT EXPECTED COMMAND...: the command succeeds and prints exactly EXPECTED.
# (A failing command inside "$(...)" passed as an argument would not stop the script.)
expect_out() {
    local what=$1 expected=$2 out
    shift 2
    out=$("$@") || fail "$what: command failed with exit $?: $*"
    expect_eq "$what" "$out" "$expected"
}

# expect_error WHAT CODE COMMAND...: the command must fail and name the S3 error CODE.
expect_error() {
    local what=$1 code=$2 out
    shift 2
    if out=$("$@" 2>&1); then
        fail "$what: expected $code, but the command succeeded: $out"
    fi
    if [[ "$out" != *"$code"* ]]; then
        fail "$what: expected $code, got: $out"
    fi
    ok "$what ($code)"
}

# json_eq A B: the two JSON documents are equal once parsed.
json_eq() {
    python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1]) != json.loads(sys.argv[2]))' "$1" "$2"
}

# ---------------------------------------------------------------- tools

apt_updated=
apt_install() {
    if [[ -z "$apt_updated" ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pip_install() {
    local pip=(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
    "${pip[@]}" "$@" 2>/dev/null || "${pip[@]}" --break-system-packages "$@"
    if command -v pyenv >/dev/null; then pyenv rehash; fi
    hash -r
}

ensure_tools() {
    command -v curl >/dev/null || apt_install curl ca-certificates
    command -v openssl >/dev/null || apt_install openssl
    command -v cmp >/dev/null || apt_install diffutils
    command -v python3 >/dev/null || apt_install python3
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    command -v aws >/dev/null || pip_install awscli
    python3 -c 'import boto3' 2>/dev/null || pip_install boto3
    command -v s3cmd >/dev/null || pip_install s3cmd
    command -v rclone >/dev/null || apt_install rclone
    printf '%s\n' "$(aws --version 2>&1)" "boto3 $(python3 -c 'import boto3; print(boto3.__version__)')" \
        "$(rclone version | head -n1)" "$(s3cmd --version)"
}

# ---------------------------------------------------------------- server

find_server() {
    if [[ -n "${COFFER_BIN:-}" ]]; then
        [[ -x "$COFFER_BIN" ]] || fail "COFFER_BIN=$COFFER_BIN is not an executable"
    elif [[ -x "$ROOT/target/debug/coffer-server" ]]; then
        COFFER_BIN=$ROOT/target/debug/coffer-server
    elif [[ -x "$ROOT/target/release/coffer-server" ]]; then
        COFFER_BIN=$ROOT/target/release/coffer-server
    else
        fail "no coffer-server binary: run 'cargo build -p coffer-server' or set COFFER_BIN"
    fi
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/coffer-e2e.XXXXXX")
SERVER_PID=
cleanup() {
    local rc=$?
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -f "$WORK/server.log" ]]; then
        printf '\n== server log (last 60 lines)\n' >&2
        tail -n 60 "$WORK/server.log" >&2
    fi
    rm -rf "$WORK"
    if [[ $rc -eq 0 ]]; then
        printf '\nall client checks passed in %ss\n' $((SECONDS - STARTED))
    else
        printf '\nclient checks FAILED (exit %s) after %ss\n' "$rc" $((SECONDS - STARTED)) >&2
    fi
    exit "$rc"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

random_secret() {
    python3 -c 'import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))' "$1"
}

# make_pki DIR: a private CA and a server certificate for 127.0.0.1/localhost,
# the key in the traditional RSA (PKCS#1) form cert-manager writes by default.
make_pki() {
    local d=$1
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Coffer e2e CA" \
        -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
    openssl genrsa -traditional -out "$d/tls.key" 2048 2>/dev/null
    openssl req -new -key "$d/tls.key" -subj "/CN=coffer" -out "$d/tls.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/ext.cnf"
    openssl x509 -req -in "$d/tls.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/ext.cnf" -out "$d/tls.crt" 2>/dev/null
    grep -q 'BEGIN RSA PRIVATE KEY' "$d/tls.key" || fail "openssl did not write a PKCS#1 key"
}

# curl trusts the private CA in TLS mode (CURL_CA is empty over plain HTTP).
CURL_CA=
curl() { command curl ${CURL_CA:+--cacert "$CURL_CA"} "$@"; }

# start_server plain|tls
start_server() {
    MODE=$1
    PORT=$(free_port)
    ROOT_KEY=E2E$(random_secret 8 | tr a-f A-F)
    ROOT_SECRET=$(random_secret 20)
    DATA=$WORK/data-$MODE
    mkdir -p "$DATA"
    local tls=()
    if [[ $MODE == tls ]]; then
        make_pki "$WORK/pki"
        CA_FILE=$WORK/pki/ca.crt CURL_CA=$WORK/pki/ca.crt
        tls=(--tls-cert "$WORK/pki/tls.crt" --tls-key "$WORK/pki/tls.key")
        ENDPOINT=https://127.0.0.1:$PORT
    else
        CA_FILE= CURL_CA=
        ENDPOINT=http://127.0.0.1:$PORT
    fi
    COFFER_ROOT_ACCESS_KEY=$ROOT_KEY COFFER_ROOT_SECRET_KEY=$ROOT_SECRET \
        "$COFFER_BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" "${tls[@]}" \
        >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if curl -fsS "$ENDPOINT/health/ready" >/dev/null 2>&1; then
            ok "server $COFFER_BIN ready on $ENDPOINT"
            return
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited before becoming ready"
        sleep 0.1
    done
    fail "server not ready after 30s"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# create_key NAME POLICY_FILE: sets KEY_ID and KEY_SECRET.
create_key() {
    local out
    out=$("$COFFER_BIN" key create "$1" --policy "$2" --data-dir "$DATA")
    KEY_ID=$(sed -n 's/^AccessKeyId: //p' <<<"$out")
    KEY_SECRET=$(sed -n 's/^SecretAccessKey: //p' <<<"$out")
    [[ -n "$KEY_ID" && -n "$KEY_SECRET" ]] || fail "key create printed no key: $out"
}

# ---------------------------------------------------------------- aws CLI

aws_env() {
    export AWS_ENDPOINT_URL=$ENDPOINT AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=$ROOT_KEY AWS_SECRET_ACCESS_KEY=$ROOT_SECRET
    # The defaults, spelled out: current SDKs send CRC checksums and Coffer verifies them.
    export AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_SUPPORTED AWS_RESPONSE_CHECKSUM_VALIDATION=WHEN_SUPPORTED
    # Keep the developer's ~/.aws out; one attempt so a server error is not retried away.
    export AWS_CONFIG_FILE=$WORK/aws-config AWS_SHARED_CREDENTIALS_FILE=$WORK/aws-credentials
    export AWS_MAX_ATTEMPTS=1 AWS_RETRY_MODE=standard AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
    # The aws CLI and boto3 read AWS_CA_BUNDLE (some machines set it to the system
    # bundle; over plain HTTP it is not used).
    if [[ -n "$CA_FILE" ]]; then export AWS_CA_BUNDLE=$CA_FILE COFFER_E2E_CA=$CA_FILE; fi
    printf '[default]\ns3 =\n    addressing_style = path\n' >"$AWS_CONFIG_FILE"
    printf '[default]\ns3 =\n    addressing_style = path\n    signature_version = s3v4\n' >"$WORK/aws-config-s3v4"
    : >"$AWS_SHARED_CREDENTIALS_FILE"
}

check_aws_cli() {
    say "aws CLI"
    local b=cli-bucket d=$WORK/aws
    mkdir -p "$d"

    expect_out "aws s3 mb" "make_bucket: $b" aws s3 mb "s3://$b"
    # us-east-1 keeps AWS's legacy answer: re-creating a bucket you own is 200 OK.
    expect_out "aws s3 mb of an existing bucket (us-east-1: 200 as on AWS)" "make_bucket: $b" aws s3 mb "s3://$b"
    expect_out "s3api get-bucket-versioning of a new bucket is empty (never enabled)" "" \
        aws s3api get-bucket-versioning --bucket "$b" --output json

    head -c $((64 << 20)) /dev/urandom >"$d/big.bin"
    aws s3 cp "$d/big.bin" "s3://$b/big.bin" --only-show-errors
    local etag
    etag=$(aws s3api head-object --bucket "$b" --key big.bin --query ETag --output text)
    [[ "$etag" =~ ^\"[0-9a-f]{32}-8\"$ ]] || fail "64 MiB upload should be 8 parts of 8 MiB, ETag $etag"
    ok "aws s3 cp 64 MiB up went multipart (ETag $etag)"
    aws s3 cp "s3://$b/big.bin" "$d/big.down" --only-show-errors
    cmp "$d/big.bin" "$d/big.down"
    ok "aws s3 cp 64 MiB down is byte-identical"

    # A tree with the names that trip up URL encoding.
    local tree=$d/tree
    mkdir -p "$tree/a/b/c" "$tree/with space" "$tree/ünïcødé"
    printf 'one\n' >"$tree/one.txt"
    printf 'plus\n' >"$tree/a/x+y=z.txt"
    head -c 300000 /dev/urandom >"$tree/a/b/c/deep.bin"
    printf 'space\n' >"$tree/with space/file name.txt"
    printf 'unicode\n' >"$tree/ünïcødé/日本.txt"
    printf 'tilde\n' >"$tree/a/~tilde&amp;.txt"
    : >"$tree/a/empty"
    aws s3 sync "$tree" "s3://$b/tree/" --only-show-errors
    aws s3 sync "s3://$b/tree/" "$d/tree.down" --only-show-errors
    diff -r "$tree" "$d/tree.down"
    ok "aws s3 sync up and back down gives an identical tree"
    expect_out "aws s3 sync again has nothing to do" "" \
        aws s3 sync "$tree" "s3://$b/tree/" --dryrun --no-progress

    local expected listed
    expected=$(cd "$d" && find tree -type f -printf '%s %p\n' | LC_ALL=C sort -k2)
    listed=$(aws s3 ls "s3://$b/tree/" --recursive | sed -E 's/^[0-9-]+ [0-9:]+ +//' | LC_ALL=C sort -k2)
    expect_eq "aws s3 ls --recursive lists every key with its size" "$listed" "$expected"

    # aws CLI v1 presigns with SigV2 by default, v2 with SigV4; check both.
    local url sig label
    for sig in default s3v4; do
        if [[ $sig == s3v4 ]]; then
            url=$(AWS_CONFIG_FILE=$WORK/aws-config-s3v4 aws s3 presign "s3://$b/tree/with space/file name.txt" --expires-in 300)
            [[ "$url" == *X-Amz-Signature=* ]] || fail "presigned URL is not SigV4: $url"
        else
            url=$(aws s3 presign "s3://$b/tree/with space/file name.txt" --expires-in 300)
        fi
        [[ "$url" == "$ENDPOINT/"* ]] || fail "presigned URL is not on $ENDPOINT: $url"
        curl -fsS "$url" -o "$d/presigned.txt"
        cmp "$d/presigned.txt" "$tree/with space/file name.txt"
        if [[ "$url" == *X-Amz-Signature=* ]]; then label=SigV4; else label=SigV2; fi
        ok "aws s3 presign $label URL fetched with curl"
        expect_error "presigned $label URL reused for another key" SignatureDoesNotMatch \
            curl -sS --fail-with-body "${url/with%20space\/file%20name.txt/one.txt}"
    done
    local v2 v4
    v2=$(aws s3 presign "s3://$b/tree/one.txt" --expires-in 1)
    v4=$(AWS_CONFIG_FILE=$WORK/aws-config-s3v4 aws s3 presign "s3://$b/tree/one.txt" --expires-in 1)
    sleep 2
    expect_error "expired presigned URL (default signer)" AccessDenied curl -sS --fail-with-body "$v2"
    expect_error "expired presigned URL (SigV4)" AccessDenied curl -sS --fail-with-body "$v4"

    # s3api: head-object, metadata, list with delimiter, copy, delete-objects, range, policy.
    expect_out "s3api head-object ContentLength" $((64 << 20)) \
        aws s3api head-object --bucket "$b" --key big.bin --query ContentLength --output text

    printf 'metadata body\n' >"$d/meta.txt"
    aws s3api put-object --bucket "$b" --key meta.txt --body "$d/meta.txt" \
        --content-type text/plain --metadata color=blue,owner=e2e >/dev/null
    json_eq "$(aws s3api head-object --bucket "$b" --key meta.txt --query Metadata --output json)" \
        '{"color":"blue","owner":"e2e"}' || fail "head-object does not show the metadata put-object set"
    expect_out "s3api put-object --metadata then head-object shows it (content type)" text/plain \
        aws s3api head-object --bucket "$b" --key meta.txt --query ContentType --output text

    for key in dir/a dir/b dir/sub/c top; do
        aws s3api put-object --bucket "$b" --key "$key" --body "$d/meta.txt" >/dev/null
    done
    expect_out "s3api list-objects-v2 --delimiter groups common prefixes" "$(printf 'dir/a,dir/b\tdir/sub/')" \
        aws s3api list-objects-v2 --bucket "$b" --prefix dir/ --delimiter / \
        --query '[join(`,`, Contents[].Key), join(`,`, CommonPrefixes[].Prefix)]' --output text

    local src_etag
    src_etag=$(aws s3api head-object --bucket "$b" --key meta.txt --query ETag --output text)
    expect_out "s3api copy-object returns the source ETag" "$src_etag" \
        aws s3api copy-object --bucket "$b" --key copy.txt --copy-source "$b/meta.txt" \
        --query CopyObjectResult.ETag --output text
    json_eq "$(aws s3api head-object --bucket "$b" --key copy.txt --query Metadata --output json)" \
        '{"color":"blue","owner":"e2e"}' || fail "copy-object did not copy the metadata"
    ok "s3api copy-object copies the metadata (COPY directive)"
    aws s3api copy-object --bucket "$b" --key copy.txt --copy-source "$b/copy.txt" \
        --metadata-directive REPLACE --metadata color=red --content-type application/json >/dev/null
    expect_out "s3api copy-object onto itself with REPLACE changes the metadata" "$(printf 'red\tapplication/json')" \
        aws s3api head-object --bucket "$b" --key copy.txt --query '[Metadata.color, ContentType]' --output text
    aws s3api copy-object --bucket "$b" --key "big copy.bin" --copy-source "$b/big.bin" >/dev/null
    aws s3api get-object --bucket "$b" --key "big copy.bin" "$d/big.copy" >/dev/null
    cmp "$d/big.bin" "$d/big.copy"
    ok "s3api copy-object of the 64 MiB multipart object is byte-identical"

    expect_out "s3api delete-objects reports every key deleted" "dir/a,dir/b,never-existed" \
        aws s3api delete-objects --bucket "$b" \
        --delete '{"Objects":[{"Key":"dir/a"},{"Key":"dir/b"},{"Key":"never-existed"}]}' \
        --query 'join(`,`, sort(Deleted[].Key))' --output text
    expect_out "s3api list-objects-v2 after delete-objects" "dir/sub/c" \
        aws s3api list-objects-v2 --bucket "$b" --prefix dir/ --query 'join(`,`, Contents[].Key)' --output text

    # A range across the boundary of parts 1 and 2 (8 MiB), and a suffix range.
    expect_out "s3api get-object --range ContentRange" "bytes 8388000-8389999/$((64 << 20))" \
        aws s3api get-object --bucket "$b" --key big.bin --range bytes=8388000-8389999 "$d/range.bin" \
        --query ContentRange --output text
    cmp "$d/range.bin" <(dd if="$d/big.bin" iflag=skip_bytes,count_bytes skip=8388000 count=2000 status=none)
    ok "s3api get-object --range across a part boundary returns the right bytes"
    aws s3api get-object --bucket "$b" --key big.bin --range bytes=-1000 "$d/suffix.bin" >/dev/null
    cmp "$d/suffix.bin" <(dd if="$d/big.bin" iflag=skip_bytes skip=$(((64 << 20) - 1000)) status=none)
    ok "s3api get-object --range bytes=-1000 returns the last 1000 bytes"
    expect_error "s3api get-object with an unsatisfiable range" InvalidRange \
        aws s3api get-object --bucket "$b" --key meta.txt --range bytes=1000-2000 "$d/none.bin"

    printf 'public\n' >"$d/public.txt"
    aws s3 cp "$d/public.txt" "s3://$b/public/hello.txt" --only-show-errors
    local policy
    policy=$(printf '{"Version":"2012-10-17","Statement":[{"Sid":"PublicRead","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::%s/public/*"}]}' "$b")
    expect_error "get-bucket-policy before one is set" NoSuchBucketPolicy aws s3api get-bucket-policy --bucket "$b"
    aws s3api put-bucket-policy --bucket "$b" --policy "$policy"
    json_eq "$(aws s3api get-bucket-policy --bucket "$b" --query Policy --output text)" "$policy" ||
        fail "get-bucket-policy does not return the policy put"
    ok "s3api put-bucket-policy / get-bucket-policy round-trip"
    curl -fsS "$ENDPOINT/$b/public/hello.txt" -o "$d/anon.txt"
    cmp "$d/anon.txt" "$d/public.txt"
    ok "anonymous GET allowed by the bucket policy"
    expect_error "anonymous GET outside the policy" AccessDenied curl -sS --fail-with-body "$ENDPOINT/$b/meta.txt"
    aws s3api delete-bucket-policy --bucket "$b"
    expect_error "anonymous GET after delete-bucket-policy" AccessDenied \
        curl -sS --fail-with-body "$ENDPOINT/$b/public/hello.txt"

    # A key restricted to reading this bucket.
    printf '{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::%s"},
        {"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::%s/*"}]}' "$b" "$b" >"$d/readonly.json"
    aws s3 mb "s3://$b-other" >/dev/null
    create_key e2e-readonly "$d/readonly.json"
    local n
    for n in $(seq 1 50); do
        if AWS_ACCESS_KEY_ID=$KEY_ID AWS_SECRET_ACCESS_KEY=$KEY_SECRET \
            aws s3api head-object --bucket "$b" --key meta.txt >/dev/null 2>&1; then
            break
        fi
        [[ $n -lt 50 ]] || fail "restricted key not usable 10s after key create"
        sleep 0.2
    done
    (
        export AWS_ACCESS_KEY_ID=$KEY_ID AWS_SECRET_ACCESS_KEY=$KEY_SECRET
        aws s3 cp "s3://$b/meta.txt" "$d/readonly.txt" --only-show-errors
        cmp "$d/readonly.txt" "$d/meta.txt"
        ok "restricted key may read its bucket"
        expect_out "restricted key may list its bucket" "dir/sub/c" \
            aws s3api list-objects-v2 --bucket "$b" --prefix dir/ --query 'join(`,`, Contents[].Key)' --output text
        expect_error "restricted key PutObject" AccessDenied \
            aws s3 cp "$d/meta.txt" "s3://$b/denied.txt" --only-show-errors
        expect_error "restricted key DeleteObject" AccessDenied aws s3api delete-object --bucket "$b" --key meta.txt
        # Without s3:ListAllMyBuckets, ListBuckets shows only the buckets the key may list.
        expect_out "restricted key ListBuckets sees only its bucket" "$b" \
            aws s3api list-buckets --query 'join(`,`, Buckets[].Name)' --output text
        expect_error "restricted key ListObjects on another bucket" AccessDenied aws s3 ls "s3://$b-other"
        expect_error "restricted key CreateBucket" AccessDenied aws s3 mb s3://not-allowed
    )
    aws s3api head-object --bucket "$b" --key meta.txt >/dev/null
    ok "the denied delete left the object in place"
    aws s3 rb "s3://$b-other" >/dev/null
    expect_error "wrong secret" SignatureDoesNotMatch \
        env AWS_SECRET_ACCESS_KEY=wrong-secret aws s3api list-objects-v2 --bucket "$b"
    expect_error "unknown access key" InvalidAccessKeyId \
        env AWS_ACCESS_KEY_ID=NOSUCHKEY aws s3 ls "s3://$b"

    expect_error "aws s3 rb of a non-empty bucket" BucketNotEmpty aws s3 rb "s3://$b"
    aws s3 rm "s3://$b" --recursive --only-show-errors
    expect_out "aws s3 rm --recursive empties the bucket" "" aws s3 ls "s3://$b" --recursive
    expect_out "aws s3 rb" "remove_bucket: $b" aws s3 rb "s3://$b"
}

# ---------------------------------------------------------------- boto3

check_boto3() {
    say "boto3"
    python3 "$ROOT/e2e/boto3_check.py" boto3-bucket "$WORK"
}

# ---------------------------------------------------------------- rclone

check_rclone() {
    say "rclone"
    local b=rclone-bucket d=$WORK/rclone
    export RCLONE_CONFIG=$WORK/rclone.conf
    : >"$RCLONE_CONFIG"
    export RCLONE_CONFIG_COFFER_TYPE=s3 RCLONE_CONFIG_COFFER_PROVIDER=Other
    export RCLONE_CONFIG_COFFER_ENDPOINT=$ENDPOINT RCLONE_CONFIG_COFFER_REGION=us-east-1
    export RCLONE_CONFIG_COFFER_ACCESS_KEY_ID=$ROOT_KEY RCLONE_CONFIG_COFFER_SECRET_ACCESS_KEY=$ROOT_SECRET
    export RCLONE_CONFIG_COFFER_FORCE_PATH_STYLE=true
    # rclone's default cutoff is 200 MiB; lower it so the 20 MiB file goes multipart (4 x 5 MiB).
    export RCLONE_CONFIG_COFFER_UPLOAD_CUTOFF=16M RCLONE_CONFIG_COFFER_CHUNK_SIZE=5M
    export RCLONE_RETRIES=1 RCLONE_LOW_LEVEL_RETRIES=1
    # rclone's AWS SDK refuses any AWS_CA_BUNDLE (even over plain HTTP); some CI
    # images set one. Over TLS it is told about the private CA with --ca-cert.
    rclone() { env -u AWS_CA_BUNDLE rclone ${CA_FILE:+--ca-cert "$CA_FILE"} "$@"; }

    mkdir -p "$d/src/nested/deeper" "$d/src/with space"
    head -c $((20 << 20)) /dev/urandom >"$d/src/large.bin"
    head -c 123457 /dev/urandom >"$d/src/nested/medium.bin"
    printf 'small\n' >"$d/src/nested/deeper/small.txt"
    printf 'spaced\n' >"$d/src/with space/a+b.txt"
    : >"$d/src/empty.txt"

    rclone mkdir "coffer:$b"
    rclone copy "$d/src" "coffer:$b/data"
    ok "rclone copy"
    local etag
    etag=$(AWS_ACCESS_KEY_ID=$ROOT_KEY AWS_SECRET_ACCESS_KEY=$ROOT_SECRET \
        aws s3api head-object --bucket "$b" --key data/large.bin --query ETag --output text)
    [[ "$etag" =~ ^\"[0-9a-f]{32}-4\"$ ]] || fail "rclone's 20 MiB upload should be 4 parts, ETag $etag"
    ok "rclone uploaded the 20 MiB file multipart (ETag $etag)"

    local out
    out=$(rclone check "$d/src" "coffer:$b/data" 2>&1) || fail "rclone check: $out"
    [[ "$out" == *"0 differences found"* ]] || fail "rclone check: $out"
    ok "rclone check: 0 differences"
    out=$(rclone check --download "$d/src" "coffer:$b/data" 2>&1) || fail "rclone check --download: $out"
    [[ "$out" == *"0 differences found"* ]] || fail "rclone check --download: $out"
    ok "rclone check --download: 0 differences"

    local expected listed
    expected=$(cd "$d/src" && find . -type f -printf '%s %P\n' | LC_ALL=C sort -k2)
    listed=$(rclone ls "coffer:$b/data" | sed -E 's/^ +//' | LC_ALL=C sort -k2)
    expect_eq "rclone ls lists every file with its size" "$listed" "$expected"

    rclone copy "coffer:$b/data" "$d/back"
    diff -r "$d/src" "$d/back"
    ok "rclone copy back gives an identical tree"

    rclone purge "coffer:$b"
    expect_error "rclone purge removed the bucket" NoSuchBucket \
        env AWS_ACCESS_KEY_ID=$ROOT_KEY AWS_SECRET_ACCESS_KEY=$ROOT_SECRET aws s3 ls "s3://$b"
}

# ---------------------------------------------------------------- s3cmd

check_s3cmd() {
    say "s3cmd"
    local b=s3cmd-bucket d=$WORK/s3cmd cfg=$WORK/s3cmd.cfg
    mkdir -p "$d"
    cat >"$cfg" <<EOF
[default]
access_key = $ROOT_KEY
secret_key = $ROOT_SECRET
host_base = 127.0.0.1:$PORT
host_bucket = 127.0.0.1:$PORT
bucket_location = us-east-1
use_https = $([[ -n "$CA_FILE" ]] && echo True || echo False)
signature_v2 = False
check_ssl_certificate = True
ca_certs_file = $CA_FILE
multipart_chunk_size_mb = 5
EOF
    local s3cmd=(s3cmd --config "$cfg" --no-progress ${CA_FILE:+--ca-certs "$CA_FILE"})

    expect_out "s3cmd mb" "Bucket 's3://$b/' created" "${s3cmd[@]}" mb "s3://$b"
    head -c 4096 /dev/urandom >"$d/small.bin"
    head -c $((12 << 20)) /dev/urandom >"$d/large.bin"
    "${s3cmd[@]}" put "$d/small.bin" "s3://$b/small.bin" >/dev/null
    "${s3cmd[@]}" put "$d/large.bin" "s3://$b/dir/large.bin" >/dev/null
    ok "s3cmd put (single and multipart)"
    local etag
    etag=$(aws s3api head-object --bucket "$b" --key dir/large.bin --query ETag --output text)
    [[ "$etag" =~ ^\"[0-9a-f]{32}-3\"$ ]] || fail "s3cmd 12 MiB upload should be 3 parts, ETag $etag"
    ok "s3cmd uploaded the 12 MiB file multipart (ETag $etag)"

    "${s3cmd[@]}" get "s3://$b/small.bin" "$d/small.back" >/dev/null
    "${s3cmd[@]}" get "s3://$b/dir/large.bin" "$d/large.back" >/dev/null
    cmp "$d/small.bin" "$d/small.back"
    cmp "$d/large.bin" "$d/large.back"
    ok "s3cmd get returns identical bytes"

    local listed
    listed=$("${s3cmd[@]}" ls "s3://$b" | sed -E 's/^.* +//')
    expect_eq "s3cmd ls" "$listed" "$(printf 's3://%s/dir/\ns3://%s/small.bin' "$b" "$b")"
    listed=$("${s3cmd[@]}" ls --recursive "s3://$b" | awk '{print $3, $4}')
    expect_eq "s3cmd ls --recursive" "$listed" \
        "$(printf '%s s3://%s/dir/large.bin\n4096 s3://%s/small.bin' $((12 << 20)) "$b" "$b")"
    listed=$("${s3cmd[@]}" ls)
    grep -qx ".* s3://$b" <<<"$listed" || fail "s3cmd ls does not list the bucket: $listed"
    ok "s3cmd ls lists the bucket"

    # Canned ACLs: refused while the bucket enforces ownership (AWS's default),
    # honoured once ACLs are enabled; s3cmd's setacl reads and rewrites the ACL.
    local url="$ENDPOINT/$b/public.txt"
    printf 'for everyone\n' >"$d/public.txt"
    expect_error "s3cmd put --acl-public on an ownership-enforced bucket" AccessControlListNotSupported \
        "${s3cmd[@]}" put --acl-public "$d/public.txt" "s3://$b/public.txt"
    aws s3api put-bucket-ownership-controls --bucket "$b" \
        --ownership-controls 'Rules=[{ObjectOwnership=ObjectWriter}]'
    "${s3cmd[@]}" put --acl-public "$d/public.txt" "s3://$b/public.txt" >/dev/null
    expect_out "anonymous curl GET of an --acl-public object" "for everyone" curl -sf "$url"
    "${s3cmd[@]}" setacl --acl-private "s3://$b/public.txt" >/dev/null
    expect_out "anonymous GET after setacl --acl-private" "403" \
        curl -s -o /dev/null -w '%{http_code}' "$url"
    "${s3cmd[@]}" setacl --acl-public "s3://$b/public.txt" >/dev/null
    expect_out "anonymous GET after setacl --acl-public" "for everyone" curl -sf "$url"
    "${s3cmd[@]}" del "s3://$b/public.txt" >/dev/null

    expect_error "s3cmd rb of a non-empty bucket" BucketNotEmpty "${s3cmd[@]}" rb "s3://$b"
    "${s3cmd[@]}" del "s3://$b/small.bin" "s3://$b/dir/large.bin" >/dev/null
    expect_out "s3cmd del leaves the bucket empty" "" "${s3cmd[@]}" ls --recursive "s3://$b"
    expect_out "s3cmd rb" "Bucket 's3://$b/' removed" "${s3cmd[@]}" rb "s3://$b"
}

# ---------------------------------------------------------------- TLS port

check_tls_port() {
    say "TLS port"
    local out
    out=$(command curl -sS -m 10 "http://127.0.0.1:$PORT/health/live" 2>&1) || true
    [[ "$out" == *"use https://"* ]] || fail "plain HTTP to the TLS port: expected a clear 400, got: $out"
    ok "plain HTTP to the TLS port gets a 400 saying to use https://, at once"
    out=$(env -u CURL_CA_BUNDLE curl -sS -m 10 --cacert /dev/null "$ENDPOINT/health/live" 2>&1) &&
        fail "a client without the CA accepted the certificate: $out"
    ok "a client that does not trust the private CA refuses the certificate"
    out=$(curl -fsS "$ENDPOINT/metrics") || fail "/metrics over TLS failed"
    [[ "$out" == *"# TYPE"* ]] || fail "/metrics over TLS: no Prometheus text"
    ok "/metrics and /health over TLS"
}

# ---------------------------------------------------------------- main

ensure_tools
find_server
for mode in plain tls; do
    say "over $([[ $mode == tls ]] && echo HTTPS with a private CA || echo plain HTTP)"
    start_server "$mode"
    aws_env
    check_aws_cli
    check_boto3
    check_rclone
    check_s3cmd
    if [[ $mode == tls ]]; then check_tls_port; fi
    stop_server
    # The next round starts from clean work dirs (a sync into last round's tree
    # would skip files of equal size and older time).
    find "$WORK" -mindepth 1 -maxdepth 1 ! -name server.log -exec rm -rf {} +
done
