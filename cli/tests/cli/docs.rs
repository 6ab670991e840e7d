//! Shell completions, the man page, and instants given as RFC 3339.

use std::process::Command;

use crate::support::*;

const SUBCOMMANDS: &[&str] = &[
    "init",
    "account",
    "key",
    "route",
    "limit",
    "authorize",
    "audit",
    "usage",
    "dashboard",
    "quickstart",
    "migrate",
    "completions",
    "man",
    "events",
];

#[test]
fn completions_for_every_shell_name_the_subcommands_and_need_no_vault() {
    let cli = Cli::new(); // no vault file: these commands never open one
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = raw(&cli.vault, &["completions", shell], None).ok();
        assert!(!r.stdout.trim().is_empty(), "{shell}: empty script");
        for sub in SUBCOMMANDS {
            assert!(r.stdout.contains(sub), "{shell}: no {sub:?} in the script");
        }
    }
    assert!(!cli.vault.exists());
    let r = raw(&cli.vault, &["completions", "tcsh"], None).code(1);
    assert!(r.stderr.contains("bash"), "{}", r.stderr);
}

#[test]
fn the_bash_completion_script_parses_and_registers_for_keyledger() {
    let cli = Cli::new();
    let script = raw(&cli.vault, &["completions", "bash"], None).ok().stdout;
    let path = cli._dir.path().join("keyledger.bash");
    std::fs::write(&path, script).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // Sourced, it registers a completion function for `keyledger`, which offers the
    // subcommands for `keyledger au<TAB>`.
    let probe = format!(
        "source {}; complete -p keyledger || exit 1; COMP_WORDS=(keyledger au); COMP_CWORD=1; \
         COMP_LINE='keyledger au'; COMP_POINT=12; _keyledger keyledger au keyledger; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = Command::new("bash").arg("-c").arg(probe).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("-F _keyledger keyledger"), "{stdout}");
    let offered: Vec<&str> = stdout.lines().skip(1).collect();
    assert!(
        offered.contains(&"audit") && offered.contains(&"authorize"),
        "{offered:?}"
    );
    assert!(!offered.contains(&"init"), "{offered:?}");
}

#[test]
fn the_man_page_is_roff_naming_every_subcommand_and_renders_with_man() {
    let cli = Cli::new();
    let page = raw(&cli.vault, &["man"], None).ok().stdout;
    assert!(
        page.lines().any(|l| l.starts_with(".TH keyledger 1")),
        "{page}"
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section}");
    }
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("keyledger\\-{sub}(1)"))
                || page.contains(&format!("keyledger-{sub}(1)")),
            "no {sub}"
        );
    }
    // The roff structure is checked above; with `man` installed, the page must also render.
    if Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let path = cli._dir.path().join("keyledger.1");
        std::fs::write(&path, &page).unwrap();
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "man -l: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("NAME") && text.contains("SUBCOMMANDS"),
            "{text}"
        );
        assert!(text.contains("keyledger-completions(1)"), "{text}");
    }
}

/// `2026-12-01T00:00:00.123+HH:MM` for unix ms `ms`, shown at `offset_min` minutes east.
fn rfc3339(ms: i64, offset_min: i64) -> String {
    let local = ms + offset_min * 60_000;
    let (secs, milli) = (local.div_euclid(1000), local.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let zone = match offset_min {
        0 => "Z".to_string(),
        o => format!(
            "{}{:02}:{:02}",
            if o < 0 { '-' } else { '+' },
            o.abs() / 60,
            o.abs() % 60
        ),
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}{zone}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[test]
fn audit_since_rfc3339_selects_the_same_entries_as_unix_milliseconds() {
    let mut cli = Cli::init();
    let token = setup(&mut cli, "5", &["sms:send"]);
    for id in ["acct_2", "acct_3", "acct_4"] {
        cli.run(&["account", "create", id]).ok();
    }
    cli.run(&["authorize", &token, "--scope", "sms:other"])
        .code(3); // audited refusal
    let all = cli.run(&["--json", "audit"]).ok().json();
    let times: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["time"].as_i64().expect("time in unix ms"))
        .collect();
    assert!(times.len() >= 5, "{all}");
    let ids = |r: Run| -> Vec<u64> {
        let v = r.ok().json();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    for &at in [times[0], times[times.len() / 2], times[times.len() - 1]].iter() {
        let by_ms = ids(cli.run(&["--json", "audit", "--since", &at.to_string()]));
        let expected = times.iter().filter(|&&t| t >= at).count();
        assert_eq!(by_ms.len(), expected, "--since {at}");
        for (offset, what) in [(0, "UTC"), (330, "+05:30"), (-480, "-08:00")] {
            let text = rfc3339(at, offset);
            let by_text = ids(cli.run(&["--json", "audit", "--since", &text]));
            assert_eq!(by_text, by_ms, "--since {text} ({what}) vs --since {at}");
        }
        // One millisecond later in RFC 3339 drops the entries of that very millisecond.
        let later = ids(cli.run(&["--json", "audit", "--since", &rfc3339(at + 1, 60)]));
        assert_eq!(later.len(), times.iter().filter(|&&t| t > at).count());
    }
}

#[test]
fn an_expiry_given_in_rfc3339_is_that_instant() {
    let mut cli = Cli::init();
    cli.run(&["account", "create", "acct_1"]).ok();
    let token = cli.create_key(&[
        "--account",
        "acct_1",
        "--name",
        "n",
        "--expires-at",
        "2030-01-01T01:00:00+01:00",
    ]);
    let key_id = key_id_of(&token);
    let key = cli.run(&["--json", "key", "show", &key_id]).ok().json();
    assert_eq!(key["expires_at"], 1_893_456_000_000_i64); // 2030-01-01T00:00:00Z
    cli.run(&["key", "expire", &key_id, "--at", "2031-06-15"])
        .ok();
    let key = cli.run(&["--json", "key", "show", &key_id]).ok().json();
    assert_eq!(key["expires_at"], 1_939_248_000_000_i64); // 2031-06-15T00:00:00Z
}

#[test]
fn a_malformed_since_is_refused_naming_the_accepted_forms_and_changes_nothing() {
    let mut cli = Cli::init();
    for bad in [
        "yesterday",
        "2026-12-01T00:00:00",
        "2026-02-30T00:00:00Z",
        "1.5e12",
    ] {
        let r = cli.run(&["audit", "--since", bad]).code(8);
        assert!(
            r.stderr.contains("--since must be unix milliseconds")
                && r.stderr.contains("RFC 3339")
                && r.stderr.contains("2026-12-01T00:00:00Z")
                && r.stderr.contains(bad),
            "{}",
            r.stderr
        );
        let r = cli.run(&["--json", "audit", "--since", bad]).code(8);
        assert_eq!(r.json()["error"], "invalid_argument");
    }
}
