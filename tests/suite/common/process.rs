//! Spawned `mailtrack` commands: [`Process`], whose standard error every test reads the same
//! way, and [`NotifyProcess`] on top of it. [`super::ServeProcess`] is built on it too.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::BINARY;

/// How long a process gets to start, or to exit after SIGTERM.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(20);

/// A running `mailtrack` command. Its standard error is kept line by line, and copied to the
/// test's standard error marked with its label, so a failing test shows what it logged.
/// Killed when dropped, so a test that fails midway leaves nothing running.
pub struct Process {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Runs `mailtrack {command} --config {config}`.
    pub fn spawn(command: &str, config: &Path, label: &str) -> Process {
        let mut child = Command::new(BINARY)
            .args([command, "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        let label = label.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{label}: {line}");
                lines.lock().unwrap().push(line);
            }
        });
        Process { child, log }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many of its log lines contain `text`.
    pub fn logged(&self, text: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(text))
            .count()
    }

    /// Its log lines that contain `text`.
    pub fn lines_with(&self, text: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|line| line.contains(text))
            .cloned()
            .collect()
    }

    /// Its JSON log lines whose `message` is `message`, parsed. A line that is not JSON (what
    /// a refused config prints before logging starts) is none of them.
    pub fn messages(&self, message: &str) -> Vec<serde_json::Value> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|json| json["message"] == message)
            .collect()
    }

    /// Waits until `done`, failing the test after [`PROCESS_DEADLINE`], or at once if the
    /// process exits meanwhile.
    pub fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Process) -> bool) {
        let started = Instant::now();
        while !done(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("waiting for {what}, the process exited: {status:?}");
            }
            assert!(
                started.elapsed() < PROCESS_DEADLINE,
                "waited {PROCESS_DEADLINE:?} for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends it a signal with kill(1): `"-TERM"`, `"-HUP"`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for it to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < limit, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and a clean exit (status 0) within [`PROCESS_DEADLINE`].
    pub fn stop(&mut self) {
        self.signal("-TERM");
        let status = self.wait_exit(PROCESS_DEADLINE);
        assert!(status.success(), "exit after SIGTERM: {status:?}");
    }

    /// SIGKILL, as a crash would, and waits for it to be gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Already gone when the test stopped it; otherwise this is the cleanup.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `mailtrack notify`, whose config must put `[notify] admin_listen` on port 0
/// (many run at once), with its admin listener's address read from its log.
pub struct NotifyProcess {
    pub process: Process,
    pub admin: SocketAddr,
}

impl NotifyProcess {
    /// Starts it and waits until its admin listener is up.
    pub fn spawn(config: &Path, label: &str) -> NotifyProcess {
        let mut process = Process::spawn("notify", config, label);
        process.wait_until("notify's admin listener", |p| {
            !p.messages("notify admin listening").is_empty()
        });
        let line = &process.messages("notify admin listening")[0];
        let admin: SocketAddr = line["addr"].as_str().unwrap().parse().unwrap();
        assert_ne!(admin.port(), 9091, "tests never take the fixed 9091");
        NotifyProcess { process, admin }
    }

    /// Starts it and waits until each of `endpoints` endpoints is being notified.
    pub fn spawn_notifying(config: &Path, label: &str, endpoints: usize) -> NotifyProcess {
        let mut notify = NotifyProcess::spawn(config, label);
        notify
            .process
            .wait_until("notify to start every endpoint", |p| {
                p.logged("notifying") >= endpoints
            });
        notify
    }
}

impl std::ops::Deref for NotifyProcess {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for NotifyProcess {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}
