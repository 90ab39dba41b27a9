//! `system.jdbc.*`: the tables the Trino JDBC driver's `DatabaseMetaData` reads (`catalogs`,
//! `schemas`, `tables`, `table_types`, `columns`), so DBeaver's tree fills as it does against
//! Trino, with Trino's type names and `java.sql.Types` codes. Built with each snapshot from its
//! catalogs (the tables and views of a version do not change under it). Column names are lower
//! case, so the driver's unquoted `TABLE_CAT` finds `table_cat`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{MemTable, MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::error::Result;
use datafusion::execution::SessionState;
use datafusion::logical_expr::TableType;

use crate::system::SYSTEM_CATALOG;
use crate::trino_types::trino_type;

/// One column of a table or view, as `system.jdbc.columns` lists it.
struct ColumnRow {
    catalog: String,
    schema: String,
    table: String,
    name: String,
    data_type: DataType,
    nullable: bool,
    position: i64,
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

/// `COLUMN_SIZE` and `DECIMAL_DIGITS` as Trino's driver reports them.
fn size_and_digits(t: &DataType) -> (Option<i64>, Option<i64>) {
    match t {
        DataType::Int8 => (Some(3), Some(0)),
        DataType::Int16 | DataType::UInt8 => (Some(5), Some(0)),
        DataType::Int32 | DataType::UInt16 => (Some(10), Some(0)),
        DataType::Int64 | DataType::UInt32 => (Some(19), Some(0)),
        DataType::Float32 => (Some(24), None),
        DataType::Float64 => (Some(53), None),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            (Some(i64::from(*p)), Some(i64::from(*s)))
        }
        DataType::Date32 | DataType::Date64 => (Some(10), None),
        DataType::Timestamp(unit, zone) => {
            let digits = crate::trino_types::precision(*unit);
            let base = if zone.is_some() { 25 } else { 19 };
            (Some(base + digits + i64::from(digits > 0)), Some(digits))
        }
        DataType::Time64(TimeUnit::Microsecond) => (Some(15), Some(6)),
        _ => (None, None),
    }
}

fn radix(t: &DataType) -> Option<i64> {
    match t {
        DataType::Float32 | DataType::Float64 => Some(2),
        t if t.is_integer() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) => {
            Some(10)
        }
        _ => None,
    }
}

fn table(fields: Vec<(&str, DataType)>, columns: Vec<ArrayRef>) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(
        fields
            .into_iter()
            .map(|(n, t)| Field::new(n, t, true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn texts<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn numbers(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(Int64Array::from_iter(values))
}

/// Registers `system.jdbc` in `state`'s system catalog, listing every catalog's tables (with
/// the views' descriptions as remarks).
pub(crate) async fn register(
    state: &SessionState,
    descriptions: &HashMap<String, String>,
) -> Result<()> {
    let list = state.catalog_list();
    let Some(system) = list.catalog(SYSTEM_CATALOG) else {
        return Ok(());
    };
    let mut catalogs = list.catalog_names();
    catalogs.sort();
    let mut schemas: Vec<(String, String)> = Vec::new();
    let mut tables: Vec<(String, String, String, &'static str, Option<String>)> = Vec::new();
    let mut columns: Vec<ColumnRow> = Vec::new();
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
                let kind = match provider.table_type() {
                    TableType::View => "VIEW",
                    _ => "TABLE",
                };
                for (i, field) in provider.schema().fields().iter().enumerate() {
                    columns.push(ColumnRow {
                        catalog: catalog_name.clone(),
                        schema: schema_name.clone(),
                        table: name.clone(),
                        name: field.name().clone(),
                        data_type: field.data_type().clone(),
                        nullable: field.is_nullable(),
                        position: i as i64 + 1,
                    });
                }
                let remarks = (*catalog_name != SYSTEM_CATALOG)
                    .then(|| descriptions.get(&name).cloned())
                    .flatten();
                tables.push((
                    catalog_name.clone(),
                    schema_name.clone(),
                    name,
                    kind,
                    remarks,
                ));
            }
        }
    }
    // The jdbc schema lists itself too, as Trino's does.
    let jdbc = Arc::new(MemorySchemaProvider::new());
    for name in ["catalogs", "schemas", "tables", "table_types", "columns"] {
        tables.push((
            SYSTEM_CATALOG.to_owned(),
            "jdbc".to_owned(),
            name.to_owned(),
            "TABLE",
            None,
        ));
    }
    schemas.push((SYSTEM_CATALOG.to_owned(), "jdbc".to_owned()));
    schemas.sort();

    let utf8 = || DataType::Utf8;
    jdbc.register_table(
        "catalogs".into(),
        table(
            vec![("table_cat", utf8())],
            vec![texts(catalogs.iter().map(|c| Some(c.as_str())))],
        )?,
    )?;
    jdbc.register_table(
        "schemas".into(),
        table(
            vec![("table_schem", utf8()), ("table_catalog", utf8())],
            vec![
                texts(schemas.iter().map(|(_, s)| Some(s.as_str()))),
                texts(schemas.iter().map(|(c, _)| Some(c.as_str()))),
            ],
        )?,
    )?;
    jdbc.register_table(
        "table_types".into(),
        table(
            vec![("table_type", utf8())],
            vec![texts([Some("TABLE"), Some("VIEW")])],
        )?,
    )?;
    let none = |n: usize| texts(std::iter::repeat_n(None, n));
    jdbc.register_table(
        "tables".into(),
        table(
            vec![
                ("table_cat", utf8()),
                ("table_schem", utf8()),
                ("table_name", utf8()),
                ("table_type", utf8()),
                ("remarks", utf8()),
                ("type_cat", utf8()),
                ("type_schem", utf8()),
                ("type_name", utf8()),
                ("self_referencing_col_name", utf8()),
                ("ref_generation", utf8()),
            ],
            vec![
                texts(tables.iter().map(|t| Some(t.0.as_str()))),
                texts(tables.iter().map(|t| Some(t.1.as_str()))),
                texts(tables.iter().map(|t| Some(t.2.as_str()))),
                texts(tables.iter().map(|t| Some(t.3))),
                texts(tables.iter().map(|t| t.4.as_deref())),
                none(tables.len()),
                none(tables.len()),
                none(tables.len()),
                none(tables.len()),
                none(tables.len()),
            ],
        )?,
    )?;
    let type_names: Vec<String> = columns
        .iter()
        .map(|c| trino_type(&c.data_type).name)
        .collect();
    let sizes: Vec<(Option<i64>, Option<i64>)> = columns
        .iter()
        .map(|c| size_and_digits(&c.data_type))
        .collect();
    let n = columns.len();
    let int64 = || DataType::Int64;
    jdbc.register_table(
        "columns".into(),
        table(
            vec![
                ("table_cat", utf8()),
                ("table_schem", utf8()),
                ("table_name", utf8()),
                ("column_name", utf8()),
                ("data_type", int64()),
                ("type_name", utf8()),
                ("column_size", int64()),
                ("buffer_length", int64()),
                ("decimal_digits", int64()),
                ("num_prec_radix", int64()),
                ("nullable", int64()),
                ("remarks", utf8()),
                ("column_def", utf8()),
                ("sql_data_type", int64()),
                ("sql_datetime_sub", int64()),
                ("char_octet_length", int64()),
                ("ordinal_position", int64()),
                ("is_nullable", utf8()),
                ("scope_catalog", utf8()),
                ("scope_schema", utf8()),
                ("scope_table", utf8()),
                ("source_data_type", int64()),
                ("is_autoincrement", utf8()),
                ("is_generatedcolumn", utf8()),
            ],
            vec![
                texts(columns.iter().map(|c| Some(c.catalog.as_str()))),
                texts(columns.iter().map(|c| Some(c.schema.as_str()))),
                texts(columns.iter().map(|c| Some(c.table.as_str()))),
                texts(columns.iter().map(|c| Some(c.name.as_str()))),
                numbers(columns.iter().map(|c| Some(jdbc_type(&c.data_type)))),
                texts(type_names.iter().map(|t| Some(t.as_str()))),
                numbers(sizes.iter().map(|s| s.0)),
                numbers(std::iter::repeat_n(None, n)),
                numbers(sizes.iter().map(|s| s.1)),
                numbers(columns.iter().map(|c| radix(&c.data_type))),
                numbers(columns.iter().map(|c| Some(i64::from(c.nullable)))),
                none(n),
                none(n),
                numbers(std::iter::repeat_n(None, n)),
                numbers(std::iter::repeat_n(None, n)),
                numbers(std::iter::repeat_n(None, n)),
                numbers(columns.iter().map(|c| Some(c.position))),
                texts(
                    columns
                        .iter()
                        .map(|c| Some(if c.nullable { "YES" } else { "NO" })),
                ),
                none(n),
                none(n),
                none(n),
                numbers(std::iter::repeat_n(None, n)),
                texts(std::iter::repeat_n(Some("NO"), n)),
                texts(std::iter::repeat_n(Some("NO"), n)),
            ],
        )?,
    )?;
    system.register_schema("jdbc", jdbc as Arc<dyn SchemaProvider>)?;
    Ok(())
}
