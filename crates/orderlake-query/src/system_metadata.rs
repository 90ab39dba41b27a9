//! Metadata as Trino's clients read it, built with each snapshot from its catalogs (the tables
//! and views of a version do not change under it):
//! - `system.jdbc.*`: what the Trino JDBC driver's `DatabaseMetaData` selects (`catalogs`,
//!   `schemas`, `tables`, `table_types`, `columns`, `types`), so DBeaver's tree fills as against
//!   Trino, with Trino's type names and `java.sql.Types` codes, and the tables the driver asks
//!   for that this archive has nothing in (`udts`, `super_types`, `super_tables`, `attributes`,
//!   `procedures`, `procedure_columns`, `pseudo_columns`: empty, with Trino's columns). Column
//!   names are lower case, so the driver's unquoted `TABLE_CAT` finds `table_cat`.
//! - Trino's `information_schema` (`columns` with Trino type names and `comment`, `tables`,
//!   `schemata`, `views`), which `statement::trino_information_schema` points queries of
//!   `information_schema.*` at.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::error::Result;
use datafusion::execution::SessionState;
use datafusion::logical_expr::TableType;

use crate::access_catalog::MetadataTable;
use crate::statement::TRINO_INFORMATION_SCHEMA;
use crate::system::SYSTEM_CATALOG;
use crate::trino_types::{precision, trino_type};

/// One value of a metadata row.
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(Some(s.into()))
}

const NULL_TEXT: Cell = Cell::Text(None);
const NULL_INT: Cell = Cell::Int(None);

/// An in-memory table: its name, its column names (a `#` prefix: bigint, `?`: boolean, else
/// varchar) and rows.
type TableRows<'a> = (&'a str, &'a [&'a str], Vec<Vec<Cell>>);

/// A schema of in-memory tables.
fn schema(tables: Vec<TableRows<'_>>) -> Result<Arc<dyn SchemaProvider>> {
    let provider = MemorySchemaProvider::new();
    for (name, columns, rows) in tables {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                if let Some(n) = c.strip_prefix('#') {
                    Field::new(n, DataType::Int64, true)
                } else if let Some(n) = c.strip_prefix('?') {
                    Field::new(n, DataType::Boolean, true)
                } else {
                    Field::new(*c, DataType::Utf8, true)
                }
            })
            .collect();
        let arrays: Vec<ArrayRef> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| -> ArrayRef {
                let cells = rows.iter().map(|r| &r[i]);
                match f.data_type() {
                    DataType::Int64 => Arc::new(Int64Array::from_iter(cells.map(|c| match c {
                        Cell::Int(v) => *v,
                        _ => None,
                    }))),
                    DataType::Boolean => {
                        Arc::new(BooleanArray::from_iter(cells.map(|c| match c {
                            Cell::Bool(v) => *v,
                            _ => None,
                        })))
                    }
                    _ => Arc::new(StringArray::from_iter(cells.map(|c| match c {
                        Cell::Text(v) => v.clone(),
                        _ => None,
                    }))),
                }
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema, arrays)?;
        // Each user's session sees the rows about what they may read (access rules).
        provider.register_table(name.to_owned(), Arc::new(MetadataTable::new(batch)?))?;
    }
    Ok(Arc::new(provider))
}

/// The `java.sql.Types` code of a type.
fn jdbc_type(t: &DataType) -> i64 {
    match t {
        DataType::Boolean => 16,
        DataType::Int8 => -6,
        DataType::Int16 | DataType::UInt8 => 5,
        DataType::Int32 | DataType::UInt16 => 4,
        DataType::Int64 | DataType::UInt32 => -5,
        DataType::Float16 | DataType::Float32 => 7,
        DataType::Float64 => 8,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..)
        | DataType::UInt64 => 3,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 12,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => -3,
        DataType::Date32 | DataType::Date64 => 91,
        DataType::Timestamp(_, None) => 93,
        DataType::Timestamp(_, Some(_)) => 2014,
        DataType::Time32(_) | DataType::Time64(_) => 92,
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::ListView(_)
        | DataType::LargeListView(_) => 2003,
        DataType::Null => 0,
        _ => 2000,
    }
}

/// `COLUMN_SIZE`, `DECIMAL_DIGITS` and `NUM_PREC_RADIX` as Trino's driver reports them.
fn size_digits_radix(t: &DataType) -> (Option<i64>, Option<i64>, Option<i64>) {
    match t {
        DataType::Int8 => (Some(3), Some(0), Some(10)),
        DataType::Int16 | DataType::UInt8 => (Some(5), Some(0), Some(10)),
        DataType::Int32 | DataType::UInt16 => (Some(10), Some(0), Some(10)),
        DataType::Int64 | DataType::UInt32 => (Some(19), Some(0), Some(10)),
        DataType::Float32 => (Some(24), None, Some(2)),
        DataType::Float64 => (Some(53), None, Some(2)),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            (Some(i64::from(*p)), Some(i64::from(*s)), Some(10))
        }
        DataType::Date32 | DataType::Date64 => (Some(10), None, None),
        DataType::Timestamp(unit, zone) => {
            let digits = precision(*unit);
            let base = if zone.is_some() { 25 } else { 19 };
            (
                Some(base + digits + i64::from(digits > 0)),
                Some(digits),
                None,
            )
        }
        DataType::Time64(TimeUnit::Microsecond) => (Some(15), Some(6), None),
        _ => (None, None, None),
    }
}

const TYPE_COLUMNS: &[&str] = &[
    "type_name",
    "#data_type",
    "#precision",
    "literal_prefix",
    "literal_suffix",
    "create_params",
    "#nullable",
    "?case_sensitive",
    "#searchable",
    "?unsigned_attribute",
    "?fixed_prec_scale",
    "?auto_increment",
    "local_type_name",
    "#minimum_scale",
    "#maximum_scale",
    "#sql_data_type",
    "#sql_datetime_sub",
    "#num_prec_radix",
];
const UDT_COLUMNS: &[&str] = &[
    "type_cat",
    "type_schem",
    "type_name",
    "class_name",
    "#data_type",
    "remarks",
    "#base_type",
];
const SUPER_TYPE_COLUMNS: &[&str] = &[
    "type_cat",
    "type_schem",
    "type_name",
    "supertype_cat",
    "supertype_schem",
    "supertype_name",
];
const SUPER_TABLE_COLUMNS: &[&str] = &["table_cat", "table_schem", "table_name", "supertable_name"];
const ATTRIBUTE_COLUMNS: &[&str] = &[
    "type_cat",
    "type_schem",
    "type_name",
    "attr_name",
    "#data_type",
    "attr_type_name",
    "#attr_size",
    "#decimal_digits",
    "#num_prec_radix",
    "#nullable",
    "remarks",
    "attr_def",
    "#sql_data_type",
    "#sql_datetime_sub",
    "#char_octet_length",
    "#ordinal_position",
    "is_nullable",
    "scope_catalog",
    "scope_schema",
    "scope_table",
    "#source_data_type",
];
const PROCEDURE_COLUMNS: &[&str] = &[
    "procedure_cat",
    "procedure_schem",
    "procedure_name",
    "remarks",
    "#procedure_type",
    "specific_name",
];
const PROCEDURE_COLUMN_COLUMNS: &[&str] = &[
    "procedure_cat",
    "procedure_schem",
    "procedure_name",
    "column_name",
    "#column_type",
    "#data_type",
    "type_name",
    "#precision",
    "#length",
    "#scale",
    "#radix",
    "#nullable",
    "remarks",
    "column_def",
    "#sql_data_type",
    "#sql_datetime_sub",
    "#char_octet_length",
    "#ordinal_position",
    "is_nullable",
    "specific_name",
];
const PSEUDO_COLUMN_COLUMNS: &[&str] = &[
    "table_cat",
    "table_schem",
    "table_name",
    "column_name",
    "#data_type",
    "#column_size",
    "#decimal_digits",
    "#num_prec_radix",
    "column_usage",
    "remarks",
    "#char_octet_length",
    "is_nullable",
];

/// `system.jdbc.types`: every type a query here can return, by Trino's name, with its
/// `java.sql.Types` code, size and radix (`DatabaseMetaData.getTypeInfo`). Scalars, arrays and
/// rows compare (searchable); maps do not.
fn type_rows() -> Vec<Vec<Cell>> {
    let item = Arc::new(Field::new("item", DataType::Int64, true));
    let entries = Arc::new(Field::new(
        "entries",
        DataType::Struct(
            vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ]
            .into(),
        ),
        false,
    ));
    let examples = [
        ("boolean", DataType::Boolean),
        ("tinyint", DataType::Int8),
        ("smallint", DataType::Int16),
        ("integer", DataType::Int32),
        ("bigint", DataType::Int64),
        ("real", DataType::Float32),
        ("double", DataType::Float64),
        ("decimal", DataType::Decimal128(38, 0)),
        ("varchar", DataType::Utf8),
        ("varbinary", DataType::Binary),
        ("date", DataType::Date32),
        ("time", DataType::Time64(TimeUnit::Microsecond)),
        (
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
        ),
        (
            "timestamp with time zone",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        ),
        ("array", DataType::List(item)),
        ("map", DataType::Map(entries, false)),
        ("row", DataType::Struct(Vec::<Field>::new().into())),
    ];
    examples
        .into_iter()
        .map(|(name, t)| {
            let (size, _, radix) = size_digits_radix(&t);
            let unbounded = matches!(t, DataType::Utf8 | DataType::Binary);
            vec![
                text(name),
                Cell::Int(Some(jdbc_type(&t))),
                Cell::Int(if unbounded {
                    Some(i64::from(i32::MAX))
                } else {
                    size
                }),
                NULL_TEXT,
                NULL_TEXT,
                NULL_TEXT,
                Cell::Int(Some(1)),
                Cell::Bool(Some(false)),
                Cell::Int(Some(if matches!(t, DataType::Map(..)) { 0 } else { 3 })),
                Cell::Bool(None),
                Cell::Bool(Some(false)),
                Cell::Bool(None),
                NULL_TEXT,
                Cell::Int(Some(0)),
                Cell::Int(Some(0)),
                NULL_INT,
                NULL_INT,
                Cell::Int(radix),
            ]
        })
        .collect()
}

/// A table or view and its columns, as the catalogs hold them.
struct Listed {
    catalog: String,
    schema: String,
    name: String,
    view: bool,
    remarks: Option<String>,
    definition: Option<String>,
    columns: Vec<(String, DataType, bool)>,
}

/// Every table and view of every catalog, and every (catalog, schema).
async fn list(
    state: &SessionState,
    descriptions: &HashMap<String, String>,
) -> Result<(Vec<String>, Vec<(String, String)>, Vec<Listed>)> {
    let list = state.catalog_list();
    let mut catalogs = list.catalog_names();
    catalogs.sort();
    let mut schemas = Vec::new();
    let mut tables = Vec::new();
    for catalog_name in &catalogs {
        let Some(catalog) = list.catalog(catalog_name) else {
            continue;
        };
        let mut names = catalog.schema_names();
        names.sort();
        for schema_name in names {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            schemas.push((catalog_name.clone(), schema_name.clone()));
            let mut table_names = schema.table_names();
            table_names.sort();
            for name in table_names {
                let Some(provider) = schema.table(&name).await? else {
                    continue;
                };
                tables.push(Listed {
                    catalog: catalog_name.clone(),
                    schema: schema_name.clone(),
                    view: provider.table_type() == TableType::View,
                    remarks: (*catalog_name != SYSTEM_CATALOG)
                        .then(|| descriptions.get(&name).cloned())
                        .flatten(),
                    definition: provider.get_table_definition().map(str::to_owned),
                    columns: provider
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
                        .collect(),
                    name,
                });
            }
        }
    }
    Ok((catalogs, schemas, tables))
}

fn yes_no(b: bool) -> Cell {
    text(if b { "YES" } else { "NO" })
}

/// Registers `system.jdbc` and Trino's information_schema in `state`'s system catalog, listing
/// every catalog's tables (with the views' descriptions as remarks).
pub(crate) async fn register(
    state: &SessionState,
    descriptions: &HashMap<String, String>,
) -> Result<()> {
    let Some(system) = state.catalog_list().catalog(SYSTEM_CATALOG) else {
        return Ok(());
    };
    let (catalogs, mut schemas, tables) = list(state, descriptions).await?;
    schemas.push((SYSTEM_CATALOG.to_owned(), "jdbc".to_owned()));
    schemas.sort();
    let table_row = |t: &Listed| {
        vec![
            text(&t.catalog),
            text(&t.schema),
            text(&t.name),
            text(if t.view { "VIEW" } else { "TABLE" }),
            Cell::Text(t.remarks.clone()),
            NULL_TEXT,
            NULL_TEXT,
            NULL_TEXT,
            NULL_TEXT,
            NULL_TEXT,
        ]
    };
    let columns_of = |t: &Listed| -> Vec<Vec<Cell>> {
        t.columns
            .iter()
            .enumerate()
            .map(|(i, (name, data_type, nullable))| {
                let (size, digits, radix) = size_digits_radix(data_type);
                vec![
                    text(&t.catalog),
                    text(&t.schema),
                    text(&t.name),
                    text(name),
                    Cell::Int(Some(jdbc_type(data_type))),
                    text(trino_type(data_type).name),
                    Cell::Int(size),
                    NULL_INT,
                    Cell::Int(digits),
                    Cell::Int(radix),
                    Cell::Int(Some(i64::from(*nullable))),
                    NULL_TEXT,
                    NULL_TEXT,
                    NULL_INT,
                    NULL_INT,
                    NULL_INT,
                    Cell::Int(Some(i as i64 + 1)),
                    yes_no(*nullable),
                    NULL_TEXT,
                    NULL_TEXT,
                    NULL_TEXT,
                    NULL_INT,
                    text("NO"),
                    text("NO"),
                ]
            })
            .collect()
    };
    // The jdbc schema lists itself too, as Trino's does.
    let jdbc_tables = [
        "attributes",
        "catalogs",
        "columns",
        "procedure_columns",
        "procedures",
        "pseudo_columns",
        "schemas",
        "super_tables",
        "super_types",
        "table_types",
        "tables",
        "types",
        "udts",
    ];
    let own = jdbc_tables.iter().map(|name| {
        vec![
            text(SYSTEM_CATALOG),
            text("jdbc"),
            text(*name),
            text("TABLE"),
            NULL_TEXT,
            NULL_TEXT,
            NULL_TEXT,
            NULL_TEXT,
            NULL_TEXT,
            NULL_TEXT,
        ]
    });
    let jdbc = schema(vec![
        (
            "catalogs",
            &["table_cat"],
            catalogs.iter().map(|c| vec![text(c)]).collect(),
        ),
        (
            "schemas",
            &["table_schem", "table_catalog"],
            schemas
                .iter()
                .map(|(c, s)| vec![text(s), text(c)])
                .collect(),
        ),
        (
            "table_types",
            &["table_type"],
            vec![vec![text("TABLE")], vec![text("VIEW")]],
        ),
        (
            "tables",
            &[
                "table_cat",
                "table_schem",
                "table_name",
                "table_type",
                "remarks",
                "type_cat",
                "type_schem",
                "type_name",
                "self_referencing_col_name",
                "ref_generation",
            ],
            tables.iter().map(table_row).chain(own).collect(),
        ),
        (
            "columns",
            &[
                "table_cat",
                "table_schem",
                "table_name",
                "column_name",
                "#data_type",
                "type_name",
                "#column_size",
                "#buffer_length",
                "#decimal_digits",
                "#num_prec_radix",
                "#nullable",
                "remarks",
                "column_def",
                "#sql_data_type",
                "#sql_datetime_sub",
                "#char_octet_length",
                "#ordinal_position",
                "is_nullable",
                "scope_catalog",
                "scope_schema",
                "scope_table",
                "#source_data_type",
                "is_autoincrement",
                "is_generatedcolumn",
            ],
            tables.iter().flat_map(columns_of).collect(),
        ),
        ("types", TYPE_COLUMNS, type_rows()),
        ("udts", UDT_COLUMNS, Vec::new()),
        ("super_types", SUPER_TYPE_COLUMNS, Vec::new()),
        ("super_tables", SUPER_TABLE_COLUMNS, Vec::new()),
        ("attributes", ATTRIBUTE_COLUMNS, Vec::new()),
        ("procedures", PROCEDURE_COLUMNS, Vec::new()),
        ("procedure_columns", PROCEDURE_COLUMN_COLUMNS, Vec::new()),
        ("pseudo_columns", PSEUDO_COLUMN_COLUMNS, Vec::new()),
    ])?;
    system.register_schema("jdbc", jdbc)?;

    let information = schema(vec![
        (
            "columns",
            &[
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "#ordinal_position",
                "column_default",
                "is_nullable",
                "data_type",
                "comment",
                "extra_info",
            ],
            tables
                .iter()
                .flat_map(|t| {
                    t.columns
                        .iter()
                        .enumerate()
                        .map(|(i, (name, ty, nullable))| {
                            vec![
                                text(&t.catalog),
                                text(&t.schema),
                                text(&t.name),
                                text(name),
                                Cell::Int(Some(i as i64 + 1)),
                                NULL_TEXT,
                                yes_no(*nullable),
                                text(trino_type(ty).name),
                                NULL_TEXT,
                                NULL_TEXT,
                            ]
                        })
                })
                .collect(),
        ),
        (
            "tables",
            &[
                "table_catalog",
                "table_schema",
                "table_name",
                "table_type",
                "table_comment",
            ],
            tables
                .iter()
                .map(|t| {
                    vec![
                        text(&t.catalog),
                        text(&t.schema),
                        text(&t.name),
                        text(if t.view { "VIEW" } else { "BASE TABLE" }),
                        Cell::Text(t.remarks.clone()),
                    ]
                })
                .collect(),
        ),
        (
            "schemata",
            &["catalog_name", "schema_name"],
            schemas
                .iter()
                .filter(|(c, s)| !(c == SYSTEM_CATALOG && s == "jdbc"))
                .map(|(c, s)| vec![text(c), text(s)])
                .collect(),
        ),
        (
            "views",
            &[
                "table_catalog",
                "table_schema",
                "table_name",
                "view_definition",
            ],
            tables
                .iter()
                .filter(|t| t.view)
                .map(|t| {
                    vec![
                        text(&t.catalog),
                        text(&t.schema),
                        text(&t.name),
                        Cell::Text(t.definition.clone()),
                    ]
                })
                .collect(),
        ),
    ])?;
    system.register_schema(TRINO_INFORMATION_SCHEMA, information)?;
    Ok(())
}
