//! The API-key token format.
//!
//! A token is `<prefix>_<key_id>_<secret>`:
//!
//! - `prefix`: 1–[`MAX_PREFIX_LEN`] chars of `[a-z0-9_]`, starting with a letter, with no
//!   trailing `_` and no doubled `__` (e.g. `dial_live`, `sk_prod`, `kl_live`). The prefix may
//!   contain single `_`, so a token is split on its **last two** `_`; a doubled `__` is
//!   refused because it makes a token hard to read and split by eye.
//! - `key_id`: exactly [`KEY_ID_LEN`] chars of `[a-z0-9]`, public, random.
//! - `secret`: [`SECRET_LEN`] base62 chars (`0-9A-Za-z`): 40 from the OS CSPRNG (≈ 238 bits)
//!   followed by 6 chars encoding, big-endian and zero-padded, the CRC32 (IEEE) of everything
//!   before them, i.e. of `<prefix>_<key_id>_<40 random chars>`.
//!
//! [`parse`] and [`looks_like_key`] check format and checksum only (no store access), for
//! secret scanners, typo detection and log filters. [`redact`] is what logs show. Tokens
//! longer than [`MAX_TOKEN_LEN`] bytes are refused before any other work.
//!
//! Secret material is never printed: [`ParsedToken`]'s `Debug` hides the secret, and
//! [`mint`] returns the token in a zeroize-on-drop buffer.
//!
//! A key may instead use the `colon` style, `<key_id>:<secret>` (no prefix, no checksum):
//! see [`TokenStyle`]. [`parse`], [`looks_like_key`] and [`redact`] accept both styles.

use std::fmt;

mod colon;
pub use colon::{TokenStyle, COLON_SECRET_LEN};

use zeroize::Zeroizing;

use crate::{Error, Result};

/// Longest token, in bytes, that [`parse`] or [`redact`] looks at; longer input is refused
/// before any other work.
pub const MAX_TOKEN_LEN: usize = 512;

/// Length of the secret part: 40 random base62 chars + 6 checksum chars.
pub const SECRET_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;

/// Length of a key id.
pub const KEY_ID_LEN: usize = 8;

/// Longest prefix, in chars (all ASCII).
pub const MAX_PREFIX_LEN: usize = 32;

/// Number of random base62 chars at the start of the secret.
const RANDOM_LEN: usize = 40;

/// Number of base62 chars encoding the CRC32 at the end of the secret.
const CHECKSUM_LEN: usize = 6;

/// The base62 alphabet, in digit order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The key id alphabet.
const BASE36_LOWER: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A token split into its parts, borrowed from the token.
///
/// Its `Debug` shows `prefix` and `key_id` only; the secret is printed as `"…"`. It has no
/// `Display` and no `PartialEq` (compare secrets in constant time, never with `==`).
#[derive(Clone, Copy)]
pub struct ParsedToken<'a> {
    /// The prefix, e.g. `dial_live`; `""` for a colon-style token.
    pub prefix: &'a str,
    /// The public key id, 8 chars `[a-z0-9]`.
    pub key_id: &'a str,
    /// The secret: 46 base62 chars whose checksum has been verified (40 base62 chars,
    /// unchecked, for a colon-style token).
    pub secret: &'a str,
}

impl fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedToken")
            .field("prefix", &self.prefix)
            .field("key_id", &self.key_id)
            .field("secret", &"…")
            .finish()
    }
}

/// Splits `token` into prefix, key id and secret and verifies the format and the checksum.
///
/// Returns `None` for anything else: a token longer than [`MAX_TOKEN_LEN`] bytes (refused
/// before any other work), non-ASCII input, an invalid prefix or key id, a secret that is not
/// [`SECRET_LEN`] base62 chars, or a wrong checksum. Never panics.
pub fn parse(token: &str) -> Option<ParsedToken<'_>> {
    if token.len() > MAX_TOKEN_LEN || !token.is_ascii() {
        return None;
    }
    // The secret and the key id have fixed lengths and hold no `_`, so the last two `_`
    // (where `split` cuts) can only stand right before them: the cuts are at fixed
    // offsets, checked without searching the token (the same answers as `split`). A token
    // without them is not a prefixed one: it may be a colon-style `<key_id>:<secret>`.
    let bytes = token.as_bytes();
    let cuts = bytes.len().checked_sub(SECRET_LEN).and_then(|secret_at| {
        let key_id_at = secret_at.checked_sub(KEY_ID_LEN + 1)?;
        (key_id_at != 0 && bytes[secret_at - 1] == b'_' && bytes[key_id_at - 1] == b'_')
            .then_some((key_id_at, secret_at))
    });
    let Some((key_id_at, secret_at)) = cuts else {
        return colon::parse(token);
    };
    // All ASCII: every cut is on a char boundary.
    let (prefix, key_id, secret) = (
        &token[..key_id_at - 1],
        &token[key_id_at..secret_at - 1],
        &token[secret_at..],
    );
    if !is_valid_prefix(prefix) || !is_valid_key_id(key_id) {
        return None;
    }
    // `is_ascii_alphanumeric` is exactly the base62 alphabet (`base62_value(b).is_some()`);
    // folded without a short cut, so the 46 bytes are checked in wide steps.
    if !secret
        .bytes()
        .fold(true, |ok, b| ok & b.is_ascii_alphanumeric())
    {
        return None;
    }
    // `secret` is the tail of `token` and all ASCII, so this split is on a char boundary.
    let (body, checksum) = token.split_at_checked(token.len().checked_sub(CHECKSUM_LEN)?)?;
    if decode_checksum(checksum)? != u64::from(crc32fast::hash(body.as_bytes())) {
        return None;
    }
    Some(ParsedToken {
        prefix,
        key_id,
        secret,
    })
}

/// Whether `token` has the format and checksum of a keyledger token
/// (`parse(token).is_some()`), or the shape of an imported djangorestframework-api-key
/// token (`<8 alnum>.<32 alnum>`, see `crate::legacy`). No store access: for secret
/// scanners and typo detection.
pub fn looks_like_key(token: &str) -> bool {
    parse(token).is_some() || crate::legacy::looks_like_drf(token)
}

/// What logs and audit entries show for a token: `"<prefix>_<key_id>_…"` (the last char is
/// U+2026) when the token is at most [`MAX_TOKEN_LEN`] bytes and splits, on its last two `_`,
/// into a valid prefix and a valid key id — even if the secret is malformed or its checksum
/// wrong; `"<prefix>.…"` for an imported djangorestframework-api-key token. Otherwise `"…"`
/// alone. Never returns any character of the secret.
pub fn redact(token: &str) -> String {
    if token.len() <= MAX_TOKEN_LEN {
        if let Some((prefix, key_id, _secret)) = split(token) {
            if is_valid_prefix(prefix) && is_valid_key_id(key_id) {
                return format!("{prefix}_{key_id}_…");
            }
        }
        if let Some(shown) = colon::redact(token) {
            return shown;
        }
    }
    // Imported keys: drf-api-key's `<prefix>.…`.
    if token.len() <= MAX_TOKEN_LEN {
        if let Some(r) = crate::legacy::redact_drf(token) {
            return r;
        }
    }
    "…".to_owned()
}

/// Checks a key prefix: 1–[`MAX_PREFIX_LEN`] chars of `[a-z0-9_]`, starting with a letter,
/// not ending with `_` and without a doubled `__`.
///
/// Returns [`Error::InvalidArgument`] with a message saying what is wrong (the message does
/// not repeat the input).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Err(Error::invalid("key prefix is empty"));
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(Error::invalid(format!(
            "key prefix is longer than {MAX_PREFIX_LEN} characters"
        )));
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Error::invalid(
            "key prefix may contain only lowercase letters a-z, digits 0-9 and '_'",
        ));
    }
    if !prefix
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase())
    {
        return Err(Error::invalid(
            "key prefix must start with a lowercase letter",
        ));
    }
    if prefix.ends_with('_') {
        return Err(Error::invalid("key prefix must not end with '_'"));
    }
    if prefix.contains("__") {
        return Err(Error::invalid("key prefix must not contain '__'"));
    }
    Ok(())
}

/// Whether `s` is a valid key id: exactly [`KEY_ID_LEN`] chars of `[a-z0-9]`.
pub fn is_valid_key_id(s: &str) -> bool {
    s.len() == KEY_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A fresh random key id: [`KEY_ID_LEN`] chars of `[a-z0-9]` from the OS CSPRNG, unbiased
/// (rejection sampling).
///
/// # Panics
///
/// Only if the operating system's random number generator fails, which leaves no safe way
/// to continue. Use [`try_new_key_id`] to get that failure as an error instead.
pub fn new_key_id() -> String {
    match try_new_key_id() {
        Ok(id) => id,
        Err(e) => panic!("{e}"),
    }
}

/// Like [`new_key_id`], but a failure of the OS random number generator is returned as
/// [`Error::Storage`] instead of a panic.
pub fn try_new_key_id() -> Result<String> {
    let mut buf = [0u8; KEY_ID_LEN];
    fill_random_from(BASE36_LOWER, &mut buf)?;
    Ok(buf.iter().map(|&b| char::from(b)).collect())
}

/// Mints a fresh token of `style` for `(prefix, key_id)` ([`mint`]; a colon-style token
/// ignores `prefix`).
pub fn mint_styled(style: TokenStyle, prefix: &str, key_id: &str) -> Result<Zeroizing<String>> {
    match style {
        TokenStyle::Prefixed => mint(prefix, key_id),
        TokenStyle::Colon => colon::mint(key_id),
    }
}

/// Mints a fresh token for `(prefix, key_id)` with a new random secret and its checksum.
///
/// The token is returned in a zeroize-on-drop buffer, allocated once at its final size so no
/// copy of the secret is left behind. Returns [`Error::InvalidArgument`] if `prefix` or
/// `key_id` is invalid, and [`Error::Storage`] if the OS random number generator fails.
/// Never panics.
pub fn mint(prefix: &str, key_id: &str) -> Result<Zeroizing<String>> {
    validate_prefix(prefix)?;
    if !is_valid_key_id(key_id) {
        return Err(Error::invalid(format!(
            "key id must be exactly {KEY_ID_LEN} characters of a-z and 0-9"
        )));
    }
    let mut random = Zeroizing::new([0u8; RANDOM_LEN]);
    fill_random_from(BASE62, &mut random[..])?;

    let len = prefix.len() + 1 + KEY_ID_LEN + 1 + SECRET_LEN;
    let mut token = Zeroizing::new(String::with_capacity(len));
    token.push_str(prefix);
    token.push('_');
    token.push_str(key_id);
    token.push('_');
    token.extend(random.iter().map(|&b| char::from(b)));
    let checksum = encode_checksum(crc32fast::hash(token.as_bytes()));
    token.extend(checksum.iter().map(|&b| char::from(b)));
    debug_assert_eq!(token.len(), len);
    Ok(token)
}

/// Splits on the last two `_`: `(prefix, key_id, secret)`. `None` without two `_`.
fn split(token: &str) -> Option<(&str, &str, &str)> {
    let (rest, secret) = token.rsplit_once('_')?;
    let (prefix, key_id) = rest.rsplit_once('_')?;
    Some((prefix, key_id, secret))
}

/// [`validate_prefix`] as a predicate, without building an error.
fn is_valid_prefix(prefix: &str) -> bool {
    let bytes = prefix.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_PREFIX_LEN
        && bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.last() != Some(&b'_')
        && !bytes.windows(2).any(|w| w == b"__")
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The value of a base62 digit, `None` for any other byte.
fn base62_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'Z' => Some(b - b'A' + 10),
        b'a'..=b'z' => Some(b - b'a' + 36),
        _ => None,
    }
}

/// The CRC32 as 6 base62 digits, big-endian, zero-padded (62^6 > 2^32).
fn encode_checksum(crc: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    let mut v = crc;
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(v % 62) as usize];
        v /= 62;
    }
    out
}

/// Decodes 6 base62 digits. Every value below 62^6 has exactly one encoding, so comparing
/// the decoded value with the CRC also rejects any other spelling.
fn decode_checksum(s: &str) -> Option<u64> {
    if s.len() != CHECKSUM_LEN {
        return None;
    }
    s.bytes()
        .try_fold(0u64, |acc, b| Some(acc * 62 + u64::from(base62_value(b)?)))
}

/// Fills `out` with chars drawn uniformly from `alphabet` using the OS CSPRNG.
///
/// Rejection sampling: a random byte is used only if it is below the largest multiple of the
/// alphabet size that fits in a byte, so `byte % len` is uniform.
fn fill_random_from(alphabet: &[u8], out: &mut [u8]) -> Result<()> {
    let n = alphabet.len();
    if n == 0 || n > 256 {
        return Err(Error::invalid("alphabet must have 1 to 256 symbols"));
    }
    let limit = 256 - 256 % n; // multiple of n, ≤ 256
    let mut pool = Zeroizing::new([0u8; 64]);
    let mut filled = 0;
    while filled < out.len() {
        getrandom::fill(&mut pool[..])
            .map_err(|e| Error::storage(format!("OS random number generator failed: {e}")))?;
        for &b in pool.iter() {
            if usize::from(b) >= limit {
                continue;
            }
            match (out.get_mut(filled), alphabet.get(usize::from(b) % n)) {
                (Some(slot), Some(&c)) => {
                    *slot = c;
                    filled += 1;
                }
                _ => break,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn minted(prefix: &str) -> Zeroizing<String> {
        mint(prefix, &new_key_id()).expect("mint")
    }

    #[test]
    fn minted_token_parses_into_its_parts() {
        let key_id = new_key_id();
        let token = mint("kl_live", &key_id).unwrap();
        let parsed = parse(&token).expect("parses");
        assert_eq!(parsed.prefix, "kl_live");
        assert_eq!(parsed.key_id, key_id);
        assert_eq!(parsed.secret.len(), SECRET_LEN);
        assert!(parsed.secret.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(
            token.len(),
            "kl_live".len() + 1 + KEY_ID_LEN + 1 + SECRET_LEN
        );
        assert!(looks_like_key(&token));
    }

    #[test]
    fn minted_tokens_differ() {
        let a = mint("sk_prod", "abcdefgh").unwrap();
        let b = mint("sk_prod", "abcdefgh").unwrap();
        assert_ne!(*a, *b);
    }

    #[test]
    fn checksum_is_crc32_of_everything_before_it_in_big_endian_base62() {
        let token = minted("dial_live");
        let (body, checksum) = token.split_at(token.len() - CHECKSUM_LEN);
        let crc = crc32fast::hash(body.as_bytes());
        let mut v = u64::from(crc);
        let mut expect = Vec::new();
        for _ in 0..CHECKSUM_LEN {
            expect.push(BASE62[(v % 62) as usize]);
            v /= 62;
        }
        expect.reverse();
        assert_eq!(checksum.as_bytes(), &expect[..]);
        assert_eq!(encode_checksum(0), *b"000000");
        assert_eq!(decode_checksum("000000"), Some(0));
        assert_eq!(
            decode_checksum(std::str::from_utf8(&encode_checksum(u32::MAX)).unwrap()),
            Some(u64::from(u32::MAX))
        );
    }

    #[test]
    fn flipping_any_single_secret_char_breaks_the_checksum() {
        for _ in 0..4 {
            let token = minted("dial_live");
            let start = token.len() - SECRET_LEN;
            for pos in start..token.len() {
                let original = token.as_bytes()[pos];
                for &replacement in BASE62.iter().filter(|&&c| c != original) {
                    let mut bytes = token.as_bytes().to_vec();
                    bytes[pos] = replacement;
                    let changed = String::from_utf8(bytes).unwrap();
                    assert!(
                        parse(&changed).is_none(),
                        "changing position {pos} still parses"
                    );
                }
            }
        }
    }

    #[test]
    fn changing_prefix_or_key_id_breaks_the_checksum() {
        let token = minted("sk_prod");
        let changed = token.replacen("sk_prod", "sk_prox", 1);
        assert!(parse(&changed).is_none());
        let parsed = parse(&token).unwrap();
        let other_id = if parsed.key_id == "00000000" {
            "00000001"
        } else {
            "00000000"
        };
        let changed = token.replacen(parsed.key_id, other_id, 1);
        assert!(parse(&changed).is_none());
    }

    #[test]
    fn prefix_with_underscores_parses_and_redacts() {
        let token = mint("dial_live", "k7p2m9qa").unwrap();
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.prefix, "dial_live");
        assert_eq!(parsed.key_id, "k7p2m9qa");
        assert_eq!(redact(&token), "dial_live_k7p2m9qa_…");
    }

    #[test]
    fn redact_never_shows_the_secret() {
        let token = minted("a_b_c");
        let parsed = parse(&token).unwrap();
        let redacted = redact(&token);
        assert!(!redacted.contains(parsed.secret));
        assert!(redacted.ends_with("_…"));
        assert_eq!(
            redacted.trim_end_matches('…').len() + SECRET_LEN,
            token.len()
        );
    }

    #[test]
    fn redact_keeps_prefix_and_key_id_of_a_token_with_a_bad_secret() {
        assert_eq!(redact("sk_prod_abcdefgh_nope"), "sk_prod_abcdefgh_…");
        assert_eq!(redact("sk_prod_abcdefgh_"), "sk_prod_abcdefgh_…");
        assert_eq!(redact("sk_abcdefgh_ünïcödé"), "sk_abcdefgh_…");
    }

    #[test]
    fn redact_of_junk_is_an_ellipsis() {
        for junk in [
            "",
            "_",
            "__",
            "___",
            "hello",
            "sk_prod_abcdefgh",
            "sk_prod_abcdefg_secret",
            "SK_abcdefgh_secret",
            "sk__abcdefgh_secret",
            "sk_ABCDEFGH_secret",
            "🔑_abcdefgh_secret",
            "sk_abcdéfgh_secret",
        ] {
            assert_eq!(redact(junk), "…", "{junk:?}");
        }
        let long = format!("sk_abcdefgh_{}", "x".repeat(MAX_TOKEN_LEN));
        assert_eq!(redact(&long), "…");
    }

    #[test]
    fn oversized_token_is_refused_quickly() {
        let token = minted("kl_live");
        let huge = format!("{}{}", "a".repeat(10 * 1024), &*token);
        let started = Instant::now();
        assert!(parse(&huge).is_none());
        assert!(!looks_like_key(&huge));
        assert_eq!(redact(&huge), "…");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let token = minted("kl_live");
        let secret = parse(&token).unwrap().secret.to_owned();
        let cases = [
            String::new(),
            "_".into(),
            "__".into(),
            "kl_live".into(),
            "é".into(),
            "🔑🔑🔑".into(),
            format!("kl_live_abcdefg_{secret}"),
            format!("kl_live_abcdefghi_{secret}"),
            format!("kl_live_{secret}"),
            format!("kl_live_abcdefgh_{}", &secret[1..]),
            format!("kl_live_abcdefgh_{secret}x"),
            format!("kl_live_abcdefgh_é{}", &secret[2..]),
            format!("kl_live__{secret}"),
            format!("{} ", &*token),
            format!(" {}", &*token),
            format!("{}\n", &*token),
            token.to_uppercase(),
        ];
        for case in &cases {
            assert!(parse(case).is_none(), "{case:?}");
            assert!(!looks_like_key(case));
        }
    }

    #[test]
    fn parsed_token_debug_hides_the_secret() {
        let token = minted("kl_live");
        let parsed = parse(&token).unwrap();
        let shown = format!("{parsed:?}");
        assert!(!shown.contains(parsed.secret));
        assert!(shown.contains(parsed.key_id));
        assert!(shown.contains("kl_live"));
        assert!(shown.contains("secret: \"…\""));
    }

    #[test]
    fn validate_prefix_rejects_bad_prefixes() {
        for bad in [
            "",
            "1abc",
            "_abc",
            "abc_",
            "ABC",
            "aBc",
            "a-b",
            "a b",
            "a__b",
            "é",
            "🔑",
            &"a".repeat(MAX_PREFIX_LEN + 1),
        ] {
            let err = validate_prefix(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad:?}");
            assert!(!is_valid_prefix(bad), "{bad:?}");
        }
    }

    #[test]
    fn validate_prefix_accepts_good_prefixes() {
        for good in [
            "kl_live",
            "sk_prod",
            "dial_live",
            "a",
            "a1",
            "a_1_b",
            &"a".repeat(MAX_PREFIX_LEN),
        ] {
            assert_eq!(validate_prefix(good), Ok(()), "{good:?}");
            assert!(is_valid_prefix(good), "{good:?}");
        }
    }

    #[test]
    fn validate_prefix_error_says_what_is_wrong() {
        let msg = |p: &str| validate_prefix(p).unwrap_err().to_string();
        assert!(msg("").contains("empty"));
        assert!(msg("1a").contains("start"));
        assert!(msg("ab_").contains("end"));
        assert!(msg("a__b").contains("__"));
        assert!(msg("aB").contains("only"));
        assert!(msg(&"a".repeat(33)).contains("32"));
    }

    #[test]
    fn key_ids_are_eight_lowercase_alphanumerics() {
        for _ in 0..200 {
            let id = new_key_id();
            assert!(is_valid_key_id(&id), "{id}");
        }
        assert!(is_valid_key_id("k7p2m9qa"));
        assert!(!is_valid_key_id("k7p2m9q"));
        assert!(!is_valid_key_id("k7p2m9qaa"));
        assert!(!is_valid_key_id("K7p2m9qa"));
        assert!(!is_valid_key_id("k7p2m9q_"));
        assert!(!is_valid_key_id("k7p2m9qé"));
    }

    #[test]
    fn random_chars_cover_the_whole_alphabet() {
        let mut seen = [false; 256];
        for _ in 0..100 {
            let token = minted("kl");
            for b in parse(&token).unwrap().secret.bytes() {
                seen[usize::from(b)] = true;
            }
        }
        assert!(BASE62.iter().all(|&c| seen[usize::from(c)]));
        let mut seen = [false; 256];
        for _ in 0..200 {
            for b in new_key_id().bytes() {
                seen[usize::from(b)] = true;
            }
        }
        assert!(BASE36_LOWER.iter().all(|&c| seen[usize::from(c)]));
    }

    #[test]
    fn mint_rejects_invalid_prefix_or_key_id() {
        assert!(matches!(
            mint("Bad", "abcdefgh"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            mint("kl_live", "abc"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            mint("kl_live", "ABCDEFGH"),
            Err(Error::InvalidArgument(_))
        ));
    }

    /// `parse` as it was before the fixed-offset cuts: the oracle of the test below.
    fn parse_by_split(token: &str) -> Option<(&str, &str, &str)> {
        if token.len() > MAX_TOKEN_LEN || !token.is_ascii() {
            return None;
        }
        let (prefix, key_id, secret) = split(token)?;
        if !is_valid_prefix(prefix) || !is_valid_key_id(key_id) {
            return None;
        }
        if secret.len() != SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let (body, checksum) = token.split_at_checked(token.len().checked_sub(CHECKSUM_LEN)?)?;
        if decode_checksum(checksum)? != u64::from(crc32fast::hash(body.as_bytes())) {
            return None;
        }
        Some((prefix, key_id, secret))
    }

    #[test]
    fn a_key_id_of_another_length_does_not_parse_even_with_a_valid_checksum() {
        for (key_id, ok) in [
            ("k1234567", true),
            ("xk1234567", false),
            ("xyk1234567", false),
            ("k123456", false),
        ] {
            let body = format!("ab_{key_id}_{}", "A".repeat(RANDOM_LEN));
            let sum = encode_checksum(crc32fast::hash(body.as_bytes()));
            let t = format!("{body}{}", std::str::from_utf8(&sum).unwrap());
            assert_eq!(parse(&t).is_some(), ok, "{key_id}");
            assert_eq!(parse_by_split(&t).is_some(), ok, "{key_id}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        #[test]
        fn parse_cuts_where_splitting_on_the_last_two_underscores_does(
            prefix in "([a-z][a-z0-9]{0,3}(_[a-z0-9]{1,3})?)|([a-z0-9_]{0,5})",
            key_id in "([a-z0-9]{8})|([a-z0-9_]{6,11})",
            random in "([0-9A-Za-z]{40})|([0-9A-Za-z_]{39,41})",
            cut in 0usize..8,
            extra in "[_a-z]{0,2}",
        ) {
            // A valid checksum over whatever was generated, then optionally a cut or an
            // extra tail: token-shaped strings on both sides of every check.
            let body = format!("{prefix}_{key_id}_{random}");
            let sum = encode_checksum(crc32fast::hash(body.as_bytes()));
            let mut t = format!("{body}{}", std::str::from_utf8(&sum).unwrap());
            if cut < 3 {
                t.truncate(t.len().saturating_sub(cut));
            }
            if cut == 7 {
                t.push_str(&extra);
            }
            let new = parse(&t).map(|p| (p.prefix, p.key_id, p.secret));
            proptest::prop_assert_eq!(new, parse_by_split(&t));
        }

        #[test]
        fn parse_and_redact_never_panic_on_arbitrary_strings(s in "\\PC*") {
            let parsed = parse(&s).is_some();
            proptest::prop_assert_eq!(parsed, looks_like_key(&s));
            let r = redact(&s);
            proptest::prop_assert!(r.ends_with('…'));
        }

        #[test]
        fn parse_never_panics_on_token_shaped_strings(
            s in "[a-z_]{0,6}_[a-z0-9é]{0,9}_[0-9A-Za-z_é🔑]{0,50}"
        ) {
            let _ = parse(&s);
            let _ = redact(&s);
        }
    }
}
