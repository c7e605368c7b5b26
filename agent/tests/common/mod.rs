//! Setup shared by the agent's integration tests: the agent as a child process, the agent as
//! an in-process task, and polling with a deadline. Each test crate uses only part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::alloy::Plan;
use agent::Settings;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait in these tests may take before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `f` until it holds; fails the test after [`WAIT`], naming `what`.
pub async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `agent` binary as a child process, stderr captured in a file; killed when dropped.
pub struct AgentProcess {
    child: Child,
    log: PathBuf,
}

impl AgentProcess {
    /// Spawns `agent` with the arguments and environment `configure` adds. The test never
    /// reaches a real cluster: the Kubernetes environment is removed.
    pub fn spawn(log: PathBuf, configure: impl FnOnce(&mut Command)) -> AgentProcess {
        let err = std::fs::File::create(&log).expect("agent log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent"));
        cmd.env("RUST_LOG", "info")
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .stdout(Stdio::null())
            .stderr(Stdio::from(err));
        configure(&mut cmd);
        let child = cmd.spawn().expect("spawn agent");
        AgentProcess { child, log }
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (through `kill`: the workspace forbids `unsafe`), then the exit code.
    pub async fn terminate(mut self) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("agent did not exit after SIGTERM; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An agent running a plan in-process until [`Running::stop`].
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), agent::AgentError>>,
}

impl Running {
    /// Runs `plan` with positions at `positions`, no HTTP listener and short intervals (so
    /// tests are quick), after `tune` adjusted the settings.
    pub fn start(mut plan: Plan, positions: PathBuf, tune: impl FnOnce(&mut Settings)) -> Running {
        let s = &mut plan.settings;
        s.positions_path = positions;
        s.listen = None;
        s.poll_interval = Duration::from_millis(20);
        s.rescan_interval = Duration::from_millis(100);
        s.positions_sync_interval = Duration::from_millis(20);
        s.drain_timeout = Duration::from_secs(5);
        tune(s);
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let discovery = plan.discovery();
            agent::run_plan(&plan, Box::new(discovery), None, async {
                let _ = rx.await;
            })
            .await
        });
        Running { stop, task }
    }

    /// Signals shutdown and waits until the agent has drained and stopped.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("agent task panicked")
            .expect("agent run failed");
    }
}
