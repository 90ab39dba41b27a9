//! What SQL the server accepts. The archive is read-only through the server: only queries and the
//! statements that describe the catalog (SHOW, DESCRIBE, EXPLAIN) pass; everything else is refused
//! before planning with a sentence saying why. Planning then runs under DataFusion's `SQLOptions`
//! as a second fence. Trino's `SHOW CATALOGS` / `SHOW SCHEMAS` become information_schema queries,
//! and JDBC-style `?` placeholders become `$1, $2, …` in the order they appear.

use std::ops::ControlFlow;

use datafusion::config::Dialect;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Expr, Statement, Value};

use crate::engine::QueryScope;
use crate::error::{QueryError, Result};

/// Everything done to a statement's text before it is planned: parsed (by `parse`), vetted,
/// Trino's `SHOW` forms rewritten, information_schema names and placeholders made DataFusion's.
pub fn prepare(
    sql: &str,
    scope: &QueryScope,
    parse: impl Fn(&str) -> Result<DfStatement>,
) -> Result<DfStatement> {
    let mut parsed = parse_bounded(sql, &parse)?;
    vet_reads(&parsed)?;
    if let Some(rewritten) = trino_show(&parsed, scope) {
        parsed = parse(&rewritten)?;
    }
    trino_information_schema(&mut parsed);
    trino_lambda_functions(&mut parsed);
    number_placeholders(&mut parsed)?;
    Ok(parsed)
}

/// The one statement `sql` holds, parsed in DataFusion's default (generic) dialect.
pub fn parse_one(sql: &str) -> Result<DfStatement> {
    let mut statements = datafusion::sql::parser::DFParser::parse_sql(sql)?;
    match (statements.pop_front(), statements.is_empty()) {
        (Some(one), true) => Ok(one),
        _ => Err(QueryError::invalid("expected exactly one statement")),
    }
}

/// `sql` parsed (by `parse`) if it is no longer than [`MAX_STATEMENT_CHARS`] and its expressions
/// nest no deeper than [`MAX_EXPRESSION_DEPTH`]: what any code that walks or plans a statement
/// from a client may then do without overflowing its stack.
pub fn parse_bounded(
    sql: &str,
    parse: impl Fn(&str) -> Result<DfStatement>,
) -> Result<DfStatement> {
    if sql.len() > MAX_STATEMENT_CHARS {
        let chars = sql.chars().count();
        if chars > MAX_STATEMENT_CHARS {
            return Err(QueryError::invalid(format!(
                "the statement is {chars} characters long; the server accepts at most \
                 {MAX_STATEMENT_CHARS}"
            )));
        }
    }
    let parsed = parse(sql)?;
    match vet_depth(&parsed) {
        Ok(()) => Ok(parsed),
        Err(e) => {
            drop_deep(parsed);
            Err(e)
        }
    }
}

/// Checks that `statement` only reads, and only tables; the error names the statement (or the
/// file) and the reason.
pub fn vet(statement: &DfStatement) -> Result<()> {
    // Before anything else walks the statement: a deeper one would overflow the walk's stack.
    vet_depth(statement)?;
    vet_reads(statement)
}

/// [`vet`] of a statement whose depth is known to be within bounds.
fn vet_reads(statement: &DfStatement) -> Result<()> {
    vet_kind(statement)?;
    // A path or URL where a table name belongs is an attempt to read a file directly.
    let (tables, _) =
        datafusion::sql::resolve::resolve_table_references(statement, true).unwrap_or_default();
    if let Some(file) = tables
        .iter()
        .map(|t| t.table())
        .find(|t| looks_like_a_file(t))
    {
        return Err(QueryError::forbidden(format!(
            "reading '{file}' is refused: the server reads only the archive's configured tables \
             and views, never files or URLs"
        )));
    }
    Ok(())
}

/// The deepest nesting of expressions a statement may have. DataFusion plans expressions
/// recursively, and the parser reads a chain of infix operators (`1 + 1 + …`, `a = 1 OR a = 2
/// OR …`) without recursing, so a long enough chain would overflow the planning thread's stack
/// and take the whole server down (a 10,000-term sum did in the random-SQL test, and a
/// 1,000-term one inside the engine in a debug build).
pub const MAX_EXPRESSION_DEPTH: usize = 256;

/// The longest statement accepted, in characters (Trino's `query.max-length`). It also bounds
/// how deep a statement can be nested at all, and so the stack [`drop_deep`] needs.
pub const MAX_STATEMENT_CHARS: usize = 1_000_000;

/// Stack for dropping a statement refused for its depth: dropping an expression recurses as
/// deep as it is nested, up to `MAX_STATEMENT_CHARS / 2` levels (`1+1+…`), measured at under
/// 200 bytes a level in a debug build. Reserved address space; only what is used is touched.
const DEEP_DROP_STACK: usize = 256 << 20;

/// Drops a statement nested too deep to be dropped on a worker's stack, on a short-lived thread
/// of its own (milliseconds, even for the longest statement).
fn drop_deep(statement: DfStatement) {
    let spawned = std::thread::Builder::new()
        .name("deep-statement-drop".into())
        .stack_size(DEEP_DROP_STACK)
        .spawn(move || drop(statement));
    match spawned {
        Ok(thread) => {
            let _ = thread.join();
        }
        Err(e) => tracing::error!(error = %e, "no thread to drop a refused statement on"),
    }
}

/// Counts expression nesting while the statement is walked, stopping the walk past the limit.
struct Depth {
    now: usize,
}

impl ast::Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.now += 1;
        if self.now > MAX_EXPRESSION_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }
}

fn vet_depth(statement: &DfStatement) -> Result<()> {
    let Some(statement) = sql_statement_ref(statement) else {
        return Ok(());
    };
    match ast::Visit::visit(statement, &mut Depth { now: 0 }) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(QueryError::invalid(format!(
            "an expression is nested more than {MAX_EXPRESSION_DEPTH} levels deep (a chain of \
             operators counts a level each); write long OR chains as IN lists"
        ))),
    }
}

fn looks_like_a_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.contains('/')
        || name.contains('\\')
        || lower.contains("://")
        || [
            ".parquet", ".csv", ".json", ".ndjson", ".avro", ".arrow", ".gz", ".zst",
        ]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

fn vet_kind(statement: &DfStatement) -> Result<()> {
    match statement {
        DfStatement::Statement(s) => vet_sql(s),
        DfStatement::Explain(e) => vet_kind(&e.statement),
        DfStatement::CreateExternalTable(t) => Err(QueryError::forbidden(format!(
            "CREATE EXTERNAL TABLE {} is refused: the server reads only the archive's configured \
             tables, never other files or URLs",
            t.name
        ))),
        DfStatement::CopyTo(_) => Err(QueryError::forbidden(
            "COPY is refused: the server is read-only and never writes files",
        )),
        DfStatement::Reset(_) => Err(QueryError::forbidden(
            "RESET is refused: server settings are fixed by its configuration; use Flight SQL \
             session options to change the current catalog or schema",
        )),
    }
}

fn vet_sql(s: &Statement) -> Result<()> {
    match s {
        Statement::Query(_)
        | Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowSchemas { .. } => Ok(()),
        Statement::Explain { statement, .. } => vet_sql(statement),
        other => Err(QueryError::forbidden(refusal(other))),
    }
}

fn refusal(s: &Statement) -> String {
    // sqlparser prints keywords in upper case: the leading upper-case words name the statement.
    let text = s.to_string();
    let keyword: String = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let first = keyword.split(' ').next().unwrap_or_default();
    let why = match first {
        "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "TRUNCATE" | "REPLACE" => {
            "the archive is read-only through this server; the archiver is its only writer"
        }
        "CREATE" | "DROP" | "ALTER" | "RENAME" | "COMMENT" | "GRANT" | "REVOKE" => {
            "the server's tables and views come from its configuration and cannot be changed \
             by SQL"
        }
        "SET" | "USE" => {
            "server settings are fixed by its configuration; use Flight SQL session options to \
             change the current catalog or schema"
        }
        "COPY" | "UNLOAD" | "EXPORT" | "LOAD" | "INSTALL" | "ATTACH" => {
            "the server never reads or writes files beyond the archive's tables"
        }
        _ => "the server answers queries only (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN)",
    };
    format!("{keyword} is refused: {why}")
}

/// Rewrites Trino's `SHOW CATALOGS`, `SHOW SCHEMAS` and `SHOW TABLES [FROM schema] [LIKE 'p']`
/// (the current schema's tables only, in one column `Table`, as Trino lists them) into
/// information_schema queries that DataFusion plans; returns `None` for every other statement.
pub fn trino_show(statement: &DfStatement, scope: &QueryScope) -> Option<String> {
    let DfStatement::Statement(s) = statement else {
        return None;
    };
    let quote = |v: &str| v.replace('\'', "''");
    match s.as_ref() {
        Statement::ShowCatalogs { .. } => Some(
            "SELECT DISTINCT table_catalog AS \"Catalog\" FROM information_schema.tables \
             ORDER BY 1"
                .to_owned(),
        ),
        Statement::ShowSchemas { .. } => Some(format!(
            "SELECT DISTINCT table_schema AS \"Schema\" FROM information_schema.tables \
             WHERE table_catalog = '{}' ORDER BY 1",
            quote(&scope.catalog)
        )),
        Statement::ShowTables { show_options, .. } => {
            let parts: Vec<String> = show_options
                .show_in
                .as_ref()
                .and_then(|i| i.parent_name.as_ref())
                .map(|n| {
                    n.0.iter()
                        .filter_map(|p| p.as_ident().map(|i| i.value.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let (catalog, schema) = match parts.as_slice() {
                [c, s] => (c.clone(), s.clone()),
                [s] => (scope.catalog.clone(), s.clone()),
                _ => (scope.catalog.clone(), scope.schema.clone()),
            };
            let like = match &show_options.filter_position {
                Some(
                    ast::ShowStatementFilterPosition::Infix(ast::ShowStatementFilter::Like(p))
                    | ast::ShowStatementFilterPosition::Suffix(ast::ShowStatementFilter::Like(p)),
                ) => format!(" AND table_name LIKE '{}'", quote(p)),
                _ => String::new(),
            };
            Some(format!(
                "SELECT table_name AS \"Table\" FROM information_schema.tables \
                 WHERE table_catalog = '{}' AND table_schema = '{}'{like} ORDER BY 1",
                quote(&catalog),
                quote(&schema)
            ))
        }
        _ => None,
    }
}

/// The schema of the system catalog holding Trino's flavour of `information_schema` (Trino type
/// names in `columns.data_type`, a `comment` column): what Trino's clients read (SQLAlchemy's
/// inspector selects `comment`).
pub const TRINO_INFORMATION_SCHEMA: &str = "information_schema_trino";
const TRINO_INFORMATION_TABLES: [&str; 4] = ["columns", "tables", "schemata", "views"];

/// Points `information_schema.{columns,tables,schemata,views}` (two- or three-part names) at the
/// system catalog's Trino-flavoured tables, which list every catalog as DataFusion's do.
pub fn trino_information_schema(statement: &mut DfStatement) {
    let rename = |name: &mut ast::ObjectName| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
            .collect();
        let n = parts.len();
        if (n == 2 || n == 3)
            && parts[n - 2] == "information_schema"
            && TRINO_INFORMATION_TABLES.contains(&parts[n - 1].as_str())
        {
            *name = ast::ObjectName::from(vec![
                ast::Ident::new(crate::system::SYSTEM_CATALOG),
                ast::Ident::new(TRINO_INFORMATION_SCHEMA),
                ast::Ident::new(parts[n - 1].clone()),
            ]);
        }
        ControlFlow::<()>::Continue(())
    };
    if let Some(s) = sql_statement(statement) {
        let _ = ast::visit_relations_mut(s, rename);
    }
}

/// Trino's higher-order functions and DataFusion's names for them.
const TRINO_LAMBDA_FUNCTIONS: [(&str, &str); 3] = [
    ("transform", "array_transform"),
    ("filter", "array_filter"),
    ("any_match", "array_any_match"),
];

/// Whether `sql` may hold a lambda (`x -> x + 1`). DataFusion's generic dialect reads `->` as the
/// JSON arrow operator, so such statements are parsed in one that reads lambdas: Trino has no
/// `->` operator for the arrow to mean instead.
pub fn may_hold_lambdas(sql: &str) -> bool {
    sql.contains("->")
}

/// The dialect `sql` is parsed in: the configured one, or DuckDB's for a statement that may hold
/// lambdas ([`may_hold_lambdas`]).
pub fn dialect_for(sql: &str, configured: Dialect) -> Dialect {
    if may_hold_lambdas(sql) {
        Dialect::DuckDB
    } else {
        configured
    }
}

/// Trino's `transform`, `filter` and `any_match` called with a lambda become DataFusion's
/// `array_transform`, `array_filter` and `array_any_match` (the same meaning; Trino's names are
/// free for anything else when no lambda is given).
pub fn trino_lambda_functions(statement: &mut DfStatement) {
    let mut visit = |expr: &mut Expr| {
        if let Expr::Function(f) = expr
            && let ast::FunctionArguments::List(list) = &f.args
            && list.args.iter().any(|a| {
                matches!(
                    a,
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(Expr::Lambda(_)))
                )
            })
            && let [part] = f.name.0.as_slice()
            && let Some(name) = part.as_ident()
            && let Some((_, datafusion)) = TRINO_LAMBDA_FUNCTIONS
                .iter()
                .find(|(trino, _)| name.value.eq_ignore_ascii_case(trino))
        {
            f.name = ast::ObjectName::from(vec![ast::Ident::new(*datafusion)]);
        }
        if let Expr::Lambda(lambda) = expr {
            lambda_fields(lambda);
        }
        ControlFlow::<()>::Continue(())
    };
    if let Some(s) = sql_statement(statement) {
        let _ = ast::visit_expressions_mut(s, &mut visit);
    }
}

/// Trino's `i.sku` for a field of a lambda's row parameter `i` becomes `get_field(i, 'sku')`:
/// DataFusion resolves a compound name against the query's columns only.
fn lambda_fields(lambda: &mut ast::LambdaFunction) {
    let params: Vec<String> = lambda
        .params
        .iter()
        .map(|p| p.name.value.to_lowercase())
        .collect();
    let mut visit = |expr: &mut Expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() > 1
            && params.contains(&parts[0].value.to_lowercase())
        {
            let mut field = Expr::Identifier(parts[0].clone());
            for name in &parts[1..] {
                field = function_call(
                    "get_field",
                    vec![
                        field,
                        Expr::Value(Value::SingleQuotedString(name.value.clone()).into()),
                    ],
                );
            }
            *expr = field;
        }
        ControlFlow::<()>::Continue(())
    };
    let _ = ast::visit_expressions_mut(lambda.body.as_mut(), &mut visit);
}

/// `name(args…)` as the parser would have read it.
fn function_call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// [`sql_statement`], to read.
fn sql_statement_ref(statement: &DfStatement) -> Option<&Statement> {
    match statement {
        DfStatement::Statement(s) => Some(s.as_ref()),
        DfStatement::Explain(e) => match e.statement.as_ref() {
            DfStatement::Statement(s) => Some(s.as_ref()),
            _ => None,
        },
        _ => None,
    }
}

/// The SQL statement inside `statement`, or the one an `EXPLAIN` wraps.
fn sql_statement(statement: &mut DfStatement) -> Option<&mut Statement> {
    match statement {
        DfStatement::Statement(s) => Some(s.as_mut()),
        DfStatement::Explain(e) => match e.statement.as_mut() {
            DfStatement::Statement(s) => Some(s.as_mut()),
            _ => None,
        },
        _ => None,
    }
}

/// Numbers JDBC-style `?` placeholders `$1, $2, …` in the order they appear. Mixing `?` with
/// numbered placeholders is refused: the numbering would be ambiguous.
pub fn number_placeholders(statement: &mut DfStatement) -> Result<usize> {
    let mut question_marks = 0usize;
    let mut numbered = false;
    let mut visit = |expr: &mut Expr| {
        if let Expr::Value(v) = expr
            && let Value::Placeholder(p) = &mut v.value
        {
            if p == "?" {
                question_marks += 1;
                *p = format!("${question_marks}");
            } else {
                numbered = true;
            }
        }
        ControlFlow::<()>::Continue(())
    };
    if let Some(s) = sql_statement(statement) {
        let _ = ast::visit_expressions_mut(s, &mut visit);
    }
    if question_marks > 0 && numbered {
        return Err(QueryError::invalid(
            "a statement may use `?` placeholders or numbered `$n` placeholders, not both",
        ));
    }
    Ok(question_marks)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParser;

    use super::*;

    fn parse(sql: &str) -> DfStatement {
        DFParser::parse_sql(sql).unwrap().pop_front().unwrap()
    }

    #[test]
    fn trino_lambdas_become_datafusions_higher_order_functions() {
        let sql = "SELECT transform(items, i -> i.sku), filter(a, x -> x > 1), filter(b), \
                   any_match(items, i -> i.line.qty > 1) FROM t";
        assert!(may_hold_lambdas(sql));
        let dialect = datafusion::sql::sqlparser::dialect::DuckDbDialect {};
        let mut statement = DFParser::parse_sql_with_dialect(sql, &dialect)
            .unwrap()
            .pop_front()
            .unwrap();
        trino_lambda_functions(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT array_transform(items, i -> get_field(i, 'sku')), \
             array_filter(a, x -> x > 1), filter(b), \
             array_any_match(items, i -> get_field(get_field(i, 'line'), 'qty') > 1) FROM t"
        );
        assert!(!may_hold_lambdas("SELECT 1 - -1"));
    }

    #[test]
    fn reads_pass_and_writes_are_refused_with_a_reason() {
        for ok in [
            "SELECT 1",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "SHOW TABLES",
            "SHOW COLUMNS FROM order_events",
            "DESCRIBE order_events",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
        ] {
            vet(&parse(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            ("INSERT INTO t VALUES (1)", "INSERT INTO"),
            ("DELETE FROM t", "DELETE"),
            ("CREATE TABLE t (a INT)", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("DROP TABLE order_events", "DROP TABLE"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            (
                "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
                "CREATE EXTERNAL TABLE x",
            ),
            ("COPY (SELECT 1) TO '/tmp/x.parquet'", "COPY"),
            ("EXPLAIN DELETE FROM t", "DELETE"),
            ("SELECT * FROM '/etc/passwd'", "reading '/etc/passwd'"),
            (
                "SELECT * FROM 's3://bucket/x.parquet'",
                "reading 's3://bucket/x.parquet'",
            ),
            ("SELECT * FROM \"orders.csv\"", "reading 'orders.csv'"),
        ] {
            let err = vet(&parse(bad)).unwrap_err();
            let QueryError::Forbidden { message } = &err else {
                panic!("{bad}: {err:?}");
            };
            assert!(message.starts_with(says), "{bad}: {message}");
            assert!(message.contains("refused"), "{bad}: {message}");
        }
    }

    #[test]
    fn question_marks_are_numbered_in_order() {
        let mut s = parse("SELECT * FROM t WHERE a = ? AND b BETWEEN ? AND ?");
        assert_eq!(number_placeholders(&mut s).unwrap(), 3);
        assert_eq!(
            s.to_string(),
            "SELECT * FROM t WHERE a = $1 AND b BETWEEN $2 AND $3"
        );
        let mut mixed = parse("SELECT * FROM t WHERE a = ? AND b = $2");
        assert!(number_placeholders(&mut mixed).is_err());
    }

    #[test]
    fn expressions_nested_past_the_limit_are_refused_before_anything_recurses_into_them() {
        let scope = QueryScope {
            catalog: "archive".into(),
            schema: "oms".into(),
            time_zone: None,
            max_run_time: None,
            max_memory_bytes: None,
        };
        let run = |sql: &str| prepare(sql, &scope, parse_one);
        let chain = |n: usize, op: &str| format!("SELECT {} FROM orders", vec!["1"; n].join(op));
        assert!(run(&chain(MAX_EXPRESSION_DEPTH / 2, " + ")).is_ok());
        // The longest statement accepted, as deep as it can be: refused, and dropped without
        // overflowing this thread's stack.
        let deepest = chain((MAX_STATEMENT_CHARS - 30) / 2, "+");
        assert!(deepest.len() <= MAX_STATEMENT_CHARS);
        for deep in [
            chain(MAX_EXPRESSION_DEPTH + 1, " + "),
            deepest,
            format!(
                "EXPLAIN SELECT * FROM orders WHERE {}",
                vec!["a = 1"; 5_000].join(" OR ")
            ),
        ] {
            let message = run(&deep).unwrap_err().to_string();
            assert!(message.contains("nested more than"), "{message}");
        }
        let too_long = chain(MAX_STATEMENT_CHARS / 2 + 10, "+");
        let message = run(&too_long).unwrap_err().to_string();
        assert!(message.contains("characters long"), "{message}");
    }
}
