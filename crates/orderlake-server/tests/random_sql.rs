//! Random SQL through the Flight SQL door: generated queries over the archive's tables and views
//! (joins, nesting, subqueries, window functions, casts, functions with wrong arguments, huge
//! literals, long and deep expressions). No query may crash or hang the server, end past its
//! time limit, or fail without a precise status: INTERNAL, UNKNOWN or a broken connection is a
//! failure of the test, reported with its SQL.
//!
//! The suite runs a few hundred queries; `scripts/random-sql.sh` runs ten thousand or more
//! (`ORDERLAKE_RANDOM_SQL_QUERIES`, `ORDERLAKE_RANDOM_SQL_SEED`).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use support::{TestServer, has_code, query, rows, run};
use tonic::Code;

/// What a column holds, as far as generating expressions over it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Text,
    Time,
    Date,
    Binary,
    Bool,
    Other,
}

impl Kind {
    fn of(data_type: &str) -> Self {
        let t = data_type.to_ascii_lowercase();
        if t.contains("int") || t.contains("decimal") || t.contains("float") || t.contains("double")
        {
            Kind::Number
        } else if t.contains("utf8") || t.contains("varchar") || t.contains("string") {
            Kind::Text
        } else if t.contains("timestamp") {
            Kind::Time
        } else if t.contains("date") {
            Kind::Date
        } else if t.contains("binary") {
            Kind::Binary
        } else if t.contains("bool") {
            Kind::Bool
        } else {
            Kind::Other
        }
    }
}

const KINDS: [Kind; 5] = [Kind::Number, Kind::Text, Kind::Time, Kind::Date, Kind::Bool];

const TYPES: [&str; 12] = [
    "VARCHAR",
    "BIGINT",
    "INTEGER",
    "SMALLINT",
    "DOUBLE",
    "DECIMAL(10, 2)",
    "DECIMAL(38, 0)",
    "DATE",
    "TIMESTAMP",
    "BOOLEAN",
    "VARBINARY",
    "TIMESTAMP(3) WITH TIME ZONE",
];

/// Functions called with whatever arguments come: right ones, wrong types, too many or none.
const FUNCTIONS: [&str; 40] = [
    "abs",
    "round",
    "upper",
    "lower",
    "length",
    "substr",
    "concat",
    "coalesce",
    "nullif",
    "date_trunc",
    "date_diff",
    "date_add",
    "from_iso8601_timestamp",
    "json_extract_scalar",
    "regexp_like",
    "split",
    "array_join",
    "cardinality",
    "greatest",
    "least",
    "strpos",
    "replace",
    "to_hex",
    "md5",
    "power",
    "mod",
    "sqrt",
    "ln",
    "floor",
    "ceil",
    "format_datetime",
    "date_format",
    "to_unixtime",
    "from_unixtime",
    "year",
    "day_of_week",
    "if",
    "try",
    "typeof",
    "approx_distinct",
];

const AGGREGATES: [&str; 8] = [
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "approx_distinct",
    "count_if",
    "arbitrary",
];

#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<(String, Kind)>,
}

struct Generator {
    rng: StdRng,
    tables: Vec<Table>,
}

impl Generator {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn table(&mut self) -> Table {
        self.tables.choose(&mut self.rng).unwrap().clone()
    }

    /// A column of `table` (qualified by `alias`) of `kind`, or any column.
    fn column(&mut self, table: &Table, alias: &str, kind: Option<Kind>) -> Option<String> {
        let matching: Vec<_> = table
            .columns
            .iter()
            .filter(|(_, k)| kind.is_none_or(|want| *k == want))
            .collect();
        let (name, _) = matching.choose(&mut self.rng)?;
        Some(format!("{alias}.\"{name}\""))
    }

    fn literal(&mut self, kind: Kind) -> String {
        match (kind, self.rng.random_range(0..10)) {
            (Kind::Number, 0) => "123456789012345678901234567890123456789012".to_owned(),
            (Kind::Number, 1) => "1e308 * 10".to_owned(),
            (Kind::Number, 2) => "-9223372036854775808".to_owned(),
            (Kind::Number, 3) => "0".to_owned(),
            (Kind::Number, _) => format!("{}", self.rng.random_range(-1000..100_000)),
            (Kind::Text, 0) => format!("'{}'", "x".repeat(self.rng.random_range(1_000..100_000))),
            (Kind::Text, 1) => "'it''s'".to_owned(),
            (Kind::Text, 2) => "'Ω≈ç√∫ 日本 🚚'".to_owned(),
            (Kind::Text, 3) => "'%'".to_owned(),
            (Kind::Text, _) => {
                let words = ["CREATED", "SHIPPED", "A-1", "C-1", "", "null", "2024-03-01"];
                format!("'{}'", words.choose(&mut self.rng).unwrap())
            }
            (Kind::Time, 0) => "TIMESTAMP '9999-12-31 23:59:59'".to_owned(),
            (Kind::Time, 1) => "TIMESTAMP '2024-02-30 00:00:00'".to_owned(),
            (Kind::Time, _) => "TIMESTAMP '2024-03-01 10:00:00'".to_owned(),
            (Kind::Date, 0) => "DATE '0001-01-01'".to_owned(),
            (Kind::Date, 1) => "DATE '2024-13-01'".to_owned(),
            (Kind::Date, _) => "DATE '2024-03-02'".to_owned(),
            (Kind::Binary, _) => "X'00ff10'".to_owned(),
            (Kind::Bool, n) => (if n % 2 == 0 { "TRUE" } else { "NULL" }).to_owned(),
            (Kind::Other, _) => "NULL".to_owned(),
        }
    }

    /// An expression of (about) `kind` over `table` as `alias`, nested at most `depth` more.
    fn expr(&mut self, table: &Table, alias: &str, kind: Kind, depth: u32) -> String {
        if depth == 0 || self.chance(0.3) {
            return match self.column(table, alias, Some(kind)) {
                Some(c) if self.chance(0.7) => c,
                _ => self.literal(kind),
            };
        }
        let d = depth - 1;
        match self.rng.random_range(0..12) {
            0 => {
                let ty = TYPES.choose(&mut self.rng).unwrap();
                let any = *KINDS.choose(&mut self.rng).unwrap();
                let inner = self.expr(table, alias, any, d);
                let cast = if self.chance(0.5) { "CAST" } else { "TRY_CAST" };
                format!("{cast}({inner} AS {ty})")
            }
            1 => {
                let f = FUNCTIONS.choose(&mut self.rng).unwrap();
                let arity = self.rng.random_range(0..4);
                let args: Vec<_> = (0..arity)
                    .map(|_| {
                        let k = *KINDS.choose(&mut self.rng).unwrap();
                        self.expr(table, alias, k, d)
                    })
                    .collect();
                format!("{f}({})", args.join(", "))
            }
            2 => {
                let op = ["+", "-", "*", "/", "%"].choose(&mut self.rng).unwrap();
                let a = self.expr(table, alias, Kind::Number, d);
                let b = self.expr(table, alias, Kind::Number, d);
                format!("({a} {op} {b})")
            }
            3 => {
                let c = self.predicate(table, alias, d);
                let a = self.expr(table, alias, kind, d);
                let b = self.expr(table, alias, kind, d);
                format!("CASE WHEN {c} THEN {a} ELSE {b} END")
            }
            4 => {
                let a = self.expr(table, alias, Kind::Text, d);
                let b = self.expr(table, alias, Kind::Text, d);
                format!("({a} || {b})")
            }
            5 => {
                let other = self.table();
                let c = self
                    .column(&other, "s", Some(kind))
                    .unwrap_or_else(|| "1".to_owned());
                format!("(SELECT max({c}) FROM {} AS s)", other.name)
            }
            6 => self.deep(kind),
            _ => {
                let a = self.expr(table, alias, kind, d);
                format!("coalesce({a}, {})", self.literal(kind))
            }
        }
    }

    /// Long or deeply nested expressions: chains of thousands of terms, parentheses hundreds
    /// deep.
    fn deep(&mut self, kind: Kind) -> String {
        let n = *[10usize, 100, 1_000, 10_000].choose(&mut self.rng).unwrap();
        let leaf = self.literal(kind);
        match self.rng.random_range(0..3) {
            0 => vec!["1"; n].join(" + "),
            1 => format!(
                "{}{leaf}{}",
                "(".repeat(n.min(2_000)),
                ")".repeat(n.min(2_000))
            ),
            _ => format!(
                "{}{leaf}{}",
                "abs(".repeat(n.min(2_000)),
                ")".repeat(n.min(2_000))
            ),
        }
    }

    fn predicate(&mut self, table: &Table, alias: &str, depth: u32) -> String {
        let kind = *KINDS.choose(&mut self.rng).unwrap();
        let a = self.expr(table, alias, kind, depth);
        match self.rng.random_range(0..8) {
            0 => format!("{a} IS NULL"),
            1 => {
                let list: Vec<_> = (0..self.rng.random_range(1..5))
                    .map(|_| self.literal(kind))
                    .collect();
                format!("{a} IN ({})", list.join(", "))
            }
            2 => {
                let (lo, hi) = (self.literal(kind), self.literal(kind));
                format!("{a} BETWEEN {lo} AND {hi}")
            }
            3 => format!("CAST({a} AS VARCHAR) LIKE '%1%'"),
            4 if depth > 0 => {
                let l = self.predicate(table, alias, depth - 1);
                let r = self.predicate(table, alias, depth - 1);
                let op = if self.chance(0.5) { "AND" } else { "OR" };
                format!("({l} {op} NOT {r})")
            }
            5 => {
                let other = self.table();
                let inner = self
                    .column(&other, "i", Some(kind))
                    .unwrap_or_else(|| "NULL".to_owned());
                format!("{a} IN (SELECT {inner} FROM {} AS i)", other.name)
            }
            _ => {
                let op = ["=", "<>", "<", ">=", "IS DISTINCT FROM"]
                    .choose(&mut self.rng)
                    .unwrap();
                let b = self.expr(table, alias, kind, depth);
                format!("{a} {op} {b}")
            }
        }
    }

    fn window(&mut self, table: &Table, alias: &str) -> String {
        let by = self.column(table, alias, None).unwrap();
        let order = self.column(table, alias, None).unwrap();
        let f = match self.rng.random_range(0..4) {
            0 => "row_number()".to_owned(),
            1 => format!("lag({by}, {})", self.rng.random_range(1..3)),
            2 => format!(
                "sum({})",
                self.column(table, alias, Some(Kind::Number))
                    .unwrap_or_else(|| "1".to_owned())
            ),
            _ => "rank()".to_owned(),
        };
        format!("{f} OVER (PARTITION BY {by} ORDER BY {order})")
    }

    /// One SELECT over a table (or two joined), maybe grouped, ordered and limited.
    fn select(&mut self, depth: u32) -> String {
        let t = self.table();
        let mut from = format!("{} AS a", t.name);
        if self.chance(0.25) {
            let u = self.table();
            let kind = *KINDS.choose(&mut self.rng).unwrap();
            if let (Some(l), Some(r)) = (
                self.column(&t, "a", Some(kind)),
                self.column(&u, "b", Some(kind)),
            ) {
                let join = ["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]
                    .choose(&mut self.rng)
                    .unwrap();
                from = format!("{from} {join} {} AS b ON {l} = {r}", u.name);
            }
        }
        let grouped = self.chance(0.35);
        let mut items = Vec::new();
        let mut group_by = Vec::new();
        if grouped {
            for _ in 0..self.rng.random_range(0..3) {
                let kind = *KINDS.choose(&mut self.rng).unwrap();
                group_by.push(self.expr(&t, "a", kind, 1));
            }
            items.extend(group_by.iter().cloned());
            for _ in 0..self.rng.random_range(1..4) {
                let f = AGGREGATES.choose(&mut self.rng).unwrap();
                let kind = *KINDS.choose(&mut self.rng).unwrap();
                let arg = self.expr(&t, "a", kind, depth.min(2));
                let distinct = if self.chance(0.2) { "DISTINCT " } else { "" };
                items.push(format!("{f}({distinct}{arg})"));
            }
        } else {
            for _ in 0..self.rng.random_range(1..5) {
                if self.chance(0.15) {
                    items.push(self.window(&t, "a"));
                } else {
                    let kind = *KINDS.choose(&mut self.rng).unwrap();
                    items.push(self.expr(&t, "a", kind, depth));
                }
            }
        }
        let items: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{e} AS c{i}"))
            .collect();
        let mut sql = format!("SELECT {} FROM {from}", items.join(", "));
        if self.chance(0.6) {
            sql += &format!(" WHERE {}", self.predicate(&t, "a", depth.min(3)));
        }
        if !group_by.is_empty() {
            sql += &format!(" GROUP BY {}", group_by.join(", "));
        }
        if self.chance(0.4) {
            sql += " ORDER BY 1";
        }
        if self.chance(0.7) {
            let n = [0u64, 1, 10, 1000, u64::MAX / 2]
                .choose(&mut self.rng)
                .unwrap();
            sql += &format!(" LIMIT {n}");
        }
        sql
    }

    /// A whole statement: a SELECT, or one nested in a derived table, a CTE or a UNION.
    fn statement(&mut self) -> String {
        let depth = self.rng.random_range(1..5);
        match self.rng.random_range(0..10) {
            0 => format!("SELECT * FROM ({}) AS d LIMIT 50", self.select(depth)),
            1 => format!("WITH q AS ({}) SELECT count(*) FROM q", self.select(depth)),
            2 => format!("{} UNION ALL {}", self.select(depth), self.select(depth)),
            _ => self.select(depth),
        }
    }
}

/// Codes a failing query may end with: each says what was wrong with the request.
const PRECISE: [Code; 6] = [
    Code::InvalidArgument,
    Code::NotFound,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::DeadlineExceeded,
    Code::OutOfRange,
];

/// An INTERNAL status for a defect of the engine rather than of the server: DataFusion's own
/// internal errors, and panics the server caught.
fn is_engine_defect(error: &str) -> bool {
    error.contains("Internal error:") || error.contains("the engine failed on this query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_queries_end_in_results_or_precise_statuses() {
    let count: usize = std::env::var("ORDERLAKE_RANDOM_SQL_QUERIES").map_or(300, |n| {
        n.parse().expect("ORDERLAKE_RANDOM_SQL_QUERIES is a number")
    });
    let seed: u64 = std::env::var("ORDERLAKE_RANDOM_SQL_SEED").map_or(17, |n| {
        n.parse().expect("ORDERLAKE_RANDOM_SQL_SEED is a number")
    });
    let time_limit = 10;
    let server = TestServer::start(&support::fixture_records(), |c| {
        c.limits.timeout_secs = time_limit;
        c.limits.max_result_rows = 100_000;
        c.limits.memory_bytes = Some(256 << 20);
    })
    .await;
    let mut client = server.client().await;

    let columns = query(
        &mut client,
        "SELECT table_name, column_name, data_type FROM information_schema.columns \
         WHERE table_schema = 'oms' ORDER BY table_name, ordinal_position",
    )
    .await;
    let mut tables: BTreeMap<String, Vec<(String, Kind)>> = BTreeMap::new();
    for row in rows(&columns) {
        let mut parts = row.splitn(3, '|');
        let (table, column, ty) = (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
            parts.next().unwrap(),
        );
        tables
            .entry(table)
            .or_default()
            .push((column, Kind::of(ty)));
    }
    assert!(tables.contains_key("order_events") && tables.contains_key("orders"));
    let mut generator = Generator {
        rng: StdRng::seed_from_u64(seed),
        tables: tables
            .into_iter()
            .map(|(name, columns)| Table { name, columns })
            .collect(),
    };

    let mut outcomes: HashMap<String, usize> = HashMap::new();
    let mut imprecise = Vec::new();
    let mut engine_defects = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..count {
        let sql = generator.statement();
        let shown: String = sql.chars().take(400).collect();
        // Before it runs: if the query takes the process down, the last line names it.
        eprintln!("query {i}: {shown}");
        let started = Instant::now();
        let result =
            tokio::time::timeout(Duration::from_secs(time_limit + 20), run(&mut client, &sql))
                .await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        match result {
            Err(_) => panic!("query {i} hung past its {time_limit} s limit: {shown}"),
            Ok(Ok(_)) => *outcomes.entry("OK".into()).or_default() += 1,
            Ok(Err(e)) => match PRECISE.iter().find(|c| has_code(&e, **c)) {
                Some(code) => *outcomes.entry(format!("{code:?}")).or_default() += 1,
                // DataFusion's own defects (its internal errors, a panic the server caught):
                // INTERNAL is the precise status for them, and the server goes on.
                None if has_code(&e, Code::Internal) && is_engine_defect(&e) => {
                    *outcomes.entry("engine defect".into()).or_default() += 1;
                    let e: String = e.chars().take(300).collect();
                    engine_defects.push(format!("query {i}: {shown}\n  -> {e}"));
                }
                None => {
                    let e: String = e.chars().take(600).collect();
                    imprecise.push(format!("query {i}: {shown}\n  -> {e}"));
                    // A broken connection: the server may be gone. Reconnect to find out.
                    client = server.client().await;
                }
            },
        }
    }
    eprintln!("{count} random queries (seed {seed}): {outcomes:?}; slowest {slowest:?}");
    if !engine_defects.is_empty() {
        eprintln!("DataFusion defects met:\n{}", engine_defects.join("\n"));
    }
    assert!(
        engine_defects.len() * 100 <= count,
        "{} of {count} queries met an engine defect: more than a stray upstream bug",
        engine_defects.len()
    );
    assert!(
        imprecise.is_empty(),
        "{} of {count} queries ended without a precise status:\n{}",
        imprecise.len(),
        imprecise.join("\n")
    );
    assert!(
        outcomes.get("OK").copied().unwrap_or(0) > count / 10,
        "most generated queries should run: {outcomes:?}"
    );
    assert_eq!(
        run(&mut client, "SELECT count(*) FROM order_events").await,
        Ok(1),
        "the server still answers"
    );
}
