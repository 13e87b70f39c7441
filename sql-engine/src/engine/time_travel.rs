//! Time travel: `table(<version>)` and `table('<timestamp>')` in a query name a snapshot of
//! the table, registered under a quoted alias of its own.

use std::{collections::BTreeMap, ops::ControlFlow};

use chrono::{DateTime, NaiveDateTime, Utc};
use gata_lakehouse::deltalake::datafusion::sql::{
    parser::Statement as DfStatement,
    sqlparser::ast::{
        Expr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, TableFactor, Value, VisitMut, VisitorMut,
    },
};

use crate::{QueryError, Result, catalog::LakeTable};

/// A point in a table's history.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum AsOf {
    Version(u64),
    Time(DateTime<Utc>),
}

impl AsOf {
    fn parse(table: &str, args: &[FunctionArg]) -> Result<AsOf> {
        let bad = || {
            QueryError::TimeTravel(format!(
                "{table}(...) takes one version number or one timestamp string, \
                 e.g. {table}(3) or {table}('2026-11-25T10:00:00Z')"
            ))
        };
        let [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))] = args else { return Err(bad()) };
        match &v.value {
            Value::Number(n, _) => n.parse().map(AsOf::Version).map_err(|_| bad()),
            Value::SingleQuotedString(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").map(|t| t.and_utc()))
                .map(AsOf::Time)
                .map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// Replaces `table(<as of>)` by a quoted name for that snapshot and records what to register.
pub(super) struct TimeTravel<'a> {
    pub tables: &'a BTreeMap<String, LakeTable>,
    pub wanted: Vec<(&'a LakeTable, String, AsOf)>,
}

impl VisitorMut for TimeTravel<'_> {
    type Break = QueryError;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<QueryError> {
        let TableFactor::Table { name, args, .. } = factor else { return ControlFlow::Continue(()) };
        let (Some(call), [ObjectNamePart::Identifier(ident)]) = (args.as_ref(), name.0.as_slice()) else {
            return ControlFlow::Continue(());
        };
        let table = if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() };
        let Some(entry) = self.tables.get(&table) else { return ControlFlow::Continue(()) };
        match AsOf::parse(&table, &call.args) {
            Ok(as_of) => {
                let alias = match &as_of {
                    AsOf::Version(v) => format!("{table}@v{v}"),
                    AsOf::Time(t) => format!("{table}@{}", t.to_rfc3339()),
                };
                *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::with_quote('"', alias.clone()))]);
                *args = None;
                self.wanted.push((entry, alias, as_of));
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// Walks the SQL statement inside `statement` (through `EXPLAIN`) with `visitor`.
pub(super) fn visit_statement<B>(
    statement: &mut DfStatement,
    visitor: &mut impl VisitorMut<Break = B>,
) -> ControlFlow<B> {
    match statement {
        DfStatement::Statement(s) => s.visit(visitor),
        DfStatement::Explain(e) => visit_statement(&mut e.statement, visitor),
        _ => ControlFlow::Continue(()),
    }
}

#[cfg(test)]
mod tests {
    use gata_lakehouse::deltalake::datafusion::sql::sqlparser::ast::Statement;

    use super::*;
    use crate::engine::read_only::parse_read_only;

    #[test]
    fn time_travel_arguments() {
        let args = |sql: &str| -> Vec<FunctionArg> {
            let DfStatement::Statement(s) = parse_read_only(sql).expect("parses") else { panic!("{sql}") };
            let Statement::Query(q) = *s else { panic!("{sql}") };
            let gata_lakehouse::deltalake::datafusion::sql::sqlparser::ast::SetExpr::Select(select) = *q.body else {
                panic!("{sql}")
            };
            let TableFactor::Table { args: Some(a), .. } = &select.from[0].relation else { panic!("{sql}") };
            a.args.clone()
        };
        assert_eq!(AsOf::parse("t", &args("SELECT * FROM t(7)")).expect("version"), AsOf::Version(7));
        let at = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").expect("time").with_timezone(&Utc);
        assert_eq!(
            AsOf::parse("t", &args("SELECT * FROM t('2026-11-25T10:00:00Z')")).expect("rfc3339"),
            AsOf::Time(at)
        );
        assert_eq!(AsOf::parse("t", &args("SELECT * FROM t('2026-11-25 10:00:00')")).expect("naive"), AsOf::Time(at));
        for bad in
            ["SELECT * FROM t(-1)", "SELECT * FROM t('yesterday')", "SELECT * FROM t(1, 2)", "SELECT * FROM t(x)"]
        {
            assert!(matches!(AsOf::parse("t", &args(bad)), Err(QueryError::TimeTravel(_))), "{bad}");
        }
    }
}
