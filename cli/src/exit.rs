//! What a command failed with, and the exit code users see for it.

use keyledger::{Error, ErrorCode};

pub const EXIT_CODES: &str = "\
Exit codes:
  0  ok / granted
  1  usage error or other error (also idempotency_conflict, duplicate_request,
     ambiguous_path)
  2  refused 401 (invalid_api_key, api_key_inactive, api_key_expired, invalid_signature);
     `check`: not a key
  3  refused 403 (missing_scope, route_not_allowed; `route match` with no rule)
  4  refused 402 (insufficient_credits)
  5  refused 429 (rate_limited, too_many_attempts)
  6  not_found, hold_not_found (also: no vault at --vault; run `keyledger init`)
  7  already_exists, hold_settled
  8  invalid_argument (zero, negative or over-u64 amounts, bad metadata JSON, ...)
  9  storage, vault_locked, wrong_master_key, vault_closed

Tokens: `authorize`, `whoami` and `check` read the token from stdin when it is `-`
(e.g. `keyledger authorize - --route 'GET /x' < token.txt`), keeping it out of shell history.
A new token is printed once by `key create` / `key rotate`; it cannot be shown again.
With --json every command prints one JSON value on stdout; on error, the error body.";

/// What a command failed with.
#[derive(Debug)]
pub enum CliError {
    /// A library error (or one of the same kind found by the CLI): exit code by its kind.
    Vault(Error),
    /// Anything else (I/O on stdin or stdout, a refused quickstart directory): exit 1.
    Other(String),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Vault(e)
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// The exit code of a library error (see the module docs of `main.rs` and [`EXIT_CODES`]).
pub fn exit_code(e: &Error) -> u8 {
    code_exit(e.error_code())
}

/// The exit code of each kind of library error. Exhaustive on purpose: a new kind of
/// error does not compile until it is given its code here and in [`EXIT_CODES`].
pub fn code_exit(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::InvalidApiKey
        | ErrorCode::ApiKeyInactive
        | ErrorCode::ApiKeyExpired
        | ErrorCode::InvalidSignature => 2,
        ErrorCode::MissingScope | ErrorCode::RouteNotAllowed => 3,
        ErrorCode::InsufficientCredits => 4,
        ErrorCode::RateLimited | ErrorCode::TooManyAttempts => 5,
        ErrorCode::NotFound | ErrorCode::HoldNotFound => 6,
        ErrorCode::AlreadyExists | ErrorCode::HoldSettled => 7,
        ErrorCode::InvalidArgument => 8,
        ErrorCode::Storage
        | ErrorCode::VaultLocked
        | ErrorCode::WrongMasterKey
        | ErrorCode::VaultClosed => 9,
        // Refusals of a request a person does not type at the CLI; no code of their own.
        ErrorCode::IdempotencyConflict | ErrorCode::DuplicateRequest | ErrorCode::AmbiguousPath => {
            1
        }
    }
}

pub fn invalid(msg: impl Into<String>) -> CliError {
    CliError::Vault(Error::InvalidArgument(msg.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes scripts rely on (README, `keyledger --help`) stay what they were.
    #[test]
    fn exit_codes_are_pinned() {
        assert_eq!(exit_code(&Error::InvalidApiKey), 2);
        assert_eq!(exit_code(&Error::ApiKeyExpired), 2);
        assert_eq!(exit_code(&Error::RouteNotAllowed), 3);
        assert_eq!(
            exit_code(&Error::InsufficientCredits {
                credits: 0,
                required: 1
            }),
            4
        );
        assert_eq!(exit_code(&Error::TooManyAttempts { retry_after: 1 }), 5);
        assert_eq!(exit_code(&Error::NotFound("x".into())), 6);
        assert_eq!(exit_code(&Error::AlreadyExists("x".into())), 7);
        assert_eq!(exit_code(&Error::InvalidArgument("x".into())), 8);
        assert_eq!(exit_code(&Error::VaultLocked), 9);
        assert_eq!(exit_code(&Error::IdempotencyConflict), 1);
    }

    /// Every code is named in the `--help` table, on the line of its exit code.
    #[test]
    fn the_help_table_names_every_code_under_its_exit_code() {
        let table = EXIT_CODES.split("\n\n").next().unwrap();
        // "  N  text" starts an entry; deeper-indented lines continue it.
        let mut entries: Vec<(u8, String)> = Vec::new();
        for line in table.lines().skip(1) {
            let t = line.trim_start();
            match t
                .split_once("  ")
                .and_then(|(n, rest)| Some((n.parse::<u8>().ok()?, rest)))
            {
                Some((n, rest)) if line.starts_with("  ") && !line.starts_with("   ") => {
                    entries.push((n, rest.to_string()))
                }
                _ => entries.last_mut().unwrap().1.push_str(t),
            }
        }
        for code in ErrorCode::all() {
            let n = code_exit(code);
            let text = &entries.iter().find(|(e, _)| *e == n).unwrap().1;
            assert!(
                text.contains(code.as_str()),
                "{code} is not listed under exit {n}"
            );
        }
    }
}
