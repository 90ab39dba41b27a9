//! What a Trino client's session carries in its headers, and the statements the front door
//! answers itself because they change that session rather than query the archive: `USE`,
//! `PREPARE … FROM`, `EXECUTE … USING`, `EXECUTE IMMEDIATE '…' USING …` and `DEALLOCATE PREPARE`.
//! Trino keeps the session in the client: the server only answers with `X-Trino-Set-*` /
//! `X-Trino-Added-Prepare` headers, and every request brings the whole session back.

use std::collections::HashMap;

use axum::http::HeaderMap;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use orderlake_query::statement::{parse_bounded, parse_one};
use orderlake_query::{QueryError, QueryScope};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::protocol::{Code, TrinoError};

pub const USER: &str = "x-trino-user";
pub const CATALOG: &str = "x-trino-catalog";
pub const SCHEMA: &str = "x-trino-schema";
pub const SESSION: &str = "x-trino-session";
pub const TIME_ZONE: &str = "x-trino-time-zone";
pub const SOURCE: &str = "x-trino-source";
pub const PREPARED_STATEMENT: &str = "x-trino-prepared-statement";
pub const SET_CATALOG: &str = "x-trino-set-catalog";
pub const SET_SCHEMA: &str = "x-trino-set-schema";
pub const SET_SESSION: &str = "x-trino-set-session";
pub const CLEAR_SESSION: &str = "x-trino-clear-session";
pub const ADDED_PREPARE: &str = "x-trino-added-prepare";
pub const DEALLOCATED_PREPARE: &str = "x-trino-deallocated-prepare";

/// The session a request carries.
#[derive(Debug, Clone, Default)]
pub struct ClientSession {
    pub user: Option<String>,
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub properties: Vec<(String, String)>,
    pub prepared: HashMap<String, String>,
    /// `X-Trino-Time-Zone`: an IANA name or an offset; UTC when absent.
    pub time_zone: Option<String>,
    /// `X-Trino-Source`: what the client calls itself (shown in `system.runtime.queries`).
    pub source: Option<String>,
}

impl ClientSession {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, TrinoError> {
        let text = |name: &str| -> Result<Option<String>, TrinoError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.trim().to_owned()).filter(|s| !s.is_empty()))
                    .map_err(|_| {
                        TrinoError::new(
                            Code::GenericUserError,
                            format!("header {name} is not text"),
                            None,
                        )
                    }),
            }
        };
        let pairs = |name: &str| -> Result<Vec<(String, String)>, TrinoError> {
            let mut out = Vec::new();
            for value in headers.get_all(name) {
                let value = value.to_str().map_err(|_| {
                    TrinoError::new(
                        Code::GenericUserError,
                        format!("header {name} is not text"),
                        None,
                    )
                })?;
                for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        TrinoError::new(
                            Code::GenericUserError,
                            format!("header {name}: `{pair}` is not name=value"),
                            None,
                        )
                    })?;
                    out.push((decode(k.trim())?, decode(v.trim())?));
                }
            }
            Ok(out)
        };
        Ok(Self {
            user: text(USER)?,
            catalog: text(CATALOG)?,
            schema: text(SCHEMA)?,
            properties: pairs(SESSION)?,
            prepared: pairs(PREPARED_STATEMENT)?.into_iter().collect(),
            time_zone: text(TIME_ZONE)?,
            source: text(SOURCE)?,
        })
    }
}

/// Header values are form-encoded (`+` for a space, as Python's `quote_plus` and Java's
/// `URLEncoder` write them).
fn decode(s: &str) -> Result<String, TrinoError> {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            TrinoError::new(
                Code::GenericUserError,
                "a header value is not UTF-8 once decoded",
                None,
            )
        })
}

/// A header value as Trino's clients expect it (URL-encoded).
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// A statement the front door handles, or the SQL to give the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USE catalog.schema` or `USE schema`.
    Use {
        catalog: Option<String>,
        schema: String,
    },
    Prepare {
        name: String,
        sql: String,
    },
    Deallocate {
        name: String,
    },
    /// `EXECUTE name USING …` (`sql` from the prepared-statement header) or `EXECUTE IMMEDIATE`.
    Execute {
        sql: String,
        /// The `USING` expressions, as written.
        using: Option<String>,
    },
    /// `DESCRIBE name` / `SHOW COLUMNS FROM name`: the name's parts, as written.
    Describe {
        name: Vec<String>,
    },
    /// `SHOW CREATE VIEW name`.
    ShowCreateView {
        name: Vec<String>,
    },
    /// `SHOW SESSION`: the session properties.
    ShowSession,
    /// `SET SESSION name = 'value'`.
    SetSession {
        name: String,
        value: String,
    },
    /// `RESET SESSION name`.
    ResetSession {
        name: String,
    },
    /// `SHOW FUNCTIONS`.
    ShowFunctions,
    /// `CALL system.runtime.kill_query(query_id => '…', message => '…')`.
    KillQuery {
        query_id: String,
        message: Option<String>,
    },
    Query(String),
}

/// Puts the session's time zone and properties into `scope`; refuses properties the server
/// does not have or values it cannot read, and a time zone it does not know.
pub fn apply_session(session: &ClientSession, scope: &mut QueryScope) -> Result<(), TrinoError> {
    if let Some(zone) = &session.time_zone {
        if !QueryScope::is_time_zone(zone) {
            return Err(TrinoError::new(
                Code::GenericUserError,
                format!("Time zone not supported: {zone}"),
                None,
            ));
        }
        scope.time_zone = Some(zone.clone());
    }
    super::session_properties::apply(&session.properties, scope)
}

/// Splits off the statement's leading keywords: `(keyword, rest)` with `rest` trimmed.
fn keyword(s: &str) -> (String, &str) {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (s[..end].to_ascii_uppercase(), s[end..].trim_start())
}

/// Text up to the closing `quote` (doubled inside to stand for itself), with `body` starting
/// after the opening one: `(text, rest after the closing quote)`.
fn quoted(body: &str, quote: char) -> Option<(String, &str)> {
    let mut text = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if chars.peek().is_some_and(|(_, n)| *n == quote) {
                chars.next();
                text.push(quote);
                continue;
            }
            return Some((text, &body[i + c.len_utf8()..]));
        }
        text.push(c);
    }
    None
}

/// An identifier, plain or double-quoted: `(name, rest)`. Plain names are lower-cased as Trino
/// does.
fn identifier(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if let Some(body) = s.strip_prefix('"') {
        return quoted(body, '"');
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_lowercase(), &s[end..]))
}

/// A dotted name (`a.b.c`, parts plain or quoted): its parts (none if there is no name) and the
/// rest, which starts with the `.` of a trailing dot not followed by a name.
fn dotted_name(s: &str) -> (Vec<String>, &str) {
    let Some((first, mut after)) = identifier(s) else {
        return (Vec::new(), s);
    };
    let mut parts = vec![first];
    while let Some(more) = after.trim_start().strip_prefix('.') {
        let Some((part, rest)) = identifier(more) else {
            break;
        };
        parts.push(part);
        after = rest;
    }
    (parts, after)
}

/// A single-quoted SQL string literal (`''` for a quote): `(value, rest)`.
fn string_literal(s: &str) -> Option<(String, &str)> {
    quoted(s.trim_start().strip_prefix('\'')?, '\'')
}

fn syntax(message: impl Into<String>) -> TrinoError {
    TrinoError::new(Code::SyntaxError, message, None)
}

/// The text after `USING`, if any; anything else after the statement is an error.
fn using_clause(rest: &str, what: &str) -> Result<Option<String>, TrinoError> {
    let rest = rest.trim().trim_end_matches(';').trim();
    if rest.is_empty() {
        return Ok(None);
    }
    match keyword(rest) {
        (k, args) if k == "USING" && !args.is_empty() => Ok(Some(args.to_owned())),
        _ => Err(syntax(format!(
            "{what}: expected USING and the parameter values, found `{rest}`"
        ))),
    }
}

/// Recognises the session statements; everything else is a query for the engine.
pub fn classify(sql: &str, session: &ClientSession) -> Result<Command, TrinoError> {
    let (first, rest) = keyword(sql);
    match first.as_str() {
        "USE" => {
            let (parts, after) = dotted_name(rest);
            if !after.trim().trim_end_matches(';').trim().is_empty() {
                return Err(syntax(format!(
                    "USE: unexpected `{}` after the schema",
                    after.trim()
                )));
            }
            let (catalog, schema) = match parts.as_slice() {
                [schema] => (None, schema.clone()),
                [catalog, schema] => (Some(catalog.clone()), schema.clone()),
                _ => return Err(syntax("USE: expected a schema or catalog.schema")),
            };
            Ok(Command::Use { catalog, schema })
        }
        "PREPARE" => {
            let (name, after) =
                identifier(rest).ok_or_else(|| syntax("PREPARE: expected a statement name"))?;
            match keyword(after) {
                (k, statement) if k == "FROM" && !statement.trim().is_empty() => {
                    Ok(Command::Prepare {
                        name,
                        sql: statement.trim().trim_end_matches(';').to_owned(),
                    })
                }
                _ => Err(syntax("PREPARE: expected FROM and a statement")),
            }
        }
        "DEALLOCATE" => {
            let (k, after) = keyword(rest);
            if k != "PREPARE" {
                return Err(syntax("expected DEALLOCATE PREPARE <name>"));
            }
            let (name, _) = identifier(after)
                .ok_or_else(|| syntax("DEALLOCATE PREPARE: expected a statement name"))?;
            Ok(Command::Deallocate { name })
        }
        "EXECUTE" => {
            let (k, after) = keyword(rest);
            if k == "IMMEDIATE" {
                let (sql, after) = string_literal(after).ok_or_else(|| {
                    syntax("EXECUTE IMMEDIATE: expected the statement as a string literal")
                })?;
                return Ok(Command::Execute {
                    sql,
                    using: using_clause(after, "EXECUTE IMMEDIATE")?,
                });
            }
            let (name, after) =
                identifier(rest).ok_or_else(|| syntax("EXECUTE: expected a statement name"))?;
            let sql = session.prepared.get(&name).cloned().ok_or_else(|| {
                TrinoError::new(
                    Code::NotFound,
                    format!("Prepared statement not found: {name}"),
                    None,
                )
            })?;
            Ok(Command::Execute {
                sql,
                using: using_clause(after, "EXECUTE")?,
            })
        }
        "CALL" => kill_query(rest),
        "DESCRIBE" | "DESC" => describe(rest, sql),
        "SHOW" => match keyword(rest) {
            (k, after) if k == "COLUMNS" => match keyword(after) {
                (from, name) if from == "FROM" || from == "IN" => describe(name, sql),
                _ => Ok(Command::Query(sql.to_owned())),
            },
            (k, after) if k == "CREATE" => match keyword(after) {
                (view, name) if view == "VIEW" => {
                    let (name, _) = dotted_name(name);
                    if name.is_empty() {
                        return Err(syntax("SHOW CREATE VIEW: expected a view name"));
                    }
                    Ok(Command::ShowCreateView { name })
                }
                _ => Ok(Command::Query(sql.to_owned())),
            },
            (k, after) if k == "SESSION" && after.trim().trim_end_matches(';').is_empty() => {
                Ok(Command::ShowSession)
            }
            (k, after) if k == "FUNCTIONS" && after.trim().trim_end_matches(';').is_empty() => {
                Ok(Command::ShowFunctions)
            }
            _ => Ok(Command::Query(sql.to_owned())),
        },
        "SET" | "RESET" => match keyword(rest) {
            (k, after) if k == "SESSION" => {
                let (name, after) = identifier(after)
                    .ok_or_else(|| syntax(format!("{first} SESSION: expected a property name")))?;
                let end = |s: &str| s.trim().trim_end_matches(';').trim().is_empty();
                super::session_properties::check_name(&name)?;
                if first == "RESET" {
                    if !end(after) {
                        return Err(syntax("RESET SESSION: expected only a property name"));
                    }
                    return Ok(Command::ResetSession { name });
                }
                let value = after
                    .trim_start()
                    .strip_prefix('=')
                    .map(str::trim_start)
                    .and_then(|v| v.strip_prefix('\''))
                    .and_then(|v| quoted(v, '\''))
                    .filter(|(_, rest)| end(rest))
                    .map(|(value, _)| value)
                    .ok_or_else(|| {
                        syntax(format!("SET SESSION {name}: expected = and a quoted value"))
                    })?;
                super::session_properties::check(&name, &value)?;
                Ok(Command::SetSession { name, value })
            }
            _ => Ok(Command::Query(sql.to_owned())),
        },
        _ => Ok(Command::Query(sql.to_owned())),
    }
}

/// `DESCRIBE` of a table or view name (`a`, `b.a`, `c.b.a`); other forms (`DESCRIBE INPUT`,
/// `DESCRIBE OUTPUT`, a query) go to the engine.
fn describe(rest: &str, sql: &str) -> Result<Command, TrinoError> {
    let (name, after) = dotted_name(rest);
    let plain_name = !name.is_empty()
        && name.len() <= 3
        && after.trim().trim_end_matches(';').trim().is_empty()
        && !matches!(name[0].as_str(), "input" | "output");
    Ok(if plain_name {
        Command::Describe { name }
    } else {
        Command::Query(sql.to_owned())
    })
}

/// The procedure Trino has for stopping a query: `system.runtime.kill_query`, its arguments by
/// name (`query_id => '…', message => '…'`) or by position.
fn kill_query(rest: &str) -> Result<Command, TrinoError> {
    let (path, after) = dotted_name(rest);
    if path.is_empty() {
        return Err(syntax("CALL: expected a procedure name"));
    }
    let name = path.join(".");
    if !matches!(
        name.as_str(),
        "system.runtime.kill_query" | "runtime.kill_query" | "kill_query"
    ) {
        return Err(TrinoError::new(
            Code::ProcedureNotFound,
            format!("Procedure not registered: {name}"),
            None,
        ));
    }
    let mut args = after
        .trim_start()
        .strip_prefix('(')
        .ok_or_else(|| syntax("CALL: expected ( after the procedure name"))?;
    let mut named: HashMap<String, String> = HashMap::new();
    let mut position = 0;
    loop {
        args = args.trim_start();
        if let Some(end) = args.strip_prefix(')') {
            if !end.trim().trim_end_matches(';').trim().is_empty() {
                return Err(syntax("CALL: unexpected text after the arguments"));
            }
            break;
        }
        let (name, value_text) = match identifier(args) {
            Some((name, more)) if more.trim_start().starts_with("=>") => {
                (name, more.trim_start()[2..].trim_start())
            }
            _ => {
                let name = ["query_id", "message"]
                    .get(position)
                    .ok_or_else(|| syntax("kill_query takes query_id and message"))?;
                ((*name).to_owned(), args)
            }
        };
        let (value, more) = string_literal(value_text)
            .ok_or_else(|| syntax(format!("kill_query: {name} must be a string literal")))?;
        named.insert(name, value);
        position += 1;
        args = more.trim_start();
        args = args.strip_prefix(',').unwrap_or(args);
    }
    let query_id = named.remove("query_id").ok_or_else(|| {
        TrinoError::new(
            Code::InvalidProcedureArgument,
            "kill_query needs query_id",
            None,
        )
    })?;
    Ok(Command::KillQuery {
        query_id,
        message: named.remove("message"),
    })
}

/// Evaluates `USING` expressions (literals as Trino's clients write them: `'text'`, `42`,
/// `DECIMAL '1.50'`, `DATE '…'`, `TIMESTAMP '…'`, `X'…'`, `ARRAY[…]`, `NULL`) to values, in a
/// context with no tables: a parameter cannot read anything.
pub async fn evaluate(using: &str) -> Result<Vec<ScalarValue>, TrinoError> {
    let ctx = SessionContext::new();
    let sql = format!("SELECT {}", rewrite_zoned_literals(using));
    // Bounded like every statement from a client: a long enough `USING 1+1+…` would otherwise
    // overflow the stack of whatever walks it.
    let statement = parse_bounded(&sql, parse_one).map_err(|e| match e {
        QueryError::Syntax { .. } => syntax(format!("USING: {e}")),
        e => TrinoError::new(Code::InvalidParameterUsage, format!("USING: {e}"), None),
    })?;
    only_literals(&statement)?;
    let invalid = |e: datafusion::error::DataFusionError| {
        TrinoError::new(
            Code::InvalidParameterUsage,
            format!(
                "USING: the parameter values do not evaluate: {}",
                e.strip_backtrace()
            ),
            None,
        )
    };
    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(invalid)?;
    let batches = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(invalid)?
        .collect()
        .await
        .map_err(invalid)?;
    let batch = batches
        .first()
        .filter(|b| b.num_rows() == 1)
        .ok_or_else(|| {
            TrinoError::new(
                Code::InvalidParameterUsage,
                "USING: expected one value per parameter",
                None,
            )
        })?;
    batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0).map_err(invalid))
        .collect()
}

/// Refuses `SELECT …` parameter values that are more than literals: a subquery, a function call
/// (`repeat('x', 2000000000)`) or any clause would run outside the query's limits.
fn only_literals(statement: &DfStatement) -> Result<(), TrinoError> {
    use datafusion::sql::sqlparser::ast::{Expr, SetExpr, Statement, visit_expressions};
    use std::ops::ControlFlow;

    let refused = |what: &str| {
        TrinoError::new(
            Code::InvalidParameterUsage,
            format!("USING: parameter values must be literals, not {what}"),
            None,
        )
    };
    let DfStatement::Statement(statement) = statement else {
        return Err(refused("a statement"));
    };
    let Statement::Query(query) = statement.as_ref() else {
        return Err(refused("a statement"));
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(refused("a query"));
    };
    let bare = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && select.from.is_empty()
        && select.selection.is_none()
        && select.having.is_none()
        && select.distinct.is_none()
        && select.named_window.is_empty()
        && matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty());
    if !bare {
        return Err(refused("a query"));
    }
    let found = visit_expressions(statement.as_ref(), |e: &Expr| match e {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
            ControlFlow::Break("a subquery")
        }
        Expr::Function(_) => ControlFlow::Break("a function call"),
        _ => ControlFlow::Continue(()),
    });
    match found {
        ControlFlow::Break(what) => Err(refused(what)),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Trino's clients write a zoned timestamp as `TIMESTAMP '2024-01-02 03:04:05.123456 UTC'`;
/// DataFusion reads an offset but not a zone name after the time, so ` UTC` becomes `+00:00`.
fn rewrite_zoned_literals(sql: &str) -> String {
    sql.replace(" UTC'", "+00:00'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_with(prepared: &[(&str, &str)]) -> ClientSession {
        ClientSession {
            prepared: prepared
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..ClientSession::default()
        }
    }

    #[test]
    fn session_statements_are_recognised() {
        let none = ClientSession::default();
        assert_eq!(
            classify("use Archive.\"OMS\"", &none).unwrap(),
            Command::Use {
                catalog: Some("archive".into()),
                schema: "OMS".into()
            }
        );
        for bad in ["USE", "USE a.", "USE a.b.c", "USE a b"] {
            assert_eq!(
                classify(bad, &none).unwrap_err().error_name,
                "SYNTAX_ERROR",
                "{bad}"
            );
        }
        assert_eq!(
            classify("PREPARE st1 FROM SELECT * FROM t WHERE a = ?;", &none).unwrap(),
            Command::Prepare {
                name: "st1".into(),
                sql: "SELECT * FROM t WHERE a = ?".into()
            }
        );
        assert_eq!(
            classify(
                "EXECUTE IMMEDIATE 'SELECT ''x'' WHERE 1 = ?' USING 1",
                &none
            )
            .unwrap(),
            Command::Execute {
                sql: "SELECT 'x' WHERE 1 = ?".into(),
                using: Some("1".into())
            }
        );
        let s = session_with(&[("st1", "SELECT ?")]);
        assert_eq!(
            classify("EXECUTE st1 USING 'a', 2", &s).unwrap(),
            Command::Execute {
                sql: "SELECT ?".into(),
                using: Some("'a', 2".into())
            }
        );
        assert!(classify("EXECUTE nope", &s).is_err());
        assert_eq!(
            classify("DEALLOCATE PREPARE st1", &s).unwrap(),
            Command::Deallocate { name: "st1".into() }
        );
        assert_eq!(
            classify(
                "CALL system.runtime.kill_query(query_id => 'q1', message => 'too slow')",
                &none
            )
            .unwrap(),
            Command::KillQuery {
                query_id: "q1".into(),
                message: Some("too slow".into())
            }
        );
        assert_eq!(
            classify("call system.runtime.kill_query('q2')", &none).unwrap(),
            Command::KillQuery {
                query_id: "q2".into(),
                message: None
            }
        );
        assert_eq!(
            classify("CALL system.runtime.nope()", &none)
                .unwrap_err()
                .error_name,
            "PROCEDURE_NOT_FOUND"
        );
        assert_eq!(
            classify("DESCRIBE archive.oms.\"Orders\"", &none).unwrap(),
            Command::Describe {
                name: vec!["archive".into(), "oms".into(), "Orders".into()]
            }
        );
        assert_eq!(
            classify("show columns from orders", &none).unwrap(),
            Command::Describe {
                name: vec!["orders".into()]
            }
        );
        assert_eq!(
            classify("SELECT 1", &none).unwrap(),
            Command::Query("SELECT 1".into())
        );
        assert_eq!(
            classify("EXECUTE IMMEDIATE 'x' junk", &none)
                .unwrap_err()
                .error_name,
            "SYNTAX_ERROR"
        );
    }

    #[tokio::test]
    async fn parameter_literals_evaluate_as_trino_clients_write_them() {
        let values = evaluate(
            "'it''s', 42, DECIMAL '12.3400', DATE '2024-02-29', \
             TIMESTAMP '2024-01-02 03:04:05.123456 UTC', X'00ff', NULL, DOUBLE '1.5'",
        )
        .await
        .unwrap();
        assert_eq!(values[0], ScalarValue::Utf8(Some("it's".into())));
        assert_eq!(values[1], ScalarValue::Int64(Some(42)));
        assert_eq!(
            values[2]
                .cast_to(&arrow::datatypes::DataType::Decimal128(18, 4))
                .unwrap(),
            ScalarValue::Decimal128(Some(123_400), 18, 4)
        );
        assert_eq!(values[3].to_string(), "2024-02-29");
        let ScalarValue::TimestampNanosecond(Some(ns), _) = values[4] else {
            panic!("timestamp: {:?}", values[4]);
        };
        assert_eq!(ns, 1_704_164_645_123_456_000);
        assert_eq!(values[5], ScalarValue::Binary(Some(vec![0, 255])));
        assert!(values[6].is_null());
        assert_eq!(values[7], ScalarValue::Float64(Some(1.5)));
        for hostile in [
            "(SELECT 1 FROM order_events)",
            "(SELECT count(*) FROM generate_series(1, 100000000000))",
            "repeat('x', 2000000000)",
            "1 FROM generate_series(1, 100000000000)",
            "1 UNION ALL SELECT 2",
            "1; SELECT 2",
            "1 WHERE EXISTS (SELECT 1)",
            &vec!["1"; 100_000].join("+"),
        ] {
            let e = evaluate(hostile).await.unwrap_err();
            assert!(
                e.error_name == "INVALID_PARAMETER_USAGE" || e.error_name == "SYNTAX_ERROR",
                "{hostile}: {}",
                e.message
            );
        }
        let negative = evaluate("-1, ARRAY['a', 'b'], CAST('7' AS BIGINT)")
            .await
            .unwrap();
        assert_eq!(negative[0], ScalarValue::Int64(Some(-1)));
        assert_eq!(negative[2], ScalarValue::Int64(Some(7)));
    }

    #[test]
    fn headers_are_decoded() {
        let mut h = HeaderMap::new();
        h.insert(USER, "analyst".parse().unwrap());
        h.insert(
            PREPARED_STATEMENT,
            format!(
                "st1={},st2={}",
                encode("SELECT ?, 'a,b'"),
                encode("SELECT 1")
            )
            .parse()
            .unwrap(),
        );
        h.insert(SESSION, "a=1, b=x%20y".parse().unwrap());
        let s = ClientSession::from_headers(&h).unwrap();
        assert_eq!(s.user.as_deref(), Some("analyst"));
        assert_eq!(s.prepared["st1"], "SELECT ?, 'a,b'");
        assert_eq!(s.prepared["st2"], "SELECT 1");
        assert_eq!(
            s.properties,
            vec![("a".into(), "1".into()), ("b".into(), "x y".into())]
        );
    }
}
