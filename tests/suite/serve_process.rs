//! The `mailtrack serve` binary as an operator runs it: config errors (an admin listener
//! beyond loopback without a token among them, and a spool folder another process holds)
//! exit 64 before binding, SIGTERM under load drains and exits 0
//! with every answered click's event in the file sink, SIGHUP reloads the certificates.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{click, send, try_send, Proto, ServeProcess, TestPki, ADMIN_ON_A_FREE_PORT, BINARY};
use mailtrack::events::Event;

/// The same ring as `mailtrack::testing::fixed_ring`, as a file, so links from
/// `fixed_signer` verify in the spawned server.
fn write_ring(dir: &Path) {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
}

/// A config in `dir` with the fixed ring and `body`; the admin listener on a free port unless
/// `body` has an `[admin]` of its own.
fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    write_ring(dir);
    let path = dir.join("mailtrack.toml");
    let admin = if body.contains("[admin]") {
        ""
    } else {
        ADMIN_ON_A_FREE_PORT
    };
    std::fs::write(
        &path,
        format!("[keys]\nfile = \"keys.toml\"\n{admin}{body}"),
    )
    .unwrap();
    path
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
        (
            format!("[server]\nhttp = \"127.0.0.1:{port}\"\n[events]\nsink = \"redis\"\nredis_url = \"http://user:secret@127.0.0.1/\"\n"),
            "events.redis_url: not a usable Redis URL (scheme \"http\")",
        ),
        // An admin listener beyond loopback needs a token.
        (
            format!("[server]\nhttp = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"0.0.0.0:0\"\n"),
            "admin.token_file: required when admin.listen (0.0.0.0:0) is not a loopback address",
        ),
        (
            format!("[server]\nhttp = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"missing.token\"\n"),
            "admin.token_file: ",
        ),
        (
            format!("[server]\nhttp = \"127.0.0.1:{port}\"\nmax_connections_per_ip = 2000000\n"),
            "server.max_connections_per_ip: 2000000 is more than",
        ),
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
        assert!(
            !stderr.contains("secret"),
            "a password is never printed: {stderr}"
        );
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
    let mut first = ServeProcess::spawn(&config, 1);
    let (code, stderr) = serve_to_exit(&config);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("another process is using this folder") && stderr.contains("spool_dir"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
    first.signal("-TERM");
    assert!(first.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn sigterm_under_load_drains_and_writes_every_answered_event() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[server]\nhttp = \"127.0.0.1:0\"\nshutdown_grace = 5\n[log]\nformat = \"json\"\n\
         [events]\nsink = \"file\"\nfile = \"events.jsonl\"\n",
    );
    let mut served = ServeProcess::spawn(&config, 1);
    let addr = served.addr();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answered = runtime.block_on(async {
        let load: Vec<_> = (0..8)
            .map(|worker| tokio::spawn(click_until_refused(addr, worker)))
            .collect();
        tokio::time::sleep(Duration::from_millis(700)).await;
        served.signal("-TERM");
        let mut answered = Vec::new();
        for task in load {
            answered.extend(task.await.unwrap());
        }
        answered
    });
    let status = served.wait_exit(Duration::from_secs(10));
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
    let mut served = ServeProcess::spawn(&config, 1);
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
    served.signal("-HUP");
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
    served.signal("-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(peer(), renewed);
    served.signal("-TERM");
    assert_eq!(served.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn a_key_file_others_can_read_is_warned_of_and_a_zero_secret_exits_64() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // Hold the port, so that serve stops at binding, after it has read the ring.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let config = write_config(
        dir.path(),
        &format!("[server]\nhttp = \"127.0.0.1:{port}\"\n"),
    );
    let keys = dir.path().join("keys.toml");
    let warning = "the keys file is readable by its group or others";
    for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false)] {
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, stderr) = serve_to_exit(&config);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("cannot listen"), "{stderr}");
        assert_eq!(stderr.contains(warning), warned, "{mode:o}: {stderr}");
        if warned {
            assert!(stderr.contains(&keys.display().to_string()), "{stderr}");
            assert!(stderr.contains(&format!("{mode:04o}")), "{stderr}");
        }
    }
    drop(held);

    // 36 zero bytes: long enough, and no secret at all.
    let zeros = "[[key]]\nid = 3\nsecret = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\nstate = \"active\"\n";
    std::fs::write(&keys, zeros).unwrap();
    let config = dir.path().join("mailtrack.toml");
    let (code, stderr) = serve_to_exit(&config);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "keys file {}: key 3 has a secret of only 1 distinct",
            keys.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}
