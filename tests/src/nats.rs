//! [`Nats`]: a real `nats-server -js` for fleet tests, on a free loopback
//! port with its own store dir, that can be killed and started again on
//! the same port and store.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest a test waits for nats-server to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
}

impl Nats {
    /// Starts `nats-server -js` (Debian's `nats-server`; `make deps`
    /// installs it) on a free port of 127.0.0.1.
    pub async fn start() -> Nats {
        let mut store = tempfile::tempdir().expect("store dir");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut nats = Nats {
                child: None,
                port,
                store,
            };
            if nats.spawn().await {
                return nats;
            }
            store = nats.store;
        }
        panic!("nats-server did not start on a free port");
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn store_dir(&self) -> PathBuf {
        self.store.path().to_owned()
    }

    /// Kills the server at once (SIGKILL); its store stays.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts the server again on the same port and store.
    pub async fn restart(&mut self) {
        self.kill().await;
        assert!(
            self.spawn().await,
            "nats-server did not start again on its port"
        );
    }

    /// Starts the server; false when it exits before it is ready (its port
    /// taken meanwhile).
    async fn spawn(&mut self) -> bool {
        let mut child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server is missing: `make deps` installs it (Debian: nats-server)");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Server is ready") {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !ready {
            let _ = child.start_kill();
            return false;
        }
        // Keep reading so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        true
    }
}
