//! The token parser: `parse`, `looks_like_key` and `redact` never panic, agree with each
//! other, and `redact` never shows a character of the secret.
#![no_main]

use keyledger::token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let parsed = token::parse(&s);
    assert_eq!(parsed.is_some(), token::looks_like_key(&s));
    let redacted = token::redact(&s);
    assert!(redacted.ends_with('…'));
    if let Some(p) = parsed {
        assert_eq!(redacted, format!("{}_{}_…", p.prefix, p.key_id));
        assert!(!redacted.contains(p.secret));
        assert_eq!(
            format!("{}_{}_{}", p.prefix, p.key_id, p.secret).as_str(),
            s.as_ref()
        );
    }
    // Debug of a parsed token hides the secret too.
    if let Some(p) = token::parse(&s) {
        assert!(!format!("{p:?}").contains(p.secret));
    }
});
