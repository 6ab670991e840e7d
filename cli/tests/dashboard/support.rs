//! What the dashboard tests share: the built binary serving a fresh vault on 127.0.0.1:0
//! (killed on drop), a tiny HTTP/1.1 client with a session, and runs of the CLI.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_keyledger");
pub const ADMIN: &str = "test-admin-token-7f3a9c2e51";

/// A running dashboard over a fresh vault; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub vault: PathBuf,
    /// The stderr lines printed before the URL (token announcement, warnings).
    pub banner: Vec<String>,
    pub stderr: BufReader<ChildStderr>,
    pub _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(admin_token: Option<&str>, listen: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("keyledger.redb");
        cli(&vault, &["init"], None).ok();
        let mut cmd = Command::new(BIN);
        cmd.args(["--argon2-fast", "--vault"])
            .arg(&vault)
            .args(["dashboard", "--listen", listen])
            .env_remove("KEYLEDGER_ADMIN_TOKEN")
            .env_remove("KEYLEDGER_VAULT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = admin_token {
            cmd.env("KEYLEDGER_ADMIN_TOKEN", t);
        }
        let mut child = cmd.spawn().expect("spawn keyledger dashboard");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("keyledger dashboard listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let addr: SocketAddr = url.trim_end_matches('/').parse().unwrap();
        // Everything printed on stderr before the URL is there already.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut banner = Vec::new();
        loop {
            let mut l = String::new();
            if stderr.read_line(&mut l).unwrap() == 0 {
                break;
            }
            let done = l.starts_with("admin token");
            banner.push(l.trim_end().to_string());
            if done {
                break;
            }
        }
        Server {
            child,
            addr,
            vault,
            banner,
            stderr,
            _dir: dir,
        }
    }

    pub fn client(&self) -> Client {
        Client {
            addr: self.addr,
            cookie: None,
            csrf: None,
        }
    }

    /// A logged-in client.
    pub fn admin(&self) -> Client {
        let mut c = self.client();
        let r = c.login(ADMIN);
        assert_eq!(r.status, 200, "{}", r.body);
        c
    }

    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> CliRun {
        cli(&self.vault, args, stdin)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    pub fn ok(self) -> CliRun {
        assert_eq!(self.code, 0, "{} {}", self.stdout, self.stderr);
        self
    }
}

pub fn cli(vault: &Path, args: &[&str], stdin: Option<&str>) -> CliRun {
    let mut child = Command::new(BIN)
        .arg("--argon2-fast")
        .arg("--vault")
        .arg(vault)
        .args(args)
        .env_remove("KEYLEDGER_VAULT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Status and the `error` code of a JSON error body.
    #[track_caller]
    pub fn refused(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        let b = self.json();
        assert_eq!(b["success"], json!(false), "{}", self.body);
        assert_eq!(b["error"], json!(code), "{}", self.body);
        assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(
            (200..300).contains(&self.status),
            "{} {}",
            self.status,
            self.body
        );
        self.json()
    }
}

/// A tiny HTTP/1.1 client: one connection per request, `Connection: close`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
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
        headers,
        body,
    }
}

pub struct Client {
    pub addr: SocketAddr,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

impl Client {
    pub fn login(&mut self, token: &str) -> Resp {
        let r = self.raw(
            "POST",
            "/api/login",
            Some(&json!({ "token": token })),
            false,
        );
        if r.status == 200 {
            let set = r
                .header("set-cookie")
                .expect("a session cookie")
                .to_string();
            for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
                assert!(set.contains(attr), "cookie {set:?} lacks {attr}");
            }
            self.cookie = Some(set.split(';').next().unwrap().to_string());
            self.csrf = Some(r.json()["csrf"].as_str().unwrap().to_string());
        } else {
            assert!(r.header("set-cookie").is_none());
        }
        r
    }

    pub fn raw(&self, method: &str, path: &str, body: Option<&Value>, csrf: bool) -> Resp {
        let mut headers: Vec<(&str, &str)> = vec![("Accept", "application/json")];
        if let Some(c) = &self.cookie {
            headers.push(("Cookie", c));
        }
        if csrf {
            if let Some(t) = &self.csrf {
                headers.push(("X-CSRF-Token", t));
            }
        }
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        http(self.addr, method, path, &headers, bytes.as_bytes())
    }

    pub fn get(&self, path: &str) -> Resp {
        self.raw("GET", path, None, false)
    }

    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.raw("POST", path, Some(&body), true)
    }
}

/// Create an account with credits and a `dial_live` key with `sms:send` via the API.
pub fn account_and_key(c: &Client) -> (String, String) {
    c.post("/api/accounts", json!({"id": "acct_42", "credits": "100"}))
        .ok();
    let r = c.post(
        "/api/keys",
        json!({"account_id": "acct_42", "name": "server", "prefix": "dial_live", "scopes": "sms:send"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let b = r.json();
    let token = b["token"].as_str().unwrap().to_string();
    let key_id = b["key"]["key_id"].as_str().unwrap().to_string();
    (token, key_id)
}

/// The secret part of a token (what must never be shown again).
pub fn secret_of(token: &str) -> &str {
    token.rsplit('_').next().unwrap()
}
