//! Secrets are wiped before their memory goes back to the allocator: a C caller's secret
//! freed with its length even after writing into it, and the process's copy of
//! `KEYLEDGER_MASTER_KEY`. A global allocator of this test binary looks at every block as
//! it is freed and records whether it still holds the secret under watch.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use keyledger::ffi::{kl_generate_master_key, kl_secret_free_n};
use keyledger::{MasterKey, MASTER_KEY_ENV};

const NEEDLE_MAX: usize = 64;

/// The bytes watched for (set while armed), and whether a freed block held them.
struct Watch {
    armed: AtomicBool,
    len: AtomicUsize,
    needle: [std::sync::atomic::AtomicU8; NEEDLE_MAX],
    seen: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

static WATCH: Watch = Watch {
    armed: AtomicBool::new(false),
    len: AtomicUsize::new(0),
    needle: [ZERO; NEEDLE_MAX],
    seen: AtomicBool::new(false),
};

struct Scanning;

// SAFETY: forwards every call to `System`; `dealloc` only reads the block before freeing it.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WATCH.armed.load(Ordering::SeqCst) {
            let n = WATCH.len.load(Ordering::SeqCst);
            // The whole block as malloc sees it: a free given a wrong (short) length would
            // otherwise hide the bytes past that length.
            // SAFETY: `ptr` is a live block from `System` (malloc) on this platform.
            let size = layout
                .size()
                .max(unsafe { libc::malloc_usable_size(ptr.cast()) });
            if n > 0 && size >= n && size <= 1 << 16 {
                // SAFETY: the block is `size` bytes and still ours until freed below.
                let block = unsafe { std::slice::from_raw_parts(ptr, size) };
                let held = block.windows(n).any(|w| {
                    w.iter()
                        .zip(&WATCH.needle[..n])
                        .all(|(b, c)| *b == c.load(Ordering::Relaxed))
                });
                if held {
                    WATCH.seen.store(true, Ordering::SeqCst);
                }
            }
        }
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Scanning = Scanning;

/// One watch at a time (tests of this file may share a process).
static SERIAL: Mutex<()> = Mutex::new(());

fn arm(needle: &[u8]) {
    assert!(needle.len() <= NEEDLE_MAX);
    for (slot, b) in WATCH.needle.iter().zip(needle) {
        slot.store(*b, Ordering::Relaxed);
    }
    WATCH.len.store(needle.len(), Ordering::SeqCst);
    WATCH.seen.store(false, Ordering::SeqCst);
    WATCH.armed.store(true, Ordering::SeqCst);
}

/// Disarm; whether a freed block held the needle while armed.
fn disarm() -> bool {
    WATCH.armed.store(false, Ordering::SeqCst);
    WATCH.seen.load(Ordering::SeqCst)
}

/// The bug: `kl_secret_free` finds the length by scanning for a NUL, so a caller that
/// wrote a NUL into a secret (truncating it in place) got only the part before it wiped;
/// the rest went back to the allocator intact. `kl_secret_free_n` takes the length.
#[test]
fn a_secret_freed_with_its_length_is_wiped_whole_even_after_a_nul_was_written_into_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut p: *mut c_char = std::ptr::null_mut();
    // SAFETY: a valid out-pointer.
    let st = unsafe { kl_generate_master_key(&mut p) };
    assert_eq!(st as i32, 0);
    // SAFETY: a NUL-terminated string keyledger returned.
    let len = unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes().len();
    assert_eq!(len, 44);
    // The caller truncates it in place; the tail after the NUL is what must not survive.
    let mut tail = [0u8; 32];
    // SAFETY: `p` holds 45 bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(p.add(12).cast::<u8>(), tail.as_mut_ptr(), 32);
        *p.add(10) = 0;
    }
    arm(&tail);
    // SAFETY: the pointer and the length it was returned with.
    unsafe { kl_secret_free_n(p, len) };
    assert!(
        !disarm(),
        "the bytes after the written NUL were freed unwiped"
    );
    // NULL is a no-op, whatever the length.
    // SAFETY: NULL.
    unsafe { kl_secret_free_n(std::ptr::null_mut(), 44) };
}

/// The bug: the value of `KEYLEDGER_MASTER_KEY` read into the process (a `String`) was
/// dropped without being wiped, leaving the master key's base64 in freed heap memory.
#[test]
fn the_process_copy_of_keyledger_master_key_is_wiped_after_reading_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let key = MasterKey::generate().unwrap();
    let b64 = key.to_base64();
    let mut needle = [0u8; 44];
    needle.copy_from_slice(b64.as_bytes());
    // A short value: std copies it through a stack buffer, the heap sees none of it.
    std::env::set_var(MASTER_KEY_ENV, b64.as_str());
    drop(b64);
    arm(&needle);
    let read = MasterKey::from_env().unwrap();
    let seen = disarm();
    std::env::remove_var(MASTER_KEY_ENV);
    assert!(read.is_some());
    assert!(
        !seen,
        "a freed block still held KEYLEDGER_MASTER_KEY's value"
    );
    // The variable itself stays set for worker processes (documented): it is read again.
    std::env::set_var(MASTER_KEY_ENV, key.to_base64().as_str());
    assert!(MasterKey::from_env().unwrap().is_some());
    std::env::remove_var(MASTER_KEY_ENV);
}
