//! Opening, building, replacing (by rename) and mapping sidecar files; `flock`.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use memmap2::MmapOptions;

use super::combine;
use super::layout::{encode_header, full_len, inspect, Inspection, COMBINE_FIELDS};
use super::mapping::Mapping;
use super::{
    RateBucket, UnsafeFile, BUCKET_LEN, COMBINE_SLOTS, EPOCH_OFFSET, RETIRED, SLOTS_OFFSET,
};
use crate::files::check_owner_and_mode;

/// `flock(2)`, retried on EINTR.
pub(super) fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: `flock` on a file descriptor owned by `file`, which outlives the call.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A random non-zero u64.
fn random_nonzero() -> io::Result<u64> {
    loop {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
        let v = u64::from_le_bytes(b);
        if v != RETIRED {
            return Ok(v);
        }
    }
}

/// Opens an existing sidecar without following a symlink (`O_NONBLOCK`: a FIFO planted at
/// the path does not block the open).
fn open_existing(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// A new, valid sidecar file beside `path` under a random temporary name (`O_EXCL`, 0600),
/// flocked, with a fresh epoch. The caller links or renames it into place.
fn build_new(path: &Path, vault_id: &[u8; 16], slot_count: u32) -> io::Result<(PathBuf, File)> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{:016x}.tmp", random_nonzero()?));
    let tmp = PathBuf::from(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let built = (|| {
        flock(&file, libc::LOCK_EX)?;
        file.set_len(full_len(slot_count))?;
        let header = encode_header(vault_id, slot_count, random_nonzero()?);
        file.write_all_at(&header, 0)?;
        let mut cq_off = [0u8; 8];
        cq_off.copy_from_slice(&header[COMBINE_FIELDS..COMBINE_FIELDS + 8]);
        file.write_all_at(
            &combine::header_bytes(COMBINE_SLOTS),
            u64::from_le_bytes(cq_off),
        )
    })();
    match built {
        Ok(()) => Ok((tmp, file)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The file at `path` has this device and inode.
fn still_at(path: &Path, dev: u64, ino: u64) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Map the sidecar at `path` as mapping number `seq`: open, check, lock, validate, and
/// create or replace it when needed (see the module docs).
pub(super) fn map_path(
    path: &Path,
    vault_id: &[u8; 16],
    requested: u32,
    seq: usize,
) -> io::Result<Box<Mapping>> {
    for _ in 0..16 {
        let file = match open_existing(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (tmp, file) = build_new(path, vault_id, requested)?;
                // `link` fails if another process created the name meanwhile: use theirs.
                let linked = std::fs::hard_link(&tmp, path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        let mapped = map_locked(&file, vault_id, seq);
                        let _ = flock(&file, libc::LOCK_UN);
                        return mapped?.ok_or_else(|| io::Error::other("new sidecar is invalid"));
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "sidecar path is not a regular file",
            ));
        }
        check_owner_and_mode("sidecar", path, &meta)
            .map_err(|m| io::Error::new(io::ErrorKind::PermissionDenied, UnsafeFile(m)))?;
        if meta.mode() & 0o077 != 0 {
            // Only read bits are left: nobody else needs to see the slots either.
            file.set_permissions(Permissions::from_mode(0o600))?;
        }
        flock(&file, libc::LOCK_EX)?;
        // Under the lock: still the file at the path? (It may have been replaced while we
        // waited for the lock; then start over with the new one.)
        if !still_at(path, meta.dev(), meta.ino()) {
            let _ = flock(&file, libc::LOCK_UN);
            continue;
        }
        let mapped = match map_locked(&file, vault_id, seq) {
            Ok(Some(m)) => Ok(m),
            Ok(None) => replace(path, &file, vault_id, requested, seq),
            Err(e) => Err(e),
        };
        let _ = flock(&file, libc::LOCK_UN);
        return mapped;
    }
    Err(io::Error::other(
        "the sidecar kept changing while it was opened",
    ))
}

/// Under the old file's flock: build a new sidecar beside it, rename it over the path,
/// retire the old one, map the new one.
fn replace(
    path: &Path,
    old: &File,
    vault_id: &[u8; 16],
    requested: u32,
    seq: usize,
) -> io::Result<Box<Mapping>> {
    let (tmp, file) = build_new(path, vault_id, requested)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Retire the old file: every process that maps it stops trusting it on its next call.
    // Only a file long enough to have been mapped can be mapped by anyone.
    if old.metadata()?.len() >= SLOTS_OFFSET {
        old.write_all_at(&RETIRED.to_le_bytes(), EPOCH_OFFSET as u64)?;
    }
    let mapped = map_locked(&file, vault_id, seq);
    let _ = flock(&file, libc::LOCK_UN);
    mapped?.ok_or_else(|| io::Error::other("new sidecar is invalid"))
}

/// Under the flock: validate the file and map it.
/// `None`: the file is not a valid sidecar of this vault.
fn map_locked(file: &File, vault_id: &[u8; 16], seq: usize) -> io::Result<Option<Box<Mapping>>> {
    let meta = file.metadata()?;
    let Inspection::Valid(valid) = inspect(file, meta.len(), vault_id)? else {
        return Ok(None);
    };
    let (slot_count, epoch) = (valid.slot_count, valid.epoch);
    let ((rl_off, rl_len), (cq_off, cq_len)) = (valid.rate_limits, valid.combine);
    let too_big = || io::Error::new(io::ErrorKind::InvalidData, "sidecar too large to map");
    let map_len = usize::try_from(cq_off + cq_len).map_err(|_| too_big())?;
    let offset = usize::try_from(SLOTS_OFFSET).map_err(|_| too_big())?;
    let slots = usize::try_from(slot_count).map_err(|_| too_big())?;
    // SAFETY: maps `map_len` bytes of a regular file that is at least that long (validated or
    // just sized under the flock). Other processes modify it concurrently, which is why the
    // slots are only ever accessed as atomics; the bytes are never read as a plain `&[u8]`.
    let mut map = unsafe { MmapOptions::new().len(map_len).map_mut(file)? };
    if map.len() < map_len {
        return Err(io::Error::other(
            "sidecar mapping is shorter than requested",
        ));
    }
    let base = map.as_mut_ptr();
    if !(base as usize).is_multiple_of(std::mem::align_of::<AtomicU64>()) {
        return Err(io::Error::other("sidecar mapping is misaligned"));
    }
    // SAFETY: `offset` (4096) < `map_len`, so the result stays inside the mapping.
    let ptr = unsafe { base.add(offset) }.cast::<AtomicU64>();
    // SAFETY: `EPOCH_OFFSET` (64) + 8 ≤ 4096 < `map_len`, inside the mapping, 8-aligned.
    let epoch_word = unsafe { base.add(EPOCH_OFFSET) }.cast::<AtomicU64>();
    // The rate-limit buckets: a whole number of 16-byte buckets, or none (the generation
    // slots still work; rate limits then fall back to per-process counters).
    let bucket_count = usize::try_from(rl_len / BUCKET_LEN).map_err(|_| too_big())?;
    let rl_start = usize::try_from(rl_off).map_err(|_| too_big())?;
    let buckets = if bucket_count > 0 && rl_start % 8 == 0 {
        // SAFETY: `rl_start + bucket_count * 16 <= map_len`, inside the mapping.
        unsafe { base.add(rl_start) }
            .cast::<RateBucket>()
            .cast_const()
    } else {
        std::ptr::null()
    };
    // The combining queue: validated as a queue only when used (`Sidecar::combine_queue`).
    let queue_start = usize::try_from(cq_off).map_err(|_| too_big())?;
    let queue_words = usize::try_from(cq_len / 8).map_err(|_| too_big())?;
    // SAFETY: `cq_off + cq_len == map_len` (validated by `inspect`), 8-aligned: inside.
    let queue = unsafe { base.add(queue_start) }
        .cast::<AtomicU64>()
        .cast_const();
    Ok(Some(Box::new(Mapping {
        queue,
        queue_words,
        seq,
        slots: ptr.cast_const(),
        len: slots,
        buckets,
        bucket_count,
        epoch_word: epoch_word.cast_const(),
        epoch,
        dev: meta.dev(),
        ino: meta.ino(),
        _map: map,
        file: file.try_clone()?,
    })))
}
