//! Running analyst SQL: one read-only statement, planned in a fresh DataFusion session that
//! holds only the tables the principal is granted (at their latest versions, or at the version
//! a time-travel clause names), executed on the query runtime under the memory, row, byte and
//! time limits of `query.*`.
//!
//! Time travel follows Seafowl: a table called like a function is read as of a version or a
//! time — `chat_turns(3)` is version 3, `chat_turns('2026-11-25T10:00:00Z')` the last version
//! committed at or before that instant.

use std::{collections::BTreeMap, ops::ControlFlow, sync::Arc, time::Instant};

use futures::StreamExt as _;
use gata_infra::{auth::Principal, config::QueryConfig, rate::RateLimits};
use gata_lakehouse::deltalake::{
    DeltaTable,
    arrow::{
        datatypes::{Schema, SchemaRef},
        record_batch::RecordBatch,
    },
    datafusion::{
        catalog::MemorySchemaProvider,
        common::{ScalarValue, TableReference},
        execution::{SessionStateBuilder, context::SQLOptions, runtime_env::RuntimeEnvBuilder},
        logical_expr::LogicalPlan,
        prelude::{SessionConfig, SessionContext},
        sql::parser::Statement as DfStatement,
    },
    kernel::engine::arrow_conversion::TryIntoArrow as _,
};
use serde::Serialize;
use serde_json::{Map, Value as Json};

mod read_only;
mod time_travel;

pub use read_only::check_read_only;
use read_only::parse_read_only;
use time_travel::{AsOf, TimeTravel, visit_statement};

use crate::{
    Catalog, QueryError, Result, Views,
    catalog::LakeTable,
    executor::{ByteBudget, Cap, Executor, QueryStream, Running},
    json,
};

/// A column of an answer.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Arrow type, as text (`Int64`, `Utf8`, `Timestamp(µs, "UTC")`).
    #[serde(rename = "type")]
    pub data_type: String,
}

/// The answer to one query in JSON. Rows come first so the data leads.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct QueryAnswer {
    /// Rows as objects keyed by column name.
    pub rows: Vec<Map<String, Json>>,
    /// The columns, in order.
    pub columns: Vec<Column>,
    /// Rows returned.
    pub row_count: usize,
    /// Whether the result had more than `max_rows` rows and was cut.
    pub truncated: bool,
    /// Time spent, in milliseconds.
    pub elapsed_ms: u64,
}

/// A table as listed by `GET /v1/tables`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TableInfo {
    /// SQL name.
    pub name: String,
    /// What it holds.
    pub description: Option<String>,
    /// Where it lives.
    pub location: String,
    /// Latest committed Delta version.
    pub version: Option<u64>,
    /// Rows in that version (from the Delta log's file statistics).
    pub rows: Option<u64>,
    /// Data files in that version (compaction lowers it).
    pub files: usize,
    /// Partition columns.
    pub partition_columns: Vec<String>,
    /// Columns.
    pub columns: Vec<Column>,
    /// The Arrow schema (for Flight SQL's table listing).
    #[serde(skip)]
    #[schemars(skip)]
    pub schema: Schema,
}

/// Runs analyst SQL over the catalog's tables.
#[derive(Debug, Clone)]
pub struct SqlEngine {
    catalog: Arc<Catalog>,
    cfg: QueryConfig,
    session_config: SessionConfig,
    executor: Arc<Executor>,
    views: Option<Arc<dyn Views>>,
    rates: Option<Arc<RateLimits>>,
}

fn columns(schema: &Schema) -> Vec<Column> {
    schema.fields().iter().map(|f| Column { name: f.name().clone(), data_type: f.data_type().to_string() }).collect()
}

impl SqlEngine {
    /// An engine over `catalog` with the limits of `cfg`, executing on its own runtime.
    pub fn new(catalog: Arc<Catalog>, cfg: QueryConfig) -> Result<Self> {
        let executor = Arc::new(Executor::new(cfg.executor_threads)?);
        let session_config = session_config(&cfg)?;
        Ok(Self { catalog, cfg, session_config, executor, views: None, rates: None })
    }

    /// The same engine refusing statements past each principal's `rates.sql` (open mode's
    /// local admin, the platform itself, is not limited).
    pub fn with_rate_limits(mut self, rates: Arc<RateLimits>) -> Self {
        self.rates = Some(rates);
        self
    }

    /// The same engine also registering the views `views` grants each principal.
    pub fn with_views(mut self, views: Arc<dyn Views>) -> Self {
        self.views = Some(views);
        self
    }

    /// The same engine with a time limit of at most `timeout`.
    pub fn with_timeout(&self, timeout: std::time::Duration) -> Self {
        let mut engine = self.clone();
        engine.cfg.timeout = engine.cfg.timeout.min(timeout);
        engine
    }

    /// How its queries ended (`gata_query_ends_total{how}`), for a metrics registry.
    pub fn ends(&self) -> prometheus::IntCounterVec {
        self.executor.ends()
    }

    /// The limits.
    pub fn config(&self) -> &QueryConfig {
        &self.cfg
    }

    /// The queries running now.
    pub fn running(&self) -> Vec<Running> {
        self.executor.running()
    }

    /// Cancels running query `id`; false when there is none.
    pub fn cancel(&self, id: &str) -> bool {
        self.executor.cancel(id)
    }

    /// A fresh session holding the tables `principal` may read, at their latest versions,
    /// with the memory limit.
    pub async fn session(&self, principal: &Principal) -> Result<SessionContext> {
        let latest = self.catalog.latest().await?;
        let ctx = self.session_over(&readable(&latest, principal)).await?;
        self.register_views(&ctx, principal, &latest).await?;
        Ok(ctx)
    }

    /// Registers the views `principal` may read in `ctx`, each planned in a private session
    /// over `latest` (every lake table, as the caller just read the catalog).
    async fn register_views(
        &self,
        ctx: &SessionContext,
        principal: &Principal,
        latest: &BTreeMap<String, LakeTable>,
    ) -> Result<()> {
        let views = self.views.as_ref().map(|v| v.views(principal)).unwrap_or_default();
        if views.is_empty() {
            return Ok(());
        }
        let private = self.session_over(latest).await?;
        let catalog = ctx
            .catalog(&ctx.state().config().options().catalog.default_catalog)
            .ok_or_else(|| QueryError::Startup("the session has no default catalog".into()))?;
        for view in views {
            if catalog.schema(&view.schema).is_none() {
                catalog.register_schema(&view.schema, Arc::new(MemorySchemaProvider::new()))?;
            }
            let provider = private.sql(&view.sql).await?.into_view();
            ctx.register_table(TableReference::partial(view.schema.as_str(), view.table.as_str()), provider)?;
        }
        Ok(())
    }

    /// A fresh session holding `tables`, with the memory limit.
    async fn session_over(&self, tables: &BTreeMap<String, LakeTable>) -> Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new().with_memory_limit(self.cfg.memory_limit_bytes, 1.0).build_arc()?;
        let state = SessionStateBuilder::new()
            .with_config(self.session_config.clone())
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::view_filters::ViewFilters))
            .build();
        let ctx = SessionContext::new_with_state(state);
        crate::capped::register(&ctx, self.cfg.max_function_bytes);
        crate::date_trunc::register(&ctx);
        for (name, entry) in tables {
            register(&ctx, name, &entry.table).await?;
        }
        Ok(ctx)
    }

    /// Plans `statement` (already checked read-only by [`parse_read_only`]) for `principal`:
    /// time travel resolved, only granted tables visible, `params` bound to `$1`, `$2`, ….
    async fn plan(
        &self,
        principal: &Principal,
        mut statement: DfStatement,
        params: Vec<ScalarValue>,
    ) -> Result<(SessionContext, LogicalPlan)> {
        let latest = self.catalog.latest().await?;
        let visible = readable(&latest, principal);
        let mut travel = TimeTravel { tables: &visible, wanted: Vec::new() };
        if let ControlFlow::Break(e) = visit_statement(&mut statement, &mut travel) {
            return Err(e);
        }
        let ctx = self.session_over(&visible).await?;
        self.register_views(&ctx, principal, &latest).await?;
        for (entry, alias, as_of) in travel.wanted {
            if ctx.table_exist(alias.as_str())? {
                continue;
            }
            let snapshot = match &as_of {
                AsOf::Version(v) => self.catalog.at_version(entry, *v).await,
                AsOf::Time(t) => self.catalog.at_timestamp(entry, *t).await,
            }
            .map_err(|e| match e {
                QueryError::Table { source, .. } => {
                    QueryError::TimeTravel(format!("{} has no {as_of:?}: {source}", entry.name))
                }
                other => other,
            })?;
            register(&ctx, &alias, &snapshot).await?;
        }
        let plan = ctx.state().statement_to_plan(statement).await?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        // Binding checks the placeholders too: a `$1` with no value is the caller's error (400).
        let plan = plan.with_param_values(params)?;
        Ok((ctx, plan))
    }

    /// Starts `sql` for `principal` on the query runtime; batches arrive on the returned
    /// stream. At `cap` rows the stream either ends (`Cap::Truncate`) or fails.
    pub async fn stream(
        &self,
        principal: &Principal,
        sql: &str,
        params: Vec<ScalarValue>,
        cap: Cap,
    ) -> Result<QueryStream> {
        if let Some(rates) = self.rates.as_ref().filter(|_| !principal.is_local_admin()) {
            rates.sql.take(&principal.name, 1.0).map_err(|limited| QueryError::RateLimited {
                who: principal.name.clone(),
                retry_after: limited.retry_after_secs(),
            })?;
        }
        // A statement that is not one read-only query is the caller's error (400), whatever
        // the time limit: it is refused before the clock starts.
        let statement = parse_read_only(sql)?;
        let engine = self.clone();
        let owner = principal.clone();
        self.executor
            .start(principal.name.clone(), sql.to_string(), self.cfg.timeout, cap, async move {
                let (ctx, plan) = engine.plan(&owner, statement, params).await?;
                let df = ctx.execute_logical_plan(plan).await?;
                Ok(df.execute_stream().await?)
            })
            .await
    }

    /// The schema `sql` would answer with, without running it (for Flight SQL's GetFlightInfo).
    pub async fn schema(&self, principal: &Principal, sql: &str) -> Result<SchemaRef> {
        let (_, plan) = self.plan(principal, parse_read_only(sql)?, Vec::new()).await?;
        Ok(Arc::new(plan.schema().as_arrow().clone()))
    }

    /// Runs one query for `principal` and collects at most `max_rows` rows as JSON.
    pub async fn run(&self, principal: &Principal, sql: &str, params: Vec<ScalarValue>) -> Result<QueryAnswer> {
        let started = Instant::now();
        let max = self.cfg.max_rows;
        let mut stream = self.stream(principal, sql, params, Cap::Truncate(max as u64 + 1)).await?;
        let schema = stream.schema();
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut budget = ByteBudget::new(self.cfg.max_result_bytes);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            budget
                .spend(batch.get_array_memory_size())
                .map_err(|e| QueryError::TooLarge(format!("{e} or ask for a streamed format")))?;
            batches.push(batch);
        }
        let mut rows = json::rows(&batches).map_err(|e| QueryError::Engine(Box::new(e.into())))?;
        let truncated = rows.len() > max;
        rows.truncate(max);
        Ok(QueryAnswer {
            row_count: rows.len(),
            rows,
            columns: columns(&schema),
            truncated,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// The tables `principal` may read, with schemas, versions and row counts.
    pub async fn tables(&self, principal: &Principal) -> Result<Vec<TableInfo>> {
        Ok(readable(&self.catalog.latest().await?, principal)
            .into_values()
            .map(|t| {
                let snapshot = t.table.snapshot().ok();
                let schema: Schema =
                    snapshot.and_then(|s| s.schema().as_ref().try_into_arrow().ok()).unwrap_or_else(Schema::empty);
                TableInfo {
                    description: t.description,
                    location: t.url.to_string(),
                    version: t.table.version(),
                    rows: snapshot.map(|s| s.log_data().iter().filter_map(|f| f.num_records()).map(|n| n as u64).sum()),
                    files: snapshot.map_or(0, |s| s.log_data().num_files()),
                    partition_columns: snapshot.map(|s| s.metadata().partition_columns().to_vec()).unwrap_or_default(),
                    columns: columns(&schema),
                    schema,
                    name: t.name,
                }
            })
            .collect())
    }
}

/// The session settings of every query: the information schema on, one partition per query
/// thread, then `query.datafusion` (an unknown name or a bad value is an error).
fn session_config(cfg: &QueryConfig) -> Result<SessionConfig> {
    let mut config =
        SessionConfig::new().with_information_schema(true).with_target_partitions(cfg.executor_threads.max(1));
    for (key, value) in &cfg.datafusion.0 {
        let key = key.to_lowercase();
        let key = if key.starts_with("datafusion.") { key } else { format!("datafusion.{key}") };
        config
            .options_mut()
            .set(&key, value)
            .map_err(|e| QueryError::Startup(format!("query.datafusion: {key} = {value:?}: {e}")))?;
    }
    Ok(config)
}

/// The tables of `latest` that `principal` may read, by SQL name.
fn readable(latest: &BTreeMap<String, LakeTable>, principal: &Principal) -> BTreeMap<String, LakeTable> {
    latest.iter().filter(|(name, _)| principal.can_read(name)).map(|(n, t)| (n.clone(), t.clone())).collect()
}

/// Registers `table` in `ctx` under `name`. The scan follows the session's Parquet settings:
/// with DataFusion's default (no row-level filter pushdown), a filter runs on decoded batches,
/// which is several times faster than Parquet row selections for filters that keep rows
/// scattered through a file; statistics and the page index still skip what they can.
pub async fn register(ctx: &SessionContext, name: &str, table: &DeltaTable) -> Result<()> {
    let state = ctx.state();
    table
        .update_datafusion_session(&state)
        .map_err(|source| QueryError::Table { table: name.to_string(), source: Box::new(source) })?;
    let provider = table.table_provider().with_session(Arc::new(state)).await?;
    ctx.register_table(name, provider)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datafusion_settings_apply_and_unknown_ones_are_refused() {
        let mut cfg = QueryConfig::default();
        cfg.datafusion.0.insert("execution.batch_size".into(), "4096".into());
        cfg.datafusion.0.insert("datafusion.execution.parquet.pushdown_filters".into(), "true".into());
        let config = session_config(&cfg).expect("known settings");
        assert_eq!(usize::from(config.options().execution.batch_size), 4096);
        assert!(config.options().execution.parquet.pushdown_filters);
        for (key, value) in [("execution.no_such_setting", "1"), ("execution.batch_size", "many")] {
            let mut cfg = QueryConfig::default();
            cfg.datafusion.0.insert(key.into(), value.into());
            let err = session_config(&cfg).expect_err(key).to_string();
            assert!(err.contains("query.datafusion") && err.contains(key), "{err}");
        }
    }
}
