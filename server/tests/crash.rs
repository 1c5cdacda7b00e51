//! Crash consistency, proven on a real `coffer-server` process: writers PUT
//! (inline, file-backed, encrypted), overwrite, copy, complete multipart uploads
//! and DELETE in a versioned and an unversioned bucket (see `workload/`); the
//! server is killed with SIGKILL at a random moment, restarted on the same data,
//! and every key is checked — never a lost acknowledged write, never torn bytes,
//! listings equal to GETs. After each restart the volume holds no temp files and
//! the server logs no warning: nothing was lost, so nothing may alarm.
//! `COFFER_CRASH_ROUNDS` sets the rounds per backend (`e2e/crash.sh` runs many).

mod workload;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT_KEY: &str = "CRASHROOTKEY";
const ROOT_SECRET: &str = "crash-root-secret";
/// Object sizes: inline in the metadata store, one blob block, several.
const SIZES: &[usize] = &[0, 300, 40_000, 700_000, 3_000_000];

struct Server {
    addr: SocketAddr,
    data_dir: PathBuf,
    database_url: Option<String>,
    child: Option<Child>,
    starts: usize,
}

impl Server {
    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log(&self) -> PathBuf {
        self.data_dir
            .with_extension(format!("start{}.log", self.starts))
    }

    async fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log()).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_coffer-server"));
        command
            .arg("serve")
            .args(["--listen", &self.addr.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("COFFER_ROOT_ACCESS_KEY", ROOT_KEY)
            .env("COFFER_ROOT_SECRET_KEY", ROOT_SECRET)
            .env("COFFER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(url) = &self.database_url {
            command.args(["--database-url", url]);
        }
        self.child = Some(command.spawn().expect("start coffer-server"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/health/ready", self.endpoint());
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                panic!("coffer-server exited with {status}:\n{log}");
            }
            assert!(Instant::now() < deadline, "coffer-server not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush, no cleanup.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Lines the current run logged at WARN or above.
    fn warnings(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn rounds() -> usize {
    std::env::var("COFFER_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
}

async fn kill_9_at_random_moments_loses_nothing(database_url: Option<String>) {
    let mut server = Server {
        addr: free_addr(),
        data_dir: coffer_testkit::temp_dir("crash"),
        database_url,
        child: None,
        starts: 0,
    };
    server.start().await;
    let s3 = workload::client(&server.endpoint(), ROOT_KEY, ROOT_SECRET);
    workload::create_buckets(&s3).await;
    let history = workload::History::default();
    let mut checked = 0;
    for round in 0..rounds() {
        let writers = history.start(&s3, 6, SIZES);
        let at = Duration::from_millis(500 + rand::random::<u64>() % 2500);
        tokio::time::sleep(at).await;
        server.kill9();
        writers.stop().await;
        server.start().await;
        checked = history.verify(&s3).await;
        let temp = files_in(&server.data_dir.join("tmp"));
        assert!(
            temp.is_empty(),
            "round {round}: temp files after restart: {temp:?}"
        );
        // Background work runs right after a start (inventory, collection).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let warnings = server.warnings();
        assert!(
            warnings.is_empty(),
            "round {round}: a restart after a crash that lost nothing logged:\n{}",
            warnings.join("\n")
        );
        let tally = history.tally().await;
        eprintln!(
            "crash round {round}: killed after {at:?}; {} acknowledged, {} failed so far",
            tally.ok, tally.failed
        );
    }
    let tally = history.tally().await;
    assert!(tally.ok > 0, "writes were acknowledged");
    eprintln!(
        "crash: {} rounds, {} writes acknowledged, {} failed, {checked} keys checked, lost 0",
        rounds(),
        tally.ok,
        tally.failed
    );
    server.kill9();
    let _ = std::fs::remove_dir_all(&server.data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_kill_9_at_random_moments_loses_nothing() {
    kill_9_at_random_moments_loses_nothing(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_kill_9_at_random_moments_loses_nothing() {
    kill_9_at_random_moments_loses_nothing(Some(coffer_testkit::postgres_url().await)).await;
}
