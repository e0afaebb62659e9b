//! The `mailtrack serve` binary as an operator runs it: config errors (and a spool folder
//! another process holds) exit 64 before binding, SIGTERM under load drains and exits 0
//! with every answered click's event in the file sink, SIGHUP reloads the certificates.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{click, send, try_send, Proto, TestPki};
use mailtrack::events::Event;

const BINARY: &str = env!("CARGO_BIN_EXE_mailtrack");

/// The same ring as `mailtrack::testing::fixed_ring`, as a file, so links from
/// `fixed_signer` verify in the spawned server.
fn write_ring(dir: &Path) {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    write_ring(dir);
    let path = dir.join("mailtrack.toml");
    std::fs::write(&path, format!("[keys]\nfile = \"keys.toml\"\n{body}")).unwrap();
    path
}

/// A spawned `mailtrack serve`, its addresses read from its JSON log.
struct Served {
    child: Child,
    addrs: Vec<(SocketAddr, bool)>,
}

fn spawn_serve(config: &Path, listeners: usize) -> Served {
    let mut child = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("serve: {line}");
            // The test may have stopped listening; the log still has to be read.
            let _ = lines.send(line);
        }
    });
    let mut addrs = Vec::new();
    while addrs.len() < listeners {
        let line = received
            .recv_timeout(Duration::from_secs(20))
            .expect("a listening line");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        if json["message"] == "listening" {
            let addr = json["addr"].as_str().unwrap().parse().unwrap();
            addrs.push((addr, json["tls"].as_bool().unwrap()));
        }
    }
    Served { child, addrs }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs `mailtrack serve` with `config` to its end; returns its exit code and standard error.
fn serve_to_exit(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr)
}

/// Waits for the process to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < limit, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_configs_exit_64_naming_the_key_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    // Hold a port: a config error must come before any attempt to bind it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let cases = [
        (format!("[server]\nhttp = \"127.0.0.1:{port}\"\nhtpp = 1\n"), "unknown field `htpp`"),
        ("[server]\nhttp = \"nope\"\n".to_owned(), "server.http: \"nope\" is not an address"),
        (
            format!("[server]\nhttp = \"127.0.0.1:{port}\"\nhttps = \"127.0.0.1:0\"\n[[tls.certificate]]\ncert = \"missing.pem\"\nkey = \"missing.key.pem\"\n"),
            "tls.certificate: cert ",
        ),
        (format!("[server]\nhttps = \"127.0.0.1:{port}\"\n"), "server.https: needs at least one"),
        ("[log]\nformat = \"xml\"\n".to_owned(), "log.format"),
    ];
    for (body, expected) in cases {
        let config = write_config(dir.path(), &body);
        let (code, stderr) = serve_to_exit(&config);
        assert_eq!(code, Some(64), "{body}: {stderr}");
        assert!(
            stderr.contains(&format!("config {}", config.display())),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{expected} in {stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
    }
    drop(held);
}

#[test]
fn a_second_serve_on_the_same_spool_folder_exits_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[server]\nhttp = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n",
    );
    let mut first = spawn_serve(&config, 1);
    let (code, stderr) = serve_to_exit(&config);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("another process is using this folder") && stderr.contains("spool_dir"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
    signal(&first.child, "-TERM");
    assert!(wait_exit(&mut first.child, Duration::from_secs(20)).success());
}

#[test]
fn sigterm_under_load_drains_and_writes_every_answered_event() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[server]\nhttp = \"127.0.0.1:0\"\nshutdown_grace = 5\n[log]\nformat = \"json\"\n\
         [events]\nsink = \"file\"\nfile = \"events.jsonl\"\n",
    );
    let mut served = spawn_serve(&config, 1);
    let addr = served.addrs[0].0;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answered = runtime.block_on(async {
        let load: Vec<_> = (0..8)
            .map(|worker| tokio::spawn(click_until_refused(addr, worker)))
            .collect();
        tokio::time::sleep(Duration::from_millis(700)).await;
        signal(&served.child, "-TERM");
        let mut answered = Vec::new();
        for task in load {
            answered.extend(task.await.unwrap());
        }
        answered
    });
    let status = wait_exit(&mut served.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let sink = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    let events: Vec<Event> = sink
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let written: std::collections::HashSet<&str> =
        events.iter().map(|e| e.mail.message_id.as_str()).collect();
    eprintln!(
        "{} clicks answered, {} events written",
        answered.len(),
        events.len()
    );
    assert!(answered.len() > 50, "the load ran: {}", answered.len());
    for id in &answered {
        assert!(written.contains(id.as_str()), "event for {id}");
    }
}

/// Clicks distinct links until the server stops answering; returns the answered ids.
async fn click_until_refused(addr: SocketAddr, worker: usize) -> Vec<String> {
    let mut answered = Vec::new();
    for n in 0.. {
        let id = format!("w{worker}-{n}");
        let target = click("https://example.com/", &id);
        match try_send(addr, None, Proto::Http1, "GET", &target, &[]).await {
            Ok(reply) if reply.status == 302 => answered.push(id),
            Ok(reply) => panic!("unexpected {}", reply.status),
            Err(_) => break, // refused or closed: the server has stopped accepting
        }
    }
    answered
}

#[test]
fn sighup_reloads_the_certificate_in_a_running_process() {
    let pki = TestPki::new();
    let (files, first) = pki.leaf("track", &["track.example.com"]);
    let config = write_config(
        pki.dir.path(),
        &format!(
            "[server]\nhttps = \"127.0.0.1:0\"\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n[log]\nformat = \"json\"\n",
            files.cert.file_name().unwrap().to_str().unwrap(),
            files.key.file_name().unwrap().to_str().unwrap(),
        ),
    );
    let mut served = spawn_serve(&config, 1);
    let (addr, tls) = served.addrs[0];
    assert!(tls);
    let client = pki.client("track.example.com");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let peer = || {
        runtime.block_on(async {
            send(addr, Some(&client), Proto::Http2, "GET", "/healthz", &[])
                .await
                .peer_certificate
                .unwrap()
        })
    };
    assert_eq!(peer(), first);
    let (_, renewed) = pki.leaf("track", &["track.example.com"]);
    signal(&served.child, "-HUP");
    let started = Instant::now();
    while peer() != renewed {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "reloaded within 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A broken file: the process keeps running with the certificate it has.
    std::fs::write(&files.key, "not a key").unwrap();
    signal(&served.child, "-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(peer(), renewed);
    signal(&served.child, "-TERM");
    assert_eq!(
        wait_exit(&mut served.child, Duration::from_secs(10)).code(),
        Some(0)
    );
}
