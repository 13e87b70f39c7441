//! Running one analyst query: read-only check, a fresh DataFusion session over the latest
//! table versions, memory/row/time limits, JSON rows out.

use std::{sync::Arc, time::Instant};

use gata_infra::config::QueryConfig;
use gata_lakehouse::deltalake::datafusion::execution::context::SQLOptions;
use gata_lakehouse::{
    TableId,
    deltalake::datafusion::{
        execution::runtime_env::RuntimeEnvBuilder,
        prelude::{SessionConfig, SessionContext},
        sql::{
            parser::{DFParser, Statement as DfStatement},
            sqlparser::ast::Statement,
        },
    },
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{Catalog, QueryError, Result, json};

/// A column of an answer.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Arrow type, as text (`Int64`, `Utf8`, `Timestamp(µs, "UTC")`).
    #[serde(rename = "type")]
    pub data_type: String,
}

/// The answer to one query. Rows come first in the JSON so the data leads.
#[derive(Debug, Clone, Serialize)]
pub struct QueryAnswer {
    /// Rows as objects keyed by column name.
    pub rows: Vec<Map<String, Value>>,
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
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    /// SQL name.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// Where it lives.
    pub location: String,
    /// Latest committed Delta version.
    pub version: Option<u64>,
    /// Data files in that version (compaction lowers it).
    pub files: usize,
    /// Partition columns.
    pub partition_columns: &'static [&'static str],
    /// Columns.
    pub columns: Vec<Column>,
}

/// Runs analyst SQL over the catalog's tables.
#[derive(Debug, Clone)]
pub struct SqlEngine {
    catalog: Arc<Catalog>,
    cfg: QueryConfig,
}

/// Refuses anything but one read-only query (`SELECT`, `WITH`, `VALUES`, `EXPLAIN`).
pub fn check_read_only(sql: &str) -> Result<()> {
    let statements = DFParser::parse_sql(sql)?;
    if statements.len() != 1 {
        return Err(QueryError::NotAllowed(format!("send exactly one statement (got {})", statements.len())));
    }
    match &statements[0] {
        DfStatement::Statement(s) if matches!(**s, Statement::Query(_)) => Ok(()),
        DfStatement::Explain(_) => Ok(()),
        DfStatement::Statement(s) => {
            let text = s.to_string();
            let verb = text.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            Err(QueryError::NotAllowed(format!("{verb} … is not a query")))
        }
        DfStatement::CreateExternalTable(_) => {
            Err(QueryError::NotAllowed("CREATE EXTERNAL TABLE reads outside the lake".into()))
        }
        DfStatement::CopyTo(_) => Err(QueryError::NotAllowed("COPY writes outside the lake".into())),
        other => Err(QueryError::NotAllowed(format!("{other} is not a query"))),
    }
}

fn columns(schema: &gata_lakehouse::deltalake::arrow::datatypes::Schema) -> Vec<Column> {
    schema.fields().iter().map(|f| Column { name: f.name().clone(), data_type: f.data_type().to_string() }).collect()
}

impl SqlEngine {
    /// An engine over `catalog` with the limits of `cfg`.
    pub fn new(catalog: Arc<Catalog>, cfg: QueryConfig) -> Self {
        Self { catalog, cfg }
    }

    /// A fresh session over the latest table versions, with the memory limit.
    pub(crate) async fn session(&self) -> Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new().with_memory_limit(self.cfg.memory_limit_bytes, 1.0).build_arc()?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new().with_information_schema(true), runtime);
        for (id, table) in self.catalog.latest().await? {
            table
                .update_datafusion_session(&ctx.state())
                .map_err(|source| gata_lakehouse::LakeError::Read { table: id.name(), source })?;
            let provider = table.table_provider().await?;
            ctx.register_table(id.name(), provider)?;
        }
        Ok(ctx)
    }

    /// Runs one read-only query.
    pub async fn run(&self, sql: &str) -> Result<QueryAnswer> {
        let started = Instant::now();
        check_read_only(sql)?;
        let ctx = self.session().await?;
        let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let max = self.cfg.max_rows;
        let work = async {
            let df = ctx.sql_with_options(sql, options).await?;
            let schema = df.schema().as_arrow().clone();
            let batches = df.limit(0, Some(max + 1))?.collect().await?;
            Ok::<_, QueryError>((schema, batches))
        };
        let (schema, batches) =
            tokio::time::timeout(self.cfg.timeout, work).await.map_err(|_| QueryError::Timeout(self.cfg.timeout))??;
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

    /// Every table with its schema and latest version.
    pub async fn tables(&self) -> Result<Vec<TableInfo>> {
        let latest = self.catalog.latest().await?;
        Ok(TableId::ALL
            .into_iter()
            .map(|id| TableInfo {
                name: id.name(),
                description: id.description(),
                location: self.catalog.lake().table_url(id).to_string(),
                version: latest.get(&id).and_then(|t| t.version()),
                files: latest.get(&id).and_then(|t| t.get_file_uris().ok()).map_or(0, Iterator::count),
                partition_columns: id.partition_columns(),
                columns: columns(&id.schema()),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_read_only_queries_pass() {
        for ok in
            ["SELECT 1", "WITH a AS (SELECT 1) SELECT * FROM a", "EXPLAIN SELECT 1", "select count(*) from chat_turns"]
        {
            check_read_only(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "DROP TABLE chat_turns",
            "INSERT INTO chat_turns VALUES (1)",
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
            "COPY (SELECT 1) TO '/tmp/x.parquet'",
            "SET datafusion.execution.batch_size = 1",
            "SELECT 1; SELECT 2",
            "CREATE TABLE t AS SELECT 1",
        ] {
            assert!(matches!(check_read_only(bad), Err(QueryError::NotAllowed(_))), "{bad} passed");
        }
        assert!(matches!(check_read_only("SELEC 1"), Err(QueryError::Plan(_))));
    }
}
