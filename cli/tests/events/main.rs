//! `keyledger events …` and `keyledger usage report`, run as processes; the webhook sender
//! against a real HTTP receiver on a local socket.

#[path = "../cli/support.rs"]
#[allow(dead_code)]
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use support::*;

const SECRET: &str = "whsec_test_secret";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A local HTTP receiver answering 500 to the first `fail_first` requests, then 200.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(fail_first: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/keyledger", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = conn.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(i);
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_string();
                assert!(
                    request_line.starts_with("POST /hooks/keyledger "),
                    "{request_line}"
                );
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = buf[head_end + 4..].to_vec();
                while body.len() < len {
                    let n = conn.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                let mut got = sink.lock().unwrap();
                let status = if got.len() < fail_first { 500 } else { 200 };
                got.push(Received {
                    headers,
                    body,
                    status,
                });
                drop(got);
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
        });
        Receiver { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn serve(cli: &Cli, url: &str) -> Run {
    raw_env(
        &cli.vault,
        &[
            "--json",
            "events",
            "serve",
            "--webhook",
            url,
            "--until-idle",
            "--backoff-ms",
            "10",
        ],
        None,
        &[("KEYLEDGER_WEBHOOK_SECRET", SECRET)],
    )
}

#[test]
fn the_webhook_sender_signs_retries_after_a_500_and_resumes_after_a_restart() {
    let mut cli = Cli::init();
    let token = setup(&mut cli, "10", &["sms:send"]);
    cli.run(&["events", "alert", "set", "acct_1", "--below", "8"])
        .ok();
    cli.run(&["events", "alert", "set", "acct_1", "--below", "5"])
        .ok();
    let r = cli
        .run(&["--json", "events", "alert", "list", "acct_1"])
        .ok();
    assert_eq!(r.json()["below"], serde_json::json!([5, 8]));
    // 10 → 7 (below 8), then 7 → 4 (below 5).
    cli.run(&["account", "debit", "acct_1", "3"]).ok();
    cli.run(&["account", "debit", "acct_1", "3"]).ok();
    let events = cli.run(&["--json", "events", "list"]).ok().json();
    assert_eq!(events.as_array().unwrap().len(), 2);

    let rx = Receiver::start(1);
    let r = serve(&cli, &rx.url).ok();
    assert_eq!(r.json()["delivered"], 2);
    assert!(r.stderr.contains("answered 500"), "{}", r.stderr);
    let got = rx.received();
    // The first POST got a 500 and was sent again: 3 requests for 2 events, in order.
    let seqs: Vec<&str> = got
        .iter()
        .map(|g| g.header("X-Keyledger-Delivery").unwrap())
        .collect();
    assert_eq!(seqs, ["1", "1", "2"]);
    assert_eq!(got[0].status, 500);
    for g in &got {
        let sig = g.header("X-Keyledger-Signature").unwrap();
        assert!(keyledger::verify_webhook(&g.body, sig, SECRET.as_bytes()));
        assert!(!keyledger::verify_webhook(&g.body, sig, b"another secret"));
        assert_eq!(g.header("X-Keyledger-Event"), Some("balance_below"));
        let body: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
        assert_eq!(body["account_id"], "acct_1");
        assert_eq!(body["type"], "balance_below");
    }
    let last: serde_json::Value = serde_json::from_slice(&got[2].body).unwrap();
    assert_eq!(
        (last["seq"].as_u64(), last["data"]["threshold"].as_u64()),
        (Some(2), Some(5))
    );

    // A restart resumes after the last acknowledged event: only the new one is sent.
    cli.run(&["key", "revoke", &key_id_of(&token)]).ok();
    let r = serve(&cli, &rx.url).ok();
    assert_eq!(r.json()["delivered"], 1);
    let got = rx.received();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].header("X-Keyledger-Delivery"), Some("3"));
    assert_eq!(got[3].header("X-Keyledger-Event"), Some("key_revoked"));
    // Nothing new: nothing sent.
    assert_eq!(serve(&cli, &rx.url).ok().json()["delivered"], 0);
    assert_eq!(rx.received().len(), 4);
}

#[test]
fn the_webhook_sender_refuses_a_missing_secret_or_a_bad_url() {
    let mut cli = Cli::init();
    let r = raw(
        &cli.vault,
        &["events", "serve", "--webhook", "http://127.0.0.1:1/"],
        None,
    )
    .code(8);
    assert!(
        r.stderr.contains("KEYLEDGER_WEBHOOK_SECRET"),
        "{}",
        r.stderr
    );
    let r = raw_env(
        &cli.vault,
        &["events", "serve", "--webhook", "https://example.com/"],
        None,
        &[("KEYLEDGER_WEBHOOK_SECRET", SECRET)],
    )
    .code(8);
    assert!(r.stderr.contains("http://"), "{}", r.stderr);
    cli.run(&["events", "alert", "set", "nobody", "--below", "5"])
        .code(6);
    cli.run(&["events", "alert", "set", "acct", "--below", "0"])
        .code(8);
}

#[test]
fn usage_reports_export_as_csv_and_json() {
    let mut cli = Cli::init();
    let token = setup(&mut cli, "10", &["sms:send"]);
    for _ in 0..3 {
        cli.run_stdin(&["authorize", "-", "--route", SEND], Some(&token))
            .ok();
    }
    let key_id = key_id_of(&token);
    let r = cli
        .run(&[
            "usage", "report", "acct_1", "--by", "key", "--format", "csv",
        ])
        .ok();
    assert_eq!(
        r.stdout,
        format!("key_id,charged,calls,refusals\r\n{key_id},3,3,0\r\n")
    );
    let r = cli
        .run(&[
            "usage", "report", "acct_1", "--by", "route", "--format", "json",
        ])
        .ok();
    let rows = &r.json()["rows"];
    assert_eq!(rows[0]["group"], SEND);
    assert_eq!(
        (rows[0]["charged"].as_u64(), rows[0]["calls"].as_u64()),
        (Some(3), Some(3))
    );
    let r = cli
        .run(&["--json", "usage", "report", "acct_1", "--by", "day"])
        .ok();
    assert_eq!(r.json()["rows"][0]["calls"], 3);
    // The key's own usage is still `keyledger usage KEY_ID`.
    let r = cli.run(&["--json", "usage", &key_id]).ok();
    assert_eq!(r.json()["granted"], 3);
    cli.run(&["usage", "report", "acct_1", "--by", "hour"])
        .code(8);
    cli.run(&["usage", "report", "acct_1", "--format", "xml"])
        .code(8);
    cli.run(&["usage", "report", "nobody"]).code(6);
}
