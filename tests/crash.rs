//! Crash safety: a worker process debits, tops up and manages keys in a
//! loop and is killed with SIGKILL at random points; nothing it was told succeeded is ever
//! lost, nothing is counted twice, and the file stays a clean redb database.
//!
//! The worker is the child-process binary (`tests/children/crash.rs`) run on `crash::worker`. Before each call it
//! writes an intent line (`@@ I …`) and after the call returns it writes what was
//! acknowledged (`@@ A …`), both to a pipe, before going on. So at any kill at most one
//! call is in flight: the parent's model knows the exact balance, give or take that one
//! call, and checks after each kill that the vault holds exactly one of the two outcomes.
//!
//! In some phases a second process (`crash::server`) stays alive across the kills,
//! serving `authorize` from its warm caches: after every kill it must report the exact
//! balance and refuse every key whose revocation was acknowledged (the worker may die
//! between the two generation bumps of its commit; readers must then fall back to redb).
//!
//! Sizes: 240 kills by default (CI; 120 over PostgreSQL, where each round opens a database
//! connection and a listener); `KEYLEDGER_LONG=1` runs 5 000, and `KL_CRASH_KILLS=n` any
//! number. `KL_SEED` replays a run (the seed is printed).
//!
//! Over PostgreSQL (`KEYLEDGER_TEST_PG_SUITES`, the `Fixture`'s database): there is no
//! file to check with redb's integrity check, and the live server's caches follow the
//! killed worker's commits once their notification has arrived, so its answers are
//! awaited (at most 5 s) instead of taken from the very next call.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::workloads::Rng;
use common::{assert_no_audit_gap, assert_redb_integrity, child_command, options, Fixture};
use keyledger::{AuthorizeOptions, Error, NewKey, Target, Vault};

const INITIAL: u64 = 1_000_000_000;

/// A child with its protocol lines (`@@ …`) forwarded to a channel.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    fn spawn(env: &[(&str, String)], stdin: bool) -> Proc {
        let role = &env.iter().find(|(k, _)| *k == "KL_ROLE").unwrap().1;
        let mut cmd = child_command(&format!("crash::{role}"));
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(msg) = line.strip_prefix("@@ ") {
                    if tx.send(msg.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        Proc {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            reader: Some(reader),
        }
    }

    fn expect_line(&self, what: &str) -> String {
        match self.lines.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(e) => panic!("no {what} from the child: {e:?}"),
        }
    }

    fn ask(&mut self, cmd: &str) -> String {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
        self.expect_line(cmd)
    }

    /// SIGKILL, then every line it wrote before dying.
    fn kill(mut self) -> Vec<String> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        self.lines.try_iter().collect()
    }

    fn quit(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
    }
}

#[derive(Clone, Debug)]
struct KeyModel {
    token: Option<String>,
    revoked: bool,
    disabled: bool,
}

/// What the parent knows: exact, since every acknowledged call is reported.
#[derive(Default)]
struct Model {
    credits: u64,
    total: u64,
    keys: BTreeMap<String, KeyModel>,
    /// Idempotency keys whose debit landed → the amount it charged.
    idem: HashMap<String, u64>,
    acked_debits: u64,
    acked_calls: u64,
    in_flight_landed: u64,
    in_flight_lost: u64,
    /// Holds: the active holds (id → amount).
    holds: BTreeMap<String, u64>,
}

impl Model {
    /// Credits reserved by the active holds.
    fn held(&self) -> u64 {
        self.holds.values().sum()
    }

    fn apply(&mut self, ack: &str) {
        self.acked_calls += 1;
        let w: Vec<&str> = ack.split(' ').collect();
        match w[0] {
            "auth" => {
                let c: u64 = w[1].parse().unwrap();
                self.credits -= c;
                self.acked_debits += c;
                assert_eq!(
                    w[2].parse::<u64>().unwrap(),
                    self.credits - self.held(),
                    "grant credits"
                );
            }
            "idem" => {
                let (charged, replayed, k) = (w[1].parse::<u64>().unwrap(), w[2] == "true", w[3]);
                match self.idem.get(k) {
                    Some(_) => assert!(replayed && charged == 0, "idempotent retry charged twice"),
                    None => {
                        assert!(!replayed, "a replay of a call that never landed");
                        self.idem.insert(k.to_string(), charged);
                        self.credits -= charged;
                        self.acked_debits += charged;
                    }
                }
            }
            "debit" => {
                let c: u64 = w[1].parse().unwrap();
                self.credits -= c;
                self.acked_debits += c;
                assert_eq!(w[2].parse::<u64>().unwrap(), self.credits, "debit balance");
            }
            "topup" => {
                let c: u64 = w[1].parse().unwrap();
                self.credits += c;
                self.total += c;
                assert_eq!(w[2].parse::<u64>().unwrap(), self.credits, "top-up balance");
            }
            "create" => {
                self.keys.insert(
                    w[1].to_string(),
                    KeyModel {
                        token: Some(w[2].to_string()),
                        revoked: false,
                        disabled: false,
                    },
                );
            }
            "revoke" => self.keys.get_mut(w[1]).unwrap().revoked = true,
            "toggle" => self.keys.get_mut(w[1]).unwrap().disabled = w[2] == "true",
            // Holds: a reservation moves no owned credit; its settle charges.
            "hold" => {
                let prev = self.holds.insert(w[2].to_string(), w[1].parse().unwrap());
                assert!(prev.is_none(), "a hold acknowledged twice");
            }
            "settle" => {
                let charged: u64 = w[1].parse().unwrap();
                self.holds
                    .remove(w[2])
                    .expect("a settle of an unknown hold");
                self.credits -= charged;
                self.acked_debits += charged;
            }
            other => panic!("unknown ack {other}"),
        }
    }

    /// Resolve the call in flight at the kill (if any) against what the vault holds, then
    /// check the whole model. Returns the idempotent call to retry, if it was in flight.
    fn settle(&mut self, v: &Vault, in_flight: Option<&str>) -> Option<String> {
        let b = v.balance("a").unwrap();
        let keys: HashMap<String, keyledger::KeyInfo> = v
            .list_keys(Some("a"))
            .unwrap()
            .into_iter()
            .map(|k| (k.key_id.clone(), k))
            .collect();
        let mut retry = None;
        if let Some(intent) = in_flight {
            let w: Vec<&str> = intent.split(' ').collect();
            let c: u64 = w[1].parse().unwrap();
            let landed = match w[0] {
                "auth" | "debit" => {
                    assert!(b.credits == self.credits || b.credits + c == self.credits);
                    b.credits != self.credits
                }
                "idem" => {
                    let k = w[2];
                    retry = Some(format!("{k} {c}"));
                    if self.idem.contains_key(k) {
                        // A retry of a call that had landed: charges nothing either way.
                        assert_eq!(b.credits, self.credits, "a replay charged");
                        false
                    } else {
                        assert!(b.credits == self.credits || b.credits + c == self.credits);
                        let landed = b.credits != self.credits;
                        if landed {
                            self.idem.insert(k.to_string(), c);
                        }
                        landed
                    }
                }
                "topup" => {
                    assert!(b.credits == self.credits || b.credits == self.credits + c);
                    if b.credits != self.credits {
                        self.total += c;
                    }
                    b.credits != self.credits
                }
                "create" => {
                    let new: Vec<&String> = keys
                        .keys()
                        .filter(|k| !self.keys.contains_key(*k))
                        .collect();
                    assert!(new.len() <= 1, "more than one unacknowledged key");
                    for id in &new {
                        self.keys.insert(
                            (*id).clone(),
                            KeyModel {
                                token: None,
                                revoked: false,
                                disabled: false,
                            },
                        );
                    }
                    !new.is_empty()
                }
                "revoke" => {
                    let landed = keys[w[2]].revoked_at.is_some();
                    self.keys.get_mut(w[2]).unwrap().revoked = landed;
                    landed
                }
                "toggle" => {
                    let landed = keys[w[2]].disabled == (w[3] == "true");
                    self.keys.get_mut(w[2]).unwrap().disabled = keys[w[2]].disabled;
                    landed
                }
                // Holds: landed iff held grew by `c` (then exactly one hold is new).
                "hold" => {
                    assert!(b.held == self.held() || b.held == self.held() + c);
                    let new: Vec<_> = v
                        .holds(Some("a"))
                        .unwrap()
                        .into_iter()
                        .filter(|h| !self.holds.contains_key(&h.hold_id))
                        .collect();
                    assert_eq!(new.len(), usize::from(b.held != self.held()));
                    for h in &new {
                        assert_eq!(h.amount, c);
                        self.holds.insert(h.hold_id.clone(), c);
                    }
                    !new.is_empty()
                }
                // Landed iff the hold is settled, for exactly `c`; otherwise still active.
                "settle" => {
                    let h = v.get_hold(w[2]).unwrap();
                    let landed = h.state == keyledger::HoldState::Settled;
                    if landed {
                        assert_eq!(h.charged, c);
                        self.holds.remove(w[2]);
                        self.credits -= c;
                        self.acked_debits += c;
                    } else {
                        assert_eq!(h.state, keyledger::HoldState::Active);
                    }
                    landed
                }
                other => panic!("unknown intent {other}"),
            };
            if matches!(w[0], "auth" | "debit" | "idem" | "topup") {
                self.credits = b.credits;
            }
            if landed {
                self.in_flight_landed += 1;
                if matches!(w[0], "auth" | "debit" | "idem") {
                    self.acked_debits += c;
                }
            } else {
                self.in_flight_lost += 1;
            }
        }
        // The invariant: balance + debits == initial + top-ups, exactly.
        assert_eq!(b.credits, self.credits, "balance differs from the model");
        // Holds: nothing held is lost or released twice.
        assert_eq!(b.held, self.held(), "held credits differ from the model");
        assert_eq!(b.available, b.credits - b.held);
        assert_eq!(
            b.total_credits, self.total,
            "total credits differ from the model"
        );
        assert_eq!(
            b.credits + self.acked_debits,
            self.total,
            "credits were lost or created"
        );
        // No acknowledged management change is missing (and nothing else appeared).
        assert_eq!(keys.len(), self.keys.len(), "keys differ from the model");
        for (id, m) in &self.keys {
            let k = &keys[id];
            assert_eq!(k.revoked_at.is_some(), m.revoked, "revocation of {id}");
            assert_eq!(k.disabled, m.disabled, "disabled flag of {id}");
        }
        retry
    }
}

fn kills() -> u64 {
    if let Ok(n) = std::env::var("KL_CRASH_KILLS") {
        return n.parse().unwrap();
    }
    if std::env::var_os("KEYLEDGER_LONG").is_some() {
        5_000
    } else if over_postgres() {
        120
    } else {
        240
    }
}

/// Whether the `Fixture` opens a PostgreSQL database (`KEYLEDGER_TEST_PG_SUITES`).
fn over_postgres() -> bool {
    std::env::var("KEYLEDGER_TEST_PG_SUITES").is_ok_and(|u| !u.is_empty())
}

/// The server's answer to `cmd`, which must become `want`: at once on redb (its caches
/// are validated by the shared sidecar); over PostgreSQL once the change's notification
/// has arrived (at most 5 s), the answers before that all being `stale`.
fn server_answer(s: &mut Proc, cmd: &str, want: &str, stale: &[String], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = s.ask(cmd);
        if got == want {
            return;
        }
        assert!(
            over_postgres() && Instant::now() < deadline && stale.contains(&got),
            "{what}: {got:?}, expected {want:?}"
        );
    }
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_debit_or_change() {
    let seed: u64 = std::env::var("KL_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |s| s.parse().unwrap(),
    );
    eprintln!("crash test seed: KL_SEED={seed}");
    let mut rng = Rng(seed);
    let f = Fixture::new();
    f.vault.create_account("a", INITIAL, None).unwrap();
    let (token, main) = f.vault.create_key(NewKey::new("a", "main", ["x"])).unwrap();
    f.vault.close().unwrap();
    let path = f.path.display().to_string();
    let mut model = Model {
        credits: INITIAL,
        total: INITIAL,
        ..Model::default()
    };
    model.keys.insert(
        main.key_id,
        KeyModel {
            token: Some(token.expose().to_string()),
            revoked: false,
            disabled: false,
        },
    );
    let mut retry: Option<String> = None;
    let mut server: Option<Proc> = None;
    let (mut integrity_checks, mut server_checks, mut killed_in_open) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let n = kills();
    for round in 0..n {
        // Phases of 20 rounds; every other phase runs with a live server.
        let want_server = (round / 20) % 2 == 1;
        if want_server && server.is_none() {
            let s = Proc::spawn(
                &[("KL_ROLE", "server".into()), ("KL_PATH", path.clone())],
                true,
            );
            assert_eq!(s.expect_line("server READY"), "READY");
            server = Some(s);
        } else if !want_server {
            if let Some(s) = server.take() {
                s.quit();
            }
        }
        if let Some(s) = server.as_mut() {
            // Warm its caches: the main key, the balance, a few live keys.
            let r = s.ask(&format!("AUTH {}", token.expose()));
            assert_eq!(
                r,
                format!("OK {}", model.credits - model.held()),
                "server before round {round}"
            );
            for (_, k) in model.keys.iter().rev().take(3) {
                if let Some(t) = &k.token {
                    s.ask(&format!("AUTH {t}"));
                }
            }
        }
        let credits_before = model.credits;
        let available_before = model.credits - model.held();
        let mut env = vec![
            ("KL_ROLE", "worker".to_string()),
            ("KL_PATH", path.clone()),
            ("KL_TOKEN", token.expose().to_string()),
            ("KL_SEED", rng.next().to_string()),
            ("KL_ROUND", round.to_string()),
        ];
        if let Some(r) = &retry {
            env.push(("KL_RETRY", r.clone()));
        }
        let w = Proc::spawn(&env, false);
        // Kill at a random point: mostly while it works, sometimes while it opens.
        let early = rng.below(10) == 0;
        if !early {
            match w.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => assert_eq!(l, "READY"),
                Err(RecvTimeoutError::Timeout) => panic!("worker never got ready"),
                Err(RecvTimeoutError::Disconnected) => panic!("worker died"),
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(if early {
            4_000
        } else {
            40_000
        })));
        let lines = w.kill();
        // Replay what it acknowledged; at most one intent is left without its ack.
        let mut in_flight: Option<String> = None;
        let mut saw_ready = !early;
        for l in lines {
            assert!(
                !l.starts_with("FAIL"),
                "worker call failed in round {round}: {l}"
            );
            if l == "READY" {
                saw_ready = true;
            } else if let Some(intent) = l.strip_prefix("I ") {
                assert!(in_flight.is_none(), "two calls in flight");
                in_flight = Some(intent.to_string());
            } else if let Some(ack) = l.strip_prefix("A ") {
                let intent = in_flight.take().expect("an ack without an intent");
                assert_eq!(intent.split(' ').next(), ack.split(' ').next());
                model.apply(ack);
                if ack.starts_with("idem") {
                    retry = None;
                }
            }
        }
        if !saw_ready {
            killed_in_open += 1;
        }
        // The file is a clean redb database (only checkable with no other process in it).
        if server.is_none() && !over_postgres() {
            assert_redb_integrity(&f.path);
            integrity_checks += 1;
        }
        let v = Vault::open_with(&f.path, options()).unwrap();
        let r = model.settle(&v, in_flight.as_deref());
        if r.is_some() {
            retry = r;
        }
        assert_no_audit_gap(&v);
        v.close().unwrap();
        if let Some(s) = server.as_mut() {
            // Its warm caches follow every commit of the killed worker (over PostgreSQL,
            // once notified; until then only answers it gave before the round may show).
            let stale: Vec<String> = std::iter::once(format!("BAL {credits_before}"))
                .chain(
                    ["ERR invalid_api_key", "ERR api_key_inactive"]
                        .into_iter()
                        .map(String::from),
                )
                .chain(std::iter::once(format!("OK {available_before}")))
                .collect();
            server_answer(
                s,
                "BAL",
                &format!("BAL {}", model.credits),
                &stale,
                &format!("balance after round {round}"),
            );
            for k in model.keys.values().rev().take(6) {
                let Some(t) = &k.token else { continue };
                let want = if k.revoked {
                    "ERR invalid_api_key".to_string()
                } else if k.disabled {
                    "ERR api_key_inactive".to_string()
                } else {
                    format!("OK {}", model.credits - model.held())
                };
                server_answer(
                    s,
                    &format!("AUTH {t}"),
                    &want,
                    &stale,
                    &format!("server's view of a key after round {round}"),
                );
                server_checks += 1;
            }
        }
    }
    if let Some(s) = server.take() {
        s.quit();
    }
    if !over_postgres() {
        assert_redb_integrity(&f.path);
    }
    let v = Vault::open_with(&f.path, options()).unwrap();
    let top = assert_no_audit_gap(&v);
    // Keys the model knows are all there, and the main key still works.
    assert!(v
        .authorize(
            token.expose(),
            Target::scope("x"),
            &AuthorizeOptions::default()
        )
        .is_ok());
    assert_eq!(
        v.authorize(
            "kl_live_nope",
            Target::scope("x"),
            &AuthorizeOptions::default()
        )
        .unwrap_err(),
        Error::InvalidApiKey
    );
    eprintln!(
        "crash test: {n} SIGKILLs ({killed_in_open} before the worker was ready) in {:.1}s; \
         {} acknowledged calls, {} credits debited; calls in flight at the kill: {} landed, {} \
         did not; {} keys; {integrity_checks} redb integrity checks; {server_checks} checks by \
         the live server; audit entries: {top}",
        started.elapsed().as_secs_f64(),
        model.acked_calls,
        model.acked_debits,
        model.in_flight_landed,
        model.in_flight_lost,
        model.keys.len(),
    );
}
