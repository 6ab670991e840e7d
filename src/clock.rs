//! Time: the vault's clock, a parameter so tests pin it and never sleep.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::Millis;

/// A source of "now" in unix milliseconds. Tests pin it; the default reads the system clock.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// The system clock in unix milliseconds.
pub fn system_now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
