//! What the CLI tests share: a run of the binary (exit code, stdout, stderr), a vault in a
//! temp dir, and a seeded account and key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_keyledger");
pub const SEND: &str = "POST /api/v1/messaging/send";

/// What one run of the binary produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success; stdout {:?} stderr {:?}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "unexpected exit code; stdout {:?} stderr {:?}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A vault in a temp dir, and a log of every output, to check no secret leaks.
pub struct Cli {
    pub _dir: tempfile::TempDir,
    pub vault: PathBuf,
    pub log: Vec<(String, String)>,
}

impl Cli {
    pub fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("vault.redb");
        Cli {
            _dir: dir,
            vault,
            log: Vec::new(),
        }
    }

    /// A fresh vault with `init` already run.
    pub fn init() -> Cli {
        let mut cli = Cli::new();
        cli.run(&["init"]).ok();
        cli
    }

    pub fn run(&mut self, args: &[&str]) -> Run {
        self.run_stdin(args, None)
    }

    pub fn run_stdin(&mut self, args: &[&str], stdin: Option<&str>) -> Run {
        let r = raw(&self.vault, args, stdin);
        self.log
            .push((args.join(" "), format!("{}\n{}", r.stdout, r.stderr)));
        r
    }

    /// `key create`: the token is stdout's one line.
    pub fn create_key(&mut self, args: &[&str]) -> String {
        let mut all = vec!["key", "create"];
        all.extend_from_slice(args);
        let r = raw(&self.vault, &all, None).ok();
        assert!(r.stderr.contains("store it now: it cannot be shown again"));
        assert!(
            !r.stderr.contains(r.stdout.trim()),
            "token echoed on stderr"
        );
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "stdout is just the token: {:?}", r.stdout);
        lines[0].to_string()
    }

    pub fn credits(&mut self, account: &str) -> u64 {
        let r = self.run(&["--json", "account", "balance", account]).ok();
        r.json()["credits"].as_u64().unwrap()
    }

    #[track_caller]
    pub fn assert_never_printed(&self, token: &str) {
        for (cmd, out) in &self.log {
            assert!(!out.contains(token), "`{cmd}` printed the token: {out}");
        }
    }
}

pub fn raw(vault: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    raw_env(vault, args, stdin, &[])
}

pub fn raw_env(vault: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("KEYLEDGER_MASTER_KEY")
        .env_remove("KEYLEDGER_NEW_MASTER_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.arg("--argon2-fast")
        .arg("--vault")
        .arg(vault)
        .args(args)
        .env_remove("KEYLEDGER_VAULT")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run keyledger");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().expect("exited normally"),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// A vault with acct_1 (`credits`), the send route (cost 1) and a dial_live key with
/// `scopes`; returns the token.
pub fn setup(cli: &mut Cli, credits: &str, scopes: &[&str]) -> String {
    cli.run(&["account", "create", "acct_1", "--credits", credits])
        .ok();
    cli.run(&[
        "route",
        "add",
        "POST",
        "/api/v1/messaging/send",
        "sms:send",
        "--cost",
        "1",
    ])
    .ok();
    let mut args = vec![
        "--account",
        "acct_1",
        "--name",
        "server",
        "--prefix",
        "dial_live",
    ];
    for s in scopes {
        args.extend_from_slice(&["--scope", s]);
    }
    cli.create_key(&args)
}

pub fn key_id_of(token: &str) -> String {
    token.rsplit('_').nth(1).unwrap().to_string()
}
