//! The rule parser and the route matchers: `normalize_method`, `normalize_pattern`,
//! `Router::find` and the HTTP gate (`http::find` on the same bytes as a raw request
//! target) never panic; a normalized pattern normalizes to itself; a found rule's method
//! is the request's (or `*`, or `GET` for a `HEAD`); what the gate accepts has no dot
//! segment and no encoded delimiter.
#![no_main]

use keyledger::http::RequestTarget;
use keyledger::policy::{normalize_method, normalize_pattern, RouteRule, Router};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    // method \n pattern \n request method \n request path \n more patterns…
    let mut parts = s.split('\n');
    let method = parts.next().unwrap_or("");
    let pattern = parts.next().unwrap_or("");
    let req_method = parts.next().unwrap_or("");
    let req_path = parts.next().unwrap_or("");
    let mut rules = vec![
        rule("POST", "/api/v1/messaging/send"),
        rule("GET", "/api/v1/messaging/threads/:counterparty"),
        rule("GET", "/sms/*"),
        rule("*", "/*"),
    ];
    let m = normalize_method(method);
    let p = normalize_pattern(pattern);
    if let Ok(p) = &p {
        assert_eq!(normalize_pattern(p).as_ref(), Ok(p), "not idempotent");
    }
    if let Ok(m) = &m {
        assert_eq!(normalize_method(m).as_ref(), Ok(m));
    }
    if let (Ok(m), Ok(p)) = (m, p) {
        rules.push(rule(&m, &p));
    }
    for extra in parts.take(8) {
        if let Ok(p) = normalize_pattern(extra) {
            rules.push(rule("GET", &p));
        }
    }
    let router = Router::new(rules);
    let method_fits = |found: &RouteRule| {
        found.method == "*"
            || found.method.eq_ignore_ascii_case(req_method)
            || (req_method.eq_ignore_ascii_case("HEAD") && found.method == "GET")
    };
    if let Some(found) = router.find(req_method, req_path) {
        assert!(method_fits(found), "{found:?} for {req_method}");
    }
    if let Ok(target) = RequestTarget::parse(req_path) {
        for seg in target.segments() {
            assert!(
                seg != "." && seg != "..",
                "dot segment accepted: {req_path:?}"
            );
            assert!(
                !seg.contains(['/', '?', '#', '\\', '%', ';', '\0']),
                "delimiter accepted: {req_path:?}"
            );
        }
        for insensitive in [false, true] {
            if let Ok(Some(found)) = target.find(&router, req_method, insensitive) {
                assert!(method_fits(found), "{found:?} for {req_method}");
            }
        }
    }
});

fn rule(method: &str, pattern: &str) -> RouteRule {
    RouteRule {
        method: method.to_string(),
        pattern: pattern.to_string(),
        scope: "s".to_string(),
        cost: 1,
    }
}
