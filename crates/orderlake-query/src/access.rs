//! Who may read what, as Trino's file-based access control says it: per user or group, which
//! catalogs, schemas, tables and views may be read and which of their columns are hidden, and
//! who may see and kill other users' queries. The first table rule that matches the user and
//! the table decides; a table no rule matches is hidden. Without table rules every signed-in
//! user reads every table (the server's behaviour before rules existed).
//!
//! A hidden table is left out of every listing (Flight SQL's catalogs calls, `SHOW TABLES`,
//! both `information_schema`s, `system.jdbc`) and a query naming it is refused with
//! `PERMISSION_DENIED` naming what the query wrote. A hidden column is not in the table's
//! schema (`SELECT *` leaves it out) and naming it is refused the same way. Views run as their
//! definer: a view may read a table its reader may not, and its own rules (by the view's name)
//! decide what the reader sees of it. The `system` catalog is always readable; what its
//! listings show is filtered by the same rules.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde::{Deserialize, Serialize};

/// `[access]` as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRules {
    /// Group name → its users.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Table rules, first match wins.
    #[serde(default)]
    pub tables: Vec<TableRule>,
    /// Who may see (`view`) and stop (`kill`) other users' queries. Everyone sees and stops their
    /// own.
    #[serde(default)]
    pub queries: Vec<QueryRule>,
}

/// Which tables a user or group may read. Patterns (user, group, catalog, schema, table) are
/// regular expressions matched against the whole name; an absent one matches everything. A
/// group pattern matches the groups the user is in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRule {
    pub user: Option<String>,
    pub group: Option<String>,
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    /// `["SELECT"]` to read; empty to hide the tables the rule matches.
    #[serde(default)]
    pub privileges: Vec<String>,
    /// Columns hidden from the user (`{ name = "customer_id", allow = false }`).
    #[serde(default)]
    pub columns: Vec<ColumnRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    pub name: String,
    #[serde(default = "yes")]
    pub allow: bool,
}

fn yes() -> bool {
    true
}

/// What a user or group may do with other users' queries: `view`, `kill`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRule {
    pub user: Option<String>,
    pub group: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
}

/// What a user may do with other users' queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryPrivilege {
    View,
    Kill,
}

/// What a user may see of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableAccess {
    Hidden,
    Readable { hidden_columns: BTreeSet<String> },
}

#[derive(Debug)]
struct Who {
    user: Option<Regex>,
    group: Option<Regex>,
}

#[derive(Debug)]
struct CompiledTableRule {
    who: Who,
    catalog: Option<Regex>,
    schema: Option<Regex>,
    table: Option<Regex>,
    select: bool,
    hidden_columns: BTreeSet<String>,
}

#[derive(Debug)]
struct CompiledQueryRule {
    who: Who,
    view: bool,
    kill: bool,
}

/// The rules, checked and compiled.
#[derive(Debug, Default)]
pub struct AccessPolicy {
    groups: BTreeMap<String, BTreeSet<String>>,
    tables: Vec<CompiledTableRule>,
    queries: Vec<CompiledQueryRule>,
}

/// A rule that cannot be used: the key it is at (`access.tables[2].table`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct RuleError {
    pub key: String,
    pub reason: String,
}

fn rule_error(key: String, reason: impl Into<String>) -> RuleError {
    RuleError {
        key,
        reason: reason.into(),
    }
}

fn pattern(key: &str, value: &Option<String>) -> Result<Option<Regex>, RuleError> {
    value
        .as_deref()
        .map(|p| {
            Regex::new(&format!("^(?:{p})$")).map_err(|e| rule_error(key.to_owned(), e.to_string()))
        })
        .transpose()
}

fn matches(p: &Option<Regex>, name: &str) -> bool {
    p.as_ref().is_none_or(|p| p.is_match(name))
}

impl AccessPolicy {
    /// Compiles `rules`; an error names the rule (`access.tables[2].table: …`).
    pub fn new(rules: &AccessRules) -> Result<Self, RuleError> {
        let who =
            |at: &str, user: &Option<String>, group: &Option<String>| -> Result<Who, RuleError> {
                let group_pattern = pattern(&format!("{at}.group"), group)?;
                if let (Some(g), Some(p)) = (group, &group_pattern)
                    && !rules.groups.keys().any(|name| p.is_match(name))
                {
                    return Err(rule_error(
                        format!("{at}.group"),
                        format!("'{g}' matches no group in access.groups"),
                    ));
                }
                Ok(Who {
                    user: pattern(&format!("{at}.user"), user)?,
                    group: group_pattern,
                })
            };
        let mut tables = Vec::with_capacity(rules.tables.len());
        for (i, r) in rules.tables.iter().enumerate() {
            let at = format!("access.tables[{i}]");
            let mut select = false;
            for p in &r.privileges {
                match p.to_ascii_uppercase().as_str() {
                    "SELECT" => select = true,
                    other => {
                        return Err(rule_error(
                            format!("{at}.privileges"),
                            format!(
                                "'{other}' is not a privilege here (the archive is read-only: \
                                 SELECT, or none to hide)"
                            ),
                        ));
                    }
                }
            }
            tables.push(CompiledTableRule {
                who: who(&at, &r.user, &r.group)?,
                catalog: pattern(&format!("{at}.catalog"), &r.catalog)?,
                schema: pattern(&format!("{at}.schema"), &r.schema)?,
                table: pattern(&format!("{at}.table"), &r.table)?,
                select,
                hidden_columns: r
                    .columns
                    .iter()
                    .filter(|c| !c.allow)
                    .map(|c| c.name.to_lowercase())
                    .collect(),
            });
        }
        let mut queries = Vec::with_capacity(rules.queries.len());
        for (i, r) in rules.queries.iter().enumerate() {
            let at = format!("access.queries[{i}]");
            let (mut view, mut kill) = (false, false);
            for a in &r.allow {
                match a.to_ascii_lowercase().as_str() {
                    "view" => view = true,
                    "kill" => kill = true,
                    // Trino's third: running queries at all, which signing in already grants.
                    "execute" => {}
                    other => {
                        return Err(rule_error(
                            format!("{at}.allow"),
                            format!("'{other}' is not one of execute, view, kill"),
                        ));
                    }
                }
            }
            queries.push(CompiledQueryRule {
                who: who(&at, &r.user, &r.group)?,
                view,
                kill,
            });
        }
        Ok(Self {
            groups: rules
                .groups
                .iter()
                .map(|(g, users)| (g.clone(), users.iter().cloned().collect()))
                .collect(),
            tables,
            queries,
        })
    }

    /// A policy under which nobody reads any table (what a server falls back to if rules it was
    /// given do not compile, rather than to none).
    pub fn deny_all() -> Self {
        Self {
            groups: BTreeMap::new(),
            tables: vec![CompiledTableRule {
                who: Who {
                    user: None,
                    group: None,
                },
                catalog: None,
                schema: None,
                table: None,
                select: false,
                hidden_columns: BTreeSet::new(),
            }],
            queries: Vec::new(),
        }
    }

    /// Whether there are rules at all (without them every user reads every table and sees
    /// every query).
    pub fn restricts(&self) -> bool {
        !self.tables.is_empty() || !self.queries.is_empty()
    }

    /// Whether there are table rules at all (without them everything is readable).
    pub fn restricts_tables(&self) -> bool {
        !self.tables.is_empty()
    }

    fn applies(&self, who: &Who, user: &str) -> bool {
        matches(&who.user, user)
            && who.group.as_ref().is_none_or(|g| {
                self.groups
                    .iter()
                    .any(|(name, members)| g.is_match(name) && members.contains(user))
            })
    }

    /// What `user` may see of `catalog.schema.table`.
    pub fn table(&self, user: &str, catalog: &str, schema: &str, table: &str) -> TableAccess {
        if !self.restricts_tables() || catalog == crate::system::SYSTEM_CATALOG {
            return TableAccess::Readable {
                hidden_columns: BTreeSet::new(),
            };
        }
        let rule = self.tables.iter().find(|r| {
            self.applies(&r.who, user)
                && matches(&r.catalog, catalog)
                && matches(&r.schema, schema)
                && matches(&r.table, table)
        });
        match rule {
            Some(r) if r.select => TableAccess::Readable {
                hidden_columns: r.hidden_columns.clone(),
            },
            _ => TableAccess::Hidden,
        }
    }

    /// Whether `user` may see (or stop) queries of other users.
    pub fn may(&self, user: &str, privilege: QueryPrivilege) -> bool {
        self.queries.iter().any(|r| {
            self.applies(&r.who, user)
                && match privilege {
                    QueryPrivilege::View => r.view,
                    QueryPrivilege::Kill => r.kill,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AccessRules {
        toml_rules(
            r#"
            groups = { bi = ["analyst", "superset"], admins = ["ops"] }
            [[tables]]
            user = "api-service"
            table = "orders|order_status_history|order_items|customer_purchase_summary"
            privileges = ["SELECT"]
            [[tables]]
            group = "bi"
            schema = "oms"
            table = "order_events"
            privileges = ["SELECT"]
            columns = [{ name = "kafka_key", allow = false }, { name = "customer_id", allow = false }]
            [[tables]]
            group = "bi"
            table = "daily_activity"
            privileges = []
            [[tables]]
            group = "bi|admins"
            privileges = ["SELECT"]
            [[queries]]
            group = "admins"
            allow = ["view", "kill"]
            "#,
        )
    }

    fn toml_rules(text: &str) -> AccessRules {
        toml::from_str(text).unwrap()
    }

    fn hidden(cols: &[&str]) -> TableAccess {
        TableAccess::Readable {
            hidden_columns: cols.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_unmatched_tables_are_hidden() {
        let p = AccessPolicy::new(&rules()).unwrap();
        assert_eq!(
            p.table("api-service", "archive", "oms", "orders"),
            hidden(&[])
        );
        assert_eq!(
            p.table("api-service", "archive", "oms", "order_events"),
            TableAccess::Hidden
        );
        assert_eq!(
            p.table("analyst", "archive", "oms", "order_events"),
            hidden(&["customer_id", "kafka_key"])
        );
        assert_eq!(
            p.table("analyst", "archive", "oms", "daily_activity"),
            TableAccess::Hidden
        );
        assert_eq!(p.table("analyst", "archive", "oms", "orders"), hidden(&[]));
        assert_eq!(
            p.table("ops", "archive", "oms", "order_events"),
            hidden(&[])
        );
        assert_eq!(
            p.table("stranger", "archive", "oms", "orders"),
            TableAccess::Hidden
        );
        // The system catalog is always readable; its listings are filtered instead.
        assert_eq!(
            p.table("stranger", "system", "runtime", "queries"),
            hidden(&[])
        );
        // Patterns match whole names.
        assert_eq!(
            p.table("api-service", "archive", "oms", "orders2"),
            TableAccess::Hidden
        );
    }

    #[test]
    fn query_privileges_and_no_rules() {
        let p = AccessPolicy::new(&rules()).unwrap();
        assert!(p.may("ops", QueryPrivilege::Kill) && p.may("ops", QueryPrivilege::View));
        assert!(!p.may("analyst", QueryPrivilege::Kill));
        let open = AccessPolicy::new(&AccessRules::default()).unwrap();
        assert!(!open.restricts_tables());
        assert_eq!(
            open.table("anyone", "archive", "oms", "order_events"),
            hidden(&[])
        );
        assert!(!open.may("anyone", QueryPrivilege::Kill));
    }

    #[test]
    fn mistakes_name_the_rule() {
        let mut bad = rules();
        bad.tables[1].table = Some("order_events(".into());
        let e = AccessPolicy::new(&bad).unwrap_err();
        assert_eq!(e.key, "access.tables[1].table", "{e}");
        let mut bad = rules();
        bad.tables[0].privileges = vec!["DELETE".into()];
        let e = AccessPolicy::new(&bad).unwrap_err().to_string();
        assert!(e.contains("access.tables[0].privileges: 'DELETE'"), "{e}");
        let mut bad = rules();
        bad.queries[0].group = Some("nobody".into());
        let e = AccessPolicy::new(&bad).unwrap_err().to_string();
        assert!(
            e.contains("access.queries[0].group: 'nobody' matches no group"),
            "{e}"
        );
    }
}
