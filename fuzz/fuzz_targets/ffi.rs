//! The C ABI entry points that take bytes from the host: `kl_authorize` (token, method,
//! path, idempotency key, signature, body), `kl_create_key` (spec JSON) and
//! `kl_vault_open` (path and options JSON). Any bytes give a status, never a panic
//! (`KL_PANIC` would mean the boundary caught one; libFuzzer aborts on any panic anyway),
//! never UB, never a leak; a refused call changes no balance.
#![no_main]

use std::ffi::c_char;
use std::ptr;
use std::sync::OnceLock;

use keyledger::ffi::*;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    vault: *mut kl_vault,
    token: String,
}
// SAFETY: the vault handle is thread-safe (kl_vault is Send + Sync in the core); the
// fixture is only read after initialisation.
unsafe impl Send for Fixture {}
unsafe impl Sync for Fixture {}

const OPTS: &str = r#"{"exclusive": true, "argon2": {"m_kib": 8, "t": 1, "p": 1}}"#;

fn c(s: &[u8]) -> (*const c_char, usize) {
    (s.as_ptr().cast(), s.len())
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| unsafe {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.redb");
        let p = path.to_str().unwrap().as_bytes();
        let mut v = ptr::null_mut();
        let (o, ol) = c(OPTS.as_bytes());
        assert_eq!(
            kl_vault_open(p.as_ptr().cast(), p.len(), o, ol, &mut v),
            kl_status::KL_OK
        );
        let mut out = ptr::null_mut();
        let (a, al) = c(b"a");
        assert_eq!(
            kl_create_account(v, a, al, 1_000_000_000, ptr::null(), 0, &mut out),
            kl_status::KL_OK
        );
        kl_string_free(out);
        for (m, p) in [("POST", "/send"), ("GET", "/t/:x"), ("GET", "/s/*")] {
            let mut out = ptr::null_mut();
            let (mm, ml) = c(m.as_bytes());
            let (pp, pl) = c(p.as_bytes());
            let (s, sl) = c(b"x");
            assert_eq!(
                kl_add_route(v, mm, ml, pp, pl, s, sl, 1, &mut out),
                kl_status::KL_OK
            );
            kl_string_free(out);
        }
        let spec = br#"{"account_id": "a", "name": "k", "scopes": ["x"]}"#;
        let (s, sl) = c(spec);
        let (mut tok, mut info) = (ptr::null_mut(), ptr::null_mut());
        assert_eq!(
            kl_create_key(v, s, sl, &mut tok, &mut info),
            kl_status::KL_OK
        );
        let token = std::ffi::CStr::from_ptr(tok).to_str().unwrap().to_string();
        kl_string_free(tok);
        kl_string_free(info);
        Fixture {
            dir: dir.path().to_path_buf(),
            _dir: dir,
            vault: v,
            token,
        }
    })
}

fn balance(f: &Fixture) -> u64 {
    let mut g: kl_grant = unsafe { std::mem::zeroed() };
    let t = f.token.as_bytes();
    let status = unsafe {
        kl_authorize_scope(
            f.vault,
            t.as_ptr().cast(),
            t.len(),
            c(b"x").0,
            1,
            ptr::null(),
            &mut g,
        )
    };
    assert_eq!(status, kl_status::KL_OK);
    g.credits
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    // Fields separated by 0xFF (never valid UTF-8, so never inside a str field).
    let fields: Vec<&[u8]> = rest.split(|&b| b == 0xFF).collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(b"");
    unsafe {
        match which % 4 {
            0 | 1 => {
                // A fuzzed token, or the real one with fuzzed route and options.
                let token: Vec<u8> = if which % 4 == 0 {
                    field(0).to_vec()
                } else {
                    f.token.as_bytes().to_vec()
                };
                let before = balance(f);
                let idem = field(3);
                let sig = field(4);
                let body = field(5);
                let mut error_body: *mut c_char = ptr::null_mut();
                let opts = kl_authorize_opts {
                    // Every size a correct caller can pass: 0 (this library's layout), the
                    // full size, or one far below the first layout (refused).
                    size: match field(7).first().map(|b| b % 3) {
                        Some(1) => std::mem::size_of::<kl_authorize_opts>() as u32,
                        Some(2) => 8,
                        _ => 0,
                    },
                    cost: u64::from(which >> 4),
                    has_cost: which & 0x08,
                    idempotency_key: if idem.is_empty() {
                        ptr::null()
                    } else {
                        idem.as_ptr().cast()
                    },
                    idempotency_key_len: idem.len(),
                    signature: if sig.is_empty() {
                        ptr::null()
                    } else {
                        sig.as_ptr().cast()
                    },
                    signature_len: sig.len(),
                    body: body.as_ptr(),
                    body_len: body.len(),
                    now_ms: 0,
                    // Fuzzed named limits (any bytes: the ABI must refuse bad JSON cleanly).
                    limits_json: if field(3).is_empty() {
                        ptr::null()
                    } else {
                        field(3).as_ptr().cast()
                    },
                    limits_json_len: field(3).len(),
                    limit_cost: u64::from(which & 0x03),
                    has_limit_cost: which & 0x04,
                    // A fuzzed query string (covered by format-2 signatures).
                    query: if field(6).is_empty() {
                        ptr::null()
                    } else {
                        field(6).as_ptr().cast()
                    },
                    query_len: field(6).len(),
                    case_insensitive: which & 0x01,
                    // A fuzzed replay answer (a replay refused with duplicate_request).
                    refuse_replay: (which >> 5) & 0x01,
                    error_body: if which & 0x40 != 0 {
                        &mut error_body
                    } else {
                        ptr::null_mut()
                    },
                    // Holds: a fuzzed hold (with and without a cost, which is refused)
                    // and TTL (0: the default; above 30 days: refused).
                    hold: u64::from(field(7).get(1).copied().unwrap_or(0) & 0x03),
                    hold_ttl_ms: match field(7).get(2).map(|b| b % 3) {
                        Some(1) => 1,
                        Some(2) => u64::MAX,
                        _ => 0,
                    },
                };
                let mut g: kl_grant = std::mem::zeroed();
                let (m, ml) = c(field(1));
                let (p, pl) = c(field(2));
                let (t, tl) = c(&token);
                let status = if which & 0x02 == 0 {
                    kl_authorize(f.vault, t, tl, m, ml, p, pl, &opts, &mut g)
                } else {
                    // The same bytes as a raw request target, through the HTTP gate.
                    kl_authorize_request(f.vault, t, tl, m, ml, p, pl, &opts, &mut g)
                };
                assert_ne!(status, kl_status::KL_PANIC);
                if status != kl_status::KL_OK {
                    assert_eq!(balance(f), before, "a refused call moved the balance");
                }
                if !error_body.is_null() {
                    assert_ne!(status, kl_status::KL_OK, "an error body written on success");
                    kl_string_free(error_body);
                }
            }
            2 => {
                let (s, sl) = c(field(0));
                let (mut tok, mut info) = (ptr::null_mut(), ptr::null_mut());
                let status = kl_create_key(f.vault, s, sl, &mut tok, &mut info);
                assert_ne!(status, kl_status::KL_PANIC);
                if status == kl_status::KL_OK {
                    kl_string_free(tok);
                    kl_string_free(info);
                } else {
                    assert!(
                        tok.is_null() && info.is_null(),
                        "out-params written on failure"
                    );
                }
            }
            _ => {
                // A path inside the temp dir (possibly with `..`, NUL, junk) and options.
                // `/` is mapped away so a fuzzed path never leaves the temp dir (tests/
                // hostile_input.rs checks `..` paths); NUL and any other byte stay.
                let name: Vec<u8> = field(0)
                    .iter()
                    .map(|&b| if b == b'/' { b'_' } else { b })
                    .collect();
                let mut path = f.dir.join("v").into_os_string().into_encoded_bytes();
                path.extend_from_slice(&name);
                let (p, pl) = c(&path);
                let (o, ol) = c(field(1));
                let o = if field(1).is_empty() { ptr::null() } else { o };
                let mut v = ptr::null_mut();
                let status = kl_vault_open(p, pl, o, ol, &mut v);
                assert_ne!(status, kl_status::KL_PANIC);
                if status == kl_status::KL_OK {
                    kl_vault_free(v);
                } else {
                    assert!(v.is_null());
                }
                // Keep the disk small: remove what the open created.
                let path = std::path::PathBuf::from(
                    std::ffi::OsString::from_encoded_bytes_unchecked(path),
                );
                let mut shm = path.clone().into_os_string();
                shm.push(".shm");
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(shm);
            }
        }
    }
});
