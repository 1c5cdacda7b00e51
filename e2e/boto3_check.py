#!/usr/bin/env python3
"""boto3 against a running Coffer server: put/get/head, ListObjectsV2 pagination,
multipart through upload_file, additional checksums, presigned GET/PUT/POST, a
legacy-ACL application (ACL='public-read', then an anonymous GET), delete.

Called by e2e/clients.sh with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_REGION set, and COFFER_E2E_CA (the private CA's
PEM file) when the endpoint is https; argv: BUCKET WORKDIR.
"""

import base64
import hashlib
import io
import os
import ssl
import sys
import urllib.error
import urllib.request
import uuid

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

MiB = 1024 * 1024


def ok(message):
    print(f"ok: boto3 {message}", flush=True)


def error_code(call):
    """Runs `call`, which must fail with a ClientError; returns (code, http status)."""
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("expected the call to fail, it succeeded")


# Over https, boto3 verifies against the private CA (`verify=`) and so do the
# plain urllib requests made with presigned URLs.
CA = os.environ.get("COFFER_E2E_CA") or None
TLS = ssl.create_default_context(cafile=CA) if CA else None


def urlopen(request):
    return urllib.request.urlopen(request, context=TLS)


def client(**config):
    return boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        verify=CA,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        # One attempt: a server error must fail the check, not be retried away.
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "total_max_attempts": 1}, **config),
    )


def check_put_get_head(s3, bucket):
    body = b"hello from boto3\n" * 100
    put = s3.put_object(
        Bucket=bucket,
        Key="docs/hello.txt",
        Body=body,
        ContentType="text/plain",
        CacheControl="max-age=60",
        Metadata={"purpose": "e2e", "client": "boto3"},
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"', put["ETag"]
    ok("put_object returns the MD5 ETag")

    got = s3.get_object(Bucket=bucket, Key="docs/hello.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain", got["ContentType"]
    assert got["CacheControl"] == "max-age=60", got.get("CacheControl")
    assert got["Metadata"] == {"purpose": "e2e", "client": "boto3"}, got["Metadata"]
    ok("get_object returns body, content type, cache control and metadata")

    head = s3.head_object(Bucket=bucket, Key="docs/hello.txt")
    assert head["ContentLength"] == len(body), head["ContentLength"]
    assert head["ETag"] == put["ETag"]
    assert head["Metadata"] == {"purpose": "e2e", "client": "boto3"}
    ok("head_object returns length, ETag and metadata")

    ranged = s3.get_object(Bucket=bucket, Key="docs/hello.txt", Range="bytes=17-33")
    assert ranged["Body"].read() == body[17:34]
    assert ranged["ContentRange"] == f"bytes 17-33/{len(body)}", ranged["ContentRange"]
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    ok("get_object with Range returns 206 and the slice")

    sha = s3.put_object(Bucket=bucket, Key="docs/sha.bin", Body=body, ChecksumAlgorithm="SHA256")
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert sha["ChecksumSHA256"] == expected, sha
    head = s3.head_object(Bucket=bucket, Key="docs/sha.bin", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == expected, head
    ok("put_object with ChecksumAlgorithm=SHA256 stores and returns the checksum")

    assert error_code(lambda: s3.head_object(Bucket=bucket, Key="docs/missing")) == ("404", 404)
    assert error_code(lambda: s3.get_object(Bucket=bucket, Key="docs/missing")) == ("NoSuchKey", 404)
    assert error_code(lambda: s3.get_object(Bucket=bucket + "-absent", Key="x")) == ("NoSuchBucket", 404)
    ok("missing key and bucket give 404 NoSuchKey / NoSuchBucket")


def check_empty_upload_keeps_connection_usable(bucket):
    # botocore sends Expect: 100-continue with file-like bodies, empty ones too, and
    # misreads the next response on a connection where the server answered without
    # an interim 100 (boto/botocore#3755). One pooled connection makes the second
    # PUT reuse the first one's.
    single = client(max_pool_connections=1, read_timeout=10)
    single.put_object(Bucket=bucket, Key="empty/first", Body=io.BytesIO(b""))
    single.put_object(Bucket=bucket, Key="empty/second", Body=io.BytesIO(b"after an empty upload"))
    assert single.get_object(Bucket=bucket, Key="empty/second")["Body"].read() == b"after an empty upload"
    assert single.head_object(Bucket=bucket, Key="empty/first")["ContentLength"] == 0
    ok("an empty file upload (Expect: 100-continue) leaves the connection usable")


def check_list_pagination(s3, bucket):
    keys = [f"page/key-{i:02d}" for i in range(25)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    seen, pages, token = [], 0, None
    while True:
        kwargs = {"Bucket": bucket, "Prefix": "page/", "MaxKeys": 7}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        pages += 1
        assert page["KeyCount"] == len(page["Contents"]), page
        seen += [o["Key"] for o in page["Contents"]]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert pages == 4, pages
    assert seen == keys, seen
    ok("list_objects_v2 MaxKeys=7 pages 25 keys in 4 pages, in order")

    paginator = s3.get_paginator("list_objects_v2")
    listed = [
        o["Key"]
        for p in paginator.paginate(Bucket=bucket, Prefix="page/", StartAfter="page/key-19", PaginationConfig={"PageSize": 2})
        for o in p["Contents"]
    ]
    assert listed == keys[20:], listed
    ok("list_objects_v2 paginator with StartAfter")

    grouped = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    prefixes = [p["Prefix"] for p in grouped.get("CommonPrefixes", [])]
    assert prefixes == ["docs/", "empty/", "page/"], prefixes
    assert "Contents" not in grouped, grouped.get("Contents")
    ok("list_objects_v2 Delimiter=/ groups CommonPrefixes")


def check_multipart(s3, bucket, workdir):
    path = os.path.join(workdir, "boto3-multipart.bin")
    data = os.urandom(13 * MiB)
    with open(path, "wb") as f:
        f.write(data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
    s3.upload_file(path, bucket, "big/multipart.bin", Config=config)
    head = s3.head_object(Bucket=bucket, Key="big/multipart.bin")
    assert head["ContentLength"] == len(data), head["ContentLength"]
    assert head["ETag"].endswith('-3"'), head["ETag"]
    parts_md5 = b"".join(hashlib.md5(data[i : i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB))
    assert head["ETag"] == f'"{hashlib.md5(parts_md5).hexdigest()}-3"', head["ETag"]
    ok("upload_file with 5 MiB TransferConfig goes multipart (ETag md5-of-md5s-3)")

    back = os.path.join(workdir, "boto3-multipart.back")
    s3.download_file(bucket, "big/multipart.bin", back, Config=config)
    with open(back, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    ok("download_file (ranged, concurrent) returns identical bytes")

    part3 = s3.get_object(Bucket=bucket, Key="big/multipart.bin", PartNumber=3)
    assert part3["ContentLength"] == 3 * MiB, part3["ContentLength"]
    assert part3["Body"].read() == data[10 * MiB :]
    ok("get_object PartNumber=3 returns the last part")

    upload = s3.create_multipart_upload(Bucket=bucket, Key="big/aborted.bin")
    s3.upload_part(Bucket=bucket, Key="big/aborted.bin", UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024)
    listed = s3.list_multipart_uploads(Bucket=bucket)
    assert [u["UploadId"] for u in listed.get("Uploads", [])] == [upload["UploadId"]], listed
    s3.abort_multipart_upload(Bucket=bucket, Key="big/aborted.bin", UploadId=upload["UploadId"])
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert error_code(lambda: s3.head_object(Bucket=bucket, Key="big/aborted.bin"))[1] == 404
    ok("create/upload_part/list_multipart_uploads/abort leaves nothing behind")


def check_presigned(s3, bucket):
    body = b"presigned body \x00\xff bytes"
    s3.put_object(Bucket=bucket, Key="presigned/get me.bin", Body=body)
    # botocore presigns S3 URLs with SigV2 unless told otherwise; check both signers.
    for name, signer in (("default", s3), ("SigV4", client(signature_version="s3v4"))):
        url = signer.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "presigned/get me.bin"}, ExpiresIn=300
        )
        if name == "SigV4":
            assert "X-Amz-Signature=" in url, url
        # Over TLS the presigned URL carries https, as the endpoint does.
        assert url.startswith(os.environ["AWS_ENDPOINT_URL"] + "/"), url
        with urlopen(url) as response:
            assert response.status == 200
            assert response.read() == body
        ok(f"presigned GET URL ({name} signer) fetched with urllib")

        key = f"presigned/put-{name}.bin"
        # SigV2 signs the Content-Type, so the uploader must send the one presigned.
        put_url = signer.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": key, "ContentType": "application/x-e2e"}, ExpiresIn=300
        )
        request = urllib.request.Request(
            put_url, data=b"uploaded via presigned PUT", method="PUT", headers={"Content-Type": "application/x-e2e"}
        )
        with urlopen(request) as response:
            assert response.status == 200
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == b"uploaded via presigned PUT"
        assert got["ContentType"] == "application/x-e2e", got["ContentType"]
        ok(f"presigned PUT URL ({name} signer) uploads with urllib")

        tampered = url.replace("presigned/get", "presigned/GET")
        try:
            urlopen(tampered)
            raise AssertionError("presigned URL used for another key was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 403, e.code
            assert b"<Code>SignatureDoesNotMatch</Code>" in e.read()
        ok(f"presigned URL ({name} signer) for another key is refused (403 SignatureDoesNotMatch)")


def post_form(url, fields, filename, content):
    """A browser-style multipart/form-data POST; returns (status, body)."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: text/plain\r\n\r\n".encode() + content + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    request = urllib.request.Request(
        url, data=b"".join(parts), method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urlopen(request) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check_presigned_post(s3, bucket):
    for name, signer in (("default", s3), ("SigV4", client(signature_version="s3v4"))):
        key = f"posted/{name}.txt"
        post = signer.generate_presigned_post(
            bucket, key, Conditions=[["content-length-range", 1, 100]], ExpiresIn=300
        )
        status, body = post_form(post["url"], post["fields"], "hello.txt", b"posted via a browser form")
        assert status == 204, (status, body)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"posted via a browser form"
        ok(f"presigned POST form ({name} signer) uploads")
        status, body = post_form(post["url"], post["fields"], "big.txt", b"x" * 101)
        assert status == 400 and b"<Code>EntityTooLarge</Code>" in body, (status, body)
        ok(f"presigned POST form ({name} signer) enforces content-length-range")


def check_delete(s3, bucket):
    s3.delete_object(Bucket=bucket, Key="docs/hello.txt")
    assert error_code(lambda: s3.head_object(Bucket=bucket, Key="docs/hello.txt"))[1] == 404
    # S3 deletes are idempotent: deleting a missing key succeeds.
    assert s3.delete_object(Bucket=bucket, Key="docs/hello.txt")["ResponseMetadata"]["HTTPStatusCode"] == 204
    ok("delete_object removes the key; deleting again is a 204")

    assert error_code(lambda: s3.delete_bucket(Bucket=bucket)) == ("BucketNotEmpty", 409)
    remaining = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p.get("Contents", [])]
    for i in range(0, len(remaining), 1000):
        result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in remaining[i : i + 1000]]})
        assert not result.get("Errors"), result["Errors"]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    s3.delete_bucket(Bucket=bucket)
    assert error_code(lambda: s3.head_bucket(Bucket=bucket))[1] == 404
    ok(f"delete_objects emptied {len(remaining)} keys, delete_bucket removed the bucket")


def check_legacy_acl(s3, bucket):
    """What Mastodon, PeerTube and backup tools do: write with ACL='public-read'
    into a bucket whose ownership enables ACLs, then serve it to anyone."""
    acl_bucket = f"{bucket}-acl"
    s3.create_bucket(Bucket=acl_bucket, ObjectOwnership="ObjectWriter")
    s3.put_object(Bucket=acl_bucket, Key="media/avatar.png", Body=b"public avatar", ACL="public-read")
    s3.put_object(Bucket=acl_bucket, Key="media/private.png", Body=b"private")
    base = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    with urlopen(urllib.request.Request(f"{base}/{acl_bucket}/media/avatar.png")) as response:
        assert response.status == 200 and response.read() == b"public avatar"
    try:
        urlopen(urllib.request.Request(f"{base}/{acl_bucket}/media/private.png"))
        raise AssertionError("an object without a public ACL was served anonymously")
    except urllib.error.HTTPError as e:
        assert e.code == 403, e.code
    grants = s3.get_object_acl(Bucket=acl_bucket, Key="media/avatar.png")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ" for g in grants), grants
    for key in ("media/avatar.png", "media/private.png"):
        s3.delete_object(Bucket=acl_bucket, Key=key)
    s3.delete_bucket(Bucket=acl_bucket)
    ok("put_object ACL='public-read' into an ObjectWriter bucket is readable anonymously")


def main():
    bucket, workdir = sys.argv[1], sys.argv[2]
    s3 = client()
    s3.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    ok("create_bucket and list_buckets")
    check_put_get_head(s3, bucket)
    check_empty_upload_keeps_connection_usable(bucket)
    check_list_pagination(s3, bucket)
    check_multipart(s3, bucket, workdir)
    check_presigned(s3, bucket)
    check_presigned_post(s3, bucket)
    check_legacy_acl(s3, bucket)
    check_delete(s3, bucket)


if __name__ == "__main__":
    main()
