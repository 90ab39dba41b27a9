//! The Flight SQL protocol over the cold query engine. Every call is authenticated; statement
//! calls plan in GetFlightInfo (for the schema) and run in DoGet, streaming batches as the engine
//! produces them. Endpoints carry no location: "this same server". Metadata calls answer from the
//! engine's catalog; key commands answer empty, typed results. CancelFlightInfo, session options
//! and CloseSession arrive through the action fallback, since arrow-flight has no handlers for them.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementSubstraitPlan, CommandStatementUpdate, DoPutPreparedStatementResult,
    ProstMessageExt as _, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use futures::{Stream, TryStreamExt as _};
use orderlake_query::{CancelOutcome, ColdQueryEngine, QueryRequest};
use prost::Message as _;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authenticator, Principal};
use crate::error::status;
use crate::observe::{self, Observed};
use crate::session::{
    CANCEL_FLIGHT_INFO, CLOSE_SESSION, CloseSessionResult, CloseSessionStatus, GET_SESSION_OPTIONS,
    SET_SESSION_OPTIONS, Sessions, SetSessionOptionsRequest, client_name,
};
use crate::sql_info::{sql_info, xdbc_type_info};
use crate::ticket::{QueryHandle, encode_params, single_batch};

type DataStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;
type ActionStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::Result, Status>> + Send>>;

/// Parameters bound to prepared statements, for clients that keep using the handle they were
/// first given instead of the one DoPut returns (older JDBC drivers). Kept per user: another
/// user holding the same handle never sees (or clears) them.
const MAX_BOUND_STATEMENTS: usize = 10_000;

/// Flight SQL over the cold query engine.
pub struct ColdQueryService {
    engine: Arc<ColdQueryEngine>,
    auth: Arc<Authenticator>,
    sessions: Sessions,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
    bound: Mutex<HashMap<(String, String), String>>,
}

impl std::fmt::Debug for ColdQueryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdQueryService")
            .field("engine", &self.engine)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl ColdQueryService {
    pub fn new(engine: Arc<ColdQueryEngine>, auth: Arc<Authenticator>) -> Self {
        let timeout = engine.settings().limits.timeout.as_secs();
        Self {
            sessions: Sessions::new(engine.default_scope()),
            sql_info: sql_info(timeout),
            xdbc: xdbc_type_info(),
            bound: Mutex::new(HashMap::new()),
            engine,
            auth,
        }
    }

    fn who<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.auth
            .authenticate(request.metadata())
            .inspect_err(|_| observe::auth_failed("request"))
    }

    /// A FlightInfo whose one endpoint (no location: this server) carries `ticket`.
    fn info(
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("cannot encode schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor)
            .with_total_records(-1)
            .with_total_bytes(-1);
        Ok(Response::new(info))
    }

    /// Plans a statement (for its schema) and returns a FlightInfo whose ticket runs it.
    /// The plan is kept for the ticket's DoGet, which then runs it without planning again.
    async fn statement_info(
        &self,
        handle: QueryHandle,
        user: String,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self
            .engine
            .plan_for_execution(&QueryRequest {
                id: handle.id.clone(),
                sql: handle.sql.clone(),
                params: handle.param_values()?,
                scope: handle.scope.clone(),
                user,
                source: None,
            })
            .await
            .map_err(|e| status(&e))
            .inspect_err(|s| observe::refused(observe::FLIGHT_SQL, s))?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode().into(),
        };
        Self::info(&schema, ticket.as_any().encode_to_vec(), descriptor)
    }

    /// One metadata batch as a DoGet stream.
    fn batch_stream<E: std::fmt::Display>(
        batch: Result<RecordBatch, E>,
    ) -> Result<Response<DataStream>, Status> {
        let batch = batch.map_err(|e| Status::internal(format!("metadata: {e}")))?;
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(batch.schema())
            .build(futures::stream::once(async { Ok(batch) }))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    fn empty_stream(schema: SchemaRef) -> Result<Response<DataStream>, Status> {
        Self::batch_stream(Ok::<_, Status>(RecordBatch::new_empty(schema)))
    }

    /// The handle's own parameters, else those `user` bound to it with DoPut.
    /// The refusal of a DoPut that would write (`what`), once its caller is known: every
    /// writing command is refused alike, the archive being read-only through the server.
    fn refuse_write<T>(&self, request: &Request<T>, what: &str) -> Result<Status, Status> {
        self.who(request)?;
        Ok(Status::permission_denied(format!(
            "{what} are refused: the archive is read-only through this server; the archiver is \
             its only writer"
        )))
    }

    fn handle_params(&self, handle: &QueryHandle, user: &str) -> Option<String> {
        handle.params.clone().or_else(|| {
            self.bound
                .lock()
                .expect("bound lock")
                .get(&(user.to_owned(), handle.id.clone()))
                .cloned()
        })
    }

    /// Cancels the statement behind `ticket` if `user` runs it; another user's query is refused
    /// with PERMISSION_DENIED and keeps running.
    fn cancel_ticket(&self, ticket: &[u8], user: &str) -> Result<(), Status> {
        let any = Any::decode(ticket).map_err(|_| Status::invalid_argument("malformed ticket"))?;
        let query: TicketStatementQuery =
            any.unpack().ok().flatten().ok_or_else(|| {
                Status::invalid_argument("only statement tickets can be cancelled")
            })?;
        let handle = QueryHandle::decode(&query.statement_handle)?;
        match self.engine.cancel_for(&handle.id, user) {
            CancelOutcome::NotYours => Err(Status::permission_denied(format!(
                "query {} is another user's; only they can cancel it",
                handle.id
            ))),
            CancelOutcome::Cancelled | CancelOutcome::CancelledBeforeStart => Ok(()),
        }
    }

    fn cancel_info(&self, info: &FlightInfo, user: &str) -> Result<(), Status> {
        for endpoint in &info.endpoint {
            if let Some(ticket) = &endpoint.ticket {
                self.cancel_ticket(&ticket.ticket, user)?;
            }
        }
        Ok(())
    }

    fn action_result(body: Vec<u8>) -> Response<ActionStream> {
        let result = arrow_flight::Result { body: body.into() };
        Response::new(Box::pin(futures::stream::once(async { Ok(result) })))
    }

    /// Every (catalog, schema) pair `user` can see.
    async fn names(&self, user: &str) -> Result<Vec<(String, String)>, Status> {
        let mut pairs = Vec::new();
        for entry in self.engine.tables_for(user).await.map_err(|e| status(&e))? {
            let pair = (entry.catalog, entry.schema);
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
        Ok(pairs)
    }
}

fn ipc_schema(schema: &Schema) -> Result<Vec<u8>, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes.to_vec())
}

fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

#[tonic::async_trait]
impl FlightSqlService for ColdQueryService {
    type FlightService = Self;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let (principal, token) = self
            .auth
            .sign_in(request.metadata())
            .inspect_err(|_| observe::auth_failed("handshake"))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into_bytes().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::once(async { Ok(reply) })));
        if !token.is_empty() {
            let value: MetadataValue<_> = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        tracing::debug!(user = %principal.name, "handshake");
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = self.who(&request)?;
        let scope = self.sessions.scope(&who.session_key);
        let handle = QueryHandle::new(query.query, scope, None);
        self.statement_info(handle, who.name, request.into_inner())
            .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = self.who(&request)?;
        let prepared = QueryHandle::decode(&cmd.prepared_statement_handle)?;
        let params = self.handle_params(&prepared, &who.name);
        let handle = QueryHandle::new(prepared.sql, prepared.scope, params);
        self.statement_info(handle, who.name, request.into_inner())
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let started = Instant::now();
        let who = self.who(&request)?;
        let handle = QueryHandle::decode(&ticket.statement_handle)?;
        let params = handle.param_values()?;
        let stream = self
            .engine
            .execute(QueryRequest {
                id: handle.id,
                sql: handle.sql,
                params,
                scope: handle.scope,
                user: who.name,
                source: client_name(request.metadata()),
            })
            .await
            .map_err(|e| status(&e))
            .inspect_err(|s| observe::refused(observe::FLIGHT_SQL, s))?;
        let schema = stream.schema();
        let batches = Observed::new(
            stream.map_err(|e| FlightError::Tonic(Box::new(status(&e)))),
            observe::FLIGHT_SQL,
            started,
        );
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(data)))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        // Our FlightInfos hand out statement tickets; a client that sends the prepared handle
        // itself as a ticket gets the same answer.
        let who = self.who(&request)?;
        let prepared = QueryHandle::decode(&cmd.prepared_statement_handle)?;
        let params = self.handle_params(&prepared, &who.name);
        let handle = QueryHandle::new(prepared.sql, prepared.scope, params);
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode().into(),
        };
        self.do_get_statement(ticket, request).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let who = self.who(&request)?;
        let scope = self.sessions.scope(&who.session_key);
        let planned = self
            .engine
            .plan(&query.query, &scope, &who.name)
            .await
            .map_err(|e| status(&e))?;
        let parameter_schema = Schema::new(
            planned
                .parameters
                .iter()
                .map(|(name, ty)| Field::new(name, ty.clone().unwrap_or(DataType::Utf8), true))
                .collect::<Vec<_>>(),
        );
        let handle = QueryHandle::new(query.query, scope, None);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode().into(),
            dataset_schema: ipc_schema(&planned.schema)?.into(),
            parameter_schema: ipc_schema(&parameter_schema)?.into(),
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let who = self.who(&request)?;
        let mut handle = QueryHandle::decode(&query.prepared_statement_handle)?;
        let batches: Vec<RecordBatch> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                request.into_inner().map_err(FlightError::from),
            )
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("cannot read bound parameters: {e}")))?;
        let params = match single_batch(&batches)? {
            Some(batch) if batch.num_columns() > 0 => Some(encode_params(&batch)?),
            _ => None,
        };
        {
            let mut bound = self.bound.lock().expect("bound lock");
            if bound.len() >= MAX_BOUND_STATEMENTS {
                bound.clear();
            }
            let key = (who.name, handle.id.clone());
            match &params {
                Some(p) => bound.insert(key, p.clone()),
                None => bound.remove(&key),
            };
        }
        handle.params = params;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode().into()),
        })
    }

    async fn do_put_statement_update(
        &self,
        _: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(self.refuse_write(&request, "updates")?)
    }

    async fn do_put_prepared_statement_update(
        &self,
        _: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(self.refuse_write(&request, "updates")?)
    }

    async fn do_put_statement_ingest(
        &self,
        _: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(self.refuse_write(&request, "bulk ingestion")?)
    }

    async fn do_put_substrait_plan(
        &self,
        _: CommandStatementSubstraitPlan,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(self.refuse_write(&request, "Substrait plans")?)
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let who = self.who(&request)?;
        if let Ok(handle) = QueryHandle::decode(&query.prepared_statement_handle) {
            self.bound
                .lock()
                .expect("bound lock")
                .remove(&(who.name, handle.id));
        }
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(&request)?;
        let schema = query.into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let who = self.who(&request)?;
        let mut builder = query.into_builder();
        let mut seen = Vec::new();
        for (catalog, _) in self.names(&who.name).await? {
            if !seen.contains(&catalog) {
                builder.append(&catalog);
                seen.push(catalog);
            }
        }
        Self::batch_stream(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let who = self.who(&request)?;
        let mut builder = query.into_builder();
        for (catalog, schema) in self.names(&who.name).await? {
            builder.append(catalog, schema);
        }
        Self::batch_stream(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(&request)?;
        let schema = query.clone().into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let who = self.who(&request)?;
        let tables = self
            .engine
            .tables_for(&who.name)
            .await
            .map_err(|e| status(&e))?;
        let mut builder = query.into_builder();
        for t in tables {
            builder
                .append(&t.catalog, &t.schema, &t.name, t.kind, &t.arrow_schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Self::batch_stream(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(&request)?;
        let schema = query.into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.who(&request)?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        Self::batch_stream(builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(&request)?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.who(&request)?;
        Self::batch_stream(query.into_builder(&self.sql_info).build())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(&request)?;
        let schema = query.into_builder(&self.xdbc).schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.who(&request)?;
        Self::batch_stream(query.into_builder(&self.xdbc).build())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(&request)?;
        Self::info(
            &primary_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.who(&request)?;
        // The archive declares no keys: an event log has none to enforce.
        Self::empty_stream(primary_keys_schema())
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(&request)?;
        Self::info(
            &foreign_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.who(&request)?;
        Self::empty_stream(foreign_keys_schema())
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(&request)?;
        Self::info(
            &foreign_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.who(&request)?;
        Self::empty_stream(foreign_keys_schema())
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(&request)?;
        Self::info(
            &foreign_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.who(&request)?;
        Self::empty_stream(foreign_keys_schema())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let who = self.who(&request)?;
        let info = FlightInfo::decode(query.info)
            .map_err(|_| Status::invalid_argument("CancelQuery carries a malformed FlightInfo"))?;
        self.cancel_info(&info, &who.name)?;
        // CancelResult::Cancelled.
        Ok(ActionCancelQueryResult { result: 1 })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let who = self.who(&request)?;
        let action = request.into_inner();
        let malformed = |what: &str| Status::invalid_argument(format!("malformed {what} request"));
        match action.r#type.as_str() {
            CANCEL_FLIGHT_INFO => {
                let req = CancelFlightInfoRequest::decode(action.body)
                    .map_err(|_| malformed(CANCEL_FLIGHT_INFO))?;
                let info = req.info.ok_or_else(|| {
                    Status::invalid_argument("CancelFlightInfo needs the FlightInfo")
                })?;
                self.cancel_info(&info, &who.name)?;
                let result = CancelFlightInfoResult {
                    status: CancelStatus::Cancelled as i32,
                };
                Ok(Self::action_result(result.encode_to_vec()))
            }
            SET_SESSION_OPTIONS => {
                let req = SetSessionOptionsRequest::decode(action.body)
                    .map_err(|_| malformed(SET_SESSION_OPTIONS))?;
                let engine = Arc::clone(&self.engine);
                let result = self
                    .sessions
                    .set(&who.session_key, &req, |catalog, schema| {
                        engine.check_scope(catalog, schema).is_ok()
                    });
                Ok(Self::action_result(result.encode_to_vec()))
            }
            GET_SESSION_OPTIONS => {
                let result = self.sessions.get(&who.session_key);
                Ok(Self::action_result(result.encode_to_vec()))
            }
            CLOSE_SESSION => {
                self.sessions.close(&who.session_key);
                self.auth.revoke(&who.session_key);
                let result = CloseSessionResult {
                    status: CloseSessionStatus::Closed as i32,
                };
                Ok(Self::action_result(result.encode_to_vec()))
            }
            other => Err(Status::unimplemented(format!(
                "action {other} is not supported by this read-only server"
            ))),
        }
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        let action = |name: &str, description: &str| {
            Ok(ActionType {
                r#type: name.to_owned(),
                description: description.to_owned(),
            })
        };
        Some(vec![
            action(
                CANCEL_FLIGHT_INFO,
                "Cancel a running query, given its FlightInfo",
            ),
            action(SET_SESSION_OPTIONS, "Set the session's catalog and schema"),
            action(GET_SESSION_OPTIONS, "Get the session's catalog and schema"),
            action(CLOSE_SESSION, "End the session and its bearer token"),
        ])
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
