//! Arguments read as the library wants them: integers, metadata, and secrets
//! from stdin or the terminal (zeroized on drop).

use std::io::Read;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::exit::{invalid, CliError, CliResult};

/// A non-negative integer argument; anything else (negative, over u64, not a number) is
/// `invalid_argument`, as in every host.
pub fn parse_u64(what: &str, s: &str) -> CliResult<u64> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map_err(|_| invalid(format!("{what} is larger than {}", u64::MAX)));
    }
    if t.starts_with('-') && t.len() > 1 && t[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("{what} must not be negative")));
    }
    Err(invalid(format!(
        "{what} must be a non-negative integer, got {s:?}"
    )))
}

/// A positive integer argument (amounts).
pub fn parse_positive(what: &str, s: &str) -> CliResult<u64> {
    match parse_u64(what, s)? {
        0 => Err(invalid(format!("{what} must be positive"))),
        n => Ok(n),
    }
}

/// Seconds → milliseconds, refusing what does not fit.
pub fn seconds_to_ms(what: &str, s: &str) -> CliResult<i64> {
    let secs = parse_u64(what, s)?;
    i64::try_from(secs)
        .ok()
        .and_then(|v| v.checked_mul(1000))
        .ok_or_else(|| invalid(format!("{what} is too large")))
}

pub fn parse_metadata(s: Option<&str>) -> CliResult<Option<Value>> {
    match s {
        None => Ok(None),
        Some(s) => {
            let v: Value = serde_json::from_str(s)
                .map_err(|e| invalid(format!("metadata is not valid JSON: {e}")))?;
            if !v.is_object() {
                return Err(invalid("metadata must be a JSON object"));
            }
            Ok(Some(v))
        }
    }
}

/// The token argument, or stdin (trimmed) when it is `-`; zeroized on drop.
pub fn read_token(arg: &str) -> CliResult<Zeroizing<String>> {
    if arg != "-" {
        return Ok(Zeroizing::new(arg.to_string()));
    }
    let mut s = Zeroizing::new(String::new());
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut s)
        .map_err(|e| CliError::Other(format!("cannot read the token from stdin: {e}")))?;
    Ok(Zeroizing::new(s.trim().to_string()))
}

/// Read one line from the terminal without echo (from stdin when it is not a terminal).
pub fn prompt_secret(prompt: &str) -> CliResult<Zeroizing<String>> {
    use std::io::BufRead;
    let fd = libc::STDIN_FILENO;
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(fd) } == 1;
    let mut saved: Option<libc::termios> = None;
    if tty {
        eprint!("{prompt}");
        // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr, which fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is a terminal; t is a valid termios.
        if unsafe { libc::tcgetattr(fd, &mut t) } == 0 {
            let mut quiet = t;
            quiet.c_lflag &= !libc::ECHO;
            // SAFETY: as above; restoring happens below.
            unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
            saved = Some(t);
        }
    }
    let mut line = Zeroizing::new(String::new());
    let read = std::io::stdin().lock().take(4096).read_line(&mut line);
    if let Some(t) = saved {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
        eprintln!();
    }
    read.map_err(|e| CliError::Other(format!("cannot read from the terminal: {e}")))?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
    if trimmed.is_empty() {
        return Err(invalid("nothing was entered"));
    }
    Ok(trimmed)
}
