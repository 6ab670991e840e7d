//! The dashboard offers rotation only where the core allows it: `GET /api/keys` marks each
//! key `rotatable`, and `POST /api/keys/{id}/rotate` refuses a disabled, expired or
//! already-rotated key with 400 and a JSON body, minting nothing. The built binary on
//! 127.0.0.1:0, driven over its JSON API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_keyledger");
const ADMIN: &str = "test-admin-token-rotation-4b1d";

struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("keyledger.redb");
    let init = Command::new(BIN)
        .args(["--argon2-fast", "--vault"])
        .arg(&vault)
        .arg("init")
        .env_remove("KEYLEDGER_VAULT")
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let mut child = Command::new(BIN)
        .args(["--argon2-fast", "--vault"])
        .arg(&vault)
        .args(["dashboard", "--listen", "127.0.0.1:0"])
        .env("KEYLEDGER_ADMIN_TOKEN", ADMIN)
        .env_remove("KEYLEDGER_VAULT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("keyledger dashboard listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let addr = url.trim_end_matches('/').parse().unwrap();
    Server {
        child,
        addr,
        _dir: dir,
    }
}

struct Resp {
    status: u16,
    headers: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = rest;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    Resp {
        status,
        headers: head.to_string(),
        body,
    }
}

struct Admin {
    addr: SocketAddr,
    cookie: String,
    csrf: String,
}

impl Admin {
    fn login(addr: SocketAddr) -> Admin {
        let body = json!({ "token": ADMIN }).to_string();
        let r = http(
            addr,
            "POST",
            "/api/login",
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ],
            &body,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let cookie = r
            .headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("set-cookie")
                    .then(|| v.trim().split(';').next().unwrap().to_string())
            })
            .expect("a session cookie");
        let csrf = r.json()["csrf"].as_str().unwrap().to_string();
        Admin { addr, cookie, csrf }
    }

    fn get(&self, path: &str) -> Value {
        let r = http(
            self.addr,
            "GET",
            path,
            &[("Cookie", &self.cookie), ("Accept", "application/json")],
            "",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    fn post(&self, path: &str, body: Value) -> Resp {
        http(
            self.addr,
            "POST",
            path,
            &[
                ("Cookie", &self.cookie),
                ("X-CSRF-Token", &self.csrf),
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ],
            &body.to_string(),
        )
    }

    fn new_key(&self, name: &str, extra: Value) -> String {
        let mut spec = json!({"account_id": "acct_42", "name": name, "scopes": "sms:send"});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let r = self.post("/api/keys", spec);
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["key"]["key_id"].as_str().unwrap().to_string()
    }

    fn rotatable(&self) -> Vec<(String, bool)> {
        let keys = self.get("/api/keys?account=acct_42");
        let mut out: Vec<(String, bool)> = keys
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["key_id"].as_str().unwrap().to_string(),
                    k["rotatable"]
                        .as_bool()
                        .expect("every key says whether it is rotatable"),
                )
            })
            .collect();
        out.sort();
        out
    }
}

#[test]
fn rotation_is_offered_and_accepted_only_for_enabled_unexpired_unrotated_keys() {
    let srv = start();
    let a = Admin::login(srv.addr);
    assert_eq!(
        a.post("/api/accounts", json!({"id": "acct_42", "credits": "10"}))
            .status,
        201
    );
    let active = a.new_key("active", json!({}));
    let disabled = a.new_key("disabled", json!({}));
    assert_eq!(
        a.post(&format!("/api/keys/{disabled}/disable"), json!({}))
            .status,
        200
    );
    let expired = a.new_key("expired", json!({}));
    assert_eq!(
        a.post(
            &format!("/api/keys/{expired}/expiry"),
            json!({"expires_at": 1000})
        )
        .status,
        200
    );
    let r = a.post(
        &format!("/api/keys/{active}/rotate"),
        json!({"grace": 3600}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let successor = r.json()["key"]["key_id"].as_str().unwrap().to_string();

    let mut want = vec![
        (active.clone(), false),
        (disabled.clone(), false),
        (expired.clone(), false),
        (successor.clone(), true),
    ];
    want.sort();
    assert_eq!(a.rotatable(), want);

    for (id, word) in [
        (&disabled, "disabled"),
        (&expired, "expired"),
        (&active, "already rotated"),
    ] {
        let r = a.post(&format!("/api/keys/{id}/rotate"), json!({"grace": 60}));
        assert_eq!(r.status, 400, "{}", r.body);
        let b = r.json();
        assert_eq!(b["error"], json!("invalid_argument"));
        assert!(b["message"].as_str().unwrap().contains(word), "{}", r.body);
        assert!(!r.body.contains("dial_") && !r.body.contains("kl_live_"));
    }
    // Nothing was minted by the refusals.
    assert_eq!(a.rotatable().len(), 4);
}
