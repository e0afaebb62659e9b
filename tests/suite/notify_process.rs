//! The `mailtrack notify` binary as an operator runs it: a receiver on a private address
//! without `allow_private`, or a sink it cannot read (standard output), exits 64 naming the key before anything is
//! delivered; otherwise it delivers the stream to each endpoint and exits 0 on SIGTERM.

use crate::support_receiver;
use crate::support_redis;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support_receiver::{verify_with_standardwebhooks, Receiver, Reply};
use support_redis::RedisServer;

const BINARY: &str = env!("CARGO_BIN_EXE_mailtrack");
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn write_config(dir: &Path, redis_url: Option<&str>, endpoint: &str) -> PathBuf {
    std::fs::write(dir.join("keys.toml"), mailtrack::testing::fixed_ring_toml()).unwrap();
    std::fs::write(dir.join("hook.secrets"), format!("{SECRET}\n")).unwrap();
    let events = match redis_url {
        Some(url) => format!("[events]\nsink = \"redis\"\nredis_url = \"{url}\"\n"),
        None => String::new(),
    };
    let path = dir.join("mailtrack.toml");
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n[log]\nformat = \"json\"\n{events}\
         [notify]\nadmin_listen = \"127.0.0.1:0\"\n\
         [[notify.endpoint]]\nname = \"hook\"\nevents = [\"Click\"]\n\
         secrets_file = \"hook.secrets\"\nlinger_ms = 20\n{endpoint}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn notify_to_exit(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(BINARY)
        .args(["notify", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_private_receiver_without_the_allowance_exits_64_naming_the_key() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("url = \"http://127.0.0.1:{}/hook\"", receiver.addr.port());
    let config = write_config(dir.path(), Some(&redis.url()), &url);
    let (code, stderr) = notify_to_exit(&config);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains(&format!("config {}", config.display())),
        "{stderr}"
    );
    assert!(stderr.contains("notify.endpoint.url"), "{stderr}");
    assert!(
        stderr.contains("\"hook\"") && stderr.contains("allow_private"),
        "{stderr}"
    );
    assert!(receiver.received().is_empty(), "nothing was delivered");

    let localhost = format!("url = \"http://localhost:{}/hook\"", receiver.addr.port());
    let config = write_config(dir.path(), Some(&redis.url()), &localhost);
    assert_eq!(
        notify_to_exit(&config).0,
        Some(64),
        "a name resolving inward too"
    );

    // Standard output cannot be read back: refused, naming the sink.
    let stdout_sink = format!("{url}\nallow_private = true\n[events]\nsink = \"stdout\"");
    let config = write_config(dir.path(), None, &stdout_sink);
    let (code, stderr) = notify_to_exit(&config);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("events.sink"), "{stderr}");
}

#[tokio::test]
async fn notify_delivers_the_stream_and_stops_on_sigterm() {
    let redis = RedisServer::start();
    let receiver = Receiver::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!(
        "url = \"http://127.0.0.1:{}/hook\"\nallow_private = true",
        receiver.addr.port()
    );
    let config = write_config(dir.path(), Some(&redis.url()), &endpoint);
    let mut child = Command::new(BINARY)
        .args(["notify", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut want = std::collections::BTreeSet::new();
    for n in 0..50 {
        let kind = if n % 5 == 0 { "Open" } else { "Click" };
        let id = format!("e{n}");
        let json = format!(
            r#"{{"eventType":"{kind}","mail":{{"messageId":"m"}},"mailtrack":{{"eventId":"{id}"}}}}"#
        );
        if kind == "Click" {
            want.insert(id);
        }
        let _: String = redis.query(
            redis::cmd("XADD")
                .arg("mailtrack:events")
                .arg("*")
                .arg("event")
                .arg(json),
        );
    }
    let got = || -> std::collections::BTreeSet<String> {
        receiver
            .accepted()
            .iter()
            .flat_map(|r| serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).unwrap())
            .map(|event| event["mailtrack"]["eventId"].as_str().unwrap().to_owned())
            .collect()
    };
    let started = Instant::now();
    while got() != want {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "got {:?}",
            got()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    verify_with_standardwebhooks(SECRET, &receiver.accepted());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exited.success(), "{exited:?}");
}
