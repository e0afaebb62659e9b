//! The rewriter over real email templates (Postmark and MailChimp, with their `{{…}}` and
//! `*|…|*` placeholders): every tracked link verifies back to where it went, placeholders are
//! untouched, and every byte outside the tracked start tags and the pixel is unchanged.

use std::path::{Path, PathBuf};

use mailtrack::link::{decode, target, Decoded, MessageId};
use mailtrack::rewrite::{pixel_html, rewrite_str, RewriteOptions, Rewritten, SkipReason};
use mailtrack::testing::{check_rewriter, fixed_ring, fixed_signer, request_target};

fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/emails");
    let mut files = Vec::new();
    for sender in ["postmark", "mailchimp"] {
        for entry in std::fs::read_dir(root.join(sender)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "html") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 50, "the corpus is missing: {}", files.len());
    files
}

fn options() -> RewriteOptions {
    RewriteOptions::new(fixed_signer(), MessageId::new("corpus-1").unwrap())
}

/// `input` with each tracked link's start tag (found by the report's byte range) replaced by
/// a numbered stand-in.
fn input_without_tracked_tags(input: &str, rewritten: &Rewritten<String>) -> String {
    let mut out = String::new();
    let mut from = 0;
    for (i, link) in rewritten.report.tracked.iter().enumerate() {
        let tag = &input[link.source.clone()];
        let lower = tag.to_ascii_lowercase();
        assert!(
            lower.starts_with("<a") || lower.starts_with("<area"),
            "{tag}"
        );
        out.push_str(&input[from..link.source.start]);
        out.push_str(&format!("\u{0}tag {i}\u{0}"));
        from = link.source.end;
    }
    out.push_str(&input[from..]);
    out
}

/// The output with the pixel removed and each start tag holding a tracked link (found by
/// searching for the link) replaced by the same numbered stand-in.
fn output_without_tracked_tags(rewritten: &Rewritten<String>, pixel: &str) -> String {
    assert_eq!(
        rewritten.html.matches(pixel).count(),
        1,
        "exactly one pixel"
    );
    let html = rewritten.html.replacen(pixel, "", 1);
    let mut out = String::new();
    let mut rest = html.as_str();
    for (i, link) in rewritten.report.tracked.iter().enumerate() {
        let href = format!("=\"{}\"", htmlize::escape_attribute(&link.tracked_url));
        let at = rest
            .find(&href)
            .unwrap_or_else(|| panic!("{href} not in output"));
        let start = rest[..at].rfind('<').unwrap();
        let end = at + rest[at..].find('>').unwrap() + 1;
        out.push_str(&rest[..start]);
        out.push_str(&format!("\u{0}tag {i}\u{0}"));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The values of the double-quoted `href`s in `html`, found without an HTML parser.
fn quoted_hrefs(html: &str) -> Vec<&str> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(value, _)| value))
        .collect()
}

fn count_placeholders(html: &str) -> [usize; 4] {
    ["{{", "}}", "*|", "|*"].map(|p| html.matches(p).count())
}

#[test]
fn every_corpus_email_is_rewritten_losslessly() {
    let options = options();
    let pixel = pixel_html(&options.signer.open_url(&options.stamp()));
    let ring = fixed_ring();
    let mut total_tracked = 0;
    for path in corpus() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read_to_string(&path).unwrap();
        let rewritten = rewrite_str(&input, &options).unwrap();
        let report = &rewritten.report;

        let hrefs = quoted_hrefs(&input);
        let has_http_links = hrefs.iter().any(|h| h.starts_with("http"));
        assert_eq!(
            report.tracked.is_empty(),
            !has_http_links,
            "{name}: {report:?}"
        );
        let has_placeholder_links = hrefs.iter().any(|h| h.contains("{{") || h.contains("*|"));
        let placeholder_skips = report
            .skipped
            .iter()
            .filter(|s| matches!(s.reason, SkipReason::Placeholder(_)))
            .count();
        assert_eq!(placeholder_skips > 0, has_placeholder_links, "{name}");

        for link in &report.tracked {
            let Decoded::Verified(verified) = decode(request_target(&link.tracked_url), &ring)
            else {
                panic!("{name}: {} does not verify", link.tracked_url);
            };
            assert_eq!(
                verified.target,
                target::normalize(&link.url).unwrap(),
                "{name}"
            );
            assert_eq!(verified.message_id, options.message_id);
        }
        assert_eq!(
            input_without_tracked_tags(&input, &rewritten),
            output_without_tracked_tags(&rewritten, &pixel),
            "{name}: bytes outside the tracked tags changed"
        );
        assert_eq!(
            count_placeholders(&input),
            count_placeholders(&rewritten.html),
            "{name}"
        );
        total_tracked += report.tracked.len();
    }
    assert!(total_tracked > 100, "{total_tracked}");
}

#[test]
fn corpus_emails_hold_the_fuzz_property() {
    // A few option sets each: default, browser syntax fed in pieces of 6, pixel at the top
    // with a limit of one link fed in pieces of 11, and a limit of three.
    for path in corpus() {
        let input = std::fs::read(&path).unwrap();
        for mode in [0x00u8, 0x11, 0x26, 0x0c] {
            let mut data = vec![mode];
            data.extend_from_slice(&input);
            check_rewriter(&data);
        }
    }
}

#[test]
fn the_cli_rewrites_a_corpus_email_as_the_library_does() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let bin = env!("CARGO_BIN_EXE_mailtrack");
    let dir = std::env::temp_dir().join(format!("mailtrack-rewrite-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = Command::new(bin)
        .args(["keygen", "--id", "7"])
        .output()
        .unwrap();
    assert!(key.status.success());
    let keys = format!("sign_with = 7\n{}", String::from_utf8(key.stdout).unwrap());
    std::fs::write(dir.join("keys.toml"), keys).unwrap();
    let config_path = dir.join("mailtrack.toml");
    let config = "[tracking]\nbase_url = \"https://t.example\"\n[keys]\nfile = \"keys.toml\"\n";
    std::fs::write(&config_path, config).unwrap();
    let report_path = dir.join("report.json");
    let input = std::fs::read(
        corpus()
            .iter()
            .find(|p| p.ends_with("welcome.html"))
            .unwrap(),
    )
    .unwrap();

    let mut child = Command::new(bin)
        .args(["rewrite", "--message-id", "cli-1", "--config"])
        .arg(&config_path)
        .arg("--report")
        .arg(&report_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");

    let config = mailtrack::Config::load(Some(&config_path)).unwrap();
    let options = RewriteOptions::from_config(&config, MessageId::new("cli-1").unwrap()).unwrap();
    let expected = mailtrack::rewrite::rewrite_bytes(&input, &options).unwrap();
    assert!(!expected.report.tracked.is_empty());
    assert_eq!(output.stdout, expected.html);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report, serde_json::to_value(&expected.report).unwrap());

    let missing = Command::new(bin)
        .args(["rewrite", "--message-id", "cli-1", "--config"])
        .arg(dir.join("missing.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64), "a config error exits 64");
    let bad_id = Command::new(bin)
        .args(["rewrite", "--message-id", "not valid", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(bad_id.status.code(), Some(2), "a usage error exits 2");
    // Best effort: the folder is in the system's temporary directory.
    let _ = std::fs::remove_dir_all(&dir);
}
