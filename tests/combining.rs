//! Debits over the sidecar's combining queue (`KEYLEDGER_COMBINE=1` in the child
//! processes): several processes share commits, totals stay exact, and SIGKILL of any of
//! them (combiner or waiter) loses no acknowledged debit and applies none twice.
//!
//! Child processes are the child-process binary (`tests/children/combining.rs` and
//! `concurrency.rs`). redb only: the queue lives in the file's sidecar.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::workloads::Rng;
use common::{child_command, reported, run_child};
use keyledger::{NewKey, Vault};

fn vault(dir: &tempfile::TempDir) -> (std::path::PathBuf, Vault) {
    let path = dir.path().join("vault.redb");
    let v = Vault::open_with(&path, common::options()).unwrap();
    (path, v)
}

#[test]
fn four_combining_processes_spend_exactly_the_balance() {
    const N: u64 = 600;
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = vault(&dir);
    v.create_account("a", N, None).unwrap();
    let (t, _) = v.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    let env = [
        ("KL_PATH", path.display().to_string()),
        ("KL_TOKEN", t.expose().to_string()),
        ("KEYLEDGER_COMBINE", "1".to_string()),
    ];
    let children: Vec<_> = (0..4)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || run_child("concurrency::spend", &env))
        })
        .collect();
    let mut total = 0;
    for c in children {
        total += reported(&c.join().unwrap(), "GRANTED");
    }
    assert_eq!(total, N, "processes overspent or lost debits");
    assert_eq!(v.balance("a").unwrap().credits, 0);
}

/// A debiting child and the counts of its `I` (intent) and `A` (acknowledged) lines.
struct Worker {
    child: Child,
    intents: Arc<AtomicU64>,
    acks: Arc<AtomicU64>,
    reader: std::thread::JoinHandle<()>,
}

fn spawn(path: &std::path::Path, token: &str) -> Worker {
    let mut cmd = child_command("combining::debit_until_killed");
    cmd.env("KL_PATH", path)
        .env("KL_TOKEN", token)
        .env("KEYLEDGER_COMBINE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let intents = Arc::new(AtomicU64::new(0));
    let acks = Arc::new(AtomicU64::new(0));
    let (i, a) = (intents.clone(), acks.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            match line.as_str() {
                "I" => i.fetch_add(1, Ordering::SeqCst),
                "A" => a.fetch_add(1, Ordering::SeqCst),
                "READY" => {
                    let _ = ready_tx.send(());
                    0
                }
                _ => 0,
            };
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the worker never got ready");
    Worker {
        child,
        intents,
        acks,
        reader,
    }
}

impl Worker {
    /// SIGKILL it; returns (acknowledged, in flight when killed).
    fn kill(mut self) -> (u64, u64) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.reader.join().unwrap();
        let i = self.intents.load(Ordering::SeqCst);
        let a = self.acks.load(Ordering::SeqCst);
        assert!(i >= a && i - a <= 4, "intents {i}, acks {a}");
        (a, i - a)
    }
}

#[test]
fn sigkill_of_combiners_and_waiters_keeps_every_acknowledged_debit_once() {
    const INITIAL: u64 = 1_000_000_000;
    let kills: u64 = std::env::var("KL_COMBINE_KILLS").map_or(24, |n| n.parse().unwrap());
    let seed: u64 = std::env::var("KL_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |s| s.parse().unwrap(),
    );
    println!("KL_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let (path, v) = vault(&dir);
    v.create_account("a", INITIAL, None).unwrap();
    let (t, _) = v.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    let token = t.expose().to_string();
    let mut workers: Vec<Worker> = (0..4).map(|_| spawn(&path, &token)).collect();
    let (mut acked, mut in_flight) = (0u64, 0u64);
    for _ in 0..kills {
        // Pacing only (a random point in the workers' run), not a measurement.
        std::thread::sleep(Duration::from_millis(20 + rng.below(200)));
        let i = rng.below(workers.len() as u64) as usize;
        let (a, f) = workers.swap_remove(i).kill();
        acked += a;
        in_flight += f;
        workers.push(spawn(&path, &token));
    }
    std::thread::sleep(Duration::from_millis(100));
    for w in workers {
        let (a, f) = w.kill();
        acked += a;
        in_flight += f;
    }
    let charged = INITIAL - v.balance("a").unwrap().credits;
    println!("charged {charged}, acknowledged {acked}, in flight at the kills {in_flight}");
    assert!(acked > 0, "no debit was acknowledged");
    assert!(
        charged >= acked,
        "an acknowledged debit was lost: charged {charged}, acknowledged {acked}"
    );
    assert!(
        charged <= acked + in_flight,
        "a debit was applied twice: charged {charged}, acknowledged {acked}, in flight {in_flight}"
    );
}
