use super::*;
use crate::Error;

fn rule(method: &str, pattern: &str, scope: &str, cost: u64) -> RouteRule {
    RouteRule {
        method: method.into(),
        pattern: pattern.into(),
        scope: scope.into(),
        cost,
    }
}

fn seed_router() -> Router {
    Router::new(vec![
        rule("GET", "/sms/*", "sms.read", 0),
        rule("POST", "/api/v1/messaging/send", "sms:send", 1),
        rule("GET", "/api/v1/numbers/mine", "numbers:read", 0),
        rule(
            "GET",
            "/api/v1/messaging/threads/:counterparty",
            "numbers:read",
            0,
        ),
    ])
}

fn found<'a>(r: &'a Router, m: &str, p: &str) -> Option<&'a str> {
    r.find(m, p).map(|rule| rule.pattern.as_str())
}

#[test]
fn star_scope_grants_everything() {
    assert!(scope_grants("*", "sms:send"));
    assert!(scope_grants("*", "numbers.read"));
    assert!(scope_grants("*", "x"));
}

#[test]
fn namespace_wildcard_grants_only_inside_the_namespace() {
    assert!(scope_grants("sms:*", "sms:send"));
    assert!(scope_grants("sms:*", "sms:send:bulk"));
    assert!(!scope_grants("sms:*", "sms"));
    assert!(!scope_grants("sms:*", "sms:"));
    assert!(!scope_grants("sms:*", "smsx:send"));
    assert!(!scope_grants("sms:*", "sms.read"));
    assert!(scope_grants("sms.*", "sms.read"));
    assert!(!scope_grants("sms.*", "sms:read"));
    assert!(!scope_grants("sms.*", "sms"));
}

#[test]
fn plain_scope_grants_exactly_itself() {
    assert!(scope_grants("sms:send", "sms:send"));
    assert!(!scope_grants("sms:send", "sms:sendx"));
    assert!(!scope_grants("sms:send", "sms"));
    assert!(!scope_grants("sms", "sms:send"));
}

#[test]
fn invalid_required_scope_is_never_granted() {
    assert!(!scope_grants("*", ""));
    assert!(!scope_grants("*", "*"));
    assert!(!scope_grants("sms:*", "sms:*"));
    assert!(!scope_grants("*", "SMS"));
    assert!(!scope_grants("*", &"a".repeat(65)));
    assert!(!scope_grants("a*b", "a*b"));
    assert!(!scope_grants(":*", ":x"));
}

#[test]
fn scopes_grant_checks_every_granted_scope() {
    let granted = ["numbers:read", "sms:*"];
    assert!(scopes_grant(&granted, "sms:send"));
    assert!(scopes_grant(&granted, "numbers:read"));
    assert!(!scopes_grant(&granted, "numbers:write"));
    let none: [String; 0] = [];
    assert!(!scopes_grant(&none, "sms:send"));
    assert!(scopes_grant(&["*".to_string()], "anything"));
}

#[test]
fn valid_scopes_are_accepted() {
    for s in [
        "*",
        "sms:*",
        "sms.*",
        "sms:send",
        "a",
        "a-b_c.d:e",
        "v1.sms:*",
        &"a".repeat(64),
    ] {
        assert_eq!(validate_scope(s), Ok(()), "{s:?}");
    }
    for s in ["sms:send", "a", "x.y-z_0"] {
        assert_eq!(validate_required_scope(s), Ok(()), "{s:?}");
    }
}

#[test]
fn invalid_scopes_are_rejected() {
    for s in [
        "",
        "SMS",
        "sms send",
        &"a".repeat(65),
        "a*b",
        "*:x",
        "**",
        "sms*",
        ":*",
        ".*",
        "sms:**",
        "*:*",
        "sms/send",
        "é",
    ] {
        assert!(
            matches!(validate_scope(s), Err(Error::InvalidArgument(_))),
            "{s:?}"
        );
    }
    for s in ["*", "sms:*", "", "SMS", "a b", &"a".repeat(65)] {
        assert!(
            matches!(validate_required_scope(s), Err(Error::InvalidArgument(_))),
            "{s:?}"
        );
    }
}

#[test]
fn methods_normalize_to_uppercase_or_star() {
    assert_eq!(normalize_method("get").unwrap(), "GET");
    assert_eq!(normalize_method("Post").unwrap(), "POST");
    assert_eq!(normalize_method("*").unwrap(), "*");
    for bad in ["", "G ET", "GET1", "**", "é", &"A".repeat(17)] {
        assert!(normalize_method(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn patterns_normalize_to_canonical_form() {
    assert_eq!(normalize_pattern("/a/b/").unwrap(), "/a/b");
    assert_eq!(normalize_pattern("//a///b").unwrap(), "/a/b");
    assert_eq!(normalize_pattern("/").unwrap(), "/");
    assert_eq!(normalize_pattern("///").unwrap(), "/");
    assert_eq!(normalize_pattern("/sms/*").unwrap(), "/sms/*");
    assert_eq!(
        normalize_pattern("/api/v1/threads/:counterparty/").unwrap(),
        "/api/v1/threads/:counterparty"
    );
    assert_eq!(
        normalize_pattern("/a/b.c~d!$&'()+,;=@%20-e").unwrap(),
        "/a/b.c~d!$&'()+,;=@%20-e"
    );
}

#[test]
fn bad_patterns_are_rejected() {
    let long = format!("/{}", "a".repeat(512));
    for bad in [
        "", "a/b", "/a/*/b", "/a/b*", "/*x", "/a/:", "/a/:b-c", "/a/:x/:x", "/a b", "/a?b", "/a#b",
        "/a/../b", "/./a", "/é", "/a:b", &long,
    ] {
        assert!(
            matches!(normalize_pattern(bad), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    assert!(normalize_pattern(&format!("/a/:{}", "n".repeat(33))).is_err());
    assert!(normalize_pattern(&format!("/a/:{}", "n".repeat(32))).is_ok());
}

#[test]
fn seed_rules_match_as_expected() {
    let r = seed_router();
    let send = r.find("POST", "/api/v1/messaging/send").unwrap();
    assert_eq!((send.scope.as_str(), send.cost), ("sms:send", 1));
    let mine = r.find("GET", "/api/v1/numbers/mine").unwrap();
    assert_eq!(mine.scope, "numbers:read");
    let thread = r
        .find("GET", "/api/v1/messaging/threads/+15551234")
        .unwrap();
    assert_eq!(thread.pattern, "/api/v1/messaging/threads/:counterparty");
    assert_eq!(thread.scope, "numbers:read");
    let sms = r.find("GET", "/sms/inbox/42").unwrap();
    assert_eq!(sms.scope, "sms.read");
    assert!(r.find("GET", "/api/v1/messaging/send").is_none());
    assert!(r.find("POST", "/api/v1/numbers/mine").is_none());
    assert!(r.find("GET", "/api/v1/messaging/threads").is_none());
    assert!(r.find("GET", "/api/v1/messaging/threads/a/b").is_none());
}

#[test]
fn unmatched_request_is_denied_by_default() {
    let r = seed_router();
    assert!(r.find("GET", "/").is_none());
    assert!(r.find("GET", "/admin").is_none());
    assert!(Router::default().find("GET", "/").is_none());
    assert!(Router::default().is_empty());
    assert!(!r.is_empty());
}

#[test]
fn literal_beats_param_beats_rest() {
    let r = Router::new(vec![
        rule("GET", "/a/*", "rest", 0),
        rule("GET", "/a/:id", "param", 0),
        rule("GET", "/a/me", "literal", 0),
    ]);
    assert_eq!(r.find("GET", "/a/me").unwrap().scope, "literal");
    assert_eq!(r.find("GET", "/a/you").unwrap().scope, "param");
    assert_eq!(r.find("GET", "/a/you/too").unwrap().scope, "rest");
    let order: Vec<_> = r.rules().iter().map(|r| r.scope.as_str()).collect();
    assert_eq!(order, ["literal", "param", "rest"]);
}

#[test]
fn first_differing_segment_decides_specificity() {
    let r = Router::new(vec![
        rule("GET", "/:x/b/c", "param-first", 0),
        rule("GET", "/a/:y/*", "literal-first", 0),
    ]);
    assert_eq!(r.find("GET", "/a/b/c").unwrap().scope, "literal-first");
    assert_eq!(r.find("GET", "/z/b/c").unwrap().scope, "param-first");
}

#[test]
fn longer_pattern_beats_its_prefix() {
    let r = Router::new(vec![
        rule("GET", "/a/*", "short", 0),
        rule("GET", "/a/:x/*", "long", 0),
    ]);
    assert_eq!(r.find("GET", "/a/b").unwrap().scope, "short");
    assert_eq!(r.find("GET", "/a/b/c").unwrap().scope, "long");
    let r = Router::new(vec![
        rule("GET", "/a", "short", 0),
        rule("GET", "/a/b", "long", 0),
    ]);
    assert_eq!(r.rules()[0].scope, "long");
}

#[test]
fn exact_method_beats_star_method() {
    let r = Router::new(vec![
        rule("*", "/a", "any", 0),
        rule("POST", "/a", "post", 0),
    ]);
    assert_eq!(r.find("POST", "/a").unwrap().scope, "post");
    assert_eq!(r.find("GET", "/a").unwrap().scope, "any");
    assert_eq!(r.find("DELETE", "/a").unwrap().scope, "any");
}

#[test]
fn segment_specificity_beats_method_exactness() {
    let r = Router::new(vec![
        rule("GET", "/a/:x", "param-get", 0),
        rule("*", "/a/b", "literal-any", 0),
    ]);
    assert_eq!(r.find("GET", "/a/b").unwrap().scope, "literal-any");
}

#[test]
fn rest_needs_at_least_one_segment() {
    let r = seed_router();
    assert!(r.find("GET", "/sms").is_none());
    assert!(r.find("GET", "/sms/").is_none());
    assert!(r.find("GET", "/sms/a").is_some());
    assert!(r.find("GET", "/sms/a/b").is_some());
    assert!(r.find("GET", "/smsx/a").is_none());
}

#[test]
fn query_string_and_fragment_are_ignored() {
    let r = seed_router();
    assert!(r.find("GET", "/api/v1/numbers/mine?page=2&x=/y").is_some());
    assert!(r.find("GET", "/api/v1/numbers/mine#top").is_some());
    assert!(r.find("GET", "/api/v1/numbers/mine/?a=b").is_some());
    assert!(r.find("GET", "/sms?x=/a").is_none());
    assert!(r.find("GET", "?/sms/a").is_none());
}

#[test]
fn trailing_and_doubled_slashes_are_tolerated() {
    let r = seed_router();
    assert!(r.find("GET", "/api/v1/numbers/mine/").is_some());
    assert!(r.find("GET", "//api//v1/numbers/mine").is_some());
    let root = Router::new(vec![rule("GET", "/", "root", 0)]);
    assert!(root.find("GET", "/").is_some());
    assert!(root.find("GET", "//").is_some());
    assert!(root.find("GET", "/a").is_none());
}

#[test]
fn method_matches_ignoring_ascii_case() {
    let r = seed_router();
    assert!(r.find("get", "/api/v1/numbers/mine").is_some());
    assert!(r.find("GeT", "/api/v1/numbers/mine").is_some());
    assert!(r.find("post", "/api/v1/messaging/send").is_some());
    assert!(r.find("GETX", "/api/v1/numbers/mine").is_none());
}

#[test]
fn path_without_leading_slash_matches_nothing() {
    let r = Router::new(vec![rule("*", "/*", "all", 0)]);
    assert!(r.find("GET", "/anything").is_some());
    assert!(r.find("GET", "anything").is_none());
    assert!(r.find("GET", "").is_none());
    assert!(r.find("GET", "http://host/anything").is_none());
}

#[test]
fn dot_segments_in_request_match_nothing() {
    let r = Router::new(vec![rule("*", "/*", "all", 0)]);
    assert!(r.find("GET", "/sms/../admin").is_none());
    assert!(r.find("GET", "/./a").is_none());
    assert!(r.find("GET", "/a/...").is_some());
}

#[test]
fn literals_compare_case_sensitively() {
    let r = seed_router();
    assert!(r.find("GET", "/API/v1/numbers/mine").is_none());
}

#[test]
fn router_normalizes_and_drops_invalid_or_duplicate_rules() {
    let r = Router::new(vec![
        rule("get", "/a/b/", "first", 0),
        rule("GET", "/a/b", "duplicate", 0),
        rule("GET", "no-slash", "bad", 0),
        rule("G E T", "/x", "bad", 0),
        rule("GET", "/a/*/b", "bad", 0),
    ]);
    assert_eq!(r.rules().len(), 1);
    assert_eq!(r.rules()[0].method, "GET");
    assert_eq!(r.rules()[0].pattern, "/a/b");
    assert_eq!(r.rules()[0].scope, "first");
}

#[test]
fn rule_order_is_independent_of_insertion_order() {
    let rules = vec![
        rule("GET", "/a/:x", "1", 0),
        rule("*", "/a/:x", "2", 0),
        rule("GET", "/a/b", "3", 0),
        rule("GET", "/a/*", "4", 0),
        rule("GET", "/a/:y", "5", 0),
        rule("GET", "/", "6", 0),
        rule("*", "/*", "7", 0),
    ];
    let forward = Router::new(rules.clone());
    let mut reversed = rules;
    reversed.reverse();
    let backward = Router::new(reversed);
    assert_eq!(forward.rules(), backward.rules());
    assert_eq!(found(&forward, "GET", "/a/c"), Some("/a/:x"));
    assert_eq!(found(&forward, "PUT", "/a/c"), Some("/a/:x"));
    assert_eq!(forward.find("PUT", "/a/c").unwrap().method, "*");
    assert_eq!(found(&forward, "GET", "/"), Some("/"));
    assert_eq!(found(&forward, "PUT", "/"), None);
    assert_eq!(found(&forward, "PUT", "/z/z"), Some("/*"));
}

#[test]
fn route_rule_round_trips_through_serde() {
    let r = rule("POST", "/api/v1/messaging/send", "sms:send", 1);
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<RouteRule>(&json).unwrap(), r);
}

proptest::proptest! {
    #[test]
    fn find_never_panics_on_arbitrary_strings(method in "\\PC*", path in "\\PC*") {
        let r = seed_router();
        let _ = r.find(&method, &path);
        let catch_all = Router::new(vec![rule("*", "/*", "all", 0)]);
        let _ = catch_all.find(&method, &path);
    }

    #[test]
    fn validators_never_panic_on_arbitrary_strings(s in "\\PC*") {
        let _ = validate_scope(&s);
        let _ = validate_required_scope(&s);
        let _ = scope_grants(&s, "sms:send");
        let _ = scope_grants("sms:*", &s);
        let _ = normalize_method(&s);
        if let Ok(p) = normalize_pattern(&s) {
            let again = normalize_pattern(&p);
            proptest::prop_assert_eq!(again.as_deref(), Ok(p.as_str()));
        }
    }

    #[test]
    fn path_shaped_strings_never_panic(
        path in "[/a-z:*?#.é🔑]{0,40}", pattern in "[/a-z:*.]{0,20}"
    ) {
        let r = Router::new(vec![rule("*", &pattern, "s", 0), rule("GET", "/a/*", "t", 0)]);
        let _ = r.find("GET", &path);
        let _ = normalize_pattern(&pattern);
    }
}
