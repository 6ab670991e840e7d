//! The route index against the linear scan it replaced (kept as the oracle in
//! `Router::find_linear` / `find_reading_linear`): same answers over random rule sets,
//! paths, methods and gate readings.

use proptest::prelude::*;

use super::router::Reading;
use super::{RouteRule, Router};

/// Literals that collide under the readings: case, percent-escapes, escapes that decode to
/// `/` or are malformed.
const LITERALS: &[&str] = &[
    "a", "A", "b", "api", "v1", "%41", "%61", "x%20y", "%2F", "%zz", "a%2Fb", "Api",
];

fn pattern_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(LITERALS).prop_map(str::to_owned),
        2 => Just(":p".to_owned()),
        1 => Just(":q".to_owned()),
        2 => Just("*".to_owned()),
        // Invalid: the router drops the rule.
        1 => Just("..".to_owned()),
    ]
}

fn rule_strategy() -> impl Strategy<Value = RouteRule> {
    (
        proptest::sample::select(&["*", "GET", "HEAD", "POST", "get", "Head", "DELETE"][..]),
        proptest::collection::vec(pattern_segment(), 0..5),
        0u64..3,
    )
        .prop_map(|(method, segs, cost)| RouteRule {
            method: method.into(),
            pattern: format!("/{}", segs.join("/")),
            scope: "s".into(),
            cost,
        })
}

fn request_method() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&["GET", "HEAD", "head", "POST", "PUT", "get", "DELETE"][..])
}

fn request_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(LITERALS).prop_map(str::to_owned),
        1 => Just(String::new()),
        1 => Just("c".to_owned()),
        1 => Just("x y".to_owned()),
        1 => Just("a/b".to_owned()),
    ]
}

fn readings() -> Vec<Reading> {
    let mut out = Vec::new();
    for decoded in [false, true] {
        for case_insensitive in [false, true] {
            for param_matches_empty in [false, true] {
                out.push(Reading {
                    decoded,
                    case_insensitive,
                    param_matches_empty,
                });
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn indexed_find_answers_as_the_linear_scan(
        rules in proptest::collection::vec(rule_strategy(), 0..40),
        requests in proptest::collection::vec(
            (request_method(), proptest::collection::vec(request_segment(), 0..6), any::<bool>()),
            1..20,
        ),
    ) {
        let router = Router::new(rules);
        for (method, segs, query) in &requests {
            let mut path = format!("/{}", segs.join("/"));
            if *query {
                path.push_str("?x=/a");
            }
            let indexed = router.find(method, &path).map(|r| r as *const RouteRule);
            let linear = router.find_linear(method, &path).map(|r| r as *const RouteRule);
            prop_assert_eq!(indexed, linear, "{} {}", method, path);
        }
    }

    #[test]
    fn indexed_gate_readings_answer_as_the_linear_scan(
        rules in proptest::collection::vec(rule_strategy(), 0..40),
        requests in proptest::collection::vec(
            (
                request_method(),
                proptest::collection::vec((request_segment(), request_segment()), 0..6),
            ),
            1..20,
        ),
    ) {
        let router = Router::new(rules);
        for (method, pairs) in &requests {
            let segs: Vec<(&str, &str)> =
                pairs.iter().map(|(r, d)| (r.as_str(), d.as_str())).collect();
            for reading in readings() {
                prop_assert_eq!(
                    router.find_reading(method, &segs, reading),
                    router.find_reading_linear(method, &segs, reading),
                    "{} {:?} {:?}", method, segs, reading
                );
            }
        }
    }
}

/// Many rules sharing long literal prefixes, as real APIs have (`/api/v1/...`): the index
/// and the linear scan agree on every request of a grid.
#[test]
fn indexed_find_agrees_on_a_large_api_shaped_rule_set() {
    let mut rules = Vec::new();
    for r in 0..100 {
        for (m, p) in [
            ("GET", format!("/api/v1/res{r}/list")),
            ("POST", format!("/api/v1/res{r}/create")),
            ("GET", format!("/api/v1/res{r}/:id")),
            ("*", format!("/api/v1/res{r}/:id")),
            ("HEAD", format!("/api/v1/res{r}/:id")),
            ("DELETE", format!("/api/v1/res{r}/:id")),
            ("GET", format!("/api/v1/res{r}/files/*")),
        ] {
            rules.push(RouteRule {
                method: m.into(),
                pattern: p,
                scope: format!("res{r}:read"),
                cost: 0,
            });
        }
    }
    rules.push(RouteRule {
        method: "*".into(),
        pattern: "/api/*".into(),
        scope: "any".into(),
        cost: 0,
    });
    let router = Router::new(rules);
    let mut matched = 0;
    for r in [0, 7, 99, 100] {
        for tail in ["list", "create", "abc", "files/x", "files", "files/x/y", ""] {
            for method in ["GET", "HEAD", "POST", "DELETE", "PUT"] {
                let path = format!("/api/v1/res{r}/{tail}");
                let indexed = router.find(method, &path);
                assert_eq!(
                    indexed.map(|r| r as *const RouteRule),
                    router
                        .find_linear(method, &path)
                        .map(|r| r as *const RouteRule),
                    "{method} {path}"
                );
                matched += usize::from(indexed.is_some());
            }
        }
    }
    assert!(matched > 100, "the grid exercises matches ({matched})");
}

/// Paths longer than the segments `find` keeps on the stack take the same answers.
#[test]
fn long_paths_answer_as_the_linear_scan() {
    let deep: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    let rules = vec![
        RouteRule {
            method: "GET".into(),
            pattern: "/s0/*".into(),
            scope: "rest".into(),
            cost: 0,
        },
        RouteRule {
            method: "GET".into(),
            pattern: format!("/{}", deep[..18].join("/")),
            scope: "deep".into(),
            cost: 0,
        },
        RouteRule {
            method: "GET".into(),
            pattern: format!("/{}/:p/:q", deep[..18].join("/")),
            scope: "deeper".into(),
            cost: 0,
        },
    ];
    let router = Router::new(rules);
    for n in [1, 15, 16, 17, 18, 19, 20] {
        let path = format!("/{}", deep[..n].join("/"));
        let indexed = router.find("GET", &path);
        assert_eq!(
            indexed.map(|r| r as *const RouteRule),
            router
                .find_linear("GET", &path)
                .map(|r| r as *const RouteRule),
            "{path}"
        );
        let want = match n {
            1 => None,
            18 => Some("deep"),
            20 => Some("deeper"),
            _ => Some("rest"),
        };
        assert_eq!(indexed.map(|r| r.scope.as_str()), want, "{path}");
        // A dot segment past the stack still refuses the path.
        assert_eq!(router.find("GET", &format!("{path}/../x")), None);
    }
}
