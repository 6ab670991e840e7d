//! The growth path of the public structs: `kl_authorize_opts.size` and `kl_grant.size`.
//!
//! Each struct starts with `uint32_t size`, which the caller sets to `sizeof` the struct
//! as its header declares it (`KL_AUTHORIZE_OPTS_INIT`, `KL_GRANT_INIT`), or leaves 0,
//! meaning "this library's layout" (so `= {0}` stays valid). Fields are only ever added at
//! the end, so a caller built against an older header passes a smaller `size`, and the
//! library reads (options) or writes (grants) only the fields that lie wholly within it;
//! the rest of an options struct reads as zero, the default. A `size` smaller than the
//! first layout (the struct as keyledger 0.2 declared it) is `KL_INVALID_ARGUMENT`, before
//! any work. A `size` larger than this library's struct comes from a newer header: for
//! options, the bytes past this library's struct must be zero (a field this library does
//! not know could change the decision, so a set one is refused, not ignored); for a grant,
//! the library fills its own fields and leaves the bytes past them untouched.

use std::ffi::c_char;
use std::mem::{offset_of, size_of, MaybeUninit};

use super::authorize::{kl_authorize_opts, kl_grant};
use super::panic::{boundary, guard, last_error_body, Failure, FfiResult};
use super::status::kl_status;

/// The smallest `kl_authorize_opts.size` accepted: the end of the first layout's last
/// field (`case_insensitive`).
pub(crate) const OPTS_FIRST_LAYOUT: usize = offset_of!(kl_authorize_opts, case_insensitive) + 1;

/// The smallest `kl_grant.size` accepted: the end of the first layout's last field
/// (`ratelimit_reset_ms`).
pub(crate) const GRANT_FIRST_LAYOUT: usize =
    offset_of!(kl_grant, ratelimit_reset_ms) + size_of::<i64>();

/// The `size` a caller declared, checked against `first`: 0 is this library's layout.
fn declared(size: u32, first: usize, full: usize, what: &str) -> Result<usize, Failure> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    match size {
        0 => Ok(full),
        s if s < first => Err(Failure::invalid(format!(
            "{what}->size is {s}, smaller than the smallest layout ({first} bytes): set it \
             to sizeof({what}) (or 0 for this library's layout)"
        ))),
        s => Ok(s),
    }
}

/// A copy of `*opts` (NULL: `None`, all defaults) as this library's layout: the fields
/// past the caller's `size` read as zero.
///
/// # Safety
/// `opts` must be NULL or point to a `kl_authorize_opts` whose first `size` bytes (all of
/// them when `size` is 0) are readable.
pub(crate) unsafe fn read_opts(
    opts: *const kl_authorize_opts,
) -> Result<Option<kl_authorize_opts>, Failure> {
    if opts.is_null() {
        return Ok(None);
    }
    let full = size_of::<kl_authorize_opts>();
    // SAFETY: non-null, and the caller's contract makes the leading `size` readable.
    let size = unsafe { opts.cast::<u32>().read() };
    let size = declared(size, OPTS_FIRST_LAYOUT, full, "kl_authorize_opts")?;
    let base = opts.cast::<u8>();
    if size > full {
        // SAFETY: the caller declared `size` readable bytes.
        let tail = unsafe { std::slice::from_raw_parts(base.add(full), size - full) };
        if tail.iter().any(|b| *b != 0) {
            return Err(Failure::invalid(format!(
                "kl_authorize_opts sets fields this library does not know (its size is {size}, \
                 this library's struct is {full} bytes): use a keyledger as new as the header"
            )));
        }
    }
    let mut copy = MaybeUninit::<kl_authorize_opts>::zeroed();
    // SAFETY: `min(size, full)` bytes are readable (caller) and writable (`copy`).
    unsafe {
        std::ptr::copy_nonoverlapping(base, copy.as_mut_ptr().cast::<u8>(), size.min(full));
    }
    // SAFETY: every field is an integer or a raw pointer, valid for any bit pattern
    // (zero included).
    let mut copy = unsafe { copy.assume_init() };
    // A field cut by `size` is absent (the copy above may hold part of it).
    if !fits(
        size,
        offset_of!(kl_authorize_opts, error_body),
        size_of::<*mut *mut c_char>(),
    ) {
        copy.error_body = std::ptr::null_mut();
    }
    // Holds (appended after the 0.2 layout).
    if !fits(size, offset_of!(kl_authorize_opts, hold), size_of::<u64>()) {
        copy.hold = 0;
    }
    if !fits(
        size,
        offset_of!(kl_authorize_opts, hold_ttl_ms),
        size_of::<u64>(),
    ) {
        copy.hold_ttl_ms = 0;
    }
    Ok(Some(copy))
}

/// Whether the field at `offset` with `len` bytes lies wholly within `size` bytes.
fn fits(size: usize, offset: usize, len: usize) -> bool {
    offset + len <= size
}

/// [`boundary`] for the entry points that take a `kl_authorize_opts`: on failure, a copy
/// of the body goes to `opts->error_body` when the caller asked for it.
///
/// Called by the `kl_authorize*` entry points only, whose contract (the module's) makes
/// `opts` NULL or valid as [`read_opts`] requires, its `error_body` NULL or valid for one
/// pointer write.
pub(crate) fn boundary_opts(
    function: &str,
    opts: *const kl_authorize_opts,
    body: impl FnOnce() -> FfiResult,
) -> kl_status {
    let status = boundary(function, body);
    if status != kl_status::KL_OK {
        guard((), || {
            // SAFETY: the entry points' contract (above).
            let Ok(Some(o)) = (unsafe { read_opts(opts) }) else {
                return;
            };
            if o.error_body.is_null() {
                return;
            }
            if let Some(text) = last_error_body() {
                // SAFETY: non-null, valid for one pointer write (the entry points' contract).
                unsafe { super::args::put_string(o.error_body, text) };
            }
        });
    }
    status
}

/// A grant out-parameter whose `size` was checked: [`GrantOut::write`] fills the fields
/// that fit in it.
pub(crate) struct GrantOut {
    ptr: *mut kl_grant,
    size: u32,
    len: usize,
}

impl GrantOut {
    /// Check `out->size` before any work.
    ///
    /// # Safety
    /// `out` must be non-null and point to a `kl_grant` whose `size` is initialized and
    /// whose first `size` bytes (all of them when `size` is 0) are writable.
    pub(crate) unsafe fn new(out: *mut kl_grant) -> Result<GrantOut, Failure> {
        // SAFETY: the caller's contract.
        let size = unsafe { out.cast::<u32>().read() };
        let full = size_of::<kl_grant>();
        let len = declared(size, GRANT_FIRST_LAYOUT, full, "kl_grant")?.min(full);
        Ok(GrantOut {
            ptr: out,
            size,
            len,
        })
    }

    /// Write `grant`'s fields that fit in the caller's `size`; `size` itself is kept.
    pub(crate) fn write(self, mut grant: kl_grant) {
        grant.size = self.size;
        // SAFETY: `new` checked that `len` bytes are writable; `grant` is a whole struct.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&raw const grant).cast::<u8>(),
                self.ptr.cast::<u8>(),
                self.len,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_layouts_end_where_expected() {
        assert!(size_of::<kl_authorize_opts>() >= OPTS_FIRST_LAYOUT);
        // `error_body` (0.2) starts at or past the first layout's end: a caller of the
        // first layout never has it read from its padding.
        assert!(offset_of!(kl_authorize_opts, error_body) >= OPTS_FIRST_LAYOUT);
        assert!(size_of::<kl_grant>() >= GRANT_FIRST_LAYOUT);
        // Holds (appended after the 0.2 layout). the grant's `hold_id` and the options' hold fields start past the
        // layouts before them.
        assert!(offset_of!(kl_grant, hold_id) >= GRANT_FIRST_LAYOUT);
        assert!(
            offset_of!(kl_authorize_opts, hold)
                >= offset_of!(kl_authorize_opts, error_body) + size_of::<*mut *mut c_char>()
        );
    }

    #[test]
    fn size_zero_is_this_librarys_layout_and_too_small_is_refused() {
        assert_eq!(declared(0, 10, 40, "x").unwrap(), 40);
        assert_eq!(declared(10, 10, 40, "x").unwrap(), 10);
        assert_eq!(declared(64, 10, 40, "x").unwrap(), 64);
        let e = declared(9, 10, 40, "kl_grant").unwrap_err();
        assert!(e.message.contains("kl_grant->size is 9"), "{}", e.message);
    }
}
