//! The CLI over PostgreSQL (built with `--features postgres`, on the cluster of
//! `KEYLEDGER_TEST_PG`): `--vault` and `KEYLEDGER_VAULT` take a `postgresql://` URL, and
//! `keyledger migrate` copies a vault from a database into a file, refusing a non-empty
//! destination.
#![cfg(feature = "postgres")]

mod common;

use std::process::{Command, Output};

use common::pg;

const BIN: &str = env!("CARGO_BIN_EXE_keyledger");

fn run(vault: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("KEYLEDGER_MASTER_KEY")
        .env_remove("KEYLEDGER_VAULT");
    if let Some(v) = vault {
        cmd.env("KEYLEDGER_VAULT", v);
    }
    cmd.args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[test]
fn the_cli_serves_a_postgresql_vault_and_migrates_it_into_a_file() {
    let Some(cluster) = pg::cluster("cli::postgres") else {
        return;
    };
    let url = pg::fresh_database(&cluster, "cli_migrate");
    // --vault with a URL (no "run keyledger init first": a database is not a file).
    ok(&run(None, &["--vault", &url, "--argon2-fast", "init"]));
    ok(&run(
        None,
        &[
            "--vault",
            &url,
            "account",
            "create",
            "acct",
            "--credits",
            "10",
        ],
    ));
    // KEYLEDGER_VAULT with a URL.
    let created = json(&run(
        Some(&url),
        &[
            "--json",
            "key",
            "create",
            "--account",
            "acct",
            "--name",
            "k",
            "--scope",
            "x",
        ],
    ));
    let token = created["token"].as_str().unwrap().to_string();
    let granted = json(&run(
        Some(&url),
        &["--json", "authorize", &token, "--scope", "x", "--cost", "3"],
    ));
    assert_eq!(granted["credits"], 7, "{granted}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("copy.redb");
    let file = file.to_str().unwrap();
    let report = json(&run(
        None,
        &["--json", "migrate", "--from", &url, "--to", file],
    ));
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["tables"]["keys"], 1, "{report}");
    assert_eq!(report["tables"]["accounts"], 1, "{report}");

    // The copy answers the same token with the same balance.
    let again = json(&run(
        None,
        &[
            "--json",
            "--vault",
            file,
            "authorize",
            &token,
            "--scope",
            "x",
            "--cost",
            "3",
        ],
    ));
    assert_eq!(again["credits"], 4, "{again}");

    // A non-empty destination is refused, with a clear message, and left unchanged.
    let refused = run(None, &["migrate", "--from", &url, "--to", file]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("not empty"), "{err}");
    let balance = json(&run(
        None,
        &["--json", "--vault", file, "account", "balance", "acct"],
    ));
    assert_eq!(balance["credits"], 4, "{balance}");
}
