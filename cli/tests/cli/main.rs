//! The `keyledger` command-line tool, run as a process against a vault in a temp dir.
//!
//! Exit codes under test: 0 ok, 1 usage, 2 refused 401 / not a key, 3 refused 403,
//! 4 refused 402, 6 not_found, 7 already_exists, 8 invalid_argument.

mod docs;
// Holds.
mod holds;
mod support;

use support::*;

#[test]
fn init_creates_the_vault_and_commands_need_one() {
    let mut cli = Cli::new();
    // No vault yet: not_found, and nothing is created by accident.
    let r = cli.run(&["account", "list"]).code(6);
    assert!(r.stderr.contains("keyledger init"), "{}", r.stderr);
    assert!(!cli.vault.exists());
    let r = cli.run(&["init"]).ok();
    assert!(r.stdout.contains("vault.redb"), "{}", r.stdout);
    assert!(cli.vault.exists());
    let r = cli.run(&["--json", "init"]).ok();
    assert!(r.json()["path"].as_str().unwrap().ends_with("vault.redb"));
}

#[test]
fn accounts_top_up_debit_and_balance() {
    let mut cli = Cli::init();
    let r = cli
        .run(&[
            "account",
            "create",
            "acct_1",
            "--credits",
            "5",
            "--metadata",
            r#"{"plan":"pro"}"#,
        ])
        .ok();
    assert!(r.stdout.contains("acct_1"));
    let r = cli
        .run(&[
            "--json",
            "account",
            "top-up",
            "acct_1",
            "10",
            "--reference",
            "inv_1",
        ])
        .ok();
    assert_eq!(r.json()["credits"], 15);
    assert_eq!(r.json()["total_credits"], 15);
    let r = cli.run(&["account", "balance", "acct_1"]).ok();
    assert!(r.stdout.contains("15 credits"), "{}", r.stdout);
    cli.run(&["account", "debit", "acct_1", "4", "--idempotency-key", "d1"])
        .ok();
    cli.run(&["account", "debit", "acct_1", "4", "--idempotency-key", "d1"])
        .ok();
    assert_eq!(cli.credits("acct_1"), 11);
    let show = cli
        .run(&["--json", "account", "show", "acct_1"])
        .ok()
        .json();
    assert_eq!(show["metadata"]["plan"], "pro");
    assert_eq!(show["credits"], 11);
    let list = cli.run(&["--json", "account", "list"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let table = cli.run(&["account", "list"]).ok();
    assert!(table.stdout.starts_with("ID "), "{}", table.stdout);
    // Management debit past the balance: the same 402 body as authorize.
    let r = cli
        .run(&["--json", "account", "debit", "acct_1", "1000"])
        .code(4);
    assert_eq!(r.json()["error"], "insufficient_credits");
    assert_eq!(r.json()["credits"], 11);
    assert_eq!(r.json()["required"], 1000);
    assert_eq!(cli.credits("acct_1"), 11);
    // Already exists.
    let r = cli.run(&["--json", "account", "create", "acct_1"]).code(7);
    assert_eq!(r.json()["error"], "already_exists");
}

#[test]
fn a_created_key_is_checked_and_authorized_and_its_token_never_reprinted() {
    let mut cli = Cli::init();
    let token = setup(&mut cli, "5", &["sms:send"]);
    let key_id = key_id_of(&token);

    let r = cli.run(&["check", &token]).ok();
    assert!(r.stdout.contains(&format!("dial_live_{key_id}_")));
    cli.run(&["authorize", &token, "--route", SEND]).ok();
    assert_eq!(cli.credits("acct_1"), 4);

    // From stdin, as JSON.
    let r = cli.run_stdin(
        &["--json", "authorize", "-", "--route", SEND],
        Some(&format!("{token}\n")),
    );
    let grant = r.ok().json();
    assert_eq!(grant["charged"], 1);
    assert_eq!(grant["credits"], 3);
    assert_eq!(grant["key_id"], key_id.as_str());
    assert_eq!(grant["auth_method"], "apikey");
    let who = cli
        .run_stdin(&["--json", "whoami", "-"], Some(&token))
        .ok()
        .json();
    assert_eq!(who["account_id"], "acct_1");
    assert_eq!(who["credits"], 3);
    cli.run_stdin(&["check", "-"], Some(&token)).ok();

    // Listings and views never show it.
    let list = cli.run(&["key", "list"]).ok();
    assert!(list.stdout.contains(&key_id));
    assert!(list.stdout.contains("active"));
    let list = cli
        .run(&["--json", "key", "list", "--account", "acct_1"])
        .ok();
    assert_eq!(list.json()[0]["key_id"], key_id.as_str());
    cli.run(&["key", "show", &key_id]).ok();
    cli.run(&["--json", "key", "show", &key_id]).ok().json();
    cli.run(&["audit"]).ok();
    cli.run(&["--json", "audit", "--key", &key_id, "--limit", "5"])
        .ok()
        .json();
    let usage = cli.run(&["--json", "usage", &key_id]).ok().json();
    assert_eq!(usage["granted"], 2);
    cli.run(&["usage", &key_id]).ok();

    // Revoked: 401.
    cli.run(&["key", "revoke", &key_id]).ok();
    let r = cli
        .run(&["--json", "authorize", &token, "--route", SEND])
        .code(2);
    assert_eq!(r.json()["error"], "invalid_api_key");
    let r = cli.run(&["authorize", &token, "--route", SEND]).code(2);
    assert!(r.stdout.contains("401 invalid_api_key"), "{}", r.stdout);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    cli.run_stdin(&["whoami", "-"], Some(&token)).code(2);
    let list = cli.run(&["key", "list"]).ok();
    assert!(list.stdout.contains("revoked"), "{}", list.stdout);
    assert_eq!(cli.credits("acct_1"), 3);

    cli.assert_never_printed(&token);
}

#[test]
fn missing_scope_and_unknown_route_exit_3() {
    let mut cli = Cli::init();
    let token = setup(&mut cli, "5", &["numbers:read"]);
    let r = cli
        .run(&["--json", "authorize", &token, "--route", SEND])
        .code(3);
    assert_eq!(r.json()["error"], "missing_scope");
    assert_eq!(r.json()["required"], "sms:send");
    let r = cli
        .run(&["--json", "authorize", &token, "--route", "GET /nowhere"])
        .code(3);
    assert_eq!(r.json()["error"], "route_not_allowed");
    cli.run(&["authorize", &token, "--scope", "sms:send"])
        .code(3);
    cli.run(&["authorize", &token, "--scope", "numbers:read"])
        .ok();
    // route match: a rule, or 403 when none matches.
    let r = cli
        .run(&["--json", "route", "match", "POST", "/api/v1/messaging/send"])
        .ok();
    assert_eq!(r.json()["scope"], "sms:send");
    cli.run(&["route", "match", "GET", "/nowhere"]).code(3);
    assert_eq!(cli.credits("acct_1"), 5);
    cli.assert_never_printed(&token);
}

#[test]
fn insufficient_credits_exits_4_with_the_402_body() {
    let mut cli = Cli::init();
    let token = setup(&mut cli, "1", &["sms:send"]);
    cli.run(&["authorize", &token, "--route", SEND]).ok();
    let r = cli
        .run(&["--json", "authorize", &token, "--route", SEND])
        .code(4);
    let body = r.json();
    assert_eq!(body["error"], "insufficient_credits");
    assert_eq!(body["credits"], 0);
    assert_eq!(body["required"], 1);
    assert!(r.stderr.contains("error: insufficient credits"));
    let r = cli
        .run(&["authorize", &token, "--scope", "sms:send", "--cost", "7"])
        .code(4);
    assert!(
        r.stdout.contains("402 insufficient_credits"),
        "{}",
        r.stdout
    );
    assert_eq!(cli.credits("acct_1"), 0);
}

#[test]
fn unknown_things_exit_6() {
    let mut cli = Cli::init();
    for args in [
        &["account", "show", "nope"][..],
        &["account", "balance", "nope"],
        &["account", "top-up", "nope", "5"],
        &[
            "key",
            "create",
            "--account",
            "nope",
            "--name",
            "x",
            "--scope",
            "a",
        ],
        &["key", "show", "abcdefgh"],
        &["key", "revoke", "abcdefgh"],
        &["route", "remove", "GET", "/x"],
    ] {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let r = cli.run(&with_json).code(6);
        assert_eq!(r.json()["error"], "not_found", "{args:?}");
    }
}

#[test]
fn bad_amounts_are_invalid_argument_exit_8() {
    let mut cli = Cli::init();
    cli.run(&["account", "create", "acct_1", "--credits", "5"])
        .ok();
    for amount in ["0", "-1", "99999999999999999999999", "1.5", "ten"] {
        for cmd in ["top-up", "debit"] {
            let r = cli
                .run(&["--json", "account", cmd, "acct_1", amount])
                .code(8);
            assert_eq!(r.json()["error"], "invalid_argument", "{cmd} {amount}");
        }
    }
    for credits in ["-1", "99999999999999999999999"] {
        cli.run(&["account", "create", "acct_2", "--credits", credits])
            .code(8);
    }
    cli.run(&["route", "add", "GET", "/x", "x:read", "--cost", "-1"])
        .code(8);
    cli.run(&["account", "create", "acct_2", "--metadata", "[1]"])
        .code(8);
    cli.run(&["account", "create", "acct_2", "--metadata", "{nope"])
        .code(8);
    cli.run(&[
        "key",
        "create",
        "--account",
        "acct_1",
        "--name",
        "k",
        "--prefix",
        "Bad-Prefix",
    ])
    .code(8);
    cli.run(&["audit", "--limit", "0"]).code(8);
    assert_eq!(cli.credits("acct_1"), 5);
    let r = cli.run(&["--json", "account", "list"]).ok();
    assert_eq!(r.json().as_array().unwrap().len(), 1, "nothing was created");
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let mut cli = Cli::init();
    cli.run(&["bogus"]).code(1);
    cli.run(&["account", "top-up", "acct_1"]).code(1);
    cli.run(&["authorize", "tok"]).code(1); // neither --route nor --scope
    cli.run(&["key", "expire", "abcdefgh"]).code(1);
    cli.run(&["key", "expire", "abcdefgh", "--never", "--at", "5"])
        .code(1);
    let r = cli.run(&["--help"]).ok();
    assert!(r.stdout.contains("Exit codes"), "{}", r.stdout);
    assert!(
        !r.stdout.contains("argon2-fast"),
        "test-only flag is hidden"
    );
    cli.run(&["key", "create", "--help"]).ok();
}

#[test]
fn check_needs_no_vault() {
    let mut cli = Cli::new();
    let r = cli.run(&["check", "dial_live_abcdefgh_nope"]).code(2);
    assert!(r.stdout.contains("not a keyledger key"));
    cli.run_stdin(&["check", "-"], Some("hello\n")).code(2);
    let r = cli.run(&["--json", "check", "x"]).code(2);
    assert_eq!(r.json()["looks_like_key"], false);
    assert!(!cli.vault.exists());
}

#[test]
fn disable_enable_expire_scopes_and_rotate() {
    let mut cli = Cli::init();
    let token = setup(&mut cli, "10", &["sms:send"]);
    let key_id = key_id_of(&token);

    cli.run(&["key", "disable", &key_id]).ok();
    let r = cli
        .run(&["--json", "authorize", &token, "--route", SEND])
        .code(2);
    assert_eq!(r.json()["error"], "api_key_inactive");
    let list = cli.run(&["key", "list"]).ok();
    assert!(list.stdout.contains("disabled"));
    cli.run(&["key", "enable", &key_id]).ok();
    cli.run(&["authorize", &token, "--route", SEND]).ok();

    // Expiry in the past, then cleared.
    cli.run(&["key", "expire", &key_id, "--at", "1000"]).ok();
    let r = cli
        .run(&["--json", "authorize", &token, "--route", SEND])
        .code(2);
    assert_eq!(r.json()["error"], "api_key_expired");
    assert!(cli.run(&["key", "list"]).ok().stdout.contains("expired"));
    let k = cli
        .run(&["--json", "key", "expire", &key_id, "--never"])
        .ok()
        .json();
    assert!(k["expires_at"].is_null());
    let k = cli
        .run(&["--json", "key", "expire", &key_id, "--in", "3600"])
        .ok()
        .json();
    assert!(k["expires_at"].as_i64().unwrap() > 1_700_000_000_000);
    let show = cli.run(&["key", "show", &key_id]).ok();
    assert!(
        show.stdout.contains("T") && show.stdout.contains("Z"),
        "ISO time: {}",
        show.stdout
    );

    // Scopes.
    let k = cli
        .run(&["--json", "key", "scopes", &key_id, "numbers:read", "sms:*"])
        .ok()
        .json();
    assert_eq!(k["scopes"], serde_json::json!(["numbers:read", "sms:*"]));
    cli.run(&["authorize", &token, "--route", SEND]).ok();

    // Rotate with no grace: the new token works, the old one stops.
    let r = raw(&cli.vault, &["key", "rotate", &key_id], None).ok();
    let new_token = r.stdout.trim().to_string();
    assert_eq!(r.stdout.lines().count(), 1);
    assert!(r.stderr.contains("cannot be shown again"));
    assert_ne!(key_id_of(&new_token), key_id);
    cli.run(&["authorize", &new_token, "--route", SEND]).ok();
    cli.run(&["authorize", &token, "--route", SEND]).code(2);
    // Rotate as JSON: token and key.
    let r = raw(
        &cli.vault,
        &[
            "--json",
            "key",
            "rotate",
            &key_id_of(&new_token),
            "--grace",
            "60",
        ],
        None,
    )
    .ok();
    let v = r.json();
    assert!(v["token"].as_str().unwrap().starts_with("dial_live_"));
    assert_eq!(v["key"]["rotated_from"], key_id_of(&new_token).as_str());
    // Grace: the rotated-out key still works for a while.
    cli.run(&["authorize", &new_token, "--route", SEND]).ok();
    assert_eq!(cli.credits("acct_1"), 6);

    cli.assert_never_printed(&token);
    cli.assert_never_printed(&new_token);
}

#[test]
fn key_create_json_and_operator_keys() {
    let mut cli = Cli::init();
    cli.run(&["account", "create", "acct_1"]).ok();
    cli.run(&[
        "route",
        "add",
        "GET",
        "/admin/*",
        "admin:all",
        "--cost",
        "3",
    ])
    .ok();
    let r = raw(
        &cli.vault,
        &[
            "--json",
            "key",
            "create",
            "--account",
            "acct_1",
            "--name",
            "ops",
            "--operator",
            "--expires-in",
            "3600",
            "--metadata",
            r#"{"team":"ops"}"#,
        ],
        None,
    )
    .ok();
    let v = r.json();
    let token = v["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("kl_live_"));
    assert_eq!(v["key"]["operator"], true);
    assert_eq!(v["key"]["metadata"]["team"], "ops");
    assert!(v["key"]["expires_at"].is_i64());
    // Operator: passes the scope, never charged (the account has 0 credits).
    let g = cli
        .run(&["--json", "authorize", &token, "--route", "GET /admin/users"])
        .ok()
        .json();
    assert_eq!(g["auth_method"], "operator");
    assert_eq!(g["charged"], 0);
    let audit = cli
        .run(&["--json", "audit", "--action", "operator_authorized"])
        .ok()
        .json();
    assert_eq!(audit.as_array().unwrap().len(), 1);
    assert_eq!(audit[0]["key_id"], key_id_of(&token).as_str());
    cli.assert_never_printed(&token);
}

#[test]
fn routes_add_list_remove() {
    let mut cli = Cli::init();
    cli.run(&["route", "add", "GET", "/sms/*", "sms.read"]).ok();
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
    cli.run(&["route", "add", "GET", "/sms/*", "sms.read"])
        .code(7);
    let rules = cli.run(&["--json", "route", "list"]).ok().json();
    assert_eq!(rules.as_array().unwrap().len(), 2);
    let table = cli.run(&["route", "list"]).ok();
    assert!(table.stdout.starts_with("METHOD"));
    assert!(table.stdout.contains("/sms/*"));
    let m = cli
        .run(&["--json", "route", "match", "GET", "/sms/abc/def"])
        .ok()
        .json();
    assert_eq!(m["scope"], "sms.read");
    cli.run(&["route", "remove", "GET", "/sms/*"]).ok();
    cli.run(&["route", "match", "GET", "/sms/abc"]).code(3);
}

#[test]
fn idempotent_authorize_replays() {
    let mut cli = Cli::init();
    let token = setup(&mut cli, "5", &["sms:send"]);
    let a = [
        "--json",
        "authorize",
        &token,
        "--route",
        SEND,
        "--idempotency-key",
        "req-1",
    ];
    let g1 = cli.run(&a).ok().json();
    let g2 = cli.run(&a).ok().json();
    assert_eq!(g1["replayed"], false);
    assert_eq!(g2["replayed"], true);
    assert_eq!(cli.credits("acct_1"), 4);
}

#[test]
fn quickstart_narrates_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let qs = dir.path().join("qs");
    let qs_s = qs.to_str().unwrap();
    let nowhere = dir.path().join("unused.redb");
    let r = raw(&nowhere, &["quickstart", "--dir", qs_s], None).ok();
    for needle in [
        "route_not_allowed",
        "invalid_api_key",
        "final balance of acct_demo: 99 credits",
        "dial_live_",
        "audit tail",
    ] {
        assert!(
            r.stdout.contains(needle),
            "missing {needle:?}:\n{}",
            r.stdout
        );
    }
    assert!(qs.join("keyledger.redb").exists());
    assert!(!nowhere.exists(), "quickstart ignores --vault");
    // The demo vault is usable afterwards, and no secret was printed.
    let vault = qs.join("keyledger.redb");
    let keys = raw(&vault, &["--json", "key", "list"], None).ok().json();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let key_id = keys[0]["key_id"].as_str().unwrap();
    let redacted = format!("dial_live_{key_id}_…");
    assert!(r.stdout.contains(&redacted));
    for line in r.stdout.lines() {
        if let Some(pos) = line.find(&format!("{key_id}_")) {
            let rest = &line[pos + key_id.len() + 1..];
            assert!(rest.starts_with('…'), "secret printed: {line}");
        }
    }
    // Again in the same dir: refused (already_exists).
    raw(&nowhere, &["quickstart", "--dir", qs_s], None).code(7);
    // As JSON, in a fresh dir.
    let qs2 = dir.path().join("qs2");
    let v = raw(
        &nowhere,
        &["--json", "quickstart", "--dir", qs2.to_str().unwrap()],
        None,
    )
    .ok()
    .json();
    assert_eq!(v["balance"]["credits"], 99);
    let codes: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"].as_str().unwrap_or("granted"))
        .collect();
    assert_eq!(
        codes,
        ["granted", "granted", "route_not_allowed", "invalid_api_key"]
    );
}

#[test]
fn exclusive_open_works() {
    let mut cli = Cli::init();
    cli.run(&["--exclusive", "account", "create", "acct_x"])
        .ok();
    cli.run(&["--exclusive", "account", "balance", "acct_x"])
        .ok();
}

#[test]
fn signing_keys_with_a_master_key_from_the_environment_reveal_and_rekey() {
    let cli = Cli::init();
    let generated = raw(&cli.vault, &["master-key", "generate"], None).ok();
    let master = generated.stdout.trim().to_string();
    assert_eq!(master.len(), 44, "base64 of 32 bytes: {master:?}");
    let env = [("KEYLEDGER_MASTER_KEY", master.as_str())];
    let run = |args: &[&str]| raw_env(&cli.vault, args, None, &env);
    run(&["account", "create", "acct_1", "--credits", "5"]).ok();
    run(&[
        "route", "add", "POST", "/v1/send", "sms:send", "--cost", "1",
    ])
    .ok();
    // Without the master key, a signing key cannot be made.
    raw(
        &cli.vault,
        &[
            "key",
            "create",
            "--account",
            "acct_1",
            "--name",
            "s",
            "--scope",
            "sms:send",
            "--signing",
        ],
        None,
    )
    .code(8);
    let created = run(&[
        "key",
        "create",
        "--account",
        "acct_1",
        "--name",
        "s",
        "--scope",
        "sms:send",
        "--signing",
    ])
    .ok();
    let lines: Vec<&str> = created.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "token then signing secret: {:?}",
        created.stdout
    );
    let (token, secret) = (lines[0], lines[1]);
    assert_eq!(secret.len(), 64);
    let key_id = key_id_of(token);
    // Unsigned: 401 invalid_signature (exit 2). Signed: granted.
    let unsigned = run(&["--json", "authorize", token, "--route", "POST /v1/send"]).code(2);
    assert_eq!(unsigned.json()["error"], "invalid_signature");
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sig = keyledger::sign_request(secret, t, "POST", "/v1/send", b"hello");
    run(&[
        "authorize",
        token,
        "--route",
        "POST /v1/send",
        "--signature",
        &sig,
        "--body",
        "hello",
    ])
    .ok();
    let revealed = run(&["key", "reveal-secret", &key_id]).ok();
    assert_eq!(revealed.stdout.trim(), secret);
    // Rekey to a generated key: the old key no longer opens the vault's secrets.
    let rekeyed = run(&["rekey", "--generate"]).ok();
    let new_master = rekeyed.stdout.trim().to_string();
    assert_eq!(new_master.len(), 44);
    run(&["key", "reveal-secret", &key_id]).code(9);
    let revealed = raw_env(
        &cli.vault,
        &["key", "reveal-secret", &key_id],
        None,
        &[("KEYLEDGER_MASTER_KEY", new_master.as_str())],
    )
    .ok();
    assert_eq!(revealed.stdout.trim(), secret);
    // The master key never appears in a listing or the audit log.
    let audit = raw_env(
        &cli.vault,
        &["--json", "audit"],
        None,
        &[("KEYLEDGER_MASTER_KEY", new_master.as_str())],
    )
    .ok();
    assert!(!audit.stdout.contains(secret) && !audit.stdout.contains(&new_master));
    assert!(
        audit.stdout.contains("master_key_rotated")
            && audit.stdout.contains("signing_secret_revealed")
    );
}

#[test]
fn rate_limits_and_refills_from_the_command_line() {
    let mut cli = Cli::init();
    let token = setup(&mut cli, "10", &["sms:send"]);
    let key_id = key_id_of(&token);
    cli.run(&["limit", "set", "per_minute", "2", "60", "--key", &key_id])
        .ok();
    let listed = cli.run(&["--json", "limit", "list", "--key", &key_id]).ok();
    assert_eq!(listed.json()[0]["limit"], 2);
    assert_eq!(listed.json()[0]["duration_ms"], 60_000);
    cli.run(&["authorize", &token, "--route", SEND]).ok();
    cli.run(&["authorize", &token, "--route", SEND]).ok();
    let refused = cli
        .run(&["--json", "authorize", &token, "--route", SEND])
        .code(5);
    assert_eq!(refused.json()["error"], "rate_limited");
    assert_eq!(refused.json()["limit"], "per_minute");
    cli.run(&["limit", "set", "x", "0", "60", "--account", "acct_1"])
        .code(8);
    cli.run(&["limit", "set", "x", "1", "60"]).code(1);
    cli.run(&["limit", "remove", "per_minute", "--key", &key_id])
        .ok();
    cli.run(&["limit", "remove", "per_minute", "--key", &key_id])
        .code(6);
    let plan = cli
        .run(&[
            "--json",
            "account",
            "refill",
            "acct_1",
            "--amount",
            "500",
            "--interval",
            "monthly",
            "--day",
            "15",
        ])
        .ok();
    assert_eq!(plan.json()["refill"]["amount"], 500);
    assert_eq!(plan.json()["refill"]["day"], 15);
    cli.run(&[
        "account",
        "refill",
        "acct_1",
        "--amount",
        "5",
        "--interval",
        "monthly",
        "--day",
        "31",
    ])
    .code(8);
    let cleared = cli
        .run(&["--json", "account", "refill", "acct_1", "--clear"])
        .ok();
    assert!(cleared.json()["refill"].is_null());
}

// Token styles.
#[test]
fn a_colon_style_key_is_created_checked_and_authorized() {
    let mut cli = Cli::init();
    setup(&mut cli, "5", &["sms:send"]);
    let token = cli.create_key(&[
        "--account",
        "acct_1",
        "--name",
        "voice",
        "--scope",
        "sms:send",
        "--style",
        "colon",
    ]);
    let (key_id, secret) = token.split_once(':').expect("<key_id>:<secret>");
    assert_eq!((key_id.len(), secret.len()), (8, 40));
    let r = cli.run(&["check", &token]).ok();
    assert!(r.stdout.contains(&format!("{key_id}:…")), "{}", r.stdout);
    cli.run(&["authorize", &token, "--route", SEND]).ok();
    assert_eq!(cli.credits("acct_1"), 4);
    let shown = cli.run(&["--json", "key", "show", key_id]).ok().json();
    assert_eq!(
        (shown["style"].as_str(), shown["prefix"].as_str()),
        (Some("colon"), Some(""))
    );
    let listed = cli.run(&["key", "list"]).ok();
    assert!(listed.stdout.contains("(colon)"), "{}", listed.stdout);
    cli.assert_never_printed(secret);
    // An unknown style is a usage error (clap's exit 1, naming the styles) and creates nothing.
    let before = cli.run(&["--json", "key", "list"]).ok().json();
    let r = cli
        .run(&[
            "key",
            "create",
            "--account",
            "acct_1",
            "--name",
            "x",
            "--scope",
            "sms:send",
            "--style",
            "dots",
        ])
        .code(1);
    assert!(r.stderr.contains("prefixed, colon"), "{}", r.stderr);
    assert_eq!(cli.run(&["--json", "key", "list"]).ok().json(), before);
}
