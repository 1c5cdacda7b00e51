//! One `coffer-server` process on its own data directory, started, killed
//! with SIGKILL and restarted by tests that need a real process (crashes,
//! injected disk faults). Each start logs to its own file next to the data
//! directory, at WARN and above, so a test can count what a start alarmed.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ROOT_KEY: &str = "PROCESSROOTKEY";
pub const ROOT_SECRET: &str = "process-root-secret";

pub struct Server {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// Extra environment for the process (e.g. `LD_PRELOAD`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    starts: usize,
}

impl Server {
    /// A server (not yet started) on a fresh data dir and a free port.
    pub fn new(name: &str, database_url: Option<String>) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        Self {
            addr,
            data_dir: coffer_testkit::temp_dir(name),
            database_url,
            env: Vec::new(),
            child: None,
            starts: 0,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The log of the current (latest) start.
    pub fn log(&self) -> PathBuf {
        self.data_dir
            .with_extension(format!("start{}.log", self.starts))
    }

    /// Starts the process and waits until it is ready.
    pub async fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log()).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_coffer-server"));
        command
            .arg("serve")
            .args(["--console-listen", "off"])
            .args(["--listen", &self.addr.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("COFFER_ROOT_ACCESS_KEY", ROOT_KEY)
            .env("COFFER_ROOT_SECRET_KEY", ROOT_SECRET)
            .env("COFFER_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Lines the current start logged at WARN or above.
    pub fn warnings(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }

    /// Files directly in `<data-dir>/<sub>`.
    pub fn files_in(&self, sub: &str) -> Vec<PathBuf> {
        std::fs::read_dir(self.data_dir.join(sub))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Kills the process and removes its data and logs.
    pub fn remove(mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
