//! `date_trunc` on UTC and zone-less timestamps by integer calendar arithmetic.
//!
//! DataFusion's built-in truncates a timestamp in a named zone (the lake's columns are
//! `Timestamp(µs, "UTC")`) to an hour, day, week, month, quarter or year one value at a time
//! through chrono-tz, which made `date_trunc('month', occurred_at)` the largest part of a
//! monthly report. UTC has no offsets, so those units are plain arithmetic on the count since
//! the epoch: floor division for hours and days, and a civil-calendar conversion of the day
//! number for the rest. Every other zone, unit or argument shape goes to the built-in.

use std::sync::Arc;

use gata_lakehouse::deltalake::{
    arrow::{
        array::{Array, AsArray as _, PrimitiveArray},
        datatypes::{
            ArrowTimestampType, DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
            TimestampNanosecondType, TimestampSecondType,
        },
    },
    datafusion::{
        common::{Result, ScalarValue},
        execution::FunctionRegistry as _,
        logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl},
        prelude::SessionContext,
    },
};

/// Replaces the session's `date_trunc` (and its aliases) with the wrapper.
pub fn register(ctx: &SessionContext) {
    if let Ok(inner) = ctx.udf("date_trunc") {
        ctx.register_udf(ScalarUDF::new_from_impl(DateTrunc { inner: inner.as_ref().clone() }));
    }
}

/// The built-in `date_trunc`, with arithmetic for UTC.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateTrunc {
    inner: ScalarUDF,
}

/// A unit the arithmetic handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    fn parse(name: &str) -> Option<Unit> {
        Some(match name.to_ascii_lowercase().as_str() {
            "hour" => Unit::Hour,
            "day" => Unit::Day,
            "week" => Unit::Week,
            "month" => Unit::Month,
            "quarter" => Unit::Quarter,
            "year" => Unit::Year,
            _ => return None,
        })
    }
}

const SECONDS_PER_DAY: i64 = 86_400;

/// `value`, counted in `per_second` ticks per second since the epoch, truncated to `unit`;
/// None when the start of its unit is out of range.
fn truncate(value: i64, per_second: i64, unit: Unit) -> Option<i64> {
    let per_day = SECONDS_PER_DAY * per_second;
    if unit == Unit::Hour {
        let per_hour = 3600 * per_second;
        return value.div_euclid(per_hour).checked_mul(per_hour);
    }
    let day = value.div_euclid(per_day);
    let start = match unit {
        Unit::Hour | Unit::Day => day,
        // 1970-01-01 was a Thursday; weeks start on Monday.
        Unit::Week => day - (day + 3).rem_euclid(7),
        Unit::Month | Unit::Quarter | Unit::Year => {
            let (year, month, _) = civil_from_days(day);
            let month = match unit {
                Unit::Quarter => (month - 1) / 3 * 3 + 1,
                Unit::Year => 1,
                _ => month,
            };
            days_from_civil(year, month, 1)
        }
    };
    start.checked_mul(per_day)
}

/// (year, month 1–12, day 1–31) of day number `days` since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Day number since 1970-01-01 of (year, month, day): the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether timestamps in `zone` are UTC (or have no zone).
fn is_utc(zone: Option<&str>) -> bool {
    matches!(zone, None | Some("UTC" | "utc" | "Z" | "+00:00" | "Etc/UTC"))
}

/// The truncated array when the call is one the arithmetic handles: a constant unit and an
/// array of UTC or zone-less timestamps, all of whose units start in range.
fn fast(args: &[ColumnarValue]) -> Option<ColumnarValue> {
    let [ColumnarValue::Scalar(unit), ColumnarValue::Array(array)] = args else { return None };
    let unit = match unit {
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
            Unit::parse(s)?
        }
        _ => return None,
    };
    let DataType::Timestamp(time_unit, zone) = array.data_type() else { return None };
    if !is_utc(zone.as_deref()) {
        return None;
    }
    fn apply<T: ArrowTimestampType>(array: &dyn Array, per_second: i64, unit: Unit) -> Option<ColumnarValue> {
        let array = array.as_primitive::<T>();
        let out: PrimitiveArray<T> = array.try_unary(|v| truncate(v, per_second, unit).ok_or(())).ok()?;
        Some(ColumnarValue::Array(Arc::new(out.with_timezone_opt(array.timezone().map(Arc::from)))))
    }
    match time_unit {
        TimeUnit::Second => apply::<TimestampSecondType>(array, 1, unit),
        TimeUnit::Millisecond => apply::<TimestampMillisecondType>(array, 1_000, unit),
        TimeUnit::Microsecond => apply::<TimestampMicrosecondType>(array, 1_000_000, unit),
        TimeUnit::Nanosecond => apply::<TimestampNanosecondType>(array, 1_000_000_000, unit),
    }
}

impl ScalarUDFImpl for DateTrunc {
    delegate_to_builtin!();

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match fast(&args.args) {
            Some(out) => Ok(out),
            None => self.inner.invoke_with_args(args),
        }
    }
}

#[cfg(test)]
mod tests {
    use gata_lakehouse::deltalake::arrow::{
        array::{ArrayRef, TimestampMicrosecondArray, TimestampNanosecondArray, TimestampSecondArray},
        datatypes::Field,
    };

    use super::*;

    /// Timestamps from 1700 to 2238 (the built-in works in nanoseconds, so no further), with the
    /// edges of days, months and leap years.
    fn seconds() -> Vec<i64> {
        let mut values = vec![0, -1, 1, 951_782_399, 951_782_400, 951_868_800, 4_107_542_400, -8_520_336_000];
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x.rem_euclid(17_000_000_000) - 8_520_336_000);
        }
        values
    }

    /// The built-in's answer and the wrapper's for `array` truncated to `unit`.
    fn both(unit: &str, array: ArrayRef) -> (ArrayRef, ArrayRef) {
        let ctx = SessionContext::new();
        let builtin = ctx.udf("date_trunc").expect("built in");
        register(&ctx);
        let wrapped = ctx.udf("date_trunc").expect("registered");
        let call = |udf: &ScalarUDF| {
            let args =
                vec![ColumnarValue::Scalar(ScalarValue::Utf8(Some(unit.into()))), ColumnarValue::Array(array.clone())];
            let arg_fields = vec![
                Arc::new(Field::new("unit", DataType::Utf8, false)),
                Arc::new(Field::new("t", array.data_type().clone(), true)),
            ];
            let return_field = Arc::new(Field::new("out", array.data_type().clone(), true));
            let out = udf
                .invoke_with_args(ScalarFunctionArgs {
                    args,
                    arg_fields,
                    number_rows: array.len(),
                    return_field,
                    config_options: Arc::new(Default::default()),
                })
                .expect("date_trunc runs");
            out.to_array(array.len()).expect("an array")
        };
        (call(&builtin), call(&wrapped))
    }

    #[test]
    fn utc_and_zoneless_timestamps_truncate_as_the_builtin_does() {
        let secs = seconds();
        for zone in [None, Some("UTC"), Some("+00:00")] {
            let arrays: Vec<ArrayRef> = vec![
                Arc::new(TimestampSecondArray::from(secs.clone()).with_timezone_opt(zone)),
                Arc::new(
                    TimestampMicrosecondArray::from(secs.iter().map(|s| s * 1_000_000 + 123_456).collect::<Vec<_>>())
                        .with_timezone_opt(zone),
                ),
                Arc::new(
                    TimestampNanosecondArray::from(secs.iter().map(|s| s * 1_000_000_000 - 7).collect::<Vec<_>>())
                        .with_timezone_opt(zone),
                ),
            ];
            for array in arrays {
                for unit in ["hour", "day", "week", "month", "quarter", "year", "MONTH", "minute", "second"] {
                    let (builtin, wrapped) = both(unit, array.clone());
                    assert_eq!(builtin.as_ref(), wrapped.as_ref(), "{unit} of {:?}", array.data_type());
                }
            }
        }
    }

    #[test]
    fn other_zones_and_nulls_go_to_the_builtin() {
        let array: ArrayRef = Arc::new(
            TimestampSecondArray::from(vec![Some(1_700_000_000), None, Some(-86_401)]).with_timezone("Asia/Kolkata"),
        );
        let (builtin, wrapped) = both("month", array);
        assert_eq!(builtin.as_ref(), wrapped.as_ref());
        let nulls: ArrayRef = Arc::new(TimestampSecondArray::from(vec![None, Some(86_399), None]).with_timezone("UTC"));
        let (builtin, wrapped) = both("day", nulls);
        assert_eq!(builtin.as_ref(), wrapped.as_ref());
        assert_eq!(wrapped.null_count(), 2);
    }

    #[test]
    fn units_that_start_out_of_range_go_to_the_builtin() {
        let edge: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![i64::MIN + 1, 0]).with_timezone("UTC"));
        let arg = |a: &ArrayRef| {
            [ColumnarValue::Scalar(ScalarValue::Utf8(Some("week".into()))), ColumnarValue::Array(a.clone())]
        };
        assert!(fast(&arg(&edge)).is_none());
        let fine: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![0, 1]).with_timezone("UTC"));
        assert!(fast(&arg(&fine)).is_some());
    }

    #[test]
    fn the_calendar_round_trips() {
        for day in -200_000..200_000 {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
