//! The SQL engine over the lake: a DataFusion session per query holding only the tables (and
//! listing views) the principal may read, at their latest versions or a time-travel version,
//! run under memory, row, byte and time limits. The HTTP and Flight SQL services
//! (`gata-query-api`) and the marketplace (`gata-marketplace`) both run their SQL here.

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
mod date_trunc;
pub mod engine;
pub mod error;
pub mod executor;
pub mod json;
mod view_filters;
pub mod views;

pub use catalog::Catalog;
pub use engine::SqlEngine;
pub use error::{QueryError, Result};
pub use views::{View, Views};
