//! A failing disk, not a full one: `fsync` returns EIO. A real `coffer-server`
//! process runs with a small `LD_PRELOAD` library (built here with the C
//! compiler) that fails `fsync`/`fdatasync` on files under a chosen path while
//! a flag file exists. A write whose data or metadata could not be made
//! durable must fail — never be retried into a success the disk did not give —
//! must leave nothing visible, and the server must write again once the disk
//! behaves, without a restart.

#[path = "support/process.rs"]
mod process;
mod workload;

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use process::{ROOT_KEY, ROOT_SECRET, Server};

const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Fails while the file named by COFFER_FAIL_FSYNC_FLAG exists, for file
   descriptors whose path starts with COFFER_FAIL_FSYNC_UNDER. */
static int failing(int fd) {
    const char *flag = getenv("COFFER_FAIL_FSYNC_FLAG");
    const char *under = getenv("COFFER_FAIL_FSYNC_UNDER");
    if (!flag || !under || access(flag, F_OK) != 0) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    return strncmp(path, under, strlen(under)) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (failing(fd)) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (failing(fd)) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
"#;

/// Builds the shim into `dir`; the C compiler is the one Rust links with.
fn build_shim(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("shim dir");
    let source = dir.join("failfsync.c");
    let library = dir.join("libfailfsync.so");
    std::fs::write(&source, SHIM).expect("shim source");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("run cc (a C compiler is needed, as for linking Rust)");
    assert!(status.success(), "building the fsync shim failed");
    library
}

async fn put(s3: &Client, key: &str, size: usize) -> Result<(), String> {
    s3.put_object()
        .bucket("disk")
        .key(key)
        .body(ByteStream::from(vec![b'f'; size]))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

async fn exists(s3: &Client, key: &str) -> bool {
    s3.head_object()
        .bucket("disk")
        .key(key)
        .send()
        .await
        .is_ok()
}

/// One fault: fsync fails under `under` (relative to the data dir) for a
/// write of `size` bytes.
/// `code`: the S3 error the client gets.
async fn a_failed_fsync_fails_the_write(under: &str, size: usize, code: &str) {
    let mut server = Server::new("fsync", None);
    let shim = build_shim(&server.data_dir.with_extension("shim"));
    let flag = server.data_dir.with_extension("failing");
    server.env = vec![
        ("LD_PRELOAD".into(), shim.display().to_string()),
        ("COFFER_FAIL_FSYNC_FLAG".into(), flag.display().to_string()),
        (
            "COFFER_FAIL_FSYNC_UNDER".into(),
            server.data_dir.join(under).display().to_string(),
        ),
    ];
    server.start().await;
    let s3 = workload::client(&server.endpoint(), ROOT_KEY, ROOT_SECRET);
    s3.create_bucket()
        .bucket("disk")
        .send()
        .await
        .expect("bucket");
    put(&s3, "before", size)
        .await
        .expect("a write before the fault");

    std::fs::write(&flag, b"").expect("flag");
    for i in 0..3 {
        let key = format!("during-{i}");
        let result = put(&s3, &key, size).await;
        let Err(error) = result else {
            panic!("fsync failed under {under}, yet a {size}-byte write was acknowledged");
        };
        assert!(
            error.contains(&format!("code: Some(\"{code}\")")),
            "fsync failing under {under}: expected {code}, got {error}"
        );
        assert!(
            !exists(&s3, &key).await,
            "a write whose fsync failed became visible"
        );
    }
    assert!(exists(&s3, "before").await, "earlier objects stay readable");
    let logged = std::fs::read_to_string(server.log()).unwrap_or_default();
    assert!(
        logged.contains("ERROR"),
        "a failing disk is logged as an error:\n{logged}"
    );

    std::fs::remove_file(&flag).expect("unflag");
    put(&s3, "after", size)
        .await
        .expect("writes resume once fsync works, without a restart");
    assert!(exists(&s3, "after").await);
    assert!(
        server.files_in("tmp").is_empty(),
        "temp files of failed writes are removed"
    );
    // What the server acknowledged is durable: it is all there after SIGKILL.
    server.kill9();
    server.start().await;
    for key in ["before", "after"] {
        assert!(exists(&s3, key).await, "{key} survives a restart");
    }
    for i in 0..3 {
        assert!(!exists(&s3, &format!("during-{i}")).await);
    }
    let shim_dir = server.data_dir.with_extension("shim");
    server.remove();
    let _ = std::fs::remove_dir_all(shim_dir);
    let _ = std::fs::remove_file(flag);
}

/// A blob file's fsync (before it is renamed into place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_blob_fsync_fails_the_write() {
    a_failed_fsync_fails_the_write("tmp", 200_000, "InternalError").await;
}

/// The blob directory's fsync (after the rename): the file is there, but its
/// name is not durable, so the write still fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_blob_directory_fsync_fails_the_write() {
    a_failed_fsync_fails_the_write("blobs", 200_000, "InternalError").await;
}

/// The SQLite database's fsync at commit (an inline object lives only there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_metadata_fsync_fails_the_write() {
    a_failed_fsync_fails_the_write("meta.db", 300, "ServiceUnavailable").await;
}
