//! Arrow's view types (`Utf8View`, `BinaryView`, `ListView`) are how DataFusion holds data in
//! memory, not types a Delta schema can state: a shared Parquet file that carries them breaks
//! clients that follow the Delta schema (pyarrow cannot turn a list of `string_view` into
//! pandas). These map a schema, and batches to it, onto the plain types the schema states.

use std::sync::Arc;

use gata_lakehouse::deltalake::arrow::{
    array::RecordBatch,
    compute::cast,
    datatypes::{DataType, FieldRef, Schema, SchemaRef},
    error::ArrowError,
};

/// `t` with every view type, at any depth, replaced by its plain counterpart.
pub fn plain_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) | DataType::ListView(f) => DataType::List(plain_field(f)),
        DataType::LargeList(f) | DataType::LargeListView(f) => DataType::LargeList(plain_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(plain_field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(plain_field).collect()),
        DataType::Map(f, sorted) => DataType::Map(plain_field(f), *sorted),
        other => other.clone(),
    }
}

fn plain_field(f: &FieldRef) -> FieldRef {
    Arc::new(f.as_ref().clone().with_data_type(plain_type(f.data_type())))
}

/// `schema` in plain types.
pub fn plain_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema.fields().iter().map(plain_field).collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// `batch` cast to `schema` (its [`plain_schema`]).
pub fn plain_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns =
        batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    cast(column, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use gata_lakehouse::deltalake::arrow::{
        array::{Array as _, ListBuilder, StringViewBuilder},
        datatypes::Field,
    };

    use super::*;

    #[test]
    fn lists_of_string_views_become_lists_of_strings() {
        let mut list = ListBuilder::new(StringViewBuilder::new());
        list.values().append_value("resp_a");
        list.values().append_value("resp_b");
        list.append(true);
        list.append(false);
        let column = Arc::new(list.finish());
        let schema = Arc::new(Schema::new(vec![Field::new("rejected", column.data_type().clone(), true)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![column]).expect("batch");
        let plain = plain_schema(&schema);
        assert_eq!(plain.field(0).data_type(), &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))));
        let cast = plain_batch(&batch, &plain).expect("cast");
        assert_eq!(cast.schema(), plain);
        assert_eq!((cast.num_rows(), cast.column(0).null_count()), (2, 1));
    }
}
