//! Malformed, hostile and foreign Flight SQL requests. Garbage tickets and handles are
//! INVALID_ARGUMENT; a handle forged around a refused statement is refused when it runs; bound
//! parameters that are not one row, or not what the statement takes, are INVALID_ARGUMENT;
//! writing commands are PERMISSION_DENIED; oversized metadata is refused without harm; the
//! parameters one user bound to a prepared statement are never used or cleared by another user
//! holding its handle. The server answers normally after each.

mod support;

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{Any, ProstMessageExt as _, TicketStatementQuery};
use arrow_flight::{Action, FlightData, FlightDescriptor};
use futures::TryStreamExt as _;
use prost::Message as _;
use support::{TestServer, fetch_code, fixture_records, query, rows, signed};
use tonic::Code;
use tonic::transport::Channel;

/// Runs prepared statement `handle` as the holder of `token` through the raw Flight client:
/// its rows, or the status that refused it.
async fn run_prepared(
    server: &TestServer,
    token: &str,
    handle: &[u8],
) -> Result<Vec<String>, Code> {
    let mut raw = FlightServiceClient::new(server.channel().await);
    let cmd = arrow_flight::sql::CommandPreparedStatementQuery {
        prepared_statement_handle: handle.to_vec().into(),
    };
    let descriptor = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
    let info = raw
        .get_flight_info(signed(descriptor, Some(token)))
        .await
        .map_err(|s| s.code())?
        .into_inner();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let stream = raw
        .do_get(signed(ticket, Some(token)))
        .await
        .map_err(|s| s.code())?
        .into_inner()
        .map_err(arrow_flight::error::FlightError::from);
    let batches: Vec<RecordBatch> =
        arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream)
            .try_collect()
            .await
            .map_err(|e| match e {
                arrow_flight::error::FlightError::Tonic(s) => s.code(),
                _ => Code::Unknown,
            })?;
    Ok(rows(&batches))
}

/// Malformed and foreign requests: a garbage ticket or handle is INVALID_ARGUMENT, a handle
/// forged around a refused statement is refused when it runs, and the parameters one user bound
/// to a prepared statement are never used or cleared by another user holding its handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_foreign_requests_are_refused() {
    let server = TestServer::start(&fixture_records(), |c| {
        c.auth.users.push(orderlake_server::config::UserConfig {
            name: "other".into(),
            password_hash: orderlake_server::auth::hash_password("other password"),
        });
    })
    .await;
    let mine = server.client().await;
    let my_token = mine.token().unwrap().clone();
    let mut theirs = arrow_flight::sql::client::FlightSqlServiceClient::new(server.channel().await);
    theirs.handshake("other", "other password").await.unwrap();
    let their_token = theirs.token().unwrap().clone();
    let mut raw = FlightServiceClient::new(server.channel().await);

    // Garbage.
    for ticket in [
        b"\xff\x00 not a ticket".to_vec(),
        TicketStatementQuery {
            statement_handle: b"{not json".to_vec().into(),
        }
        .as_any()
        .encode_to_vec(),
    ] {
        let (code, message) =
            fetch_code(&mut raw, arrow_flight::Ticket::new(ticket), Some(&my_token)).await;
        assert_eq!(code, Code::InvalidArgument, "{message}");
    }
    assert_eq!(
        run_prepared(&server, &my_token, b"\x00garbage").await,
        Err(Code::InvalidArgument)
    );

    // A handle forged around a statement the server refuses: refused when it runs.
    let forged = serde_json::json!({
        "id": "forged", "sql": "COPY (SELECT 1) TO '/tmp/orderlake-forged.csv'",
        "scope": {"catalog": "archive", "schema": "oms"},
    });
    let forged = serde_json::to_vec(&forged).unwrap();
    assert_eq!(
        run_prepared(&server, &my_token, &forged).await,
        Err(Code::PermissionDenied)
    );
    assert!(!std::path::Path::new("/tmp/orderlake-forged.csv").exists());

    // Parameters bound with DoPut to the original handle (as older JDBC drivers use it).
    let handle = prepare(
        &mut raw,
        &my_token,
        "SELECT order_id FROM orders WHERE order_id = ?",
    )
    .await;
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("0", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["A-1"]))],
    )
    .unwrap();
    do_put(&mut raw, &my_token, binding(&handle, params).await)
        .await
        .unwrap();
    assert_eq!(
        run_prepared(&server, &my_token, &handle).await,
        Ok(vec!["A-1".to_owned()])
    );
    // Another user holding the handle runs it without my parameters, and cannot clear them.
    assert_ne!(
        run_prepared(&server, &their_token, &handle).await,
        Ok(vec!["A-1".to_owned()])
    );
    let close = arrow_flight::sql::ActionClosePreparedStatementRequest {
        prepared_statement_handle: handle.clone().into(),
    };
    raw.do_action(signed(
        Action {
            r#type: "ClosePreparedStatement".into(),
            body: close.as_any().encode_to_vec().into(),
        },
        Some(&their_token),
    ))
    .await
    .unwrap();
    assert_eq!(
        run_prepared(&server, &my_token, &handle).await,
        Ok(vec!["A-1".to_owned()])
    );
}

/// Creates a prepared statement for `sql` as the holder of `token`: its handle.
async fn prepare(raw: &mut FlightServiceClient<Channel>, token: &str, sql: &str) -> Vec<u8> {
    let create = arrow_flight::sql::ActionCreatePreparedStatementRequest {
        query: sql.into(),
        transaction_id: None,
    };
    let mut results = raw
        .do_action(signed(
            Action {
                r#type: "CreatePreparedStatement".into(),
                body: create.as_any().encode_to_vec().into(),
            },
            Some(token),
        ))
        .await
        .unwrap()
        .into_inner();
    let created = results.message().await.unwrap().unwrap();
    let created: arrow_flight::sql::ActionCreatePreparedStatementResult = Any::decode(created.body)
        .unwrap()
        .unpack()
        .unwrap()
        .unwrap();
    created.prepared_statement_handle.to_vec()
}

/// The Flight data of binding `params` to prepared statement `handle` with DoPut.
async fn binding(handle: &[u8], params: RecordBatch) -> Vec<FlightData> {
    let descriptor = FlightDescriptor::new_cmd(
        arrow_flight::sql::CommandPreparedStatementQuery {
            prepared_statement_handle: handle.to_vec().into(),
        }
        .as_any()
        .encode_to_vec(),
    );
    arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter([Ok(params)]))
        .try_collect()
        .await
        .unwrap()
}

/// DoPut of `data` as the holder of `token`: the handle it answers with, or the status.
async fn do_put(
    raw: &mut FlightServiceClient<Channel>,
    token: &str,
    data: Vec<FlightData>,
) -> Result<Vec<u8>, (Code, String)> {
    let status = |s: tonic::Status| (s.code(), s.message().to_owned());
    let results: Vec<_> = raw
        .do_put(signed(futures::stream::iter(data), Some(token)))
        .await
        .map_err(status)?
        .into_inner()
        .try_collect()
        .await
        .map_err(status)?;
    let result = results
        .into_iter()
        .next()
        .map(|r| r.app_metadata)
        .unwrap_or_default();
    let result = arrow_flight::sql::DoPutPreparedStatementResult::decode(result)
        .map_err(|e| (Code::Unknown, e.to_string()))?;
    Ok(result
        .prepared_statement_handle
        .unwrap_or_default()
        .to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_parameters_writes_and_metadata_get_precise_statuses() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let client = server.client().await;
    let token = client.token().unwrap().clone();
    let mut raw = FlightServiceClient::new(server.channel().await);
    let handle = prepare(
        &mut raw,
        &token,
        "SELECT order_id FROM orders WHERE order_id = ?",
    )
    .await;
    let one_column = |values: Vec<&str>| {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("0", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(values))],
        )
        .unwrap()
    };

    // Three rows of parameters for one execution.
    let many = binding(&handle, one_column(vec!["A-1", "A-2", "A-3"])).await;
    let (code, message) = do_put(&mut raw, &token, many).await.unwrap_err();
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("one row"), "{message}");

    // Two values for a statement that takes one: refused when it runs.
    let two = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("0", DataType::Utf8, false),
            Field::new("1", DataType::Int64, false),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["A-1"])),
            Arc::new(Int64Array::from(vec![7])),
        ],
    )
    .unwrap();
    let bound = do_put(&mut raw, &token, binding(&handle, two).await)
        .await
        .unwrap();
    assert_eq!(
        run_prepared(&server, &token, &bound).await,
        Err(Code::InvalidArgument)
    );

    // Flight data that is not Arrow IPC.
    let mut garbage = binding(&handle, one_column(vec!["A-1"])).await;
    for d in garbage.iter_mut().skip(1) {
        d.data_header = b"\x07\x00not a flatbuffer".to_vec().into();
    }
    let (code, message) = do_put(&mut raw, &token, garbage).await.unwrap_err();
    assert_eq!(code, Code::InvalidArgument, "{message}");

    // Writing commands.
    let update = arrow_flight::sql::CommandStatementUpdate {
        query: "DELETE FROM order_events".into(),
        transaction_id: None,
    };
    let data = vec![FlightData {
        flight_descriptor: Some(FlightDescriptor::new_cmd(update.as_any().encode_to_vec())),
        ..FlightData::default()
    }];
    let (code, message) = do_put(&mut raw, &token, data).await.unwrap_err();
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(message.contains("read-only"), "{message}");

    // An unknown action.
    let unknown = raw
        .do_action(signed(
            Action {
                r#type: "DropEverything".into(),
                body: Vec::new().into(),
            },
            Some(&token),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unimplemented, "{}", unknown.message());

    // Metadata far over any sane size: refused (by the transport or the server), never served.
    let mut huge = signed(arrow_flight::Ticket::new(b"x".to_vec()), Some(&token));
    huge.metadata_mut()
        .insert("x-junk", "j".repeat(1 << 20).parse().unwrap());
    assert!(raw.do_get(huge).await.is_err(), "a 1 MiB header is refused");
    let mut huge_token = tonic::Request::new(arrow_flight::Ticket::new(b"x".to_vec()));
    huge_token.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", "t".repeat(64 << 10)).parse().unwrap(),
    );
    let mut fresh = FlightServiceClient::new(server.channel().await);
    let refused = fresh.do_get(huge_token).await.unwrap_err();
    assert_ne!(refused.code(), Code::Ok);

    // Still serving, on a new connection and on the old one.
    let mut again = server.client().await;
    assert_eq!(
        rows(&query(&mut again, "SELECT count(*) FROM order_events").await),
        ["9"]
    );
    assert_eq!(
        run_prepared(
            &server,
            &token,
            &do_put(
                &mut raw,
                &token,
                binding(&handle, one_column(vec!["A-1"])).await
            )
            .await
            .unwrap()
        )
        .await,
        Ok(vec!["A-1".to_owned()])
    );
}
