//! Secret hygiene (SPEC §4, §7, §10): after a busy life — keys created, used, refused,
//! rotated, revoked, a signing key revealed — nothing the library prints or stores in plain
//! form holds a raw secret it created: not the Debug of any public type, not an error
//! message or body, not an audit entry, not the CLI's output (apart from the one-time
//! creation line), not the bytes of the vault file or of its sidecar. Both files are 0600.
//!
//! And (long run and CI only, `KEYLEDGER_LONG=1` or `KEYLEDGER_REQUIRE_ALL=1`) a timing test: authorizing a cached key with a
//! wrong secret takes the same time as with the right one — within a tolerance, reported.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{options, TestClock};
use keyledger::{
    AuditQuery, AuthorizeOptions, Error, LimitOwner, MasterKey, NewKey, Target, ThrottleConfig,
    Vault, VaultOptions,
};

const BIN: &str = env!("CARGO_BIN_EXE_keyledger");

/// Every form of a secret worth searching for: whole, the secret part, and a 16-char
/// window of it (so a truncated copy is found too).
fn needles(secrets: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for s in secrets {
        out.push(s.clone());
        if let Some(p) = keyledger::token::parse(s) {
            out.push(p.secret.to_string());
            out.push(p.secret[10..26].to_string());
        } else if s.len() >= 16 {
            out.push(s[..16].to_string());
        }
    }
    out
}

fn assert_clean(what: &str, haystack: &[u8], needles: &[String]) {
    for n in needles {
        let found = haystack.windows(n.len()).any(|w| w == n.as_bytes());
        assert!(!found, "{what} contains a secret ({}…)", &n[..6]);
    }
}

#[test]
fn no_raw_secret_is_printed_or_stored_anywhere_and_files_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.redb");
    let clock = TestClock::new();
    let master = MasterKey::generate().unwrap();
    let master_b64 = master.to_base64().to_string();
    let v = Vault::open_with(
        &path,
        VaultOptions {
            master_key: Some(master),
            ..common::options_with_clock(&clock)
        },
    )
    .unwrap();
    let mut secrets: Vec<String> = vec![master_b64.clone()];
    let mut printed: Vec<String> = Vec::new();
    v.create_account("acct_42", 100, Some(serde_json::json!({"plan": "pro"})))
        .unwrap();
    common::seed_routes(&v);
    let (t1, k1) = v
        .create_key(
            NewKey::new("acct_42", "server", ["sms:send", "numbers:read"]).prefix("dial_live"),
        )
        .unwrap();
    let (t2, k2) = v
        .create_key(NewKey::new("acct_42", "signer", ["sms:send"]).signing(true))
        .unwrap();
    let (t3, k3) = v
        .create_key(NewKey::new("acct_42", "ops", ["*"]).operator(true))
        .unwrap();
    secrets.push(t1.expose().to_string());
    secrets.push(t2.expose().to_string());
    secrets.push(t2.signing_secret().unwrap().to_string());
    secrets.push(t3.expose().to_string());
    // Debug of the tokens themselves.
    printed.push(format!("{t1:?} {t2:?} {t3:?} {k1:?} {k2:?} {k3:?}"));
    // Use them: grants, refusals, replays, rate limits, whoami, usage.
    let send = Target::route("POST", "/api/v1/messaging/send");
    let idem = AuthorizeOptions {
        idempotency_key: Some("req-1"),
        ..AuthorizeOptions::default()
    };
    printed.push(format!("{:?}", v.authorize(t1.expose(), send, &idem)));
    printed.push(format!("{:?}", v.authorize(t1.expose(), send, &idem)));
    printed.push(format!(
        "{:?}",
        v.authorize(t3.expose(), send, &AuthorizeOptions::default())
    ));
    let wrong = keyledger::token::mint("dial_live", &k1.key_id)
        .unwrap()
        .to_string();
    secrets.push(wrong.clone());
    let unsigned = v.authorize(t2.expose(), send, &AuthorizeOptions::default());
    let mut errors: Vec<Error> = vec![unsigned.unwrap_err()];
    errors.push(
        v.authorize(&wrong, send, &AuthorizeOptions::default())
            .unwrap_err(),
    );
    let mangled = format!("{}x", t1.expose());
    errors.push(
        v.authorize(&mangled, send, &AuthorizeOptions::default())
            .unwrap_err(),
    );
    errors.push(
        v.authorize(
            t1.expose(),
            Target::scope("admin"),
            &AuthorizeOptions::default(),
        )
        .unwrap_err(),
    );
    errors.push(
        v.authorize(
            t1.expose(),
            send,
            &AuthorizeOptions {
                cost: Some(1_000),
                ..AuthorizeOptions::default()
            },
        )
        .unwrap_err(),
    );
    v.set_ratelimit(LimitOwner::Key(&k1.key_id), "burst", 1, 60_000, true)
        .unwrap();
    let _ = v.authorize(t1.expose(), send, &AuthorizeOptions::default());
    if let Err(e) = v.authorize(t1.expose(), send, &AuthorizeOptions::default()) {
        errors.push(e);
    }
    errors.push(v.create_account("acct_42", 1, None).unwrap_err());
    errors.push(v.key("nope0000").unwrap_err());
    // A token passed where an id is expected must not be echoed back either.
    errors.push(v.key(t1.expose()).unwrap_err());
    for e in &errors {
        printed.push(format!("{e:?} | {e} | {} | {}", e.body(), e.code()));
    }
    printed.push(format!("{:?}", v.whoami(t1.expose())));
    printed.push(format!("{:?}", v.whoami(&wrong)));
    let (t4, k4) = v.rotate_key(&k1.key_id, 60_000).unwrap();
    secrets.push(t4.expose().to_string());
    printed.push(format!("{k4:?}"));
    let revealed = v.reveal_signing_secret(&k2.key_id).unwrap();
    assert_eq!(revealed.as_str(), t2.signing_secret().unwrap());
    v.revoke_key(&k3.key_id).unwrap();
    let _ = v.authorize(t3.expose(), send, &AuthorizeOptions::default());
    v.flush().unwrap();
    printed.push(format!("{:?}", v.list_keys(None).unwrap()));
    printed.push(format!("{:?}", v.list_accounts().unwrap()));
    printed.push(format!("{:?}", v.usage(&k1.key_id).unwrap()));
    printed.push(format!("{:?}", v.stats()));
    printed.push(format!("{v:?}"));
    let audit = v
        .audit(&AuditQuery {
            limit: Some(10_000),
            ..AuditQuery::default()
        })
        .unwrap();
    assert!(audit.len() > 10);
    printed.push(format!("{audit:?}"));
    printed.push(serde_json::to_string(&audit).unwrap());
    printed.push(format!(
        "{:?}",
        VaultOptions {
            master_key: Some(MasterKey::from_base64(&master_b64).unwrap()),
            ..options()
        }
    ));
    printed.push(format!(
        "{:?}",
        MasterKey::from_base64(&master_b64).unwrap()
    ));
    v.close().unwrap();

    // The CLI's views of the same vault (no creation line here).
    for args in [
        &["key", "list"][..],
        &["key", "list", "--json"],
        &["key", "show", &k1.key_id],
        &["key", "show", &k2.key_id, "--json"],
        &["account", "show", "acct_42"],
        &["account", "list", "--json"],
        &["audit"],
        &["audit", "--json", "--limit", "1000"],
        &["usage", &k1.key_id],
        &["whoami", &wrong],
        &["authorize", &wrong, "--scope", "sms:send"],
        &["check", &wrong],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .env("KEYLEDGER_VAULT", &path)
            .env_remove("KEYLEDGER_MASTER_KEY")
            .output()
            .unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // `whoami`/`authorize`/`check` were given the token: they must not print it back.
        printed.push(format!("cli {}: {text}", args[0]));
    }
    let needles = needles(&secrets);
    for (i, p) in printed.iter().enumerate() {
        assert_clean(
            &format!("printed item {i}: {}", &p[..p.len().min(80)]),
            p.as_bytes(),
            &needles,
        );
        assert!(!p.contains("$argon2id$"), "printed item {i} shows a hash");
    }
    // Stored forms: the vault file (hashes and sealed secrets only) and the sidecar.
    let shm = path.with_extension("redb.shm");
    for file in [&path, &shm] {
        let bytes = std::fs::read(file).unwrap();
        assert_clean(&file.display().to_string(), &bytes, &needles);
        let raw_master = base64_decode(&master_b64);
        assert!(
            !bytes.windows(32).any(|w| w == raw_master.as_slice()),
            "{} holds the master key",
            file.display()
        );
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", file.display());
    }
    eprintln!(
        "hygiene: {} secrets × {} forms searched in {} printed items and 2 files: none found",
        secrets.len(),
        needles.len(),
        printed.len()
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// Median of the per-call time in nanoseconds over `rounds` interleaved batches.
fn median(mut xs: Vec<u128>) -> u128 {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

#[test]
fn a_wrong_secret_for_a_cached_key_takes_as_long_as_the_right_one() {
    if std::env::var_os("KEYLEDGER_LONG").is_none() && !common::require_all() {
        eprintln!(
            "timing: skipped (long run and CI only: KEYLEDGER_LONG=1 or KEYLEDGER_REQUIRE_ALL=1)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open_with(
        dir.path().join("v.redb"),
        VaultOptions {
            // No throttling: every wrong attempt takes the full verification path.
            throttle: ThrottleConfig {
                burst: u32::MAX,
                per_second: 1e9,
                budget_burst: u32::MAX,
                budget_per_second: 1e9,
            },
            ..options()
        },
    )
    .unwrap();
    v.create_account("a", 0, None).unwrap();
    let (t, info) = v.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    let target = Target::scope("x");
    let o = AuthorizeOptions::default();
    v.authorize(t.expose(), target, &o).unwrap(); // cache the digest
    let wrongs: Vec<String> = (0..64)
        .map(|_| {
            keyledger::token::mint("kl_live", &info.key_id)
                .unwrap()
                .to_string()
        })
        .collect();
    for w in &wrongs {
        let _ = v.authorize(w, target, &o); // first sight of each wrong secret
    }
    let runs_before = v.stats().argon2_runs;
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    const BATCH: u32 = 200;
    for round in 0..400 {
        let t0 = std::time::Instant::now();
        for _ in 0..BATCH {
            let _ = std::hint::black_box(v.authorize(t.expose(), target, &o));
        }
        let r = t0.elapsed().as_nanos() / u128::from(BATCH);
        let w = &wrongs[round % wrongs.len()];
        let t0 = std::time::Instant::now();
        for _ in 0..BATCH {
            let _ = std::hint::black_box(v.authorize(w, target, &o));
        }
        let x = t0.elapsed().as_nanos() / u128::from(BATCH);
        right.push(r);
        wrong.push(x);
    }
    let argon2_runs = v.stats().argon2_runs - runs_before;
    let (mr, mw) = (median(right), median(wrong));
    let ratio = mw as f64 / mr as f64;
    eprintln!(
        "timing: cached key, median per call over 400×{BATCH}: right secret {mr} ns, wrong secret {mw} ns (ratio {ratio:.2}); argon2 runs during the wrong attempts: {argon2_runs}"
    );
    assert!(
        (0.5..2.0).contains(&ratio),
        "a wrong secret and the right one take very different times: {mr} ns vs {mw} ns"
    );
}
