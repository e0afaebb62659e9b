//! The `mailtrack` command line as a new user drives it: keygen, sign, pixel, decode, and the
//! errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mailtrack::testing::{request_target, Mangling};

/// A folder with a config and its key ring.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn mailtrack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailtrack"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 output")
}

fn setup() -> Setup {
    let keygen = mailtrack(&["keygen", "--id", "7"]);
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    setup_with_keys(&keygen.stdout)
}

/// A folder with a config and the key ring `keys` (a keys file's text).
fn setup_with_keys(keys_text: &[u8]) -> Setup {
    let dir = tempfile::tempdir().expect("a temp dir");
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, keys_text).expect("write keys");
    // Readable by its owner only, as an operator keeps it (else every command warns).
    let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(&keys, private).expect("chmod keys");
    let config = dir.path().join("mailtrack.toml");
    std::fs::write(
        &config,
        "[tracking]\nbase_url = \"https://track.example.com\"\n[keys]\nfile = \"keys.toml\"\n",
    )
    .expect("write config");
    Setup { dir, config }
}

impl Setup {
    fn run(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--config", path(&self.config)]);
        mailtrack(&all)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

fn json(output: &Output) -> serde_json::Value {
    let text = stdout(output);
    assert_eq!(text.lines().count(), 1, "one JSON line: {text}");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn keygen_prints_one_active_key_table() {
    let output = mailtrack(&["keygen", "--id", "3"]);
    assert!(output.status.success());
    let table: toml::Table = toml::from_str(&stdout(&output)).expect("TOML");
    let key = &table["key"].as_array().expect("[[key]]")[0];
    assert_eq!(key["id"].as_integer(), Some(3));
    assert_eq!(key["state"].as_str(), Some("active"));
    assert!(key["secret"].as_str().expect("a secret").len() >= 44);
}

#[test]
fn sign_then_decode_round_trips_with_tags() {
    let setup = setup();
    let url = "https://example.com/welcome?user=42&next=%2Fhome";
    let signed = setup.run(&[
        "sign",
        "--message-id",
        "msg-1",
        "--tag",
        "campaign:spring",
        "--tag",
        "variant:b",
        url,
    ]);
    assert!(signed.status.success(), "{}", stderr(&signed));
    let link = stdout(&signed).trim().to_owned();
    assert!(
        link.starts_with("https://track.example.com/CL0/https:%2F%2Fexample.com%2F"),
        "{link}"
    );

    let decoded = setup.run(&["decode", request_target(&link)]);
    assert_eq!(decoded.status.code(), Some(0));
    let value = json(&decoded);
    assert_eq!(value["status"], "verified");
    assert_eq!(value["kind"], "click");
    assert_eq!(value["target"], url);
    assert_eq!(value["message_id"], "msg-1");
    assert_eq!(
        value["tags"],
        serde_json::json!({"campaign": ["spring"], "variant": ["b"]})
    );
    assert_eq!(value["key_id"], 7);
    assert_eq!(value["repair"], "as_received");
}

#[test]
fn decode_recovers_the_139_mail_form_and_refuses_tampering() {
    let setup = setup();
    let url = "https://id.example.com/signinverify?code=NZJUK4YMRJST&mail=kkbbzz1%40163.com&name=KOZ-AL00";
    let sign = [
        "sign",
        "--message-id",
        "m-139",
        "--send-time",
        "1796227200",
        url,
    ];
    let link = stdout(&setup.run(&sign)).trim().to_owned();
    let mangled = Mangling::ClientDecodedOnce.apply(request_target(&link));
    assert!(
        mangled.starts_with(&format!("/CL0/{url}/2~tpfds0/m-139/")),
        "{mangled}"
    );

    let decoded = setup.run(&["decode", &mangled]);
    assert_eq!(decoded.status.code(), Some(0));
    assert_eq!(json(&decoded)["target"], url);
    assert_eq!(json(&decoded)["repair"], "decoded_once");

    let tampered = mangled.replace("NZJUK4YMRJST", "NZJUK4YMRJSX");
    let decoded = setup.run(&["decode", &tampered]);
    assert_eq!(decoded.status.code(), Some(1));
    assert_eq!(json(&decoded)["status"], "unverified");
    assert_eq!(json(&decoded)["reason"], "bad_mac");

    let decoded = setup.run(&["decode", "/favicon.ico"]);
    assert_eq!(decoded.status.code(), Some(1));
    assert_eq!(json(&decoded)["status"], "invalid");
}

#[test]
fn pixel_decodes_as_an_open() {
    let setup = setup();
    let pixel = setup.run(&[
        "pixel",
        "--message-id",
        "msg-2",
        "--send-time",
        "2026-12-03T00:00:00+08:00",
        "--message-tag",
        "campaign:spring;list:news",
        "--message-tag",
        "campaign:sale",
    ]);
    assert!(pixel.status.success(), "{}", stderr(&pixel));
    let link = stdout(&pixel).trim().to_owned();
    assert!(
        link.starts_with(
            "https://track.example.com/CI0/2~tpfds0~campaign=spring~list=news~campaign=sale/msg-2/"
        ),
        "{link}"
    );
    let value = json(&setup.run(&["decode", request_target(&link)]));
    assert_eq!(value["status"], "verified");
    assert_eq!(value["kind"], "open");
    assert_eq!(value["target"], serde_json::Value::Null);
    assert_eq!(value["version"], 2);
    assert_eq!(value["send_time"], "2026-12-02T16:00:00Z");
    assert_eq!(
        value["message_tags"],
        serde_json::json!({"campaign": ["spring", "sale"], "list": ["news"]})
    );

    // A send time or message tag that cannot be signed is a usage error naming the argument.
    for (flag, value) in [
        ("--send-time", "yesterday"),
        ("--send-time", "2026-12-02T16:00:00"),
        ("--message-tag", "campaign"),
        ("--message-tag", "campaign:a b"),
    ] {
        let out = setup.run(&["pixel", "--message-id", "m", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        assert!(stderr(&out).contains(flag), "{}", stderr(&out));
    }
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let setup = setup();
    let cases = [
        (
            vec!["sign", "--message-id", "bad id", "https://example.com/"],
            "--message-id \"bad id\"",
        ),
        (
            vec!["sign", "--message-id", "m", "mailto:a@example.com"],
            "scheme \"mailto\" is not tracked",
        ),
        (
            vec!["sign", "--message-id", "m", "/relative"],
            "not a valid URL",
        ),
        (
            vec![
                "sign",
                "--message-id",
                "m",
                "--tag",
                "nocolon",
                "https://example.com/",
            ],
            "--tag \"nocolon\"",
        ),
        (vec!["pixel", "--message-id", ""], "message id is empty"),
    ];
    for (args, expected) in cases {
        let output = setup.run(&args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(stdout(&output).is_empty());
    }
}

#[test]
fn config_errors_exit_64_naming_the_file_and_key() {
    let setup = setup();
    let dir = setup.config.parent().expect("a folder").to_owned();

    std::fs::remove_file(dir.join("keys.toml")).expect("remove keys");
    let output = setup.run(&["sign", "--message-id", "m", "https://example.com/"]);
    assert_eq!(output.status.code(), Some(64));
    let err = stderr(&output);
    assert!(
        err.contains("keys file ") && err.contains("keys.toml"),
        "{err}"
    );

    std::fs::write(
        dir.join("keys.toml"),
        "[[key]]\nid = 1\nsecret = \"c2hvcnQ=\"\nstate = \"active\"\n",
    )
    .expect("write");
    let err = stderr(&setup.run(&["pixel", "--message-id", "m"]));
    assert!(err.contains("key 1 has a 5-byte secret"), "{err}");

    std::fs::write(
        &setup.config,
        "[tracking]\nbase_url = \"https://t.example/x\"\n[keys]\nfile = \"keys.toml\"\n",
    )
    .expect("write");
    let output = setup.run(&["pixel", "--message-id", "m"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("tracking.base_url"),
        "{}",
        stderr(&output)
    );

    std::fs::write(&setup.config, "[keys]\nfile = \"keys.toml\"\nfiel = 1\n").expect("write");
    let output = setup.run(&["pixel", "--message-id", "m"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("line 3: unknown field `fiel`"),
        "{}",
        stderr(&output)
    );

    let output = mailtrack(&[
        "pixel",
        "--message-id",
        "m",
        "--config",
        "/nonexistent/mailtrack.toml",
    ]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("config /nonexistent/mailtrack.toml"),
        "{}",
        stderr(&output)
    );
}

/// `mailtrack rewrite --mime` writes what the library's `rewrite_mime` makes of the same
/// message, byte for byte, with the same report, for messages of the MIME corpus; and it
/// refuses the DKIM-signed one with an error naming DKIM and nothing on stdout.
#[test]
fn rewrite_mime_matches_the_library_byte_for_byte() {
    use mailtrack::link::{LinkTags, MessageId, SendTime};
    use mailtrack::rewrite::mime::rewrite_mime;
    use mailtrack::rewrite::RewriteOptions;

    // The library's signer's ring, so that both sign alike.
    let setup = setup_with_keys(mailtrack::testing::fixed_ring_toml().as_bytes());
    let config = &setup.config;
    let report = setup.dir.path().join("report.json");
    let mut options = RewriteOptions::new(
        mailtrack::testing::fixed_signer(),
        MessageId::new("m-cli.1").expect("a valid id"),
    );
    options.send_time = SendTime::parse("2026-12-02T09:00:00Z").expect("a valid time");
    options.message_tags = LinkTags::parse("campaign:spring").expect("valid tags");

    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/mime");
    let mut compared = 0;
    for name in [
        "alternative-qp.eml",
        "alternative-base64.eml",
        "gbk.eml",
        "nested.eml",
    ] {
        let message = std::fs::read(corpus.join(name)).expect("a corpus message");
        let output = with_stdin(
            &[
                "rewrite",
                "--mime",
                "--message-id",
                "m-cli.1",
                "--send-time",
                "2026-12-02T09:00:00Z",
                "--message-tag",
                "campaign:spring",
                "--report",
                path(&report),
                "--config",
                path(config),
            ],
            &message,
        );
        assert!(output.status.success(), "{name}: {}", stderr(&output));

        let expected = rewrite_mime(&message, &options).expect("the library rewrites it");
        assert!(
            output.stdout == expected.message,
            "{name}: the CLI's message differs from the library's"
        );
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).expect("the report file"))
                .expect("a JSON report");
        let wanted = serde_json::to_value(&expected.report).expect("the report serialises");
        assert_eq!(written, wanted, "{name}: the report");
        compared += 1;
    }
    assert_eq!(compared, 4);

    let signed = std::fs::read(corpus.join("dkim-signed.eml")).expect("a corpus message");
    let args = [
        "rewrite",
        "--mime",
        "--message-id",
        "m-cli.1",
        "--config",
        path(config),
    ];
    let output = with_stdin(&args, &signed);
    assert!(!output.status.success(), "a DKIM-signed message is refused");
    assert!(
        output.stdout.is_empty(),
        "nothing is written for a refused message"
    );
    assert!(
        stderr(&output).to_ascii_lowercase().contains("dkim"),
        "the error names DKIM: {}",
        stderr(&output)
    );
}

/// Runs `mailtrack` with `args` and `input` on its standard input.
fn with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailtrack"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdin = child.stdin.take().expect("a piped stdin");
    stdin.write_all(input).expect("write the input");
    drop(stdin);
    child.wait_with_output().expect("the binary ends")
}
