//! Route rules: add, remove, list and match.

use super::{json, policy, AuditAction, Error, Result, RouteRule, Vault};

impl Vault {
    /// Add a route rule `(method, pattern) → (scope, cost)`. `already_exists` if the
    /// (method, pattern) pair has a rule.
    pub fn add_route(
        &self,
        method: &str,
        pattern: &str,
        scope: &str,
        cost: u64,
    ) -> Result<RouteRule> {
        let inner = &*self.inner;
        inner.check_open()?;
        let rule = RouteRule {
            method: policy::normalize_method(method)?,
            pattern: policy::normalize_pattern(pattern)?,
            scope: {
                policy::validate_required_scope(scope)?;
                scope.to_string()
            },
            cost,
        };
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            if !tx.insert_route(&rule)? {
                return Err(Error::AlreadyExists(format!("route {} {}", rule.method, rule.pattern)));
            }
            inner.audit(
                tx,
                now,
                AuditAction::RouteAdded,
                None,
                None,
                json!({ "method": rule.method, "pattern": rule.pattern, "scope": rule.scope, "cost": rule.cost }),
            )?;
            Ok(())
        })?;
        Ok(rule)
    }

    /// Remove the rule for `(method, pattern)`.
    pub fn remove_route(&self, method: &str, pattern: &str) -> Result<RouteRule> {
        let inner = &*self.inner;
        inner.check_open()?;
        let method = policy::normalize_method(method)?;
        let pattern = policy::normalize_pattern(pattern)?;
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            let rule = tx
                .remove_route(&method, &pattern)?
                .ok_or_else(|| Error::NotFound(format!("route {method} {pattern}")))?;
            inner.audit(
                tx,
                now,
                AuditAction::RouteRemoved,
                None,
                None,
                json!({ "method": rule.method, "pattern": rule.pattern, "scope": rule.scope, "cost": rule.cost }),
            )?;
            Ok(rule)
        })
    }

    /// Every route rule, most specific first.
    pub fn list_routes(&self) -> Result<Vec<RouteRule>> {
        self.inner.check_open()?;
        Ok(self.inner.router()?.rules().to_vec())
    }

    /// The rule that would decide a request (the dashboard's "which rule matches").
    pub fn match_route(&self, method: &str, path: &str) -> Result<Option<RouteRule>> {
        self.inner.check_open()?;
        Ok(self.inner.router()?.find(method, path).cloned())
    }

    /// The rule that would decide an HTTP request, read from its raw request target as
    /// [`Target::Request`] reads it: [`Error::AmbiguousPath`] for a target the gate
    /// refuses, `None` when no rule matches.
    pub fn match_request(
        &self,
        method: &str,
        target: &str,
        case_insensitive: bool,
    ) -> Result<Option<RouteRule>> {
        self.inner.check_open()?;
        let router = self.inner.router()?;
        Ok(crate::http::find(&router, method, target, case_insensitive)?.cloned())
    }
}
