//! Test support shared by Coffer's crates.
//!
//! [`postgres_url`] hands each caller a fresh, empty Postgres database: in the
//! cluster named by `COFFER_TEST_DATABASE_URL` when set, otherwise in a throwaway
//! cluster started once per test process from the local PostgreSQL binaries (as the
//! `postgres` user when running as root, since Postgres refuses to run as root).
//! When neither works the test fails, saying how to install PostgreSQL.

pub mod replicated;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::Connection;

const INSTALL_HINT: &str = "Postgres tests need PostgreSQL: set COFFER_TEST_DATABASE_URL=postgres://user:pass@host:port/db \
     (a role allowed to CREATE DATABASE), or install the server binaries so that `initdb`, `pg_ctl` and \
     `postgres` are on PATH (Debian/Ubuntu: `apt-get install postgresql` and add /usr/lib/postgresql/<ver>/bin to PATH).";

/// A URL to a new, empty database on the test cluster.
pub async fn postgres_url() -> String {
    let admin = admin_url();
    let name = format!("coffer_test_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to test Postgres at {admin}: {e}\n{INSTALL_HINT}")
        });
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    conn.close().await.ok();
    with_database(&admin, &name)
}

/// Replaces the database name in a postgres URL.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{database}?{q}"),
        None => format!("{host_part}/{database}"),
    }
}

fn admin_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("COFFER_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => start_throwaway_cluster(),
    })
    .clone()
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root.
pub(crate) fn pg_command(program: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", program]);
        cmd
    } else {
        Command::new(program)
    }
}

/// Removes throwaway clusters whose test process is gone but whose files were
/// left behind (a watchdog killed along with its process group).
fn remove_stale_clusters(as_postgres: bool) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("coffer-pg-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let data = entry.path().join("data");
        let _ = pg_command("pg_ctl", as_postgres)
            .args(["-m", "immediate", "-w", "stop", "-D"])
            .arg(&data)
            .output();
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Removes the `temp_dir`s of test processes that have ended: tests leave
/// their directories for inspection, and the next test process sweeps them.
fn remove_stale_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("coffer-") || name.starts_with("coffer-pg-") {
            continue;
        }
        let parts: Vec<&str> = name.split('-').collect();
        let Some(pid) = parts
            .len()
            .checked_sub(2)
            .and_then(|i| parts[i].strip_prefix('p'))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn start_throwaway_cluster() -> String {
    start_cluster(&[], &[])
}

/// A throwaway cluster of its own serving TLS (`ssl=on`) with the given PEM
/// certificate chain and key (as `server.crt`/`server.key` in its data dir);
/// returns its admin URL without any `sslmode`. For tests of TLS to Postgres.
pub fn postgres_with_tls(cert_pem: &str, key_pem: &str) -> String {
    start_cluster(
        &[
            "ssl=on",
            "ssl_cert_file=server.crt",
            "ssl_key_file=server.key",
        ],
        &[
            ("server.crt", cert_pem.as_bytes()),
            ("server.key", key_pem.as_bytes()),
        ],
    )
}

/// Starts a cluster with extra `-c` settings and extra files in its data dir
/// (owned by the server's user, mode 0600, as Postgres demands of a key).
fn start_cluster(settings: &[&str], files: &[(&str, &[u8])]) -> String {
    let as_postgres = is_root();
    remove_stale_clusters(as_postgres);
    let dir = std::env::temp_dir().join(format!(
        "coffer-pg-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    if as_postgres {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "cannot chown {} to the postgres user (does it exist?)\n{INSTALL_HINT}",
            dir.display()
        );
    }
    let data = dir.join("data");
    let out = pg_command("initdb", as_postgres)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "-D",
        ])
        .arg(&data)
        .output()
        .unwrap_or_else(|e| panic!("cannot run initdb: {e}\n{INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "initdb failed: {}\n{INSTALL_HINT}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, contents) in files {
        use std::os::unix::fs::PermissionsExt as _;
        let path = data.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&path)
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "cannot chown {}",
                path.display()
            );
        }
    }
    let port = free_port();
    spawn_postgres_with_watchdog(&dir, &data, port, as_postgres, settings);
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    wait_until_accepting(port);
    url
}

/// Starts `postgres` under a shell watchdog that stops it and removes its files
/// once this test process is gone, so no cluster outlives its tests.
fn spawn_postgres_with_watchdog(
    dir: &Path,
    data: &Path,
    port: u16,
    as_postgres: bool,
    settings: &[&str],
) {
    let settings: String = settings.iter().map(|s| format!(" -c {s}")).collect();
    let runner = if as_postgres {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let script = format!(
        "{runner}postgres -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400{settings} \
         >'{dir}/postgres.log' 2>&1 &
         pg=$!
         while kill -0 {parent} 2>/dev/null && kill -0 $pg 2>/dev/null; do sleep 1; done
         {runner}pg_ctl -D '{data}' -m immediate -w stop >/dev/null 2>&1
         kill -INT $pg 2>/dev/null; wait $pg 2>/dev/null; rm -rf '{dir}'",
        data = data.display(),
        dir = dir.display(),
        parent = std::process::id(),
    );
    // The watchdog outlives this call on purpose; it exits once we are gone.
    #[allow(clippy::zombie_processes)]
    let _watchdog = Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start postgres: {e}\n{INSTALL_HINT}"));
}

pub(crate) fn wait_until_accepting(port: u16) {
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // The port opens slightly before recovery finishes; give it a moment.
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("throwaway postgres did not start listening on port {port}\n{INSTALL_HINT}");
}

/// A fresh temporary directory for a test's data (removed by the OS's tmp cleanup
/// or by the test); returned as an owned path.
pub fn temp_dir(label: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_stale_temp_dirs);
    let dir = std::env::temp_dir().join(format!(
        "coffer-{label}-p{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// One figure from a Coffer server's `/metrics` (`endpoint` like
/// `http://127.0.0.1:9000`); panics when the server does not report it.
pub async fn metric(endpoint: &str, name: &str) -> i64 {
    let text = reqwest::get(format!("{endpoint}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {endpoint}/metrics:\n{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres", "x"),
            "postgres://u:p@h:5/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5/db?sslmode=disable", "x"),
            "postgres://u@h:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    }

    #[tokio::test]
    async fn postgres_url_gives_a_working_empty_database() {
        let url = postgres_url().await;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(n, 0);
    }
}
