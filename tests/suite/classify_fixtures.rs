//! The classifier's fixture table, end to end: each row is a real request to a server on a
//! free port, from a trusted proxy on 127.0.0.1 whose `X-Forwarded-For` names the client,
//! and the verdict is read from the event the request recorded. Rows with a time since send
//! go through the library (version 1 links carry no send time).
//!
//! Apple's list is `tests/fixtures/apple-egress-sample.csv`, a few rows in Apple's format.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{click, pixel, send, Proto, TestServer};
use mailtrack::classify::{Class, Classifier, RequestFacts};
use mailtrack::config::{Certainty, ClassifyConfig};
use mailtrack::events::Event;
use mailtrack::link::LinkKind;
use mailtrack::Config;

const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const GOOGLE_IMAGE_PROXY: &str =
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
const GMAIL_PREFETCH: &str = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0";
const YAHOO_PROXY: &str =
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html";
const HEADLESS: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36";
const BING_PREVIEW: &str =
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/534+ (KHTML, like Gecko) BingPreview/1.0b";

/// Ordinary people's mail clients and browsers, current versions: every one a person's.
const PEOPLE: [(&str, &str); 24] = [
    ("Chrome, Windows", CHROME_WINDOWS),
    ("Chrome, macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    ("Chrome, Linux", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    ("Edge, Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"),
    ("Opera, Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0"),
    ("Yandex Browser", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 YaBrowser/24.10.0.0 Safari/537.36"),
    ("Firefox, Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    ("Firefox, macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0"),
    ("Firefox, Ubuntu", "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    ("Safari, macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"),
    ("Safari, iPhone", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"),
    ("Safari, iPad", "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"),
    ("Chrome, iPhone", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1"),
    ("Chrome, Android", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"),
    ("Samsung Internet", "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36"),
    ("Firefox, Android", "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0"),
    ("Android WebView (Outlook for Android)", "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240905.003; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36"),
    ("Outlook desktop, Windows", "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"),
    ("Outlook 2016, Windows", "Mozilla/4.0 (compatible; ms-office; MSOffice 16)"),
    ("Apple Mail, macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"),
    ("Apple Mail, iPhone", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"),
    ("Thunderbird, Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"),
    ("Thunderbird, Linux", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"),
    ("Thunderbird, macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"),
];

/// One row: a request and the verdict its event must carry.
struct Row {
    name: &'static str,
    kind: LinkKind,
    method: &'static str,
    user_agent: &'static str,
    client: &'static str,
    headers: &'static [(&'static str, &'static str)],
    class: Class,
    certainty: Certainty,
    /// Signals that must be among the verdict's.
    signals: &'static [&'static str],
}

const fn row(
    name: &'static str,
    kind: LinkKind,
    user_agent: &'static str,
    client: &'static str,
    class: Class,
    certainty: Certainty,
    signals: &'static [&'static str],
) -> Row {
    Row {
        name,
        kind,
        method: "GET",
        user_agent,
        client,
        headers: &[],
        class,
        certainty,
        signals,
    }
}

use Certainty::{Certain, Probable};
use Class::{MachineClick, MachineOpen, Person, ProxyOpen};
use LinkKind::{Click, Open};

/// Residential addresses (documentation ranges: nobody's list has them).
const HOME: &str = "203.0.113.7";
const HOME_V6: &str = "2001:db8:1234::7";
/// In the Apple fixture.
const APPLE: &str = "172.224.226.5";
const APPLE_V6: &str = "2a02:26f7:b3c0:4000::1";
/// In Microsoft EOP's 40.107.0.0/16.
const EOP: &str = "40.107.22.35";
/// In the user's scanner list (`my_scanners`).
const SCANNER: &str = "192.0.2.44";

fn rows() -> Vec<Row> {
    vec![
        row(
            "Apple MPP open",
            Open,
            "Mozilla/5.0",
            APPLE,
            MachineOpen,
            Certain,
            &["ua:bare_mozilla", "list:apple_egress"],
        ),
        row(
            "Apple MPP open, IPv6",
            Open,
            "Mozilla/5.0",
            APPLE_V6,
            MachineOpen,
            Certain,
            &["list:apple_egress"],
        ),
        row(
            "bare Mozilla/5.0, not Apple's address",
            Open,
            "Mozilla/5.0",
            HOME,
            MachineOpen,
            Probable,
            &["ua:bare_mozilla"],
        ),
        row(
            "Private Relay click (Safari) from Apple's address",
            Click,
            PEOPLE[9].1,
            APPLE,
            Person,
            Probable,
            &[],
        ),
        row(
            "Apple Mail open from Apple's address, full UA",
            Open,
            PEOPLE[19].1,
            APPLE,
            Person,
            Probable,
            &[],
        ),
        row(
            "Gmail's image proxy open",
            Open,
            GOOGLE_IMAGE_PROXY,
            "66.102.8.3",
            ProxyOpen,
            Certain,
            &["ua:google_image_proxy"],
        ),
        row(
            "Gmail's image proxy on a link",
            Click,
            GOOGLE_IMAGE_PROXY,
            "66.102.8.3",
            MachineClick,
            Certain,
            &["ua:google_image_proxy"],
        ),
        row(
            "Gmail's prefetch agent open",
            Open,
            GMAIL_PREFETCH,
            "66.249.84.1",
            MachineOpen,
            Probable,
            &["ua:gmail_prefetch"],
        ),
        row(
            "Yahoo's proxy open",
            Open,
            YAHOO_PROXY,
            "74.6.231.20",
            ProxyOpen,
            Certain,
            &["ua:yahoo_mail_proxy"],
        ),
        row(
            "YahooMailProxy on a link",
            Click,
            YAHOO_PROXY,
            "74.6.231.20",
            MachineClick,
            Certain,
            &["ua:yahoo_mail_proxy"],
        ),
        row(
            "BingPreview on a link",
            Click,
            BING_PREVIEW,
            "40.77.167.5",
            MachineClick,
            Certain,
            &["ua:bing_preview"],
        ),
        row(
            "Safe Links click from EOP",
            Click,
            CHROME_WINDOWS,
            EOP,
            MachineClick,
            Certain,
            &["list:microsoft_eop"],
        ),
        row(
            "Safe Links click from EOP, IPv6",
            Click,
            CHROME_WINDOWS,
            "2a01:111:f400:fe1e::5",
            MachineClick,
            Certain,
            &["list:microsoft_eop"],
        ),
        row(
            "EOP fetching the pixel",
            Open,
            CHROME_WINDOWS,
            "104.47.10.1",
            MachineOpen,
            Certain,
            &["list:microsoft_eop"],
        ),
        row(
            "the user's scanner list",
            Click,
            CHROME_WINDOWS,
            SCANNER,
            MachineClick,
            Probable,
            &["list:my_scanners"],
        ),
        Row {
            method: "HEAD",
            ..row(
                "HEAD on a link",
                Click,
                CHROME_WINDOWS,
                HOME,
                MachineClick,
                Certain,
                &["method:head"],
            )
        },
        Row {
            method: "HEAD",
            ..row(
                "HEAD on the pixel",
                Open,
                CHROME_WINDOWS,
                HOME,
                MachineOpen,
                Certain,
                &["method:head"],
            )
        },
        Row {
            headers: &[("sec-purpose", "prefetch")],
            ..row(
                "Sec-Purpose: prefetch",
                Click,
                CHROME_WINDOWS,
                HOME,
                MachineClick,
                Certain,
                &["header:prefetch"],
            )
        },
        Row {
            headers: &[("sec-purpose", "prefetch;prerender")],
            ..row(
                "Sec-Purpose: prefetch;prerender",
                Click,
                CHROME_WINDOWS,
                HOME,
                MachineClick,
                Certain,
                &["header:prefetch"],
            )
        },
        Row {
            headers: &[("purpose", "prefetch")],
            ..row(
                "Purpose: prefetch",
                Click,
                PEOPLE[9].1,
                HOME,
                MachineClick,
                Certain,
                &["header:prefetch"],
            )
        },
        Row {
            headers: &[("x-moz", "prefetch")],
            ..row(
                "X-Moz: prefetch",
                Click,
                PEOPLE[6].1,
                HOME,
                MachineClick,
                Certain,
                &["header:prefetch"],
            )
        },
        row(
            "python-requests",
            Click,
            "python-requests/2.32.3",
            HOME,
            MachineClick,
            Certain,
            &["ua:python_requests"],
        ),
        row(
            "curl",
            Click,
            "curl/8.11.0",
            HOME_V6,
            MachineClick,
            Certain,
            &["ua:curl"],
        ),
        row(
            "curl on the pixel",
            Open,
            "curl/8.11.0",
            HOME,
            MachineOpen,
            Certain,
            &["ua:curl"],
        ),
        row(
            "HeadlessChrome",
            Click,
            HEADLESS,
            HOME,
            MachineClick,
            Certain,
            &["ua:headless_chrome"],
        ),
        row(
            "Go's net/http",
            Click,
            "Go-http-client/1.1",
            HOME,
            MachineClick,
            Certain,
            &["ua:go_http_client"],
        ),
        row(
            "no user agent",
            Click,
            "",
            HOME,
            MachineClick,
            Probable,
            &["ua:empty"],
        ),
    ]
}

/// A server trusting 127.0.0.1 as its proxy, with Apple's fixture and a scanner list.
async fn server(dir: &Path) -> TestServer {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/apple-egress-sample.csv");
    let scanners = dir.join("scanners.txt");
    std::fs::write(&scanners, "# a vendor's ranges\n192.0.2.0/24\n").unwrap();
    let text = format!(
        "[keys]\nfile = \"keys.toml\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[server]\nhttp = \"127.0.0.1:0\"\n\
         trusted_proxies = [\"127.0.0.1/32\"]\n[classify]\napple_egress = {:?}\n\
         [[classify.list]]\nname = \"my_scanners\"\nfile = {:?}\nkind = \"scanner\"\n",
        fixture.display().to_string(),
        scanners.display().to_string()
    );
    let config = Config::from_toml(&text, &dir.join("mailtrack.toml")).unwrap();
    // The lists must load: State::new would fall back to the built-in ones.
    Classifier::load(&config.classify).unwrap();
    TestServer::start(config).await
}

/// Sends `row` as message `message_id` and returns the verdict its event carries.
async fn request(server: &mut TestServer, row: &Row, message_id: &str, link: &str) -> Event {
    let target = match row.kind {
        Open => pixel(message_id),
        Click => click(link, message_id),
        LinkKind::Unsubscribe => panic!("the fixtures are opens and clicks"),
    };
    let mut headers = vec![("x-forwarded-for", row.client)];
    if !row.user_agent.is_empty() {
        headers.push(("user-agent", row.user_agent));
    }
    headers.extend_from_slice(row.headers);
    let addr = server.http.unwrap();
    let reply = send(addr, None, Proto::Http1, row.method, &target, &headers).await;
    let expected = if row.kind == Open { 200 } else { 302 };
    assert_eq!(
        reply.status, expected,
        "{}: the answer is what it always was",
        row.name
    );
    let event = server.next_event().await;
    let ip = row.client.parse::<std::net::IpAddr>().unwrap().to_string();
    assert_eq!(
        event.ip_address(),
        ip,
        "{}: the client came through the proxy",
        row.name
    );
    event
}

fn check(row: &Row, event: &Event) {
    let verdict = event
        .mailtrack
        .verdict
        .as_ref()
        .expect("every event has a verdict");
    let got = (verdict.class.as_str(), verdict.certainty.as_str());
    let want = (row.class.as_str(), row.certainty.as_str());
    assert_eq!(got, want, "{}: {verdict:?}", row.name);
    for signal in row.signals {
        assert!(
            verdict.signals.iter().any(|s| s == signal),
            "{}: {signal} in {verdict:?}",
            row.name
        );
    }
    if row.class == Person {
        assert!(verdict.signals.is_empty(), "{}: {verdict:?}", row.name);
    }
}

#[tokio::test]
async fn every_case_gets_its_verdict_through_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server(dir.path()).await;
    for (n, row) in rows().iter().enumerate() {
        let event = request(
            &mut server,
            row,
            &format!("case-{n}"),
            "https://example.com/a",
        )
        .await;
        check(row, &event);
    }
    // Metrics count them by verdict.
    let metrics = send(server.admin, None, Proto::Http1, "GET", "/metrics", &[])
        .await
        .text();
    let line = "mailtrack_events_classified_total{event=\"click\",class=\"machine_click\",certainty=\"certain\"}";
    let count: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("{line} in {metrics}"));
    assert!(count >= 12, "{count}");
    server.stop().await;
}

#[tokio::test]
async fn ordinary_people_are_people_on_opens_and_clicks() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server(dir.path()).await;
    for (n, &(name, user_agent)) in PEOPLE.iter().enumerate() {
        for (kind, client) in [(Open, HOME), (Click, HOME), (Click, HOME_V6)] {
            let row = row(name, kind, user_agent, client, Person, Probable, &[]);
            let event = request(
                &mut server,
                &row,
                &format!("person-{n}"),
                "https://example.com/",
            )
            .await;
            check(&row, &event);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_burst_of_five_links_in_one_second_marks_the_later_clicks() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = server(dir.path()).await;
    let started = std::time::Instant::now();
    let mut classes = Vec::new();
    for n in 0..5 {
        // A scanner with a browser's user agent, from one /24 (its addresses vary).
        let clients = [
            "198.51.100.20",
            "198.51.100.21",
            "198.51.100.22",
            "198.51.100.20",
            "198.51.100.23",
        ];
        let row = row(
            "burst",
            Click,
            CHROME_WINDOWS,
            clients[n],
            Person,
            Probable,
            &[],
        );
        let link = format!("https://example.com/link-{n}");
        let event = request(&mut server, &row, "newsletter-1", &link).await;
        let verdict = event.mailtrack.verdict.unwrap();
        classes.push((verdict.class, verdict.certainty, verdict.signals));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "five clicks in a second"
    );
    let person = (
        "person".to_owned(),
        "probable".to_owned(),
        Vec::<String>::new(),
    );
    let burst = (
        "machine_click".to_owned(),
        "probable".to_owned(),
        vec!["burst".to_owned()],
    );
    assert_eq!(
        classes,
        [person.clone(), person, burst.clone(), burst.clone(), burst]
    );
    server.stop().await;
}

/// The time since send, through the library: version 1 links carry no send time.
#[test]
fn a_click_seconds_after_sending_is_probably_a_scanner() {
    let classifier = Classifier::built_in(&ClassifyConfig::default());
    let facts = |seconds: Option<u64>, kind| RequestFacts {
        kind,
        method: "GET",
        user_agent: CHROME_WINDOWS,
        client_ip: HOME.parse().unwrap(),
        prefetch: false,
        message_id: "m",
        target: "https://example.com/",
        seconds_since_send: seconds,
        received: SystemTime::now(),
    };
    let cases = [
        (Some(3), Click, MachineClick, &["quick_after_send"][..]),
        (Some(10), Click, MachineClick, &["quick_after_send"][..]),
        (Some(11), Click, Person, &[][..]),
        (Some(43), Click, Person, &[][..]),
        (None, Click, Person, &[][..]),
        (Some(3), Open, Person, &[][..]),
    ];
    for (seconds, kind, class, signals) in cases {
        let verdict = classifier.classify(&facts(seconds, kind));
        assert_eq!(verdict.class, class, "{seconds:?} {kind:?}");
        assert_eq!(verdict.signal_names(), signals, "{seconds:?}");
        if class != Person {
            assert_eq!(verdict.certainty, Probable);
        }
    }
    // With curl's user agent too, the verdict is certain and names both.
    let verdict = classifier.classify(&RequestFacts {
        user_agent: "curl/8.11.0",
        ..facts(Some(2), Click)
    });
    assert_eq!((verdict.class, verdict.certainty), (MachineClick, Certain));
    assert_eq!(verdict.signal_names(), ["ua:curl", "quick_after_send"]);
}

/// The time since send, through serve: a version 2 link's send time is under its MAC, so a
/// click seconds after sending is marked, one an hour later is a person's, and each event
/// carries its seconds since send.
#[tokio::test]
async fn a_version_2_click_seconds_after_sending_is_marked_through_serve() {
    use mailtrack::link::{LinkTags, MessageId, MessageStamp, SendTime};
    let dir = tempfile::tempdir().unwrap();
    let mut server = server(dir.path()).await;
    let addr = server.http.unwrap();
    for (ago, class, signals) in [
        (2, Class::MachineClick, &["quick_after_send"][..]),
        (3600, Class::Person, &[][..]),
    ] {
        let sent = SendTime::from_system_time(SystemTime::now() - Duration::from_secs(ago));
        let stamp = MessageStamp::new(
            MessageId::new(&format!("sent-{ago}s-ago")).unwrap(),
            sent.unwrap(),
            LinkTags::new(),
        );
        let link = mailtrack::testing::fixed_signer()
            .click_url("https://example.com/a", &stamp, &LinkTags::new())
            .unwrap();
        let target = mailtrack::testing::request_target(&link);
        let headers = [("x-forwarded-for", HOME), ("user-agent", CHROME_WINDOWS)];
        let reply = send(addr, None, Proto::Http1, "GET", target, &headers).await;
        assert_eq!(reply.status, 302, "the answer is the same either way");
        let event = server.next_event().await;
        let verdict = event.mailtrack.verdict.as_ref().unwrap();
        assert_eq!(verdict.class, class.as_str(), "{ago} s: {verdict:?}");
        assert_eq!(verdict.signals, signals, "{ago} s");
        let since = event.mailtrack.seconds_since_send.unwrap();
        assert!((ago..ago + 5).contains(&since), "{ago} s ago: {since}");
    }
    server.stop().await;
}
