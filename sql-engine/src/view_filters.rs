//! Filter predicates answered a machine word at a time.
//!
//! The Parquet reader hands strings to DataFusion as `Utf8View`: per row a 16-byte view holding
//! the length, then either the whole string (up to 12 bytes, zero-padded) or its first 4 bytes
//! and where the rest lies. Arrow's comparison kernels walk those views with several branches a
//! row and compare floats through `total_cmp` one at a time, and DataFusion's `AND` filters a
//! batch by its left side and scatters the right side's answers back run by run once the left
//! keeps under a fifth of the rows. For the filters analysts write most
//! (`verdict = 'accept' AND score > 0.5`, `model LIKE 'gpt%' AND latency_ms < 1000`) those were
//! most of the query's time.
//!
//! [`ViewFilters`] is a physical optimizer rule that rewrites a `FilterExec`'s predicate:
//! - a column compared with a literal becomes a [`ColumnTest`] that packs 64 answers a word
//!   from a branch-free test of each value: `=` and `<>` on `Utf8View` (for text of up to 12
//!   bytes one 128-bit comparison of views, otherwise length and first 4 bytes from the view,
//!   then the bytes only where those agree), and every comparison on `Float64` (by an integer
//!   key in SQL's float order) and `Int64`;
//! - `column LIKE 'prefix%'` (and `NOT LIKE`, a prefix without wildcards or escapes) on
//!   `Utf8View` becomes a [`ColumnTest`] that reads the view's length and inline bytes, then the
//!   bytes only for long strings whose first 4 bytes agree;
//! - `a AND b` where `b` costs about as much as selecting rows does (one of the above, or a
//!   comparison of a column that is not a string with a literal) becomes [`EagerAnd`]: both
//!   sides over the whole batch, combined with SQL's three-valued `AND`.
//!
//! Answers, nulls, NaN and `-0.0` included, are those of the expressions they replace (tests
//! below compare them with Arrow's kernels and with DataFusion's own plans).

use std::{
    fmt::{self, Display, Formatter},
    hash::Hash,
    sync::Arc,
};

use gata_lakehouse::deltalake::{
    arrow::{
        array::{Array, AsArray as _, BooleanArray},
        buffer::{BooleanBuffer, Buffer},
        compute::and_kleene,
        datatypes::{DataType, Float64Type, Int64Type, Schema},
        record_batch::RecordBatch,
    },
    datafusion::{
        common::{
            Result, ScalarValue, internal_err,
            tree_node::{Transformed, TransformedResult as _, TreeNode as _},
        },
        config::ConfigOptions,
        logical_expr::{ColumnarValue, Operator},
        physical_expr::{
            PhysicalExpr,
            expressions::{BinaryExpr, Column, IsNotNullExpr, IsNullExpr, LikeExpr, Literal},
        },
        physical_optimizer::PhysicalOptimizerRule,
        physical_plan::{
            ExecutionPlan,
            filter::{FilterExec, FilterExecBuilder},
        },
    },
};

/// The rule; see the module documentation.
#[derive(Debug, Default)]
pub struct ViewFilters;

impl PhysicalOptimizerRule for ViewFilters {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else { return Ok(Transformed::no(node)) };
            let schema = filter.input().schema();
            let predicate = rewrite(Arc::clone(filter.predicate()), &schema)?;
            if !predicate.transformed {
                return Ok(Transformed::no(node));
            }
            let rewritten = FilterExecBuilder::from(filter).with_predicate(predicate.data).build()?;
            Ok(Transformed::yes(Arc::new(rewritten) as Arc<dyn ExecutionPlan>))
        })
        .data()
    }

    fn name(&self) -> &str {
        "view_filters"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Rewrites the parts of `predicate` the module's expressions answer faster, bottom up.
fn rewrite(predicate: Arc<dyn PhysicalExpr>, schema: &Schema) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
    predicate.transform_up(|expr| {
        let replaced: Option<Arc<dyn PhysicalExpr>> = if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
            match binary.op() {
                Operator::And if cheap(binary.right(), schema) => {
                    Some(Arc::new(EagerAnd { left: Arc::clone(binary.left()), right: Arc::clone(binary.right()) }))
                }
                _ => ColumnTest::comparison(binary, schema).map(|e| Arc::new(e) as _),
            }
        } else if let Some(like) = expr.downcast_ref::<LikeExpr>() {
            ColumnTest::prefix(like, schema).map(|e| Arc::new(e) as _)
        } else {
            None
        };
        Ok(replaced.map_or_else(|| Transformed::no(expr), Transformed::yes))
    })
}

/// Whether evaluating `expr` on every row costs about what selecting rows for it would.
fn cheap(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> bool {
    let column_or_literal = |e: &Arc<dyn PhysicalExpr>| {
        (e.is::<Column>() || e.is::<Literal>())
            && e.data_type(schema)
                .is_ok_and(|t| !matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
    };
    if expr.is::<ColumnTest>() {
        return true;
    }
    if let Some(and) = expr.downcast_ref::<EagerAnd>() {
        return cheap(&and.left, schema) && cheap(&and.right, schema);
    }
    if let Some(e) = expr.downcast_ref::<IsNullExpr>() {
        return e.arg().is::<Column>();
    }
    if let Some(e) = expr.downcast_ref::<IsNotNullExpr>() {
        return e.arg().is::<Column>();
    }
    expr.downcast_ref::<BinaryExpr>().is_some_and(|b| {
        matches!(b.op(), Operator::Eq | Operator::NotEq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq)
            && column_or_literal(b.left())
            && column_or_literal(b.right())
    })
}

/// The view of a string of up to 12 bytes: length, then the bytes, zero-padded.
fn inline_view(bytes: &[u8]) -> u128 {
    let mut view = [0u8; 16];
    view[..4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
    view[4..4 + bytes.len()].copy_from_slice(bytes);
    u128::from_le_bytes(view)
}

/// The first (up to) 4 bytes of `bytes` as a view stores them, with the mask of those bytes.
fn prefix_word(bytes: &[u8]) -> (u32, u32) {
    let n = bytes.len().min(4);
    let mut word = [0u8; 4];
    word[..n].copy_from_slice(&bytes[..n]);
    let mask = if n == 4 { u32::MAX } else { (1u32 << (8 * n)) - 1 };
    (u32::from_le_bytes(word), mask)
}

/// A float's place in SQL's order as an integer: `-0.0` is `0.0`, then Rust's `total_cmp`
/// (NaN above everything), the order Arrow's kernels compare floats in.
fn float_key(x: f64) -> i64 {
    let x = if x == 0.0 { 0.0 } else { x };
    let bits = x.to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
}

/// Whether each of `values` passes, 64 to a word (`passes` gets the row and the value).
fn pack<T: Copy>(values: &[T], passes: impl Fn(usize, T) -> bool) -> BooleanBuffer {
    let mut words = Vec::with_capacity(values.len().div_ceil(64));
    let chunks = values.chunks_exact(64);
    let rest = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        let mut word = 0u64;
        for (j, &value) in chunk.iter().enumerate() {
            word |= u64::from(passes(c * 64 + j, value)) << j;
        }
        words.push(word);
    }
    if !rest.is_empty() {
        let base = values.len() - rest.len();
        words.push(
            rest.iter().enumerate().fold(0u64, |word, (j, &value)| word | u64::from(passes(base + j, value)) << j),
        );
    }
    BooleanBuffer::new(Buffer::from_vec(words), 0, values.len())
}

/// How a number compares with the literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Order {
    Equal,
    Less,
    Greater,
}

impl Order {
    /// The order an operator asks for, and whether the answer is negated (`>=` is not `<`).
    fn of(op: Operator) -> Option<(Order, bool)> {
        Some(match op {
            Operator::Eq => (Order::Equal, false),
            Operator::NotEq => (Order::Equal, true),
            Operator::Lt => (Order::Less, false),
            Operator::GtEq => (Order::Less, true),
            Operator::Gt => (Order::Greater, false),
            Operator::LtEq => (Order::Greater, true),
            _ => return None,
        })
    }

    fn holds(self, value: i64, literal: i64) -> bool {
        match self {
            Order::Equal => value == literal,
            Order::Less => value < literal,
            Order::Greater => value > literal,
        }
    }

    fn sql(self, negated: bool) -> &'static str {
        match (self, negated) {
            (Order::Equal, false) => "=",
            (Order::Equal, true) => "!=",
            (Order::Less, false) => "<",
            (Order::Less, true) => ">=",
            (Order::Greater, false) => ">",
            (Order::Greater, true) => "<=",
        }
    }
}

/// What a [`ColumnTest`] tests each row for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Test {
    /// A `Utf8View` equal to these bytes.
    Equals(Vec<u8>),
    /// A `Utf8View` starting with these bytes (not empty).
    StartsWith(Vec<u8>),
    /// A `Float64`, by [`float_key`], in this order to the literal's key.
    Float(Order, i64),
    /// An `Int64` in this order to the literal.
    Int(Order, i64),
}

impl Test {
    /// Whether each row of `array` passes, nulls aside.
    fn run(&self, array: &dyn Array) -> Option<BooleanBuffer> {
        Some(match self {
            Test::Float(order, key) => {
                pack(array.as_primitive_opt::<Float64Type>()?.values(), |_, x| order.holds(float_key(x), *key))
            }
            Test::Int(order, literal) => {
                pack(array.as_primitive_opt::<Int64Type>()?.values(), |_, x| order.holds(x, *literal))
            }
            Test::Equals(text) => {
                let array = array.as_string_view_opt()?;
                if text.len() <= 12 {
                    let wanted = inline_view(text);
                    pack(array.views(), |_, view| view == wanted)
                } else {
                    let (prefix, _) = prefix_word(text);
                    let head = u64::from(text.len() as u32) | (u64::from(prefix) << 32);
                    pack(array.views(), |i, view| view as u64 == head && array.value(i).as_bytes() == text.as_slice())
                }
            }
            Test::StartsWith(prefix) => {
                let array = array.as_string_view_opt()?;
                let wanted = prefix.len() as u32;
                let (head, head_mask) = prefix_word(prefix);
                let head_agrees = move |view: u128| view as u32 >= wanted && ((view >> 32) as u32) & head_mask == head;
                if prefix.len() <= 4 {
                    return Some(pack(array.views(), |_, view| head_agrees(view)));
                }
                // Up to 12 bytes a short string's inline bytes decide; past them, the string's.
                let inline =
                    (prefix.len() <= 12).then(|| (inline_view(prefix) >> 32, (1u128 << (8 * prefix.len())) - 1));
                pack(array.views(), |i, view| {
                    head_agrees(view)
                        && match inline {
                            Some((bytes, mask)) if view as u32 <= 12 => (view >> 32) & mask == bytes,
                            _ => array.value(i).as_bytes().starts_with(prefix),
                        }
                })
            }
        })
    }

    fn sql(&self, negated: bool) -> &'static str {
        match (self, negated) {
            (Test::Equals(_), _) => Order::Equal.sql(negated),
            (Test::StartsWith(_), false) => "LIKE",
            (Test::StartsWith(_), true) => "NOT LIKE",
            (Test::Float(order, _) | Test::Int(order, _), _) => order.sql(negated),
        }
    }
}

/// A column compared with a literal (`=`, `<>`, `<`, `<=`, `>`, `>=` on `Utf8View` for the
/// first two, `Float64` and `Int64`; `LIKE 'prefix%'` and `NOT LIKE` on `Utf8View`).
#[derive(Debug, Clone)]
pub struct ColumnTest {
    input: Arc<dyn PhysicalExpr>,
    /// The literal as the query wrote it (for display).
    literal: Arc<dyn PhysicalExpr>,
    test: Test,
    negated: bool,
}

impl ColumnTest {
    /// `column <op> literal` or `literal <op> column`, when a [`Test`] answers it.
    fn comparison(binary: &BinaryExpr, schema: &Schema) -> Option<ColumnTest> {
        let op = *binary.op();
        let (input, literal, op) = if binary.left().is::<Column>() && binary.right().is::<Literal>() {
            (binary.left(), binary.right(), op)
        } else if binary.right().is::<Column>() && binary.left().is::<Literal>() {
            (binary.right(), binary.left(), op.swap()?)
        } else {
            return None;
        };
        let (order, negated) = Order::of(op)?;
        let value = literal.downcast_ref::<Literal>()?.value();
        let test = match (input.data_type(schema).ok()?, value) {
            (DataType::Float64, ScalarValue::Float64(Some(x))) => Test::Float(order, float_key(*x)),
            (DataType::Int64, ScalarValue::Int64(Some(x))) => Test::Int(order, *x),
            (DataType::Utf8View, value) if order == Order::Equal => {
                Test::Equals(value.try_as_str().flatten()?.as_bytes().to_vec())
            }
            _ => return None,
        };
        Some(ColumnTest { input: Arc::clone(input), literal: Arc::clone(literal), test, negated })
    }

    /// `column LIKE 'prefix%'` (or `NOT LIKE`) with a prefix free of wildcards and escapes.
    fn prefix(like: &LikeExpr, schema: &Schema) -> Option<ColumnTest> {
        let utf8_view = like.expr().data_type(schema).is_ok_and(|t| t == DataType::Utf8View);
        if like.case_insensitive() || !like.expr().is::<Column>() || !utf8_view {
            return None;
        }
        let pattern = like.pattern().downcast_ref::<Literal>()?.value().try_as_str().flatten()?;
        let prefix = pattern.strip_suffix('%')?;
        let plain = !prefix.is_empty() && !prefix.contains(['%', '_', '\\']);
        plain.then(|| ColumnTest {
            input: Arc::clone(like.expr()),
            literal: Arc::clone(like.pattern()),
            test: Test::StartsWith(prefix.as_bytes().to_vec()),
            negated: like.negated(),
        })
    }
}

impl PartialEq for ColumnTest {
    fn eq(&self, other: &Self) -> bool {
        self.input.eq(&other.input) && self.test == other.test && self.negated == other.negated
    }
}

impl Eq for ColumnTest {}

impl Hash for ColumnTest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.input.hash(state);
        self.test.hash(state);
        self.negated.hash(state);
    }
}

impl Display for ColumnTest {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.input, self.test.sql(self.negated), self.literal)
    }
}

impl PhysicalExpr for ColumnTest {
    fn data_type(&self, _schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, schema: &Schema) -> Result<bool> {
        self.input.nullable(schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let array = self.input.evaluate(batch)?.into_array(batch.num_rows())?;
        let Some(passed) = self.test.run(&array) else {
            return internal_err!("{self} does not apply to {}", array.data_type());
        };
        let values = if self.negated { !&passed } else { passed };
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(values, array.nulls().cloned()))))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.input]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn PhysicalExpr>>) -> Result<Arc<dyn PhysicalExpr>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(ColumnTest { input, ..self.as_ref().clone() })),
            Err(children) => internal_err!("a column test takes 1 child, got {}", children.len()),
        }
    }

    fn fmt_sql(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.input.fmt_sql(f)?;
        write!(f, " {} ", self.test.sql(self.negated))?;
        self.literal.fmt_sql(f)
    }
}

/// `left AND right`, both sides over the whole batch.
#[derive(Debug, Clone)]
pub struct EagerAnd {
    left: Arc<dyn PhysicalExpr>,
    right: Arc<dyn PhysicalExpr>,
}

impl PartialEq for EagerAnd {
    fn eq(&self, other: &Self) -> bool {
        self.left.eq(&other.left) && self.right.eq(&other.right)
    }
}

impl Eq for EagerAnd {}

impl Hash for EagerAnd {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.left.hash(state);
        self.right.hash(state);
    }
}

impl Display for EagerAnd {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} AND {}", self.left, self.right)
    }
}

impl PhysicalExpr for EagerAnd {
    fn data_type(&self, _schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, schema: &Schema) -> Result<bool> {
        Ok(self.left.nullable(schema)? || self.right.nullable(schema)?)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let left = self.left.evaluate(batch)?.into_array(rows)?;
        let left = left.as_boolean();
        // Nothing true or unknown on the left: the answer is the left.
        if left.null_count() == 0 && left.true_count() == 0 {
            return Ok(ColumnarValue::Array(Arc::new(left.clone())));
        }
        let right = self.right.evaluate(batch)?.into_array(rows)?;
        Ok(ColumnarValue::Array(Arc::new(and_kleene(left, right.as_boolean())?)))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.left, &self.right]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn PhysicalExpr>>) -> Result<Arc<dyn PhysicalExpr>> {
        match <[_; 2]>::try_from(children) {
            Ok([left, right]) => Ok(Arc::new(EagerAnd { left, right })),
            Err(children) => internal_err!("AND takes 2 children, got {}", children.len()),
        }
    }

    fn fmt_sql(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.left.fmt_sql(f)?;
        f.write_str(" AND ")?;
        self.right.fmt_sql(f)
    }
}

#[cfg(test)]
mod tests {
    use gata_lakehouse::deltalake::{
        arrow::{
            array::{ArrayRef, Float64Array, Int64Array, RecordBatch, Scalar, StringViewArray},
            compute::kernels::{cmp, comparison},
            datatypes::{Field, SchemaRef},
        },
        datafusion::{
            datasource::MemTable,
            execution::SessionStateBuilder,
            prelude::{SessionConfig, SessionContext},
        },
    };

    use super::*;

    /// Strings that share prefixes, short and long (inline and not), the empty one, nulls.
    fn strings(rows: usize) -> Vec<Option<String>> {
        let stems =
            ["", "g", "gp", "gpt", "gpt-", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini-2024", "acce", "accept", "reject"];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        (0..rows)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let stem = stems[(seed % stems.len() as u64) as usize];
                match (seed >> 8) % 5 {
                    0 => None,
                    1 => Some(format!("{stem}{}", "x".repeat(((seed >> 16) % 14) as usize))),
                    _ => Some(stem.to_string()),
                }
            })
            .collect()
    }

    fn views(rows: &[Option<String>]) -> StringViewArray {
        rows.iter().map(|s| s.as_deref()).collect()
    }

    const LITERALS: [&str; 10] =
        ["g", "gp", "gpt", "gpt-", "gpt-4", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini-2024", "gpt-4o-mini-2024x", "accept"];

    #[test]
    fn answers_equal_arrows_kernels_nulls_and_slices_included() {
        let all = views(&strings(3000));
        for array in [all.clone(), all.slice(7, 2100)] {
            let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8View, true)]));
            let batch = RecordBatch::try_new(schema, vec![Arc::new(array.clone())]).unwrap();
            let input: Arc<dyn PhysicalExpr> = Arc::new(Column::new("s", 0));
            for literal in LITERALS {
                let scalar = Scalar::new(StringViewArray::from(vec![literal]));
                let pattern = Scalar::new(StringViewArray::from(vec![format!("{literal}%")]));
                let expected = [
                    (Test::Equals(literal.into()), false, cmp::eq(&array, &scalar).unwrap()),
                    (Test::Equals(literal.into()), true, cmp::neq(&array, &scalar).unwrap()),
                    (Test::StartsWith(literal.into()), false, comparison::like(&array, &pattern).unwrap()),
                    (Test::StartsWith(literal.into()), true, comparison::nlike(&array, &pattern).unwrap()),
                ];
                for (test, negated, expected) in expected {
                    let literal = Arc::new(Literal::new(ScalarValue::from(literal)));
                    let expr = ColumnTest { input: Arc::clone(&input), literal, test, negated };
                    let got = expr.evaluate(&batch).unwrap().into_array(batch.num_rows()).unwrap();
                    assert_eq!(got.as_boolean(), &expected, "{expr} over {} rows", array.len());
                }
            }
        }
    }

    /// One batch of a `Utf8View` column `s`, an Int64 column `n` and a Float64 column `f` with
    /// NaNs of both signs, both zeros and infinities (nulls in all three).
    fn table() -> (SchemaRef, RecordBatch) {
        let rows = strings(5000);
        let numbers: Int64Array = (0..rows.len() as i64).map(|i| (i % 11 != 0).then_some(i % 100 - 50)).collect();
        let specials = [f64::NAN, -f64::NAN, -0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY, 0.5, -0.5];
        let floats: Float64Array = (0..rows.len())
            .map(|i| {
                (i % 13 != 0)
                    .then(|| if i % 3 == 0 { specials[i % specials.len()] } else { (i % 41) as f64 / 20.0 - 1.0 })
            })
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, true),
            Field::new("n", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![Arc::new(views(&rows)), Arc::new(numbers), Arc::new(floats)];
        (Arc::clone(&schema), RecordBatch::try_new(schema, columns).unwrap())
    }

    fn session(with_rule: bool) -> SessionContext {
        let builder = SessionStateBuilder::new().with_config(SessionConfig::new()).with_default_features();
        let builder = if with_rule { builder.with_physical_optimizer_rule(Arc::new(ViewFilters)) } else { builder };
        let ctx = SessionContext::new_with_state(builder.build());
        let (schema, batch) = table();
        ctx.register_table("t", Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())).unwrap();
        ctx
    }

    /// The rewritten predicate of the first filter in `plan`, if any.
    fn filter_predicate(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn PhysicalExpr>> {
        if let Some(filter) = plan.downcast_ref::<FilterExec>() {
            return Some(Arc::clone(filter.predicate()));
        }
        plan.children().into_iter().find_map(filter_predicate)
    }

    #[tokio::test]
    async fn filters_answer_as_without_the_rule_and_the_rule_fires() {
        let queries = [
            ("SELECT COUNT(*) FROM t WHERE s = 'accept' AND n > 50", true),
            ("SELECT COUNT(*) FROM t WHERE n < 10 AND s LIKE 'gpt%'", true),
            ("SELECT COUNT(*) FROM t WHERE n < 10 AND s LIKE 'gpt-4o-mini-2024%'", true),
            ("SELECT COUNT(*) FROM t WHERE 'gpt-4o-mini-2024' <> s", true),
            ("SELECT COUNT(*) FROM t WHERE NOT (s = 'gpt' AND n IS NOT NULL)", true),
            ("SELECT COUNT(*) FROM t WHERE s NOT LIKE 'gp%' OR n = 3", true),
            ("SELECT COUNT(*) FROM t WHERE f > 0.5 AND n <= 7", true),
            ("SELECT COUNT(*) FROM t WHERE f = 0.0", true),
            ("SELECT COUNT(*) FROM t WHERE f = -0.0 OR f >= 'NaN'::double", true),
            ("SELECT COUNT(*) FROM t WHERE f < -0.5", true),
            ("SELECT COUNT(*) FROM t WHERE f > -0.75 AND f <> 0.5", true),
            ("SELECT COUNT(*) FROM t WHERE 'inf'::double > f", true),
            ("SELECT COUNT(*) FROM t WHERE -3 < n AND n != 4", true),
            ("SELECT COUNT(*) FROM t WHERE s LIKE 'g_t%'", false),
            ("SELECT COUNT(*) FROM t WHERE s ILIKE 'GPT%'", false),
            ("SELECT COUNT(*) FROM t WHERE s LIKE '%4o%'", false),
        ];
        let (plain, rewritten) = (session(false), session(true));
        for (sql, fires) in queries {
            let expected = plain.sql(sql).await.unwrap().collect().await.unwrap();
            let frame = rewritten.sql(sql).await.unwrap();
            let plan = frame.clone().create_physical_plan().await.unwrap();
            let predicate = filter_predicate(&plan).expect("a filter");
            let mut rewritten_parts = 0;
            predicate
                .apply(|e| {
                    rewritten_parts += usize::from(e.is::<ColumnTest>() || e.is::<EagerAnd>());
                    Ok(gata_lakehouse::deltalake::datafusion::common::tree_node::TreeNodeRecursion::Continue)
                })
                .unwrap();
            assert_eq!(rewritten_parts > 0, fires, "{sql}: {predicate}");
            let got = frame.collect().await.unwrap();
            assert_eq!(format!("{got:?}"), format!("{expected:?}"), "{sql}");
        }
    }

    #[test]
    fn an_and_is_cheap_only_when_both_sides_are() {
        let (schema, _) = table();
        let column = |name: &str, index| Arc::new(Column::new(name, index)) as Arc<dyn PhysicalExpr>;
        let literal = |v: ScalarValue| Arc::new(Literal::new(v)) as Arc<dyn PhysicalExpr>;
        let small = Arc::new(BinaryExpr::new(column("n", 1), Operator::Lt, literal(ScalarValue::Int64(Some(3)))));
        let costly: Arc<dyn PhysicalExpr> =
            Arc::new(LikeExpr::new(false, true, column("s", 0), literal(ScalarValue::from("GPT%"))));
        let cheap_and: Arc<dyn PhysicalExpr> = Arc::new(EagerAnd { left: small.clone(), right: small.clone() });
        let costly_and: Arc<dyn PhysicalExpr> = Arc::new(EagerAnd { left: costly.clone(), right: small.clone() });
        assert!(cheap(&(small as Arc<dyn PhysicalExpr>), &schema));
        assert!(cheap(&cheap_and, &schema));
        assert!(!cheap(&costly, &schema));
        assert!(!cheap(&costly_and, &schema), "an ILIKE on the left makes the AND costly");
    }
}
