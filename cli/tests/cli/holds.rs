//! `keyledger holds create|settle|release|list|show` against a real vault file.

use crate::support::*;

#[test]
fn holds_reserve_settle_release_and_list_through_the_cli() {
    let mut cli = Cli::init();
    cli.run(&["account", "create", "acct_h", "--credits", "100"])
        .ok();
    let r = cli
        .run(&["--json", "holds", "create", "acct_h", "30", "--ttl", "60"])
        .ok();
    let id = r.json()["hold_id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["state"], "active");
    assert_eq!(
        r.json()["expires_at"].as_i64().unwrap() - r.json()["created_at"].as_i64().unwrap(),
        60_000
    );
    let r = cli.run(&["account", "balance", "acct_h"]).ok();
    assert!(
        r.stdout.contains("100 credits") && r.stdout.contains("30 held, 70 available"),
        "{}",
        r.stdout
    );
    let r = cli.run(&["--json", "account", "balance", "acct_h"]).ok();
    assert_eq!(
        (r.json()["held"].as_u64(), r.json()["available"].as_u64()),
        (Some(30), Some(70))
    );
    let r = cli.run(&["holds", "list", "--account", "acct_h"]).ok();
    assert!(r.stdout.contains(&id), "{}", r.stdout);
    // 402 when the available credits are short; nothing reserved.
    cli.run(&["holds", "create", "acct_h", "71"]).code(4);
    let r = cli.run(&["holds", "settle", &id, "12"]).ok();
    assert!(r.stdout.contains("settled, 12 of 30"), "{}", r.stdout);
    // Another amount for a settled hold: hold_settled (exit 7); the same answers again.
    cli.run(&["holds", "settle", &id, "13"]).code(7);
    cli.run(&["holds", "settle", &id, "12"]).ok();
    assert_eq!(cli.credits("acct_h"), 88);
    let r = cli.run(&["--json", "holds", "create", "acct_h", "8"]).ok();
    let id2 = r.json()["hold_id"].as_str().unwrap().to_string();
    let r = cli.run(&["--json", "holds", "release", &id2]).ok();
    assert_eq!(r.json()["state"], "released");
    let r = cli.run(&["--json", "holds", "show", &id2]).ok();
    assert_eq!(r.json()["state"], "released");
    cli.run(&["holds", "release", "hold_0123456789abcdef01234567"])
        .code(6);
    cli.run(&["holds", "release", "not-a-hold"]).code(8);
    cli.run(&["holds", "create", "acct_h", "0"]).code(8);
    let r = cli.run(&["--json", "holds", "list"]).ok();
    assert_eq!(r.json(), serde_json::json!([]));
    assert_eq!(cli.credits("acct_h"), 88);
}
