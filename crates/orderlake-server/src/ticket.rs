//! Tickets and prepared-statement handles carry the query, never its results: the SQL, the
//! catalog and schema it resolves in, and bound parameter values (as an Arrow IPC batch). Any
//! server holding the archive can answer them, and a DoGet that never comes leaves nothing behind.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use datafusion::common::ScalarValue;
use orderlake_query::QueryScope;
use serde::{Deserialize, Serialize};
use tonic::Status;

/// A statement to run: the body of statement tickets and of prepared-statement handles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryHandle {
    /// Identifies this execution (tickets) or this prepared statement (handles).
    pub id: String,
    pub sql: String,
    pub scope: QueryScope,
    /// Bound parameters: one row, Arrow IPC stream, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
}

impl QueryHandle {
    pub fn new(sql: String, scope: QueryScope, params: Option<String>) -> Self {
        Self {
            id: orderlake_query::engine::new_query_id(),
            sql,
            scope,
            params,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a query handle serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Status> {
        serde_json::from_slice(bytes).map_err(|_| {
            Status::invalid_argument("the ticket or statement handle was not issued by this server")
        })
    }

    /// The bound parameter values, in placeholder order.
    pub fn param_values(&self) -> Result<Vec<ScalarValue>, Status> {
        let Some(encoded) = &self.params else {
            return Ok(Vec::new());
        };
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| Status::invalid_argument("malformed parameters in statement handle"))?;
        let reader = StreamReader::try_new(bytes.as_slice(), None)
            .map_err(|e| Status::invalid_argument(format!("malformed parameters: {e}")))?;
        let mut values = Vec::new();
        for batch in reader {
            let batch = batch
                .map_err(|e| Status::invalid_argument(format!("malformed parameters: {e}")))?;
            if batch.num_rows() != 1 {
                return Err(Status::invalid_argument(format!(
                    "malformed parameters: {} rows where one row of values belongs",
                    batch.num_rows()
                )));
            }
            for column in batch.columns() {
                let value = ScalarValue::try_from_array(column, 0)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                values.push(without_union(value));
            }
        }
        Ok(values)
    }
}

/// A parameter's value itself where a client sent it inside a dense union (Flight SQL allows a
/// union per parameter so that each execution may bind another type; `flightsql-dbapi`, the
/// dialect Superset uses, always does): the member it holds, or a typeless NULL.
fn without_union(value: ScalarValue) -> ScalarValue {
    match value {
        ScalarValue::Union(Some((_, inner)), _, _) => without_union(*inner),
        ScalarValue::Union(None, _, _) => ScalarValue::Null,
        other => other,
    }
}

/// Encodes one row of bound parameters for a handle; a client binds one row per execution.
pub fn encode_params(batch: &RecordBatch) -> Result<String, Status> {
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "bind exactly one row of parameter values per execution (got {} rows)",
            batch.num_rows()
        )));
    }
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema())
        .and_then(|mut w| w.write(batch).map(|()| w))
        .map_err(|e| Status::invalid_argument(format!("cannot encode parameters: {e}")))?;
    writer
        .finish()
        .map_err(|e| Status::internal(format!("cannot encode parameters: {e}")))?;
    drop(writer);
    Ok(STANDARD.encode(bytes))
}

/// Concatenates the parameter batches a client sent.
pub fn single_batch(batches: &[RecordBatch]) -> Result<Option<RecordBatch>, Status> {
    match batches {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => arrow::compute::concat_batches(&Arc::clone(&many[0].schema()), many)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("inconsistent parameter batches: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn parameters_round_trip_through_a_handle() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Utf8, true),
            Field::new("$2", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["ORD-1"])),
                Arc::new(Int64Array::from(vec![7])),
            ],
        )
        .unwrap();
        let scope = QueryScope {
            catalog: "archive".into(),
            schema: "oms".into(),
            time_zone: None,
            max_run_time: None,
            max_memory_bytes: None,
        };
        let handle = QueryHandle::new(
            "SELECT $1, $2".into(),
            scope,
            Some(encode_params(&batch).unwrap()),
        );
        let back = QueryHandle::decode(&handle.encode()).unwrap();
        assert_eq!(back, handle);
        assert_eq!(
            back.param_values().unwrap(),
            vec![
                ScalarValue::Utf8(Some("ORD-1".into())),
                ScalarValue::Int64(Some(7))
            ]
        );
        assert!(QueryHandle::decode(b"SELECT 1").is_err());
    }
}
