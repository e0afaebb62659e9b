//! The Redis sink over TLS (`rediss://`, rustls with ring) with AUTH in the URL, against a
//! real `redis-server` serving TLS only, with a certificate from a CA made at test time. The
//! client trusts the CA through `SSL_CERT_FILE`, as an operator with a private CA would.
//! `events tail` and notify's delivery loop then read the events back over TLS: notify's
//! reads of the stream take redis-rs's path there, not `notify::resp`'s plain TCP.

#[path = "suite/support_receiver/mod.rs"]
mod support_receiver;
#[path = "suite/support_redis/mod.rs"]
mod support_redis;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailtrack::config::notify::{
    HttpReceiver, PayloadFormat, RuleConfig, WebhookSecret, DEFAULT_RETRY_SCHEDULE,
};
use mailtrack::config::SinkKind;
use mailtrack::events::sample::sample_event;
use mailtrack::events::EventPipeline;
use mailtrack::notify::http::{AddressPolicy, WebhookClient};
use mailtrack::notify::metrics::NotifyMetrics;
use mailtrack::notify::redis_log::{EndpointStore, CLAIM_MIN_IDLE};
use mailtrack::notify::worker::HttpWorker;
use mailtrack::notify::Rule;
use support_receiver::{Receiver, Reply};
use support_redis::{events_config, free_port, printed_event_ids};

/// A CA and a certificate for 127.0.0.1, as PEM files in `dir`: (ca, cert, key).
fn pki(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let files = [
        dir.join("ca.pem"),
        dir.join("redis.pem"),
        dir.join("redis.key.pem"),
    ];
    std::fs::write(&files[0], issuer.pem()).unwrap();
    std::fs::write(&files[1], cert.pem()).unwrap();
    std::fs::write(&files[2], key.serialize_pem()).unwrap();
    files
}

/// Stops the server however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // `kill` fails only if the server already exited; either way it is gone.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn events_reach_a_tls_redis_with_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = pki(dir.path());
    let port = free_port();
    let server = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .args(["--requirepass", "s3cret"])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&ca)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs");
    let _server = KillOnDrop(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen for TLS"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The only test in this binary: nothing else reads the environment meanwhile.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let url = format!("rediss://default:s3cret@127.0.0.1:{port}/");
    let config = events_config(dir.path(), SinkKind::Redis, Some(url.clone()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ids: Vec<String> = runtime.block_on(async {
        let (queue, pipeline) = EventPipeline::start(&config).unwrap();
        let mut ids = Vec::new();
        for i in 0..50 {
            let event = sample_event(&format!("m-{i}"));
            ids.push(event.mailtrack.event_id.clone());
            queue.offer(event).unwrap();
        }
        let stats = pipeline.shutdown().await;
        assert_eq!((stats.delivered, stats.sink_errors), (50, 0), "{stats:?}");
        ids
    });

    // Read back through the binary's consumer, over TLS too.
    let file = dir.path().join("mailtrack.toml");
    let text = format!("[keys]\nfile = \"k\"\n[events]\nsink = \"redis\"\nredis_url = \"{url}\"\n");
    std::fs::write(&file, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mailtrack"))
        .args(["events", "tail", "--max", "50", "--config"])
        .arg(&file)
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    let printed = printed_event_ids(output);
    assert_eq!(printed, ids);

    // And notify delivers every one of them to a receiver, reading the stream over TLS.
    runtime.block_on(async {
        let receiver = Receiver::start(|_, _| Reply::status(200)).await;
        let http = HttpReceiver {
            url: receiver.url("/hook"),
            secrets: vec![WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()],
            format: PayloadFormat::StandardWebhooks,
            timeout: Duration::from_millis(700),
            batch_size: 20,
            linger: Duration::from_millis(50),
            concurrency: 2,
            rate_per_second: None,
            retry_schedule: DEFAULT_RETRY_SCHEDULE.to_vec(),
            allow_private: true,
            sns: None,
        };
        let stream = config.stream.clone();
        let store = EndpointStore::open(&url, &stream, "tls", "p1", http.linger, CLAIM_MIN_IDLE)
            .await
            .unwrap();
        let client = WebhookClient::new(http.timeout, AddressPolicy::AllowPrivate).unwrap();
        let rule = Rule::new(&RuleConfig {
            event_types: ["Open", "Click"].map(str::to_owned).into(),
            ..RuleConfig::default()
        });
        let metrics = NotifyMetrics::default().endpoint("tls");
        let worker = HttpWorker::new("tls".into(), rule, http, client, store, metrics);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(worker.run(stopped));
        let delivered = || -> Vec<String> {
            let mut ids: Vec<String> = receiver
                .accepted()
                .iter()
                .flat_map(|r| serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).unwrap())
                .map(|event| event["mailtrack"]["eventId"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        let mut wanted = ids.clone();
        wanted.sort();
        let deadline = Instant::now() + Duration::from_secs(20);
        while delivered() != wanted {
            assert!(
                Instant::now() < deadline,
                "notify over TLS delivered {:?}",
                delivered().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
    });
}
