//! `route …`: the route rules, (METHOD, PATTERN) -> (SCOPE, cost).

use keyledger::{Error, Vault};

use crate::args::RouteCmd;
use crate::exit::CliResult;
use crate::input::parse_u64;
use crate::output::{self, Out};

/// `keyledger route add|list|remove|match`.
pub fn route(vault: &Vault, cmd: &RouteCmd, out: &Out) -> CliResult {
    let rule_line = |r: &keyledger::RouteRule| {
        format!(
            "{} {} -> {} (cost {})\n",
            r.method, r.pattern, r.scope, r.cost
        )
    };
    match cmd {
        RouteCmd::Add {
            method,
            pattern,
            scope,
            cost,
        } => {
            let cost = parse_u64("cost", cost)?;
            let r = vault.add_route(method, pattern, scope, cost)?;
            out.emit(&r, || format!("added {}", rule_line(&r)))
        }
        RouteCmd::List => {
            let rules = vault.list_routes()?;
            out.emit(&rules, || {
                let rows: Vec<Vec<String>> = rules
                    .iter()
                    .map(|r| {
                        vec![
                            r.method.clone(),
                            r.pattern.clone(),
                            r.scope.clone(),
                            r.cost.to_string(),
                        ]
                    })
                    .collect();
                output::table(&["METHOD", "PATTERN", "SCOPE", "COST"], &rows)
            })
        }
        RouteCmd::Remove { method, pattern } => {
            let r = vault.remove_route(method, pattern)?;
            out.emit(&r, || format!("removed {}", rule_line(&r)))
        }
        RouteCmd::Match { method, path } => match vault.match_route(method, path)? {
            Some(r) => out.emit(&r, || rule_line(&r)),
            None => Err(Error::RouteNotAllowed.into()),
        },
    }
}
