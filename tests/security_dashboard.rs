//! The dashboard's login throttle is per client address: a stranger who floods the login
//! with wrong tokens is refused, and cannot lock the admin out from another address. Run
//! as the built binary on 127.0.0.1:0; the clients connect from 127.0.0.1 and 127.0.0.2
//! (both loopback on Linux).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_keyledger");
const ADMIN: &str = "test-admin-token-7f3a9c2e51";

/// A running dashboard over a fresh vault; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
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
            .expect("spawn keyledger dashboard");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("keyledger dashboard listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let addr: SocketAddr = url.trim_end_matches('/').parse().unwrap();
        Server {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connection to `to` from the local address `from` (port chosen by the system).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor this function owns; on success it is
    // handed to `TcpStream`, on failure closed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let sin = |a: SocketAddrV4| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sin(SocketAddrV4::new(from, 0));
        let to = match to {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => panic!("IPv4 only"),
        };
        let remote = sin(to);
        let bound = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
        let connected =
            bound == 0 && libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) == 0;
        if !connected {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            panic!("connect from {from} to {to}: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

/// `POST /api/login` from `from`: the status and the JSON body.
fn login(srv: &Server, from: Ipv4Addr, token: &str) -> (u16, Value) {
    let mut s = connect_from(from, srv.addr);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = json!({ "token": token }).to_string();
    let req = format!(
        "POST /api/login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        srv.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_str(rest).unwrap_or(Value::Null);
    (status, json)
}

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const ADMIN_HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The bug: failed logins were counted for the whole server, so ten wrong tokens from
/// anyone who could reach the port locked the admin out for a minute.
#[test]
fn a_flood_of_wrong_logins_from_one_address_does_not_lock_out_another() {
    let srv = Server::start();
    for _ in 0..10 {
        let (status, body) = login(&srv, ATTACKER, "not-the-admin-token");
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("wrong_admin_token"))
        );
    }
    // The attacker's address is refused, even with the right token.
    let (status, body) = login(&srv, ATTACKER, "not-the-admin-token");
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_attempts"))
    );
    let (status, _) = login(&srv, ATTACKER, ADMIN);
    assert_eq!(status, 429);
    // The admin, from another address, still logs in; a typo there is a plain 401.
    let (status, body) = login(&srv, ADMIN_HOST, "a-typo-in-the-token");
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("wrong_admin_token"))
    );
    let (status, body) = login(&srv, ADMIN_HOST, ADMIN);
    assert_eq!(status, 200, "{body}");
    assert!(body["csrf"].as_str().is_some());
}
