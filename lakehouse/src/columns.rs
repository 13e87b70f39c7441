//! Arrow columns built straight from borrowed values, for the tables every submission lands in
//! (`events` and the chat silver tables).
//!
//! The sink spent 30% of its CPU turning rows into a batch through `arrow-json`'s serde
//! decoder: each string was copied into its tape, then out of it into the array
//! (`docs/scaling.md`, twelfth round). Here each value is copied once, into an array sized
//! before it is filled. Columns are named, and [`batch`] places them by the table's schema:
//! a column missing, left over or of the wrong type is an error, as it was with serde.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::{
    array::{
        ArrayRef, BooleanArray, Int32Array, Int64Array, ListArray, StringBuilder, StructArray,
        TimestampMicrosecondArray,
    },
    buffer::{NullBuffer, OffsetBuffer},
    datatypes::{DataType, FieldRef, Fields},
    error::ArrowError,
    record_batch::RecordBatch,
};

use crate::{LakeError, Result, TableId};

/// One named column of a batch being built.
pub(crate) type Column = (&'static str, ArrayRef);

/// Places `columns` in `table`'s schema order and checks them against it.
pub(crate) fn batch(table: TableId, columns: Vec<Column>) -> Result<RecordBatch> {
    let wrap = |source| LakeError::Rows { table: table.name(), source };
    let schema = table.schema();
    let arrays = in_order(schema.fields(), columns).map_err(wrap)?;
    RecordBatch::try_new(schema, arrays).map_err(wrap)
}

/// The arrays of `columns` in the order of `fields`, each field given exactly once.
fn in_order(fields: &Fields, columns: Vec<Column>) -> std::result::Result<Vec<ArrayRef>, ArrowError> {
    let mut by_name: HashMap<&str, ArrayRef> = columns.into_iter().collect();
    let arrays = fields
        .iter()
        .map(|f| {
            by_name
                .remove(f.name().as_str())
                .ok_or_else(|| ArrowError::SchemaError(format!("no column built for {}", f.name())))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    match by_name.keys().next() {
        Some(extra) => Err(ArrowError::SchemaError(format!("{extra} is not a column here"))),
        None => Ok(arrays),
    }
}

/// A UTF-8 column of `f` over `rows`.
pub(crate) fn strings<'a, R>(rows: &'a [R], f: impl Fn(&'a R) -> &'a str) -> ArrayRef {
    optional_strings(rows, |r| Some(f(r)))
}

/// A nullable UTF-8 column of `f` over `rows`.
pub(crate) fn optional_strings<'a, R>(rows: &'a [R], f: impl Fn(&'a R) -> Option<&'a str>) -> ArrayRef {
    let bytes = rows.iter().map(|r| f(r).map_or(0, str::len)).sum();
    let mut column = StringBuilder::with_capacity(rows.len(), bytes);
    for r in rows {
        column.append_option(f(r));
    }
    Arc::new(column.finish())
}

/// A UTF-8 column of UUIDs in their hyphenated lower-case form.
pub(crate) fn uuids<R>(rows: &[R], f: impl Fn(&R) -> uuid::Uuid) -> ArrayRef {
    let mut column = StringBuilder::with_capacity(rows.len(), rows.len() * uuid::fmt::Hyphenated::LENGTH);
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    for r in rows {
        column.append_value(f(r).hyphenated().encode_lower(&mut text));
    }
    Arc::new(column.finish())
}

/// A UTC timestamp column in microseconds.
pub(crate) fn times<R>(rows: &[R], f: impl Fn(&R) -> DateTime<Utc>) -> ArrayRef {
    let micros = rows.iter().map(|r| f(r).timestamp_micros());
    Arc::new(TimestampMicrosecondArray::from_iter_values(micros).with_timezone("UTC"))
}

/// The `day` partition column (`YYYY-MM-DD` of `f`), formatting each distinct day once.
pub(crate) fn days<R>(rows: &[R], f: impl Fn(&R) -> DateTime<Utc>) -> ArrayRef {
    let mut column = StringBuilder::with_capacity(rows.len(), rows.len() * 10);
    let mut last: Option<(NaiveDate, String)> = None;
    for r in rows {
        let date = f(r).date_naive();
        match &last {
            Some((d, text)) if *d == date => column.append_value(text),
            _ => {
                let text = date.format("%Y-%m-%d").to_string();
                column.append_value(&text);
                last = Some((date, text));
            }
        }
    }
    Arc::new(column.finish())
}

/// A 32-bit integer column.
pub(crate) fn int32s<R>(rows: &[R], f: impl Fn(&R) -> i32) -> ArrayRef {
    Arc::new(Int32Array::from_iter_values(rows.iter().map(f)))
}

/// A nullable 32-bit integer column.
pub(crate) fn optional_int32s<R>(rows: &[R], f: impl Fn(&R) -> Option<i32>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int32Array>())
}

/// A 64-bit integer column.
pub(crate) fn int64s<R>(rows: &[R], f: impl Fn(&R) -> i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
}

/// A nullable 64-bit integer column.
pub(crate) fn optional_int64s<R>(rows: &[R], f: impl Fn(&R) -> Option<i64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int64Array>())
}

/// A boolean column.
pub(crate) fn bools<R>(rows: &[R], f: impl Fn(&R) -> bool) -> ArrayRef {
    Arc::new(rows.iter().map(|r| Some(f(r))).collect::<BooleanArray>())
}

/// A non-null list column whose elements are `items(row)`, built by `values` from all rows'
/// items in order; `column` names the list in `table`'s schema, which gives its element type.
pub(crate) fn lists<'a, R, T: 'a>(
    table: TableId,
    column: &str,
    rows: &'a [R],
    items: impl Fn(&'a R) -> &'a [T],
    values: impl FnOnce(&[&'a T], &Fields) -> Result<ArrayRef>,
) -> Result<ArrayRef> {
    let element = list_element(table, column)?;
    let flat: Vec<&T> = rows.iter().flat_map(|r| items(r).iter()).collect();
    let fields = match element.data_type() {
        DataType::Struct(fields) => fields.clone(),
        _ => Fields::empty(),
    };
    let values = values(&flat, &fields)?;
    let offsets = OffsetBuffer::from_lengths(rows.iter().map(|r| items(r).len()));
    ListArray::try_new(element, offsets, values, None)
        .map(|l| Arc::new(l) as ArrayRef)
        .map_err(|source| LakeError::Rows { table: table.name(), source })
}

/// A struct column with `fields`, from the named `children`, null where `present` is false.
pub(crate) fn structs(
    table: TableId,
    fields: &Fields,
    children: Vec<Column>,
    present: Option<Vec<bool>>,
) -> Result<ArrayRef> {
    let nulls = present.map(NullBuffer::from);
    in_order(fields, children)
        .and_then(|children| StructArray::try_new(fields.clone(), children, nulls))
        .map(|s| Arc::new(s) as ArrayRef)
        .map_err(|source| LakeError::Rows { table: table.name(), source })
}

/// The fields of struct column `column` of `table`.
pub(crate) fn struct_fields(table: TableId, column: &str) -> Result<Fields> {
    match table.schema().field_with_name(column).map(|f| f.data_type().clone()) {
        Ok(DataType::Struct(fields)) => Ok(fields),
        _ => Err(schema_error(table, format!("{column} is not a struct column"))),
    }
}

fn list_element(table: TableId, column: &str) -> Result<FieldRef> {
    match table.schema().field_with_name(column).map(|f| f.data_type().clone()) {
        Ok(DataType::List(element)) => Ok(element),
        _ => Err(schema_error(table, format!("{column} is not a list column"))),
    }
}

fn schema_error(table: TableId, reason: String) -> LakeError {
    LakeError::Rows { table: table.name(), source: ArrowError::SchemaError(reason) }
}
