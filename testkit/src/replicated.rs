//! A Postgres primary with a synchronous standby, built from the local binaries,
//! and [`RwService`], a stand-in for the Kubernetes Service that CloudNativePG
//! points at the current primary (`<cluster>-rw`): for failover tests that
//! `kill -9` the primary, promote the standby and move the Service to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use crate::{free_port, is_root, pg_command, wait_until_accepting};

/// The standby's name in `synchronous_standby_names`.
const STANDBY_NAME: &str = "standby1";

/// Two Postgres servers on 127.0.0.1: a primary whose every commit waits for
/// the standby to flush it (`synchronous_commit = on`), and that standby.
/// Stopped and removed on drop, or by a watchdog once the test process is gone.
pub struct ReplicatedPostgres {
    dir: PathBuf,
    primary: PathBuf,
    standby: PathBuf,
    primary_port: u16,
    standby_port: u16,
    as_postgres: bool,
}

impl ReplicatedPostgres {
    /// Starts both and waits until the standby streams synchronously.
    /// Blocking: call it from `spawn_blocking` in async tests.
    pub fn start() -> Self {
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "coffer-pgha-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("create replicated cluster dir");
        if as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir));
        }
        let cluster = Self {
            primary: dir.join("primary"),
            standby: dir.join("standby"),
            dir,
            primary_port: free_port(),
            standby_port: free_port(),
            as_postgres,
        };
        cluster.watch_parent();
        run(pg_command("initdb", as_postgres)
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
            .arg(&cluster.primary));
        cluster.spawn(
            &cluster.primary,
            cluster.primary_port,
            &["-c", &format!("synchronous_standby_names={STANDBY_NAME}")],
        );
        wait_until_accepting(cluster.primary_port);
        run(pg_command("pg_basebackup", as_postgres)
            .args(["-h", "127.0.0.1", "-U", "postgres", "-R", "--no-sync", "-p"])
            .arg(cluster.primary_port.to_string())
            .arg("-D")
            .arg(&cluster.standby));
        // The walreceiver names itself after cluster_name. Once promoted the
        // standby has no standby of its own, so it waits for none.
        cluster.spawn(
            &cluster.standby,
            cluster.standby_port,
            &[
                "-c",
                &format!("cluster_name={STANDBY_NAME}"),
                "-c",
                "synchronous_standby_names=",
            ],
        );
        wait_until_accepting(cluster.standby_port);
        cluster.wait_for_sync_standby();
        cluster
    }

    pub fn primary_port(&self) -> u16 {
        self.primary_port
    }

    pub fn standby_port(&self) -> u16 {
        self.standby_port
    }

    /// `kill -9` of the primary's postmaster; its backends exit when they see it
    /// gone, so every connection to it breaks.
    pub fn kill_primary(&self) {
        let pid = std::fs::read_to_string(self.primary.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .expect("primary's postmaster.pid");
        run(Command::new("kill").args(["-9", pid.trim()]));
        // Backends notice the postmaster's death within moments.
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Promotes the standby and waits until it takes writes.
    pub fn promote_standby(&self) {
        run(pg_command("pg_ctl", self.as_postgres)
            .args(["promote", "-w", "-t", "60", "-D"])
            .arg(&self.standby));
    }

    /// Starts `postgres` on `data` in the background (it outlives this call).
    fn spawn(&self, data: &Path, port: u16, extra: &[&str]) {
        let mut command = pg_command("postgres", self.as_postgres);
        command
            .arg("-D")
            .arg(data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "wal_level=replica",
                "-c",
                "max_wal_senders=4",
                "-c",
                "synchronous_commit=on",
                "-c",
                "max_connections=200",
                // The standby holds every acknowledged commit in memory, and the
                // test kills only the primary: the disk adds nothing here.
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Reaped by the watchdog's pg_ctl stop, or on drop.
        #[allow(clippy::zombie_processes)]
        let _child = command.spawn().expect("start postgres");
    }

    /// Polls the primary until the standby is its synchronous standby.
    fn wait_for_sync_standby(&self) {
        for _ in 0..300 {
            let out = Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-Atc",
                ])
                .arg("SELECT sync_state FROM pg_stat_replication")
                .arg("-p")
                .arg(self.primary_port.to_string())
                .output()
                .expect("run psql (install the PostgreSQL client)");
            if String::from_utf8_lossy(&out.stdout).trim() == "sync" {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the standby never became a synchronous standby");
    }

    /// Stops both servers and removes their files once the test process ends,
    /// even if it is killed before `drop` runs.
    fn watch_parent(&self) {
        let runner = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done
             for d in '{primary}' '{standby}'; do {runner}pg_ctl -D \"$d\" -m immediate -w stop >/dev/null 2>&1; done
             rm -rf '{dir}'",
            parent = std::process::id(),
            primary = self.primary.display(),
            standby = self.standby.display(),
            dir = self.dir.display(),
        );
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the watchdog");
    }
}

impl Drop for ReplicatedPostgres {
    fn drop(&mut self) {
        for data in [&self.primary, &self.standby] {
            let _ = pg_command("pg_ctl", self.as_postgres)
                .args(["-m", "immediate", "-w", "stop", "-D"])
                .arg(data)
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP address that forwards each new connection to whichever port is the
/// primary now, as a Kubernetes Service does once its endpoints change.
/// Connections it cannot forward are closed at once.
pub struct RwService {
    port: u16,
    target: Arc<AtomicU16>,
    accept: tokio::task::JoinHandle<()>,
}

impl RwService {
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the service address");
        let port = listener.local_addr().expect("local addr").port();
        let target = Arc::new(AtomicU16::new(target));
        let current = target.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let port = current.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            port,
            target,
            accept,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends new connections to `port` from now on.
    pub fn retarget(&self, port: u16) {
        self.target.store(port, Ordering::SeqCst);
    }
}

impl Drop for RwService {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
