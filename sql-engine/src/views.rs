//! Tables a principal sees besides the lake's own — a buyer's purchased listings — each defined
//! by SQL over the lake's tables. The SQL is planned in a private session holding every lake
//! table; only the resulting view is registered in the principal's session (under its schema),
//! so the tables underneath stay out of reach and the view's row filter cannot be bypassed.

use gata_infra::auth::Principal;

/// One view: `schema.table` answering `sql` (over the lake's table names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// SQL schema it is registered under (a listing id).
    pub schema: String,
    /// Table name within the schema.
    pub table: String,
    /// Its definition, over the lake's tables.
    pub sql: String,
}

/// Decides which views a principal may read, at the moment of each query.
pub trait Views: Send + Sync + std::fmt::Debug {
    /// The views `principal` may read now.
    fn views(&self, principal: &Principal) -> Vec<View>;
}
