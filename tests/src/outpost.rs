//! [`Outpost`]: the real `outpost` binary of this build, run as a child
//! process on a config the test writes into a temp dir of its own. It is
//! ready when it prints its `ready` line (with the addresses it bound);
//! it can be signalled, restarted, upgraded in place and measured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest a test waits for Outpost to report that it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `outpost` binary of this build: `$OUTPOST_BIN`, or the one beside the
/// test executable's directory (`target/<profile>/outpost`).
pub fn outpost_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("OUTPOST_BIN") {
        return PathBuf::from(path);
    }
    built("outpost")
}

/// An example program of `outpost-edge` of this build
/// (`target/<profile>/examples/NAME`), which `make test` builds.
pub fn example_bin(name: &str) -> PathBuf {
    built(&format!("examples/{name}"))
}

/// `target/<profile>/PATH`, found beside the test executable's directory.
fn built(path: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join(path);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --all-targets` first (make test does)",
        bin.display()
    );
    bin
}

/// A variable every Outpost the tests start has, holding [`SCOPED_TOKEN`]:
/// a config names it in `admin.scoped_tokens[].token_env` to test a token
/// scoped to hosts.
pub const SCOPED_TOKEN_ENV: &str = "OUTPOST_TEST_SCOPED_TOKEN";
pub const SCOPED_TOKEN: &str = "scoped-token-for-tests";

/// A running `outpost run`, killed when dropped.
pub struct Outpost {
    child: Child,
    /// The program running the `outpost` command.
    program: PathBuf,
    /// Shared with a successor started by [`Outpost::upgrade`].
    pub dir: Arc<tempfile::TempDir>,
    token: Option<String>,
    /// JSON lines printed after `ready` (by a successor sharing stdout).
    events: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    /// Proxy listeners in config order.
    pub listen: Vec<SocketAddr>,
    pub admin: SocketAddr,
}

impl Outpost {
    /// Starts Outpost on `config` (YAML), written to `outpost.yaml` in a new
    /// temp dir; `files` are written there first (certificates, say).
    pub async fn start(config: &str, files: &[(&str, &str)], token: Option<&str>) -> Outpost {
        Self::start_program(outpost_bin(), config, files, token).await
    }

    /// [`Outpost::start`] with another program that runs the `outpost`
    /// command (an example built on the crate, with its hooks).
    pub async fn start_program(
        program: PathBuf,
        config: &str,
        files: &[(&str, &str)],
        token: Option<&str>,
    ) -> Outpost {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write file");
        }
        let path = dir.path().join("outpost.yaml");
        std::fs::write(&path, config).expect("write config");
        Self::spawn(program, Arc::new(dir), &[], token).await
    }

    /// Starts a successor on the same config with `run --upgrade`: it takes
    /// this process's sockets over, and this process drains and exits.
    pub async fn upgrade(&self) -> Outpost {
        Self::spawn(
            self.program.clone(),
            self.dir.clone(),
            &["--upgrade"],
            self.token.as_deref(),
        )
        .await
    }

    async fn spawn(
        program: PathBuf,
        dir: Arc<tempfile::TempDir>,
        args: &[&str],
        token: Option<&str>,
    ) -> Outpost {
        let path = dir.path().join("outpost.yaml");
        let mut command = Command::new(&program);
        command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .args(args)
            .env_remove("OUTPOST_ADMIN_TOKEN")
            .env(SCOPED_TOKEN_ENV, SCOPED_TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(token) = token {
            command.env("OUTPOST_ADMIN_TOKEN", token);
        }
        let mut child = command.spawn().expect("spawn outpost");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && value["event"] == "ready"
                {
                    return Some(value);
                }
            }
            None
        })
        .await
        .expect("outpost did not report ready in time")
        .expect("outpost exited before it was ready");
        // Keep draining stdout so the child never blocks on a full pipe;
        // the events on it (a successor's `ready`) go to `events`.
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = events_tx.send(value);
                }
            }
        });
        let listen = ready["listen"]
            .as_array()
            .expect("listen array")
            .iter()
            .map(|l| {
                l["addr"]
                    .as_str()
                    .expect("addr")
                    .parse()
                    .expect("socket address")
            })
            .collect();
        let admin = ready["admin"]
            .as_str()
            .expect("admin")
            .parse()
            .expect("admin address");
        Outpost {
            child,
            program,
            dir,
            token: token.map(str::to_owned),
            events,
            listen,
            admin,
        }
    }

    /// The first proxy listener.
    pub fn addr(&self) -> SocketAddr {
        self.listen[0]
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("outpost is running")
    }

    /// Waits (bounded: 30 s) for the next `ready` line on this process's
    /// stdout after its own: a successor it started (SIGUSR2).
    pub async fn next_ready(&mut self) -> serde_json::Value {
        tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(event) = self.events.recv().await {
                if event["event"] == "ready" {
                    return event;
                }
            }
            panic!("stdout closed before another ready line");
        })
        .await
        .expect("no ready line in time")
    }

    /// A `/proc/<pid>/status` figure in KiB: `VmRSS` (resident now) or
    /// `VmHWM` (the most it has been resident).
    pub fn memory_kib(&self, field: &str) -> u64 {
        memory_kib(self.pid(), field)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM, as an init system stopping the service would.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (`TERM`, `USR1`, `HUP`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("outpost is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// Stops this process (SIGTERM, or SIGKILL with `kill`), waits for it
    /// to exit, and starts Outpost again on the same directory and config:
    /// a restart.
    pub async fn restart(mut self, kill: bool) -> Outpost {
        self.signal(if kill { "KILL" } else { "TERM" });
        let code = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("outpost did not exit in time")
            .expect("wait for outpost");
        if !kill {
            assert_eq!(code.code(), Some(0), "outpost exited with {code}");
        }
        Self::spawn(
            self.program.clone(),
            self.dir.clone(),
            &[],
            self.token.as_deref(),
        )
        .await
    }

    /// Stops this process (SIGTERM, or SIGKILL with `kill`) and waits for
    /// it to exit; [`Stopped::start`] runs it again on the same directory.
    pub async fn stop(mut self, kill: bool) -> Stopped {
        self.signal(if kill { "KILL" } else { "TERM" });
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("outpost did not exit in time")
            .expect("wait for outpost");
        Stopped {
            program: self.program.clone(),
            dir: self.dir.clone(),
            token: self.token.clone(),
        }
    }

    /// Waits (bounded: 30 s) until `/readyz` answers 200.
    pub async fn await_ready(&self) {
        for _ in 0..300 {
            if crate::client::get(self.admin, "admin", "/readyz")
                .await
                .status
                == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("outpost at {} never became ready", self.admin);
    }

    /// Waits (bounded) for the process to exit; its exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("outpost did not exit in time")
            .ok()?
            .code()
    }
}

/// A `/proc/<pid>/status` figure in KiB, such as `VmRSS` or `VmHWM`.
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// An Outpost that was stopped, with its directory (config, disk tier,
/// state) kept.
pub struct Stopped {
    program: PathBuf,
    dir: Arc<tempfile::TempDir>,
    token: Option<String>,
}

impl Stopped {
    /// Runs Outpost again on the same directory and config.
    pub async fn start(self) -> Outpost {
        Outpost::spawn(self.program, self.dir, &[], self.token.as_deref()).await
    }
}

/// The JSON lines of an access log at `path`, once it holds `lines` of
/// them (waits 5 s at most: lines are written when bodies end).
pub async fn access_log_lines(path: &Path, lines: usize) -> Vec<serde_json::Value> {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(path) {
            let parsed: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if parsed.len() >= lines {
                return parsed;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never held {lines} lines", path.display());
}
