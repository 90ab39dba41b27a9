//! What the server tells clients about itself: GetSqlInfo (JDBC asks before listing anything;
//! a missing key has crashed older drivers) and GetXdbcTypeInfo. Function lists come from the
//! engine's own registry, so they name exactly what queries can call.

use std::collections::BTreeMap;

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedGroupBy, SqlSupportedResultSetType,
    SqlSupportedTransaction, SupportedSqlGrammar, XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::execution::SessionStateBuilder;
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;

/// Builds the server's SqlInfo answers. `timeout_secs` is the per-query time limit.
pub fn sql_info(timeout_secs: u64) -> SqlInfoData {
    let functions = FunctionLists::from_engine();
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "orderlake");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(
        SqlInfo::FlightSqlServerStatementTimeout,
        i32::try_from(timeout_secs).unwrap_or(i32::MAX),
    );
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    // Unquoted identifiers are folded to lower case; quoted ones keep their case.
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    // DataFusion sorts NULLs last ascending and first descending: "sorted high".
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    let keywords: Vec<String> = ALL_KEYWORDS.iter().map(|k| (*k).to_owned()).collect();
    b.append(SqlInfo::SqlKeywords, keywords);
    b.append(SqlInfo::SqlNumericFunctions, functions.numeric);
    b.append(SqlInfo::SqlStringFunctions, functions.string);
    b.append(SqlInfo::SqlSystemFunctions, functions.system);
    b.append(SqlInfo::SqlDatetimeFunctions, functions.datetime);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(
        SqlInfo::SqlSupportsConvert,
        BTreeMap::<i32, Vec<i32>>::new(),
    );
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(
        SqlInfo::SqlSupportedGroupBy,
        1 << SqlSupportedGroupBy::SqlGroupByUnrelated as i32,
    );
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        1 << SupportedSqlGrammar::SqlMinimumGrammar as i32
            | 1 << SupportedSqlGrammar::SqlCoreGrammar as i32,
    );
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    // Comparisons, EXISTS, IN and quantified subqueries.
    b.append(SqlInfo::SqlSupportedSubqueries, 0b1111i32);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    // UNION and UNION ALL.
    b.append(SqlInfo::SqlSupportedUnions, 0b11i32);
    for info in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        // 0: no fixed limit.
        b.append(info, 0i64);
    }
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, true);
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    b.append(
        SqlInfo::SqlSupportedResultSetTypes,
        1 << SqlSupportedResultSetType::SqlResultSetTypeForwardOnly as i32,
    );
    for info in [
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
    ] {
        // Read-only result sets only.
        b.append(info, 1i32);
    }
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build().expect("static SqlInfo values build")
}

struct FunctionLists {
    numeric: Vec<String>,
    string: Vec<String>,
    system: Vec<String>,
    datetime: Vec<String>,
}

impl FunctionLists {
    /// Sorts the engine's scalar functions by the section of their own documentation.
    fn from_engine() -> Self {
        let state = SessionStateBuilder::new().with_default_features().build();
        let mut lists = Self {
            numeric: Vec::new(),
            string: Vec::new(),
            system: Vec::new(),
            datetime: Vec::new(),
        };
        for (name, udf) in state.scalar_functions() {
            let section = udf
                .documentation()
                .map(|d| d.doc_section.label.to_ascii_lowercase())
                .unwrap_or_default();
            let list = if section.contains("math") {
                &mut lists.numeric
            } else if section.contains("string") || section.contains("regular expression") {
                &mut lists.string
            } else if section.contains("time") || section.contains("date") {
                &mut lists.datetime
            } else {
                &mut lists.system
            };
            list.push(name.clone());
        }
        for list in [
            &mut lists.numeric,
            &mut lists.string,
            &mut lists.system,
            &mut lists.datetime,
        ] {
            list.sort();
        }
        lists
    }
}

/// The types queries return, as JDBC/ODBC type descriptions.
pub fn xdbc_type_info() -> XdbcTypeInfoData {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let mut add = |name: &str, ty: XdbcDataType, size: Option<i32>, quote: bool| {
        let datetime = matches!(
            ty,
            XdbcDataType::XdbcDate | XdbcDataType::XdbcTimestamp | XdbcDataType::XdbcTime
        );
        let numeric = matches!(
            ty,
            XdbcDataType::XdbcTinyint
                | XdbcDataType::XdbcSmallint
                | XdbcDataType::XdbcInteger
                | XdbcDataType::XdbcBigint
                | XdbcDataType::XdbcFloat
                | XdbcDataType::XdbcDouble
                | XdbcDataType::XdbcDecimal
        );
        b.append(XdbcTypeInfo {
            type_name: name.to_owned(),
            data_type: ty,
            column_size: size,
            literal_prefix: quote.then(|| "'".to_owned()),
            literal_suffix: quote.then(|| "'".to_owned()),
            create_params: (ty == XdbcDataType::XdbcDecimal)
                .then(|| vec!["precision".to_owned(), "scale".to_owned()]),
            nullable: Nullable::NullabilityNullable,
            case_sensitive: matches!(ty, XdbcDataType::XdbcVarchar),
            searchable: Searchable::Full,
            unsigned_attribute: numeric.then_some(false),
            fixed_prec_scale: ty == XdbcDataType::XdbcDecimal,
            auto_increment: numeric.then_some(false),
            local_type_name: Some(name.to_owned()),
            minimum_scale: (ty == XdbcDataType::XdbcDecimal).then_some(0),
            maximum_scale: (ty == XdbcDataType::XdbcDecimal).then_some(38),
            sql_data_type: if datetime {
                XdbcDataType::XdbcDatetime
            } else {
                ty
            },
            datetime_subcode: match ty {
                XdbcDataType::XdbcDate => Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
                XdbcDataType::XdbcTimestamp => Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
                XdbcDataType::XdbcTime => Some(XdbcDatetimeSubcode::XdbcSubcodeTime),
                _ => None,
            },
            num_prec_radix: numeric.then_some(10),
            interval_precision: None,
        });
    };
    add("BOOLEAN", XdbcDataType::XdbcBit, Some(1), false);
    add("TINYINT", XdbcDataType::XdbcTinyint, Some(3), false);
    add("SMALLINT", XdbcDataType::XdbcSmallint, Some(5), false);
    add("INTEGER", XdbcDataType::XdbcInteger, Some(10), false);
    add("BIGINT", XdbcDataType::XdbcBigint, Some(19), false);
    add("REAL", XdbcDataType::XdbcFloat, Some(7), false);
    add("DOUBLE", XdbcDataType::XdbcDouble, Some(15), false);
    add("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), false);
    add("VARCHAR", XdbcDataType::XdbcVarchar, Some(i32::MAX), true);
    add(
        "VARBINARY",
        XdbcDataType::XdbcVarbinary,
        Some(i32::MAX),
        true,
    );
    add("DATE", XdbcDataType::XdbcDate, Some(10), true);
    add("TIME", XdbcDataType::XdbcTime, Some(15), true);
    add("TIMESTAMP", XdbcDataType::XdbcTimestamp, Some(26), true);
    b.build().expect("static type info builds")
}
