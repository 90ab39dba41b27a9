//! One archive row per Kafka record (or imported legacy record). Column names are a contract with
//! every SQL user: add columns freely, rename none. The Delta schema is the source of truth; the
//! Arrow schema is derived from it so writers and readers agree to the field.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array as _, AsArray as _};
use arrow::datatypes::SchemaRef;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow as _;
use deltalake::kernel::{ArrayType, DataType, StructField, StructType};

use crate::codec::ColumnCodec;
use crate::layout::Partitioning;

pub const KAFKA_TOPIC: &str = "kafka_topic";
pub const KAFKA_PARTITION: &str = "kafka_partition";
pub const KAFKA_OFFSET: &str = "kafka_offset";
pub const KAFKA_TIMESTAMP: &str = "kafka_timestamp";
pub const KAFKA_KEY: &str = "kafka_key";
pub const KAFKA_VALUE: &str = "kafka_value";
pub const KAFKA_HEADERS: &str = "kafka_headers";
pub const ARCHIVED_AT: &str = "archived_at";
pub const IMPORT_SOURCE: &str = "import_source";
pub const EVENT_ID: &str = "event_id";
pub const EVENT_TYPE: &str = "event_type";
pub const ORDER_ID: &str = "order_id";
pub const CUSTOMER_ID: &str = "customer_id";
pub const FACILITY_ID: &str = "facility_id";
pub const STATUS: &str = "status";
pub const PREVIOUS_STATUS: &str = "previous_status";
pub const TOTAL_AMOUNT: &str = "total_amount";
pub const CURRENCY: &str = "currency";
pub const EVENT_TIME: &str = "event_time";
pub const ITEMS: &str = "items";
pub const DECODE_ERROR: &str = "decode_error";
pub const EVENT_DATE: &str = "event_date";
/// The partition column of a monthly table (the first day of the event's month); see
/// [`crate::layout`].
pub const EVENT_MONTH: &str = "event_month";
/// Debezium change events: the operation (`c`, `u`, `d`, `r`, `t`), null for other rows.
pub const CDC_OP: &str = "cdc_op";
/// When the source database committed the change.
pub const CDC_SOURCE_TS: &str = "cdc_source_ts";
/// Where in the source's log: text that sorts in the source's order (a zero-padded Postgres LSN,
/// or a MySQL binlog file, position and row).
pub const CDC_POSITION: &str = "cdc_position";
/// The source transaction of the change.
pub const CDC_TX_ID: &str = "cdc_tx_id";

/// Money is `decimal(18, 4)`: exact, and room for three-decimal currencies and fractional unit
/// prices.
pub const MONEY_PRECISION: u8 = 18;
pub const MONEY_SCALE: u8 = 4;

/// Columns whose min/max go into the Delta log. Raw key/value bytes are left out: their statistics
/// would bloat the log and never prune a useful query.
pub const STATS_COLUMNS: [&str; 12] = [
    KAFKA_TOPIC,
    KAFKA_PARTITION,
    KAFKA_OFFSET,
    KAFKA_TIMESTAMP,
    ARCHIVED_AT,
    EVENT_ID,
    EVENT_TYPE,
    ORDER_ID,
    CUSTOMER_ID,
    FACILITY_ID,
    STATUS,
    EVENT_TIME,
];

/// Columns that get Parquet bloom filters (point lookups by the API service).
pub const BLOOM_FILTER_COLUMNS: [&str; 2] = [ORDER_ID, CUSTOMER_ID];

/// Footer key (Parquet key-value metadata) naming how compaction wrote a file: the order of its
/// rows and its rows per row group ([`compacted_layout`]). Files the archiver writes have none:
/// compaction rewrites a closed partition held by one such file (or by one written with other
/// settings), and leaves one it wrote as it would now alone.
pub const SORT_ORDER_KEY: &str = "orderlake.sort_order";
/// The columns compaction sorts rows by (ascending, nulls last); [`SORT_ORDER_KEY`] names them.
pub const COMPACTION_SORT: [&str; 3] = [CUSTOMER_ID, ORDER_ID, EVENT_TIME];

/// Rows per data page of every column in the files compaction writes (the writer cuts pages per
/// write batch of 1,024 rows). A lookup selects through the page index the key pages whose
/// statistics admit its key, and decodes only the pages of the other columns holding the
/// selected rows: with a row group's column in one page it decoded the whole 16k rows of every
/// projected column for a handful of rows (docs/benchmarks.md, "Pages for lookups" and "Pages of
/// every column").
pub const COMPACTED_PAGE_ROWS: usize = 1024;

/// False-positive probability of the bloom filters on the key columns (after parquet's folding
/// to size). A lookup of many keys (an `IN` list, or a join narrowed to a customer's orders)
/// keeps a row group when any key passes: with 111 keys at the writer's default of 5% (about 1%
/// measured) two thirds of the row groups passed, at 0.1% about a tenth
/// (docs/benchmarks.md, "Bloom filters for many keys").
pub const BLOOM_FILTER_FPP: f64 = 0.001;

/// The value of [`SORT_ORDER_KEY`] in files compaction writes with `row_group_rows`.
pub fn compacted_layout(row_group_rows: usize) -> String {
    format!(
        "{}; row_group_rows={row_group_rows}; page_rows={COMPACTED_PAGE_ROWS}; \
         bloom_fpp={BLOOM_FILTER_FPP}; plain={}",
        COMPACTION_SORT.join(","),
        COMPACTED_PLAIN_COLUMNS.join(",")
    )
}

/// Rows per row group by default, in the archiver's files and compaction's: a month of a
/// compacted monthly table holds ~100k rows at 1M events a year, so lookups read one of several
/// row groups (measured against 8k, 32k and 128k in docs/benchmarks.md).
pub const ROW_GROUP_ROWS: usize = 16 * 1024;

/// How the archiver writes archive Parquet files: the raw record in zstd, the other columns in
/// the table's `codec`, page-level statistics (for the page index) and bloom filters on the
/// lookup columns.
pub fn parquet_properties(
    codec: ColumnCodec,
    zstd_level: i32,
    row_group_rows: usize,
) -> parquet::file::properties::WriterProperties {
    properties(codec, zstd_level, row_group_rows, &[]).build()
}

/// How compaction writes them: as the archiver does, and marked with [`SORT_ORDER_KEY`].
pub fn compacted_parquet_properties(
    codec: ColumnCodec,
    zstd_level: i32,
    row_group_rows: usize,
) -> parquet::file::properties::WriterProperties {
    let marker = parquet::file::metadata::KeyValue::new(
        SORT_ORDER_KEY.to_owned(),
        compacted_layout(row_group_rows),
    );
    properties(codec, zstd_level, row_group_rows, &COMPACTED_PLAIN_COLUMNS)
        .set_data_page_row_count_limit(COMPACTED_PAGE_ROWS)
        .set_key_value_metadata(Some(vec![marker]))
        .build()
}

/// Columns compaction writes without a dictionary: in a row group sorted by customer and order
/// nearly every value differs or repeats only in a run beside itself, so a dictionary holds
/// most of the column, and a lookup reading one page decodes all of it first (written plain: the
/// customer lookup at 10M 14.4 → 12.0 ms, files 0.8% smaller; docs/benchmarks.md).
pub const COMPACTED_PLAIN_COLUMNS: [&str; 3] = [ORDER_ID, KAFKA_KEY, TOTAL_AMOUNT];

/// The writer settings both writers share; `plain` are columns written without a dictionary
/// besides [`UNIQUE_COLUMNS`].
fn properties(
    codec: ColumnCodec,
    zstd_level: i32,
    row_group_rows: usize,
    plain: &[&str],
) -> parquet::file::properties::WriterPropertiesBuilder {
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use parquet::schema::types::ColumnPath;
    let level = ZstdLevel::try_new(zstd_level).unwrap_or_default();
    let mut props = WriterProperties::builder()
        .set_compression(codec.compression(level))
        .set_column_compression(ColumnPath::from(KAFKA_VALUE), Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Page);
    for col in BLOOM_FILTER_COLUMNS {
        props = props
            .set_column_bloom_filter_enabled(ColumnPath::from(col), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(col), BLOOM_FILTER_FPP);
    }
    for col in UNIQUE_COLUMNS.iter().chain(plain) {
        props = props.set_column_dictionary_enabled(ColumnPath::from(*col), false);
    }
    props
}

/// Columns whose values (nearly) all differ: a dictionary would hold every value once and
/// point at each once, so they are written plain (the writer's interning of every value was a
/// tenth of its time, docs/benchmarks.md).
const UNIQUE_COLUMNS: [&str; 8] = [
    KAFKA_OFFSET,
    KAFKA_TIMESTAMP,
    KAFKA_VALUE,
    ARCHIVED_AT,
    EVENT_ID,
    EVENT_TIME,
    CDC_SOURCE_TS,
    CDC_POSITION,
];

/// Fields of one `kafka_headers` entry.
pub mod header {
    pub const KEY: &str = "key";
    pub const VALUE: &str = "value";
}

/// Fields of one `items` entry.
pub mod item {
    pub const SKU: &str = "sku";
    pub const QUANTITY: &str = "quantity";
    pub const UNIT_PRICE: &str = "unit_price";
    pub const SALE_PRICE: &str = "sale_price";
}

fn money() -> DataType {
    DataType::decimal(MONEY_PRECISION, MONEY_SCALE).expect("decimal(18,4) is a valid Delta type")
}

fn struct_of(fields: Vec<StructField>) -> DataType {
    DataType::Struct(Box::new(
        StructType::try_new(fields).expect("archive struct fields are unique"),
    ))
}

fn list_of(element: DataType) -> DataType {
    DataType::Array(Box::new(ArrayType::new(element, false)))
}

/// The Delta schema of a table with `partitioning`: the first archive columns, the partition
/// column when it is not `event_date`, then the columns added since ([`added_fields`]), so a
/// table created now and an older one that gained them by schema evolution have one column
/// order.
pub fn table_delta_schema(partitioning: Partitioning) -> StructType {
    let partition = (partitioning.column() != EVENT_DATE)
        .then(|| StructField::not_null(partitioning.column(), DataType::DATE));
    StructType::try_new(
        first_fields()
            .into_iter()
            .chain(partition)
            .chain(added_fields()),
    )
    .expect("archive column names are unique")
}

/// Columns whose min/max go into the Delta log of a table with `partitioning`: the archive's, and
/// `event_date` where it is stored in the files.
pub fn stats_columns(partitioning: Partitioning) -> Vec<&'static str> {
    let mut columns = STATS_COLUMNS.to_vec();
    if partitioning.stores_event_date() {
        columns.push(EVENT_DATE);
    }
    columns
}

/// The archive rows' Delta schema (the files' columns).
pub fn delta_schema() -> StructType {
    StructType::try_new(first_fields().into_iter().chain(added_fields()))
        .expect("archive column names are unique")
}

/// The columns of the archive's first schema, which every archive table has.
fn first_fields() -> Vec<StructField> {
    use StructField as F;
    let headers = list_of(struct_of(vec![
        F::not_null(header::KEY, DataType::STRING),
        F::nullable(header::VALUE, DataType::BINARY),
    ]));
    let items = list_of(struct_of(vec![
        F::nullable(item::SKU, DataType::STRING),
        F::nullable(item::QUANTITY, DataType::LONG),
        F::nullable(item::UNIT_PRICE, money()),
        F::nullable(item::SALE_PRICE, money()),
    ]));
    vec![
        F::nullable(KAFKA_TOPIC, DataType::STRING),
        F::nullable(KAFKA_PARTITION, DataType::INTEGER),
        F::nullable(KAFKA_OFFSET, DataType::LONG),
        F::nullable(KAFKA_TIMESTAMP, DataType::TIMESTAMP),
        F::nullable(KAFKA_KEY, DataType::BINARY),
        F::nullable(KAFKA_VALUE, DataType::BINARY),
        F::nullable(KAFKA_HEADERS, headers),
        F::not_null(ARCHIVED_AT, DataType::TIMESTAMP),
        F::nullable(IMPORT_SOURCE, DataType::STRING),
        F::nullable(EVENT_ID, DataType::STRING),
        F::nullable(EVENT_TYPE, DataType::STRING),
        F::nullable(ORDER_ID, DataType::STRING),
        F::nullable(CUSTOMER_ID, DataType::STRING),
        F::nullable(FACILITY_ID, DataType::STRING),
        F::nullable(STATUS, DataType::STRING),
        F::nullable(PREVIOUS_STATUS, DataType::STRING),
        F::nullable(TOTAL_AMOUNT, money()),
        F::nullable(CURRENCY, DataType::STRING),
        F::nullable(EVENT_TIME, DataType::TIMESTAMP),
        F::nullable(ITEMS, items),
        F::nullable(DECODE_ERROR, DataType::STRING),
        F::not_null(EVENT_DATE, DataType::DATE),
    ]
}

/// Columns added to the archive after its first schema, in the order they were added. All are
/// nullable: an older table gains them by a metadata-only commit (`ArchiveTable` does it when a
/// writer opens the table), its files are never rewritten, and readers see nulls in rows
/// written before.
pub fn added_fields() -> Vec<StructField> {
    use StructField as F;
    vec![
        F::nullable(CDC_OP, DataType::STRING),
        F::nullable(CDC_SOURCE_TS, DataType::TIMESTAMP),
        F::nullable(CDC_POSITION, DataType::STRING),
        F::nullable(CDC_TX_ID, DataType::STRING),
    ]
}

/// The [`added_fields`] an existing table's schema does not have yet.
pub fn missing_added_fields(existing: &StructType) -> Vec<StructField> {
    added_fields()
        .into_iter()
        .filter(|f| existing.field(f.name()).is_none())
        .collect()
}

static ARROW_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let schema: arrow::datatypes::Schema = (&delta_schema())
        .try_into_arrow()
        .expect("the archive's Delta schema converts to Arrow");
    Arc::new(schema)
});

/// The Arrow schema of an archive row batch, exactly as delta-rs derives it from the table.
pub fn arrow_schema() -> SchemaRef {
    Arc::clone(&ARROW_SCHEMA)
}

/// A `kafka_headers` column cast to the archive's type (whatever types a reader gave it).
pub fn headers_column(
    column: &arrow::array::ArrayRef,
) -> Result<arrow::array::ListArray, arrow::error::ArrowError> {
    let field = ARROW_SCHEMA.field_with_name(KAFKA_HEADERS)?;
    let cast = arrow::compute::cast(column, field.data_type())?;
    Ok(cast.as_list::<i32>().clone())
}

/// The headers of row `i` of a `kafka_headers` column in the archive's type
/// ([`headers_column`]), as (key, value) pairs in their order.
pub fn headers_at(headers: &arrow::array::ListArray, i: usize) -> Vec<(String, Option<Vec<u8>>)> {
    if headers.is_null(i) {
        return Vec::new();
    }
    let entries = headers.value(i);
    let entries = entries.as_struct();
    let (keys, values) = (
        entries.column(0).as_string::<i32>(),
        entries.column(1).as_binary::<i32>(),
    );
    (0..entries.len())
        .map(|j| {
            (
                keys.value(j).to_owned(),
                (!values.is_null(j)).then(|| values.value(j).to_vec()),
            )
        })
        .collect()
}

/// Why `existing` cannot be the schema of an archive table with `partitioning`, or `None` when
/// every archive column (and the partition column) is present with its type. Extra columns in the
/// table are fine (a newer archiver may have added them), and so are missing [`added_fields`]
/// (the table gains them when a writer opens it; readers see them as nulls until then).
pub fn incompatibility_with(existing: &StructType, partitioning: Partitioning) -> Option<String> {
    let mut problems = Vec::new();
    let added = added_fields();
    for wanted in table_delta_schema(partitioning).fields() {
        match existing.field(wanted.name()) {
            None if added.iter().any(|a| a.name() == wanted.name()) => {}
            None => problems.push(format!("column `{}` is missing", wanted.name())),
            Some(found) if found.data_type() != wanted.data_type() => problems.push(format!(
                "column `{}` is {} but the archive needs {}",
                wanted.name(),
                found.data_type(),
                wanted.data_type()
            )),
            Some(_) => {}
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_schema_keeps_contract_names_in_order() {
        let names: Vec<_> = arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names.first().map(String::as_str), Some(KAFKA_TOPIC));
        assert_eq!(names.last().map(String::as_str), Some(CDC_TX_ID));
        for col in STATS_COLUMNS.iter().chain(&BLOOM_FILTER_COLUMNS) {
            assert!(names.iter().any(|n| n == col), "{col} not in schema");
        }
    }

    #[test]
    fn own_schema_is_compatible_and_a_changed_type_is_not() {
        let incompatibility = |s: &StructType| incompatibility_with(s, Partitioning::Daily);
        assert_eq!(incompatibility(&delta_schema()), None);
        let monthly = table_delta_schema(Partitioning::Monthly);
        assert_eq!(incompatibility_with(&monthly, Partitioning::Monthly), None);
        let why = incompatibility_with(&delta_schema(), Partitioning::Monthly).unwrap();
        assert!(why.contains("`event_month` is missing"), "{why}");
        let altered = StructType::try_new(delta_schema().fields().map(|f| {
            if f.name() == ORDER_ID {
                StructField::nullable(ORDER_ID, DataType::LONG)
            } else {
                f.clone()
            }
        }))
        .unwrap();
        let why = incompatibility(&altered).unwrap();
        assert!(why.contains("`order_id` is long"), "{why}");
    }

    #[test]
    fn a_table_of_the_first_schema_is_compatible_and_lacks_the_added_columns() {
        for partitioning in [Partitioning::Daily, Partitioning::Monthly] {
            let current = table_delta_schema(partitioning);
            let old = StructType::try_new(
                current
                    .fields()
                    .filter(|f| !f.name().starts_with("cdc_"))
                    .cloned(),
            )
            .unwrap();
            assert_eq!(incompatibility_with(&old, partitioning), None);
            let missing: Vec<_> = missing_added_fields(&old)
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(missing, [CDC_OP, CDC_SOURCE_TS, CDC_POSITION, CDC_TX_ID]);
            assert!(missing_added_fields(&current).is_empty());
            // The partition column sits between the first columns and the added ones, where an
            // old monthly table has it.
            let names: Vec<_> = current.fields().map(|f| f.name().clone()).collect();
            let cut = names.iter().position(|n| n == CDC_OP).unwrap();
            assert_eq!(names[cut - 1], partitioning.column());
        }
    }
}
