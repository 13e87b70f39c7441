//! Arrow Flight SQL on its own port (`query.flight_addr`), so ADBC, JDBC, DBeaver and Python
//! `adbc-driver-flightsql` clients query the lake with the same engine, grants and limits as
//! `POST /v1/sql`.
//!
//! - Statements: `GetFlightInfo(CommandStatementQuery)` plans the query (refusals and plan
//!   errors come back here) and answers its schema with one endpoint whose ticket carries
//!   the SQL; `DoGet` runs it and streams the batches. Tickets hold no server state, so any
//!   gata process with the query role can serve them, and the caller's grants are checked
//!   again when the ticket is redeemed.
//! - Prepared statements (what JDBC and DBeaver use): the handle is the SQL itself, the
//!   dataset schema comes from planning; parameters are not supported.
//! - Metadata: catalogs (`datafusion`), schemas (`public`), tables (only those the caller is
//!   granted, with their Arrow schemas), table types, SQL info.
//! - Auth: every call carries `authorization: Bearer <token>`, or the client first does a
//!   `Handshake` with basic auth whose password is the token, and gets the bearer back.

use std::{pin::Pin, sync::Arc};

use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
    encode::FlightDataEncoderBuilder,
    error::FlightError,
    flight_service_server::{FlightService, FlightServiceServer},
    sql::{
        ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
        CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
        CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
        metadata::{SqlInfoData, SqlInfoDataBuilder},
        server::FlightSqlService,
    },
};
use base64::Engine as _;
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use gata_infra::auth::{Authenticator, Principal};
use gata_lakehouse::deltalake::arrow::{
    array::{RecordBatch, StringArray},
    datatypes::{DataType, Field, Schema, SchemaRef},
    ipc::writer::IpcWriteOptions,
};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming, metadata::MetadataValue};

use crate::{
    QueryError,
    executor::{ByteBudget, Cap},
    sql::SqlEngine,
};

/// The catalog and schema every lake table is listed under (DataFusion's defaults, so
/// `datafusion.public.chat_turns` also names a table).
const CATALOG: &str = "datafusion";
const SCHEMA: &str = "public";

type DataStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// The Flight SQL service.
#[derive(Clone)]
pub struct FlightSql {
    engine: SqlEngine,
    auth: Authenticator,
    info: Arc<SqlInfoData>,
}

impl FlightSql {
    /// A service answering with `engine`, authenticating with `auth`.
    pub fn new(engine: SqlEngine, auth: Authenticator) -> Result<Self, QueryError> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "gata");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        let info = info.build().map_err(|e| QueryError::Startup(format!("Flight SQL info: {e}")))?;
        Ok(Self { engine, auth, info: Arc::new(info) })
    }

    /// Serves Flight SQL on `listener` until `stop` is cancelled.
    pub async fn serve(self, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), QueryError> {
        tonic::transport::Server::builder()
            .add_service(FlightServiceServer::new(self))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.cancelled_owned(),
            )
            .await
            .map_err(|e| QueryError::Flight(Box::new(e)))
    }

    fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let principal = self.auth.authorize(header).map_err(Status::unauthenticated)?;
        if principal.role.queries() {
            Ok(principal)
        } else {
            Err(Status::permission_denied("this principal may not run SQL"))
        }
    }

    /// A FlightInfo for `schema` whose one endpoint redeems `ticket`.
    fn info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
        Ok(FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor))
    }

    /// Runs `sql` for `principal` and streams it as Flight data within the byte cap.
    async fn run(&self, principal: &Principal, sql: &str) -> Result<Response<DataStream>, Status> {
        let cfg = self.engine.config();
        let stream =
            self.engine.stream(principal, sql, Vec::new(), Cap::Fail(cfg.max_stream_rows)).await.map_err(status)?;
        let schema = stream.schema();
        let mut budget = ByteBudget::new(cfg.max_result_bytes);
        let batches = stream
            .map(move |batch| {
                let batch = batch?;
                budget.spend(batch.get_array_memory_size())?;
                Ok(batch)
            })
            .map_err(|e| FlightError::Tonic(Box::new(status(e))));
        Ok(Response::new(Box::pin(
            FlightDataEncoderBuilder::new().with_schema(schema).build(batches).map_err(Status::from),
        )))
    }

    fn one_batch(
        schema: SchemaRef,
        batch: Result<RecordBatch, arrow_flight::error::FlightError>,
    ) -> Response<DataStream> {
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async move { batch }))
            .map_err(Status::from);
        Response::new(Box::pin(stream))
    }
}

/// A query error as a gRPC status.
fn status(e: QueryError) -> Status {
    let message = e.to_string();
    match gata_api::ApiError::status(&e).as_u16() {
        400 => Status::invalid_argument(message),
        401 => Status::unauthenticated(message),
        403 => Status::permission_denied(message),
        404 => Status::not_found(message),
        408 => Status::deadline_exceeded(message),
        409 => Status::cancelled(message),
        422 | 503 => Status::resource_exhausted(message),
        _ => {
            tracing::error!(error = %message, "Flight SQL query failed");
            Status::internal("internal error; see the server log")
        }
    }
}

fn utf8(bytes: &[u8]) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Status::invalid_argument("the handle is not UTF-8 SQL"))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let token = match header.strip_prefix("Basic ") {
            Some(basic) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(basic.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| Status::invalid_argument("basic auth must be base64 of user:token"))?;
                decoded.split_once(':').map(|(_, token)| token.to_string()).unwrap_or(decoded)
            }
            None => header.strip_prefix("Bearer ").unwrap_or("").to_string(),
        };
        let bearer = format!("Bearer {token}");
        self.auth.authorize(Some(&bearer)).map_err(Status::unauthenticated)?;
        let reply = HandshakeResponse { protocol_version: 0, payload: token.clone().into() };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if self.auth.enabled() {
            let value =
                MetadataValue::try_from(bearer).map_err(|_| Status::invalid_argument("bad token characters"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request)?;
        let schema = self.engine.schema(&principal, &query.query).await.map_err(status)?;
        let ticket = TicketStatementQuery { statement_handle: query.query.into_bytes().into() };
        Ok(Response::new(Self::info(&schema, ticket.as_any().encode_to_vec(), request.into_inner())?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        self.run(&principal, &utf8(&ticket.statement_handle)?).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = self.principal(&request)?;
        let schema = self.engine.schema(&principal, &query.query).await.map_err(status)?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: gata_lakehouse::deltalake::arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        self.principal(&request).map(drop)
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request)?;
        let sql = utf8(&query.prepared_statement_handle)?;
        let schema = self.engine.schema(&principal, &sql).await.map_err(status)?;
        Ok(Response::new(Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())?))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        self.run(&principal, &utf8(&query.prepared_statement_handle)?).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder().schema();
        Ok(Response::new(Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        let tables = self.engine.tables(&principal).await.map_err(status)?;
        let mut builder = query.into_builder();
        for table in tables {
            builder.append(CATALOG, SCHEMA, &table.name, "TABLE", &table.schema).map_err(Status::from)?;
        }
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        Ok(Response::new(Self::info(&table_types_schema(), query.as_any().encode_to_vec(), request.into_inner())?))
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let schema = table_types_schema();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec!["TABLE"]))])
            .map_err(FlightError::from);
        Ok(Self::one_batch(schema, batch))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder(&self.info).schema();
        Ok(Response::new(Self::info(&schema, query.as_any().encode_to_vec(), request.into_inner())?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let builder = query.into_builder(&self.info);
        Ok(Self::one_batch(builder.schema(), builder.build()))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

fn table_types_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("table_type", DataType::Utf8, false)]))
}
