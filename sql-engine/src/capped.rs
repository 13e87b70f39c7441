//! SQL functions whose output size the caller chooses (`repeat('x', 2000000000)`) allocate their
//! result outside the query's memory pool, so one statement could take the process down. Each
//! is replaced, by name, with a wrapper that works out how many bytes the call would produce for
//! the batch before running the built-in, and refuses past `query.max_function_bytes` with a
//! plan error (400) that names the function and the budget.

use gata_lakehouse::deltalake::{
    arrow::{
        array::{Array, ArrayRef, AsArray as _, Int64Array},
        compute::{cast, kernels::length::length},
        datatypes::{DataType, Int64Type},
    },
    datafusion::{
        common::{Result, plan_err},
        execution::FunctionRegistry as _,
        logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl},
        prelude::SessionContext,
    },
};

/// How a function's output grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text's bytes times n.
    Repeat,
    /// `lpad`/`rpad(text, n, …)`: n characters of up to 4 bytes.
    Pad,
    /// `array_repeat(x, n)`: n elements (8 bytes counted each).
    ArrayRepeat,
    /// `range`/`generate_series(start, stop[, step])` on integers: (stop − start) / step
    /// elements of 8 bytes.
    Series,
}

/// The functions that are capped, with how they grow.
const CAPPED: [(&str, Growth); 6] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::ArrayRepeat),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
];

/// Replaces each capped built-in of `ctx` with its budgeted wrapper (a name the session does not
/// know cannot be called, so there is nothing to wrap).
pub fn register(ctx: &SessionContext, max_bytes: u64) {
    for (name, growth) in CAPPED {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Capped { inner: inner.as_ref().clone(), growth, max_bytes }));
        }
    }
}

/// A built-in with a byte budget per call.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Capped {
    inner: ScalarUDF,
    growth: Growth,
    max_bytes: u64,
}

impl Capped {
    /// Bytes the call would produce over the batch, as far as the arguments tell.
    fn bytes(&self, args: &[ColumnarValue], rows: usize) -> Result<u64> {
        let ints = |i: usize| -> Result<Option<Int64Array>> { int_arg(args.get(i), rows) };
        let total = |counts: &Int64Array, each: &dyn Fn(usize) -> u64| -> u64 {
            (0..counts.len())
                .filter(|r| counts.is_valid(*r))
                .map(|r| (counts.value(r).max(0) as u64).saturating_mul(each(r)))
                .fold(0u64, u64::saturating_add)
        };
        Ok(match self.growth {
            Growth::Repeat => {
                let (Some(counts), Some(lengths)) = (ints(1)?, text_lengths(args.first(), rows)?) else { return Ok(0) };
                total(&counts, &|r| lengths[r])
            }
            Growth::Pad => ints(1)?.map_or(0, |counts| total(&counts, &|_| 4)),
            Growth::ArrayRepeat => ints(1)?.map_or(0, |counts| total(&counts, &|_| 8)),
            Growth::Series => {
                let (start, stop) = match args.len() {
                    1 => (None, ints(0)?),
                    _ => (ints(0)?, ints(1)?),
                };
                let (Some(stop), step) = (stop, ints(2)?) else { return Ok(0) };
                (0..stop.len())
                    .map(|r| {
                        let from = start.as_ref().map_or(0, |s| s.value(r));
                        let by = step.as_ref().map_or(1, |s| s.value(r)).unsigned_abs().max(1);
                        (stop.value(r).abs_diff(from) / by).saturating_add(1).saturating_mul(8)
                    })
                    .fold(0u64, u64::saturating_add)
            }
        })
    }
}

/// Argument `arg` as Int64 values, one per row; None when it is not an integer.
fn int_arg(arg: Option<&ColumnarValue>, rows: usize) -> Result<Option<Int64Array>> {
    let Some(arg) = arg else { return Ok(None) };
    let array = arg.to_array(rows)?;
    if !array.data_type().is_integer() {
        return Ok(None);
    }
    int64(&array).map(Some)
}

/// Byte length of text argument `arg` per row (0 for null); None when it is not text.
fn text_lengths(arg: Option<&ColumnarValue>, rows: usize) -> Result<Option<Vec<u64>>> {
    let Some(arg) = arg else { return Ok(None) };
    let array: ArrayRef = arg.to_array(rows)?;
    if !matches!(array.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        return Ok(None);
    }
    let lengths = int64(&length(&array)?)?;
    Ok(Some(lengths.iter().map(|l| l.unwrap_or(0).max(0) as u64).collect()))
}

/// `array` (an integer array) cast to Int64.
fn int64(array: &ArrayRef) -> Result<Int64Array> {
    Ok(cast(array, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
}

impl ScalarUDFImpl for Capped {
    delegate_to_builtin!();

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.bytes(&args.args, args.number_rows)?;
        if bytes > self.max_bytes {
            return plan_err!(
                "{}() would produce {bytes} bytes for one batch, more than query.max_function_bytes ({})",
                self.name(),
                self.max_bytes
            );
        }
        self.inner.invoke_with_args(args)
    }
}
