use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use super::layout::{
    combine_len, encode_header, file_len, full_len, slot_hash, u32_at, u64_at, COMBINE_FIELDS,
};
use super::open::flock;
use super::*;

const VID: [u8; 16] = *b"vault-id-0000001";
const OTHER: [u8; 16] = *b"vault-id-0000002";

fn header(path: &Path) -> [u8; HEADER_FIELDS] {
    let bytes = std::fs::read(path).unwrap();
    let mut h = [0u8; HEADER_FIELDS];
    h.copy_from_slice(&bytes[..HEADER_FIELDS]);
    h
}

fn assert_valid_file(path: &Path, vault_id: &[u8; 16], slots: u32) {
    let bytes = std::fs::read(path).unwrap();
    let rl_off = 4096 + u64::from(slots) * 8;
    let cq_off = rl_off + RATE_BUCKETS * 16;
    assert_eq!(bytes.len() as u64, cq_off + combine_len());
    assert_eq!(&bytes[0..8], b"KLSHM\0\0\x01");
    let h = header(path);
    assert_eq!(u32_at(&h, 8), 3);
    assert_eq!(u32_at(&h, 12), 4096);
    assert_eq!(&h[16..32], vault_id);
    assert_eq!(u32_at(&h, 32), slots);
    assert_eq!(u32_at(&h, 36), 0);
    assert_eq!(u64_at(&h, 40), 4096);
    assert_eq!(u64_at(&h, 48), rl_off);
    assert_eq!(u64_at(&h, 56), RATE_BUCKETS * 16);
    assert_ne!(u64_at(&h, 64), 0, "a live epoch");
    assert_eq!(u64_at(&h, 72), cq_off);
    assert_eq!(u64_at(&h, 80), (4 + 256 * 101) * 8);
    let cq = cq_off as usize;
    assert!(
        bytes[88..cq].iter().all(|&b| b == 0),
        "reserved, slots and buckets zero"
    );
    assert_eq!(&bytes[cq..cq + 8], b"KLCQ\0\0\0\x01");
    assert_eq!(
        u64::from_le_bytes(bytes[cq + 8..cq + 16].try_into().unwrap()),
        256
    );
    assert!(
        bytes[cq + 16..].iter().all(|&b| b == 0),
        "every queue slot free"
    );
}

fn one_write(sc: &Sidecar, slots: &[usize]) {
    let mut g = sc.write();
    g.begin(slots);
}

#[test]
fn sidecar_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Sidecar>();
}

#[test]
fn fresh_sidecar_has_mode_0600_and_documented_header_and_is_shared_between_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let a = Sidecar::open(&path, VID, 1024).unwrap();
    assert!(a.is_shared());
    assert_eq!(a.slot_count(), 1024);
    let mode = std::fs::metadata(&path).unwrap().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_valid_file(&path, &VID, 1024);

    let b = Sidecar::open(&path, VID, 1024).unwrap();
    let slot = a.slot_of(SlotKind::Key, "key_1");
    assert_eq!(slot, b.slot_of(SlotKind::Key, "key_1"));
    {
        let mut g = a.write();
        g.begin(&[slot]);
        assert_eq!(
            b.load(slot),
            1,
            "busy value visible through the other mapping"
        );
    }
    assert_eq!(b.load(slot), 2);
    one_write(&b, &[slot]);
    assert_eq!(a.load(slot), 4);
    // The values are in the file itself.
    drop((a, b));
    let c = Sidecar::open(&path, VID, 1024).unwrap();
    assert_eq!(c.load(slot), 4);
}

#[test]
fn begin_makes_slot_odd_and_drop_makes_it_even_and_larger() {
    let dir = tempfile::tempdir().unwrap();
    let sc = Sidecar::open(&dir.path().join("v.shm"), VID, 64).unwrap();
    let slot = sc.slot_of(SlotKind::Account, "acct");
    let before = sc.load(slot);
    assert!(Sidecar::is_idle(before));
    let mut g = sc.write();
    g.begin(&[slot]);
    let busy = sc.load(slot);
    assert!(!Sidecar::is_idle(busy));
    drop(g);
    let after = sc.load(slot);
    assert!(Sidecar::is_idle(after));
    assert!(after > before);
}

#[test]
fn colliding_ids_in_one_write_bump_their_slot_once() {
    let dir = tempfile::tempdir().unwrap();
    let sc = Sidecar::open(&dir.path().join("v.shm"), VID, 4).unwrap();
    let first = sc.slot_of(SlotKind::Key, "k0");
    let other = (1..100)
        .map(|i| format!("k{i}"))
        .find(|id| sc.slot_of(SlotKind::Key, id) == first)
        .expect("a collision among 100 ids in 4 slots");
    let b = sc.slot_of(SlotKind::Key, &other);
    {
        let mut g = sc.write();
        g.begin(&[first, b]);
        g.begin(&[b]);
        assert_eq!(sc.load(first), 1);
    }
    assert_eq!(sc.load(first), 2);
}

#[test]
fn abandoned_writer_leaves_slot_odd_and_next_write_makes_it_even_and_new() {
    let dir = tempfile::tempdir().unwrap();
    let sc = Sidecar::open(&dir.path().join("v.shm"), VID, 64).unwrap();
    let slot = sc.slot_of(SlotKind::Key, "k");
    let mut seen = vec![sc.load(slot)];
    one_write(&sc, &[slot]);
    seen.push(sc.load(slot));
    let mut g = sc.write();
    g.begin(&[slot]);
    seen.push(sc.load(slot));
    g.abandon();
    let stuck = sc.load(slot);
    assert!(!Sidecar::is_idle(stuck), "abandoned slot stays busy");
    // The lock was released: a new write proceeds, odd → odd (+2) → even.
    let mut g = sc.write();
    g.begin(&[slot]);
    assert_eq!(sc.load(slot), stuck + 2);
    drop(g);
    let now = sc.load(slot);
    assert!(Sidecar::is_idle(now));
    assert!(seen.iter().all(|&v| v < now), "{seen:?} vs {now}");
}

#[test]
fn writer_killed_in_another_process_leaves_slot_odd_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let sc = Sidecar::open(&path, VID, 256).unwrap();
    let slot = sc.slot_of(SlotKind::Key, "victim");
    one_write(&sc, &[slot]);
    let before = sc.load(slot);

    // SAFETY: the child only opens its own sidecar, bumps a slot and `_exit`s; it never
    // returns into the test harness (panics are caught), and glibc's malloc is fork-safe.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(|| {
            let Ok(child) = Sidecar::open(&path, VID, 256) else {
                return false;
            };
            let mut g = child.write();
            g.begin(&[slot]);
            // Die between the bumps: no Drop runs.
            std::mem::forget(g);
            std::mem::forget(child);
            true
        })
        .unwrap_or(false);
        // SAFETY: terminates the child immediately, without running destructors/atexit.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        assert_eq!(
            io::Error::last_os_error().kind(),
            io::ErrorKind::Interrupted
        );
    }
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);

    let stuck = sc.load(slot);
    assert!(!Sidecar::is_idle(stuck));
    assert_eq!(stuck, before + 1);
    // The kernel released the dead child's flock.
    let probe = File::open(&path).unwrap();
    flock(&probe, libc::LOCK_EX | libc::LOCK_NB).expect("lock is free");
    flock(&probe, libc::LOCK_UN).unwrap();
    drop(probe);
    one_write(&sc, &[slot]);
    let now = sc.load(slot);
    assert!(Sidecar::is_idle(now));
    assert_eq!(now, stuck + 3);
}

fn rebuilt_from(contents: &[u8], open_slots: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    std::fs::write(&path, contents).unwrap();
    let sc = Sidecar::open(&path, VID, open_slots).unwrap();
    assert_eq!(sc.slot_count(), open_slots as usize);
    assert!((0..sc.slot_count()).all(|s| sc.load(s) == 0));
    drop(sc);
    assert_valid_file(&path, &VID, open_slots);
}

/// A valid file for `vault_id` whose slots hold a recognisable value.
fn valid_file(vault_id: &[u8; 16], slots: u32) -> Vec<u8> {
    let mut bytes = vec![0u8; full_len(slots) as usize];
    bytes[..HEADER_FIELDS].copy_from_slice(&encode_header(vault_id, slots, 0x5eed));
    let cq = (full_len(slots) - combine_len()) as usize;
    bytes[cq..cq + 16].copy_from_slice(&combine::header_bytes(256));
    for s in 0..slots as usize {
        let off = 4096 + s * 8;
        bytes[off..off + 8].copy_from_slice(&42u64.to_le_bytes());
    }
    bytes
}

#[test]
fn empty_truncated_and_garbage_files_are_rebuilt() {
    rebuilt_from(b"", 64);
    let full = valid_file(&VID, 64);
    rebuilt_from(&full[..100], 64);
    rebuilt_from(&full[..full.len() - 8], 64);
    let mut longer = full.clone();
    longer.extend_from_slice(&[7u8; 8]);
    rebuilt_from(&longer, 64);
    let mut garbage = vec![0u8; full.len()];
    getrandom::fill(&mut garbage).unwrap();
    rebuilt_from(&garbage, 64);
    // Right magic, garbage elsewhere.
    garbage[..8].copy_from_slice(&MAGIC);
    garbage[8..12].copy_from_slice(&3u32.to_le_bytes());
    rebuilt_from(&garbage, 64);
    // Older (zero) version, bad header_len, bad slot count, overlapping rate-limit region.
    for (off, val) in [(8usize, 0u64), (12, 8192), (32, 3), (48, 8)] {
        let mut bad = full.clone();
        if off == 48 {
            bad[off..off + 8].copy_from_slice(&val.to_le_bytes());
            bad[56..64].copy_from_slice(&8u64.to_le_bytes());
        } else {
            bad[off..off + 4].copy_from_slice(&(val as u32).to_le_bytes());
        }
        rebuilt_from(&bad, 64);
    }
}

#[test]
fn another_vaults_sidecar_is_rebuilt_with_zero_slots() {
    rebuilt_from(&valid_file(&OTHER, 64), 64);
    // Different size too.
    rebuilt_from(&valid_file(&OTHER, 128), 64);
}

#[test]
fn same_vault_sidecar_with_another_slot_count_is_adopted_not_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let a = Sidecar::open(&path, VID, 128).unwrap();
    one_write(&a, &[5]);
    let b = Sidecar::open(&path, VID, 1024).unwrap();
    assert_eq!(b.slot_count(), 128);
    assert_eq!(b.load(5), 2, "live generations survive");
    assert_eq!(
        a.slot_of(SlotKind::Global, "routes"),
        b.slot_of(SlotKind::Global, "routes")
    );
    drop((a, b));
    assert_valid_file_len(&path, 128);
}

fn assert_valid_file_len(path: &Path, slots: u32) {
    assert_eq!(std::fs::metadata(path).unwrap().len(), full_len(slots));
}

#[test]
fn a_version_2_sidecar_without_a_combining_queue_is_replaced_by_rename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let mut bytes = valid_file(&VID, 64);
    bytes.truncate((full_len(64) - combine_len()) as usize);
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    bytes[COMBINE_FIELDS..COMBINE_FIELDS + 16].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let old = ino(&path);
    let sc = Sidecar::open(&path, VID, 64).unwrap();
    assert_ne!(ino(&path), old);
    assert_eq!(sc.load(3), 0, "a new file");
    assert!(sc.combine_queue().is_some());
    drop(sc);
    assert_valid_file(&path, &VID, 64);
}

#[test]
fn regions_of_another_size_are_accepted_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let mut bytes = valid_file(&VID, 64);
    bytes.truncate(file_len(64) as usize);
    let rl_off = file_len(64);
    bytes[48..56].copy_from_slice(&rl_off.to_le_bytes());
    bytes[56..64].copy_from_slice(&4096u64.to_le_bytes());
    bytes.extend(std::iter::repeat_n(9u8, 4096));
    // A queue of 3 slots right after.
    let cq_off = bytes.len() as u64;
    let cq_len = (combine::region_words(3) * 8) as u64;
    bytes[COMBINE_FIELDS..COMBINE_FIELDS + 8].copy_from_slice(&cq_off.to_le_bytes());
    bytes[COMBINE_FIELDS + 8..COMBINE_FIELDS + 16].copy_from_slice(&cq_len.to_le_bytes());
    bytes.extend_from_slice(&combine::header_bytes(3));
    bytes.resize((cq_off + cq_len) as usize, 0);
    std::fs::write(&path, &bytes).unwrap();
    let sc = Sidecar::open(&path, VID, 64).unwrap();
    assert_eq!(sc.load(3), 42, "not rebuilt");
    assert_eq!(sc.rate_buckets().len(), 4096 / 16);
    assert_eq!(sc.combine_queue().unwrap().slot_count(), 3);
    one_write(&sc, &[3]);
    drop(sc);
    let after = std::fs::read(&path).unwrap();
    assert_eq!(after.len(), bytes.len());
    assert!(after[rl_off as usize..cq_off as usize]
        .iter()
        .all(|&b| b == 9));
}

#[test]
fn a_combining_queue_region_that_is_not_a_queue_leaves_the_sidecar_usable_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let mut bytes = valid_file(&VID, 64);
    let cq = (full_len(64) - combine_len()) as usize;
    bytes[cq..cq + 8].fill(0xee);
    std::fs::write(&path, &bytes).unwrap();
    let sc = Sidecar::open(&path, VID, 64).unwrap();
    assert_eq!(sc.load(3), 42, "not rebuilt");
    assert!(sc.combine_queue().is_none());
    // A queue header claiming more slots than the region holds is refused too.
    drop(sc);
    let mut bytes = valid_file(&VID, 64);
    bytes[cq + 8..cq + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let sc = Sidecar::open(&path, VID, 64).unwrap();
    assert!(sc.combine_queue().is_none());
}

#[test]
fn a_request_submitted_through_one_open_is_taken_and_answered_through_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let a = Sidecar::open(&path, VID, 64).unwrap();
    let b = Sidecar::open(&path, VID, 64).unwrap();
    let (qa, qb) = (a.combine_queue().unwrap(), b.combine_queue().unwrap());
    assert_eq!(qa.slot_count(), 256);
    let id = combine::RequestId {
        nonce: 11,
        counter: 1,
    };
    let t = qa.submit(qa.claim(1).unwrap(), id, b"debit").unwrap();
    let taken = qb.take(2, 16).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(
        (taken[0].id, taken[0].request.as_slice()),
        (id, &b"debit"[..])
    );
    qb.complete(taken[0].ticket, b"done").unwrap();
    qb.wake();
    assert_eq!(qa.poll(t).unwrap(), combine::Poll::Done(b"done".to_vec()));
    qa.release(t.index, 1).unwrap();
}

#[test]
fn newer_format_version_is_refused_not_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let mut bytes = valid_file(&VID, 64);
    bytes[8..12].copy_from_slice(&4u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = Sidecar::open(&path, VID, 64).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn symlink_and_non_regular_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.shm");
    let link = dir.path().join("link.shm");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(Sidecar::open(&link, VID, 64).is_err());
    assert!(!target.exists(), "nothing created through the link");
    let sub = dir.path().join("adir");
    std::fs::create_dir(&sub).unwrap();
    assert!(Sidecar::open(&sub, VID, 64).is_err());
}

#[test]
fn read_only_directory_is_an_error() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return; // root bypasses directory permissions
    }
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, Permissions::from_mode(0o555)).unwrap();
    let res = Sidecar::open(&ro.join("v.shm"), VID, 64);
    std::fs::set_permissions(&ro, Permissions::from_mode(0o755)).unwrap();
    assert!(res.is_err());
}

/// Readable by group or others only: tightened to 0600 and used. Writable by group or
/// others: refused, named, and left alone (someone else may still hold it open for
/// writing, so a chmod would not make it safe). Until this change, both were chmodded
/// and used.
#[test]
fn readable_sidecar_is_tightened_and_writable_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    std::fs::write(&path, valid_file(&VID, 64)).unwrap();
    std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
    let sc = Sidecar::open(&path, VID, 64).unwrap();
    assert_eq!(sc.load(0), 42);
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    drop(sc);
    for mode in [0o666, 0o620, 0o602] {
        std::fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        let err = Sidecar::open(&path, VID, 64).unwrap_err();
        let msg = unsafe_file(&err).expect("an UnsafeFile error");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, mode);
    }
}

#[test]
fn concurrent_writers_in_threads_and_two_opens_are_serialized() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    // Two opens = two open file descriptions: threads of different handles are excluded
    // by flock alone, threads of one handle by the mutex.
    let a = Arc::new(Sidecar::open(&path, VID, 64).unwrap());
    let b = Arc::new(Sidecar::open(&path, VID, 64).unwrap());
    let slot = a.slot_of(SlotKind::Account, "shared");
    let handles: Vec<_> = [&a, &a, &b, &b]
        .into_iter()
        .map(|sc| {
            let sc = Arc::clone(sc);
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    let mut g = sc.write();
                    assert!(Sidecar::is_idle(sc.load(slot)), "another writer is inside");
                    g.begin(&[slot]);
                    assert!(!Sidecar::is_idle(sc.load(slot)));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(a.load(slot), 2 * 4000);
}

#[test]
fn private_sidecar_follows_the_same_protocol() {
    let sc = Sidecar::private(100);
    assert!(!sc.is_shared());
    assert_eq!(sc.slot_count(), 128);
    let slot = sc.slot_of(SlotKind::Key, "k");
    let mut g = sc.write();
    g.begin(&[slot, slot]);
    assert_eq!(sc.load(slot), 1);
    g.abandon();
    assert_eq!(sc.load(slot), 1);
    one_write(&sc, &[slot]);
    assert_eq!(sc.load(slot), 4);

    let sc = Arc::new(Sidecar::private(8));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let sc = Arc::clone(&sc);
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    one_write(&sc, &[3]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(sc.load(3), 8000);
}

#[test]
fn out_of_range_slot_reads_as_not_current() {
    let sc = Sidecar::private(16);
    assert!(!Sidecar::is_idle(sc.load(16)));
    assert!(!Sidecar::is_idle(sc.load(usize::MAX)));
}

#[test]
fn slot_index_is_a_fixed_function_of_kind_and_id() {
    // Pinned: every process (and every future version of this format) must agree.
    assert_eq!(slot_hash(SlotKind::Key, "abc"), GOLDEN_KEY_ABC);
    assert_eq!(slot_hash(SlotKind::Global, "routes"), GOLDEN_GLOBAL_ROUTES);
    assert_ne!(
        slot_hash(SlotKind::Key, "abc"),
        slot_hash(SlotKind::Account, "abc")
    );
    let sc = Sidecar::private(Sidecar::DEFAULT_SLOTS);
    assert_eq!(
        sc.slot_of(SlotKind::Key, "abc"),
        (GOLDEN_KEY_ABC % 65_536) as usize
    );
    assert!(sc.slot_of(SlotKind::Key, "") < 65_536);
}

// Computed independently (Python) from the documented definition.
const GOLDEN_KEY_ABC: u64 = 9_248_732_256_079_076_433;
const GOLDEN_GLOBAL_ROUTES: u64 = 14_662_535_630_251_098_684;

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// The bug: a garbage header made the next opener rebuild the file in place (zeroed,
/// or truncated with `set_len(0)` under the feet of processes mapping it), so slot
/// values went back to ones a running process had cached. Now the file is replaced by
/// rename, the old one is retired, and its mappers stop trusting it on their next load.
#[test]
fn an_invalid_sidecar_is_replaced_by_rename_and_the_old_one_retired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let a = Sidecar::open(&path, VID, 64).unwrap();
    let slot = a.slot_of(SlotKind::Key, "k");
    one_write(&a, &[slot]);
    let cached = a.load(slot);
    assert!(Sidecar::is_idle(cached));
    let (old_ino, old_len) = (ino(&path), std::fs::metadata(&path).unwrap().len());
    // Garbage over the first fields only (the epoch word survives): only the
    // retirement by the next opener can tell `a`.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xA5; 64], 0).unwrap();
    assert_eq!(a.load(slot), cached, "nothing happened yet");
    let b = Sidecar::open(&path, VID, 64).unwrap();
    assert_ne!(ino(&path), old_ino, "replaced, not rebuilt in place");
    assert_eq!(
        f.metadata().unwrap().len(),
        old_len,
        "the old file was not truncated"
    );
    assert_valid_file(&path, &VID, 64);
    assert_eq!(b.load(b.slot_of(SlotKind::Key, "k")), 0);
    // `a` sees the retirement on its next load: nothing it cached is current.
    assert!(!Sidecar::is_idle(a.load(slot)));
    // Its background check maps the new file; values differ from every older one.
    assert!(a.check_path());
    let slot2 = a.slot_of(SlotKind::Key, "k");
    assert_eq!(
        a.load(slot),
        NOT_CURRENT,
        "a slot number of the old mapping"
    );
    let fresh = a.load(slot2);
    assert!(Sidecar::is_idle(fresh));
    assert_ne!(fresh, cached);
    one_write(&b, &[b.slot_of(SlotKind::Key, "k")]);
    assert_eq!(a.load(slot2), fresh + 2, "both map the same file again");
    assert!(!a.check_path(), "nothing to do");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
}

/// The whole header overwritten (epoch word included): the mapper notices at once,
/// before anyone rebuilds, and maps a replacement when it checks the path.
#[test]
fn an_overwritten_epoch_is_noticed_on_the_next_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let a = Sidecar::open(&path, VID, 64).unwrap();
    let slot = a.slot_of(SlotKind::Account, "acct");
    assert!(Sidecar::is_idle(a.load(slot)));
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0x5A; 4096], 0).unwrap();
    assert!(!Sidecar::is_idle(a.load(slot)));
    assert!(a.check_path());
    let slot = a.slot_of(SlotKind::Account, "acct");
    assert!(Sidecar::is_idle(a.load(slot)));
    assert_valid_file(&path, &VID, 64);
}

/// The bug: a sidecar deleted while processes run split them from the processes that
/// made a new one. Now `check_path` (run about once a second) maps the new file.
#[test]
fn a_removed_sidecar_is_remapped_by_check_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let a = Sidecar::open(&path, VID, 64).unwrap();
    let slot = a.slot_of(SlotKind::Key, "k");
    let cached = a.load(slot);
    std::fs::remove_file(&path).unwrap();
    let b = Sidecar::open(&path, VID, 64).unwrap();
    one_write(&b, &[b.slot_of(SlotKind::Key, "k")]);
    assert_eq!(a.load(slot), cached, "not noticed before the check");
    assert!(a.check_path());
    let slot = a.slot_of(SlotKind::Key, "k");
    let now = a.load(slot);
    assert!(Sidecar::is_idle(now));
    assert_ne!(now, cached);
    assert_eq!(now & RAW_MAX, 2, "the new file's value");
    // Removed with nobody to make a new one: the check makes it.
    std::fs::remove_file(&path).unwrap();
    assert!(a.check_path());
    assert!(path.exists());
    assert!(a.is_trusted());
}

/// A writer whose file was removed (and not yet noticed) bumps the file now at the
/// path, so processes that map the new file see its change.
#[test]
fn a_writer_on_a_removed_sidecar_bumps_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let a = Sidecar::open(&path, VID, 64).unwrap();
    std::fs::remove_file(&path).unwrap();
    let b = Sidecar::open(&path, VID, 64).unwrap();
    let before = b.load(b.slot_of(SlotKind::Key, "k"));
    {
        let mut g = a.write();
        let s = g.slot_of(SlotKind::Key, "k");
        g.begin(&[s]);
    }
    assert_eq!(b.load(b.slot_of(SlotKind::Key, "k")), before + 2);
}

#[test]
fn a_version_1_sidecar_is_replaced_by_rename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let mut bytes = valid_file(&VID, 64);
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    bytes[64..72].fill(0); // version 1 had no epoch
    std::fs::write(&path, &bytes).unwrap();
    let old = ino(&path);
    let sc = Sidecar::open(&path, VID, 64).unwrap();
    assert_ne!(ino(&path), old);
    assert_eq!(sc.load(3), 0);
    assert_valid_file(&path, &VID, 64);
}

#[test]
fn a_sidecar_owned_by_another_user_is_refused() {
    if crate::files::euid() != 0 {
        eprintln!("skipped: needs root to chown a file to another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    std::fs::write(&path, valid_file(&VID, 64)).unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let err = Sidecar::open(&path, VID, 64).unwrap_err();
    let msg = unsafe_file(&err).expect("an UnsafeFile error");
    assert!(msg.contains("uid 65534"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), valid_file(&VID, 64));
}

#[test]
fn a_new_sidecar_is_created_0600_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let _sc = Sidecar::open(&path, VID, 64).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[cfg(target_os = "linux")]
#[test]
fn a_killed_combiners_taken_requests_go_back_to_live_owners_and_its_own_are_reclaimed() {
    use combine::{OwnerLock, Poll, RequestId, State, OWNER_LOCK_BASE};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    let sc = Sidecar::open(&path, VID, 64).unwrap();
    let me = OwnerLock::acquire(&path, OWNER_LOCK_BASE, 64)
        .unwrap()
        .unwrap();
    let q = sc.combine_queue().unwrap();
    let id = RequestId {
        nonce: 1,
        counter: 1,
    };
    let mine = q
        .submit(q.claim(me.number()).unwrap(), id, b"mine")
        .unwrap();

    // SAFETY: the child only opens its own sidecar and owner lock, moves queue slots and
    // kills itself; it never returns into the test harness (panics are caught), and glibc's
    // malloc is fork-safe.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(|| {
            let child = Sidecar::open(&path, VID, 64).ok()?;
            let lock = OwnerLock::acquire(&path, OWNER_LOCK_BASE, 64).ok()??;
            let q = child.combine_queue()?;
            let own = RequestId {
                nonce: 2,
                counter: 1,
            };
            q.submit(q.claim(lock.number()).ok()?, own, b"theirs")
                .ok()?;
            // Become the combiner: take both requests, then die before completing them.
            (q.take(lock.number(), 16).ok()?.len() == 2).then_some(())
        })
        .ok()
        .flatten()
        .is_some();
        if ok {
            // SAFETY: kills this child process; nothing runs after it.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        // SAFETY: terminates the child immediately, without running destructors/atexit.
        unsafe { libc::_exit(1) };
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        assert_eq!(
            io::Error::last_os_error().kind(),
            io::ErrorKind::Interrupted
        );
    }
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "the child combined both requests and was killed"
    );

    // My request is TAKEN by a combiner that is dead: an orphan, mine to adopt (and, in the
    // debit path, to look up under the writer lock before running it again).
    let Poll::Taken { combiner } = q.poll(mine).unwrap() else {
        panic!("expected a taken request");
    };
    assert!(
        !me.is_alive(combiner),
        "the kernel dropped the dead combiner's owner lock"
    );
    // The dead process's own request (TAKEN by itself) is reclaimed; mine is not.
    assert_eq!(q.reclaim(&|n| me.is_alive(n)), 1);
    assert_eq!(q.word(mine.index).unwrap().state, State::Taken);
    let back = q.adopt_orphan(mine.index, me.number()).unwrap();
    assert_eq!(q.word(back.index).unwrap().state, State::Claimed);
    q.release(back.index, me.number()).unwrap();
    assert!((0..q.slot_count()).all(|i| q.word(i).unwrap().state == State::Free));
}
