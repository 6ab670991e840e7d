//! Events and usage reports for Python: `Vault.set_alert` & co. (in `vault.rs`, delegating
//! here), and `Vault.on_event`'s poller.
//!
//! `on_event(callback, consumer=…, poll_interval=…)` starts one thread per call: it reads
//! the events after the consumer's cursor (stored in the vault, shared by every process),
//! calls `callback(event_dict)` for each, in order, and acknowledges an event only after
//! the callback returned. A callback that raises is reported through
//! `sys.unraisablehook` (never propagated: the host keeps running) and the same event is
//! offered again after `poll_interval`: delivery is at least once. Several processes with
//! the same consumer name each deliver the events they read before another acknowledged
//! them (at least once across processes, not once); give each a consumer name of its own
//! to have every process see every event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// A running `on_event` poller. `stop()` ends it after the callback in progress.
#[pyclass(frozen, module = "keyledger", name = "EventSubscription")]
pub struct PyEventSubscription {
    stop: Arc<AtomicBool>,
    consumer: String,
}

#[pymethods]
impl PyEventSubscription {
    /// Stop polling (the callback in progress, if any, finishes first).
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether `stop()` was called or the vault closed.
    #[getter]
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    #[getter]
    fn consumer(&self) -> &str {
        &self.consumer
    }

    fn __repr__(&self) -> String {
        format!("EventSubscription(consumer={:?})", self.consumer)
    }
}

/// An event as a `dict` (`seq`, `type`, `time` in ms, `account_id`, `key_id`, `data`).
pub(super) fn event_to_py<'py>(
    py: Python<'py>,
    e: &crate::events::Event,
) -> PyResult<Bound<'py, PyAny>> {
    let v = serde_json::to_value(e).map_err(|err| invalid(py, err.to_string()))?;
    value_to_py(py, &v)
}

pub(super) fn start(
    py: Python<'_>,
    vault: Py<PyVault>,
    callback: Py<PyAny>,
    consumer: String,
    poll: Duration,
) -> PyResult<PyEventSubscription> {
    // Check the name now, in the caller's thread.
    py.detach(|| vault.get().core().event_cursor(&consumer))
        .py(py)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let name = consumer.clone();
    std::thread::Builder::new()
        .name("keyledger-events".into())
        .spawn(move || poll_loop(&vault, &callback, &name, poll, &flag))
        .map_err(|e| invalid(py, format!("cannot start the event thread: {e}")))?;
    Ok(PyEventSubscription { stop, consumer })
}

fn poll_loop(
    vault: &Py<PyVault>,
    callback: &Py<PyAny>,
    consumer: &str,
    poll: Duration,
    stop: &AtomicBool,
) {
    let v = vault.get().core();
    while !stop.load(Ordering::SeqCst) {
        let batch = match v.event_cursor(consumer).and_then(|c| v.events(c, 100)) {
            Ok(b) => b,
            Err(crate::Error::VaultClosed(_)) => break,
            Err(_) => {
                std::thread::sleep(poll);
                continue;
            }
        };
        let mut failed = false;
        for e in &batch {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let ok = Python::attach(|py| {
                let r = event_to_py(py, e).and_then(|d| callback.call1(py, (d,)));
                match r {
                    Ok(_) => true,
                    Err(err) => {
                        // Never propagated: reported like an exception in a finalizer.
                        err.write_unraisable(py, Some(callback.bind(py)));
                        false
                    }
                }
            });
            if !ok || v.ack_events(consumer, e.seq).is_err() {
                failed = true;
                break;
            }
        }
        if batch.is_empty() || failed {
            std::thread::sleep(poll);
        }
    }
    stop.store(true, Ordering::SeqCst);
}
