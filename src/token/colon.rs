//! The `colon` token style: `<key_id>:<secret>`.
//!
//! Some APIs (telephony and voice-agent platforms among them) issue keys as a public id, a
//! colon, then a secret, and send the whole string as the Bearer token. A key created with
//! [`TokenStyle::Colon`] has that shape:
//!
//! - `key_id`: the same [`KEY_ID_LEN`](super::KEY_ID_LEN) chars of `[a-z0-9]` as every key;
//! - `secret`: [`COLON_SECRET_LEN`] base62 chars (`0-9A-Za-z`) from the OS CSPRNG (≈ 238
//!   bits), drawn exactly like the random part of a prefixed token.
//!
//! It has **no prefix and no checksum**. What that costs: [`super::parse`] and
//! [`super::looks_like_key`] can check only the shape (an 8-char id, one colon, 40 base62
//! chars), so a mistyped secret is caught only by the store lookup and argon2 (a 401), never
//! offline, and a secret scanner cannot tell a colon key from any other string of that
//! shape. A colon-style key is stored with an empty prefix (a prefixed key can never have
//! one), so a colon token never authenticates a prefixed key and a prefixed token never a
//! colon key. Hashing, the checks of [`crate::Vault::authorize`], rotation and redaction
//! (`<key_id>:…`) are the same for both styles.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{fill_random_from, is_valid_key_id, ParsedToken, BASE62, KEY_ID_LEN, RANDOM_LEN};
use crate::{Error, Result};

/// Length of a colon-style secret: base62 chars, all random.
pub const COLON_SECRET_LEN: usize = RANDOM_LEN;

/// Length of a whole colon-style token.
const COLON_TOKEN_LEN: usize = KEY_ID_LEN + 1 + COLON_SECRET_LEN;

/// The shape of a key's token, chosen when the key is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStyle {
    /// `<prefix>_<key_id>_<secret><checksum>` (the default).
    #[default]
    Prefixed,
    /// `<key_id>:<secret>`: no prefix, no checksum.
    Colon,
}

impl TokenStyle {
    /// `"prefixed"` or `"colon"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStyle::Prefixed => "prefixed",
            TokenStyle::Colon => "colon",
        }
    }

    /// The style of a stored key: colon-style keys are the ones with an empty prefix.
    pub fn of_prefix(prefix: &str) -> TokenStyle {
        if prefix.is_empty() {
            TokenStyle::Colon
        } else {
            TokenStyle::Prefixed
        }
    }
}

impl std::str::FromStr for TokenStyle {
    type Err = Error;

    /// `"prefixed"` or `"colon"`; anything else is [`Error::InvalidArgument`].
    fn from_str(s: &str) -> Result<TokenStyle> {
        match s {
            "prefixed" => Ok(TokenStyle::Prefixed),
            "colon" => Ok(TokenStyle::Colon),
            _ => Err(Error::invalid(
                "token style must be \"prefixed\" or \"colon\"",
            )),
        }
    }
}

/// Parses `<key_id>:<secret>`. The caller has already refused input longer than
/// [`super::MAX_TOKEN_LEN`] or not ASCII. The prefix of the result is `""`.
pub(super) fn parse(token: &str) -> Option<ParsedToken<'_>> {
    if token.len() != COLON_TOKEN_LEN {
        return None;
    }
    let (key_id, rest) = token.split_at_checked(KEY_ID_LEN)?;
    let secret = rest.strip_prefix(':')?;
    if !is_valid_key_id(key_id) || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(ParsedToken {
        prefix: "",
        key_id,
        secret,
    })
}

/// `"<key_id>:…"` when `token` starts with a valid key id and a colon (whatever follows);
/// `None` otherwise.
pub(super) fn redact(token: &str) -> Option<String> {
    let (key_id, rest) = token.split_at_checked(KEY_ID_LEN)?;
    (is_valid_key_id(key_id) && rest.starts_with(':')).then(|| format!("{key_id}:…"))
}

/// Mints `<key_id>:<secret>` in a zeroize-on-drop buffer allocated at its final size.
pub(super) fn mint(key_id: &str) -> Result<Zeroizing<String>> {
    if !is_valid_key_id(key_id) {
        return Err(Error::invalid(format!(
            "key id must be exactly {KEY_ID_LEN} characters of a-z and 0-9"
        )));
    }
    let mut random = Zeroizing::new([0u8; COLON_SECRET_LEN]);
    fill_random_from(BASE62, &mut random[..])?;
    let mut token = Zeroizing::new(String::with_capacity(COLON_TOKEN_LEN));
    token.push_str(key_id);
    token.push(':');
    token.extend(random.iter().map(|&b| char::from(b)));
    debug_assert_eq!(token.len(), COLON_TOKEN_LEN);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::super::{looks_like_key, parse as parse_any, redact as redact_any, MAX_TOKEN_LEN};
    use super::*;

    #[test]
    fn minted_colon_token_parses_into_its_parts() {
        let token = mint("k7p2m9qa").unwrap();
        assert_eq!(token.len(), 8 + 1 + COLON_SECRET_LEN);
        let parsed = parse_any(&token).expect("parses");
        assert_eq!(parsed.prefix, "");
        assert_eq!(parsed.key_id, "k7p2m9qa");
        assert_eq!(parsed.secret, &token[9..]);
        assert!(parsed.secret.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(looks_like_key(&token));
        assert_ne!(*mint("k7p2m9qa").unwrap(), *token);
    }

    #[test]
    fn colon_redaction_keeps_only_the_key_id() {
        let token = mint("k7p2m9qa").unwrap();
        assert_eq!(redact_any(&token), "k7p2m9qa:…");
        assert_eq!(redact_any("k7p2m9qa:"), "k7p2m9qa:…");
        assert_eq!(redact_any("k7p2m9qa:ünï"), "k7p2m9qa:…");
        for junk in [
            ":secret",
            "K7P2M9QA:abc",
            "k7p2m9q:abc",
            "k7p2m9qa;abc",
            "k7p2m9qaa:b",
        ] {
            assert_eq!(redact_any(junk), "…", "{junk:?}");
        }
        let long = format!("k7p2m9qa:{}", "a".repeat(MAX_TOKEN_LEN));
        assert_eq!(redact_any(&long), "…");
    }

    #[test]
    fn hostile_colon_shapes_do_not_parse() {
        let token = mint("k7p2m9qa").unwrap();
        let secret = &token[9..];
        let cases = [
            format!(":{secret}"),
            "k7p2m9qa:".to_owned(),
            format!("k7p2m9qa::{}", &secret[1..]),
            format!("k7p2m9qa:{}:", &secret[1..]),
            format!("k7p2m9qa:{}", &secret[1..]),
            format!("k7p2m9qa:{secret}x"),
            format!("K7P2M9QA:{secret}"),
            format!("k7p2m9q:{secret}a"),
            format!("k7p2m9qa_{secret}"),
            format!("kl_k7p2m9qa:{secret}"),
            format!("k7p2m9qa:{}é", &secret[2..]),
            format!("{}{}", ":".repeat(100), &*token),
            ":".repeat(COLON_TOKEN_LEN),
            format!("{}:{secret}", "a".repeat(10_000)),
        ];
        for case in &cases {
            assert!(parse_any(case).is_none(), "{case:?}");
            assert!(!looks_like_key(case), "{case:?}");
        }
    }

    #[test]
    fn style_names_round_trip_and_junk_is_refused() {
        for s in [TokenStyle::Prefixed, TokenStyle::Colon] {
            assert_eq!(s.as_str().parse::<TokenStyle>(), Ok(s));
        }
        assert!(matches!(
            "Colon".parse::<TokenStyle>(),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(TokenStyle::of_prefix(""), TokenStyle::Colon);
        assert_eq!(TokenStyle::of_prefix("kl_live"), TokenStyle::Prefixed);
    }
}
