//! The command-line tool's security guards, run as a process: its hidden `--argon2-fast`
//! flag never weakens an existing vault's argon2 parameters, `argon2 set` is audited and
//! refuses bad values, and `keyledger init` refuses a planted vault file.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use keyledger::{
    Argon2Params, AuditQuery, AuthorizeOptions, NewKey, SecretToken, Target, Vault, VaultOptions,
};

const X: Target<'static> = Target::Scope("x");

fn none() -> AuthorizeOptions<'static> {
    AuthorizeOptions::default()
}

/// Parameters stronger than `INSECURE_FAST` and still cheap (test builds accept them).
const MID: Argon2Params = Argon2Params {
    m_kib: 64,
    t: 2,
    p: 1,
};

fn file_contains(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A vault created with `MID` parameters, one key: (dir, path, token).
fn mid_vault() -> (tempfile::TempDir, std::path::PathBuf, SecretToken) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let v = Vault::open_with(
        &path,
        VaultOptions {
            argon2: Some(MID),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    v.create_account("a", 0, None).unwrap();
    let (t, _) = v.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    v.close().unwrap();
    assert!(file_contains(&path, "$m=64,t=2,p=1$"));
    (dir, path, t)
}

const BIN: &str = env!("CARGO_BIN_EXE_keyledger");

fn cli(vault: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .env_remove("KEYLEDGER_MASTER_KEY")
        .env_remove("KEYLEDGER_VAULT")
        .arg("--vault")
        .arg(vault)
        .args(args)
        .output()
        .unwrap()
}

/// Regression: the hidden `--argon2-fast` flag rewrote an existing vault's parameters to
/// `INSECURE_FAST`, and every later verification rehashed keys down to them.
#[test]
fn the_hidden_argon2_fast_flag_cannot_weaken_an_existing_vault() {
    let (_dir, path, t) = mid_vault();
    let out = cli(
        &path,
        &[
            "--argon2-fast",
            "key",
            "create",
            "--account",
            "a",
            "--name",
            "k2",
            "--scope",
            "x",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    // A process opened with the flag verifies the old key: no rehash down to the flag's.
    let out = cli(
        &path,
        &["--argon2-fast", "authorize", t.expose(), "--scope", "x"],
    );
    assert!(out.status.success(), "{out:?}");
    let v = Vault::open(&path).unwrap();
    assert_eq!(v.argon2_params(), MID);
    v.authorize(t.expose(), X, &none()).unwrap();
    v.close().unwrap();
    assert!(!file_contains(&path, "$m=8,t=1,p=1$"));
}

/// `keyledger argon2 set` changes the parameters (audited); `argon2 show` prints them.
#[test]
fn the_cli_sets_and_shows_the_argon2_params() {
    let (_dir, path, _t) = mid_vault();
    let out = cli(
        &path,
        &["argon2", "set", "--m-kib", "128", "--t", "3", "--p", "1"],
    );
    assert!(out.status.success(), "{out:?}");
    let out = cli(&path, &["--json", "argon2", "show"]);
    assert!(out.status.success(), "{out:?}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown, serde_json::json!({"m_kib": 128, "t": 3, "p": 1}));
    let v = Vault::open(&path).unwrap();
    assert_eq!(
        v.argon2_params(),
        Argon2Params {
            m_kib: 128,
            t: 3,
            p: 1
        }
    );
    let e = v
        .audit(&AuditQuery {
            action: Some("argon2_params_changed".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].actor.as_deref(), Some("cli"));
    // Bad values are refused and change nothing.
    let out = cli(
        &path,
        &["argon2", "set", "--m-kib", "128", "--t", "0", "--p", "1"],
    );
    assert_eq!(out.status.code(), Some(8), "{out:?}");
}

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn init(vault: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["--argon2-fast", "init"])
        .env("KEYLEDGER_VAULT", vault)
        .env_remove("KEYLEDGER_MASTER_KEY")
        .output()
        .unwrap()
}

/// `keyledger init` on a planted empty file: refused (exit 8, invalid_argument) with the
/// path, its mode and the fix; the file stays empty.
#[test]
fn keyledger_init_refuses_a_planted_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("vault.redb");
    std::fs::write(&planted, b"").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = init(&planted);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains(&planted.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("0666") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert_eq!(std::fs::metadata(&planted).unwrap().len(), 0);
    if is_root() {
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&planted, Some(NOBODY), Some(NOBODY)).unwrap();
        let out = init(&planted);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(8), "{stderr}");
        assert!(stderr.contains("uid 65534"), "{stderr}");
        assert_eq!(std::fs::metadata(&planted).unwrap().len(), 0);
    } else {
        common::skip_unless_required("the other-owner case", "needs root");
    }
    // A fresh path is created 0600 by init.
    let fresh = dir.path().join("fresh.redb");
    let out = init(&fresh);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o600);
}
