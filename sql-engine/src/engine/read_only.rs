//! The guard in front of the engine: one statement, and only one that reads.

use gata_lakehouse::deltalake::datafusion::sql::{
    parser::{DFParser, Statement as DfStatement},
    sqlparser::ast::Statement,
};

use crate::{QueryError, Result};

/// Refuses anything but one read-only statement: a query (`SELECT`, `WITH`, `VALUES`),
/// `EXPLAIN [ANALYZE]` of one, `DESCRIBE` or `SHOW TABLES`/`SHOW COLUMNS`.
pub fn check_read_only(sql: &str) -> Result<()> {
    parse_read_only(sql).map(drop)
}

pub(super) fn parse_read_only(sql: &str) -> Result<DfStatement> {
    let mut statements = DFParser::parse_sql(sql)?;
    if statements.len() != 1 {
        return Err(QueryError::NotAllowed(format!("send exactly one statement (got {})", statements.len())));
    }
    let statement = statements.pop_front().ok_or_else(|| QueryError::NotAllowed("send one statement".into()))?;
    read_only(&statement)?;
    Ok(statement)
}

fn read_only(statement: &DfStatement) -> Result<()> {
    match statement {
        DfStatement::Statement(s) => match **s {
            Statement::Query(_)
            | Statement::ExplainTable { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. } => Ok(()),
            Statement::Explain { ref statement, .. } => read_only(&DfStatement::Statement(statement.clone())),
            _ => {
                let text = s.to_string();
                let verb = text.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                Err(QueryError::NotAllowed(format!("{verb} … is not a query")))
            }
        },
        DfStatement::Explain(e) => read_only(&e.statement),
        DfStatement::CreateExternalTable(_) => {
            Err(QueryError::NotAllowed("CREATE EXTERNAL TABLE reads outside the lake".into()))
        }
        DfStatement::CopyTo(_) => Err(QueryError::NotAllowed("COPY writes outside the lake".into())),
        other => Err(QueryError::NotAllowed(format!("{other} is not a query"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_read_only_queries_pass() {
        for ok in [
            "SELECT 1",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "EXPLAIN SELECT 1",
            "select count(*) from chat_turns",
            "SHOW TABLES",
            "DESCRIBE chat_turns",
            "SELECT * FROM chat_turns(3)",
            "EXPLAIN ANALYZE SELECT 1",
        ] {
            check_read_only(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "DROP TABLE chat_turns",
            "INSERT INTO chat_turns VALUES (1)",
            "DELETE FROM chat_turns",
            "UPDATE chat_turns SET prompt = 'x'",
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
            "COPY (SELECT 1) TO '/tmp/x.parquet'",
            "SET datafusion.execution.batch_size = 1",
            "SELECT 1; SELECT 2",
            "CREATE TABLE t AS SELECT 1",
            "CREATE VIEW v AS SELECT 1",
            "EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'",
        ] {
            assert!(matches!(check_read_only(bad), Err(QueryError::NotAllowed(_))), "{bad} passed");
        }
        assert!(matches!(check_read_only("SELEC 1"), Err(QueryError::Plan(_))));
    }
}
