//! The token parser: `parse`, `looks_like_key` and `redact` never panic, agree with each
//! other, and `redact` never shows a character of the secret. Three shapes are keys:
//! prefixed (`<prefix>_<key_id>_<secret>`), colon-style (`<key_id>:<secret>`, parsed with
//! an empty prefix) and an imported djangorestframework-api-key token (`<8>.<32>`, not
//! parsed as a native token, but recognized and redacted to `<prefix>.…`).
#![no_main]

use keyledger::token;
use libfuzzer_sys::fuzz_target;

/// djangorestframework-api-key's token shape: 8 and 32 ASCII alphanumerics around a `.`.
fn drf_shape(s: &str) -> Option<(&str, &str)> {
    let (prefix, secret) = s.split_once('.')?;
    let alnum = |p: &str| p.bytes().all(|b| b.is_ascii_alphanumeric());
    (prefix.len() == 8 && secret.len() == 32 && alnum(prefix) && alnum(secret))
        .then_some((prefix, secret))
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let parsed = token::parse(&s);
    let drf = drf_shape(&s);
    assert!(parsed.is_none() || drf.is_none());
    assert_eq!(parsed.is_some() || drf.is_some(), token::looks_like_key(&s));
    let redacted = token::redact(&s);
    assert!(redacted.ends_with('…'));
    if let Some(p) = parsed {
        if p.prefix.is_empty() {
            assert_eq!(redacted, format!("{}:…", p.key_id));
            assert_eq!(format!("{}:{}", p.key_id, p.secret).as_str(), s.as_ref());
        } else {
            assert_eq!(redacted, format!("{}_{}_…", p.prefix, p.key_id));
            assert_eq!(
                format!("{}_{}_{}", p.prefix, p.key_id, p.secret).as_str(),
                s.as_ref()
            );
        }
        assert!(!redacted.contains(p.secret));
        // Debug of a parsed token hides the secret too.
        assert!(!format!("{p:?}").contains(p.secret));
    }
    if let Some((prefix, secret)) = drf {
        assert_eq!(redacted, format!("{prefix}.…"));
        assert!(!redacted.contains(secret));
    }
});
