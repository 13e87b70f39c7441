//! SQL over the lake: a DataFusion session in which every lake table is registered by name
//! (`events`, `chat_turns`, `preferences`, `image_text_pairs`, `quality_scores`, `dva_votes`, `dead_letters`), served over HTTP.
//!
//! - `POST /v1/sql` with `{"sql": "..."}` answers `{"rows": [...], "columns": [...],
//!   "row_count", "truncated", "elapsed_ms"}`. Only read-only queries run: DDL, DML, `COPY`,
//!   `SET` and anything touching files outside the lake are refused with a 400 and a reason.
//! - `GET /v1/tables` lists the tables with their schemas, versions and descriptions.
//! - `GET /v1/contributors/{id}/scores` shows a contributor their scores and the reasons.
//! - `GET /review` is the DVA review page: image-text pairs with their scores, for people.
//!
//! Every query sees each table at its latest committed version. Each query runs with a memory
//! limit, a row limit and a timeout.

/// The methods of `ScalarUDFImpl` that a wrapper of a built-in function (a struct with the
/// built-in as `inner`) takes from it unchanged: everything but `invoke_with_args`.
macro_rules! delegate_to_builtin {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }

        fn aliases(&self) -> &[String] {
            self.inner.aliases()
        }

        fn signature(&self) -> &gata_lakehouse::deltalake::datafusion::logical_expr::Signature {
            self.inner.signature()
        }

        fn return_type(
            &self,
            arg_types: &[gata_lakehouse::deltalake::arrow::datatypes::DataType],
        ) -> gata_lakehouse::deltalake::datafusion::common::Result<gata_lakehouse::deltalake::arrow::datatypes::DataType>
        {
            self.inner.return_type(arg_types)
        }

        fn return_field_from_args(
            &self,
            args: gata_lakehouse::deltalake::datafusion::logical_expr::ReturnFieldArgs,
        ) -> gata_lakehouse::deltalake::datafusion::common::Result<gata_lakehouse::deltalake::arrow::datatypes::FieldRef>
        {
            self.inner.return_field_from_args(args)
        }

        fn coerce_types(
            &self,
            arg_types: &[gata_lakehouse::deltalake::arrow::datatypes::DataType],
        ) -> gata_lakehouse::deltalake::datafusion::common::Result<Vec<gata_lakehouse::deltalake::arrow::datatypes::DataType>>
        {
            self.inner.coerce_types(arg_types)
        }

        fn output_ordering(
            &self,
            input: &[gata_lakehouse::deltalake::datafusion::logical_expr::sort_properties::ExprProperties],
        ) -> gata_lakehouse::deltalake::datafusion::common::Result<
            gata_lakehouse::deltalake::datafusion::logical_expr::sort_properties::SortProperties,
        > {
            self.inner.output_ordering(input)
        }

        fn documentation(&self) -> Option<&gata_lakehouse::deltalake::datafusion::logical_expr::Documentation> {
            self.inner.documentation()
        }
    };
}

mod capped;
pub mod catalog;
pub mod contributors;
mod date_trunc;
pub mod error;
pub mod executor;
pub mod export;
pub mod flight;
pub mod formats;
mod json;
pub mod review;
mod routes;
pub mod sql;
pub mod views;

pub use catalog::Catalog;
pub use error::{QueryError, Result};
pub use routes::{QueryState, router};
pub use views::{View, Views};
