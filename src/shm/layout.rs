//! The file format: slot index function, lengths, header encoding and validation.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::{
    combine, SlotKind, BUCKET_LEN, COMBINE_SLOTS, EPOCH_OFFSET, HEADER_FIELDS, HEADER_LEN, MAGIC,
    MAX_SLOTS, RATE_BUCKETS, RETIRED, SLOTS_OFFSET, VERSION,
};

/// Rounds a requested slot count to a power of two in `1 ..= MAX_SLOTS`.
pub(super) fn normalize_slot_count(n: u32) -> u32 {
    n.clamp(1, MAX_SLOTS).next_power_of_two()
}

/// `slot_hash` modulo `len` (≤ 2^24, so it fits a usize).
pub(super) fn index_of(kind: SlotKind, id: &str, len: usize) -> usize {
    (slot_hash(kind, id) % len.max(1) as u64) as usize
}

/// File length of the header and `slot_count` slots (where the rate-limit region starts).
pub(super) fn file_len(slot_count: u32) -> u64 {
    SLOTS_OFFSET + u64::from(slot_count) * 8
}

/// Bytes of the combining-queue region this version creates.
pub(super) fn combine_len() -> u64 {
    (combine::region_words(COMBINE_SLOTS) * 8) as u64
}

/// File length with the rate-limit and combining-queue regions this version creates.
pub(super) fn full_len(slot_count: u32) -> u64 {
    file_len(slot_count) + RATE_BUCKETS * BUCKET_LEN + combine_len()
}

/// FNV-1a 64 over the kind tag and the id, then `fmix64`. Part of the file format.
pub(super) fn slot_hash(kind: SlotKind, id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in std::iter::once(&kind.tag()).chain(id.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The fields of a valid file.
pub(super) struct Valid {
    pub(super) slot_count: u32,
    /// The rate-limit region (`ratelimit_offset`, `ratelimit_len`).
    pub(super) rate_limits: (u64, u64),
    /// The combining-queue region (`combine_offset`, `combine_len`).
    pub(super) combine: (u64, u64),
    pub(super) epoch: u64,
}

/// Outcome of inspecting an existing file.
pub(super) enum Inspection {
    /// A valid version-3 sidecar of this vault.
    Valid(Valid),
    /// Anything we must not trust.
    Rebuild,
}

pub(super) fn u32_at(buf: &[u8; HEADER_FIELDS], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_le_bytes(b)
}

pub(super) fn u64_at(buf: &[u8; HEADER_FIELDS], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[off..off + 8]);
    u64::from_le_bytes(b)
}

/// Validates the header and length of the locked file.
pub(super) fn inspect(file: &File, len: u64, vault_id: &[u8; 16]) -> io::Result<Inspection> {
    if len < SLOTS_OFFSET {
        return Ok(Inspection::Rebuild);
    }
    let mut h = [0u8; HEADER_FIELDS];
    file.read_exact_at(&mut h, 0)?;
    if h[0..8] != MAGIC {
        return Ok(Inspection::Rebuild);
    }
    let version = u32_at(&h, 8);
    if version > VERSION {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("sidecar has a newer format version ({version})"),
        ));
    }
    if version != VERSION || u32_at(&h, 12) != HEADER_LEN || u64_at(&h, 40) != SLOTS_OFFSET {
        return Ok(Inspection::Rebuild);
    }
    let slot_count = u32_at(&h, 32);
    if slot_count == 0 || slot_count > MAX_SLOTS || !slot_count.is_power_of_two() {
        return Ok(Inspection::Rebuild);
    }
    let slots_end = file_len(slot_count);
    let (rl_off, rl_len) = (u64_at(&h, 48), u64_at(&h, 56));
    let (cq_off, cq_len) = (u64_at(&h, COMBINE_FIELDS), u64_at(&h, COMBINE_FIELDS + 8));
    let rl_end = (rl_off >= slots_end && rl_off % 8 == 0 && rl_len > 0)
        .then(|| rl_off.checked_add(rl_len))
        .flatten();
    let min_queue = (combine::region_words(1) * 8) as u64;
    let expected = rl_end
        .filter(|&end| cq_off >= end && cq_off % 8 == 0 && cq_len % 8 == 0 && cq_len >= min_queue)
        .and_then(|_| cq_off.checked_add(cq_len));
    let epoch = u64_at(&h, EPOCH_OFFSET);
    if expected != Some(len) || h[16..32] != vault_id[..] || epoch == RETIRED {
        return Ok(Inspection::Rebuild);
    }
    Ok(Inspection::Valid(Valid {
        slot_count,
        rate_limits: (rl_off, rl_len),
        combine: (cq_off, cq_len),
        epoch,
    }))
}

/// Header bytes (the first `HEADER_FIELDS`; the rest of the 4096 is zero).
pub(super) fn encode_header(
    vault_id: &[u8; 16],
    slot_count: u32,
    epoch: u64,
) -> [u8; HEADER_FIELDS] {
    let mut h = [0u8; HEADER_FIELDS];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&HEADER_LEN.to_le_bytes());
    h[16..32].copy_from_slice(vault_id);
    h[32..36].copy_from_slice(&slot_count.to_le_bytes());
    h[40..48].copy_from_slice(&SLOTS_OFFSET.to_le_bytes());
    h[48..56].copy_from_slice(&file_len(slot_count).to_le_bytes());
    h[56..64].copy_from_slice(&(RATE_BUCKETS * BUCKET_LEN).to_le_bytes());
    h[EPOCH_OFFSET..EPOCH_OFFSET + 8].copy_from_slice(&epoch.to_le_bytes());
    let cq_off = file_len(slot_count) + RATE_BUCKETS * BUCKET_LEN;
    h[COMBINE_FIELDS..COMBINE_FIELDS + 8].copy_from_slice(&cq_off.to_le_bytes());
    h[COMBINE_FIELDS + 8..COMBINE_FIELDS + 16].copy_from_slice(&combine_len().to_le_bytes());
    h
}

/// Offset of `combine_offset` (then `combine_len`) in the header.
pub(super) const COMBINE_FIELDS: usize = 72;
