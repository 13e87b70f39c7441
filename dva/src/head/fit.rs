//! Fitting the head: L2-regularised logistic regression on the features of labelled pairs
//! (the image embedding, the text embedding, their product and the cosine), by Newton's method
//! on standardised features, in `f64`, from zero weights: the same labels give the same
//! weights, bit for bit. Then the measures the card reports: ROC AUC, precision at a fixed
//! recall, and the lowest threshold that reaches a target precision.

use crate::{DvaError, Result};

/// The features of one pair: image embedding, text embedding, their product, the cosine.
pub fn features(image: &[f32], text: &[f32]) -> Vec<f64> {
    let product: Vec<f64> = image.iter().zip(text).map(|(i, t)| f64::from(*i) * f64::from(*t)).collect();
    let cosine = product.iter().sum::<f64>();
    image.iter().chain(text).map(|v| f64::from(*v)).chain(product).chain([cosine]).collect()
}

/// A fitted logistic regression on raw (unstandardised) features.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    /// One weight per feature.
    pub weights: Vec<f64>,
    /// The intercept.
    pub bias: f64,
}

impl Logistic {
    /// The probability that a pair with features `x` is accepted.
    pub fn probability(&self, x: &[f64]) -> f64 {
        sigmoid(self.bias + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>())
    }
}

/// One Newton step's figures, as training streams them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// 1-based step number.
    pub step: usize,
    /// Mean log loss on the training pairs (regularisation included).
    pub loss: f64,
    /// Largest change of a standardised weight in this step.
    pub change: f64,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Fits `x` (one feature row per pair) to `y` (accepted or not) with L2 strength `l2` (on
/// standardised weights, per pair), for at most `steps` Newton steps; `progress` sees each.
/// The intercept and the last feature (the cosine: the base model's own judgement, which the
/// head corrects) are not penalised, so a strong `l2` leaves a calibrated cosine.
pub fn fit(x: &[Vec<f64>], y: &[bool], l2: f64, steps: usize, mut progress: impl FnMut(Step)) -> Result<Logistic> {
    let n = x.len();
    let d = x.first().map_or(0, Vec::len);
    if n == 0 || y.len() != n || x.iter().any(|r| r.len() != d) {
        return Err(DvaError::Model("training needs one feature row of equal length per label".into()));
    }
    if y.iter().all(|v| *v) || y.iter().all(|v| !*v) {
        return Err(DvaError::Model("training needs both accepted and rejected pairs".into()));
    }
    let mean: Vec<f64> = (0..d).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n as f64).collect();
    let scale: Vec<f64> =
        (0..d).map(|j| (x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n as f64).sqrt().max(1e-9)).collect();
    // Standardised rows with a leading 1 for the intercept (not regularised).
    let z: Vec<Vec<f64>> =
        x.iter().map(|r| std::iter::once(1.0).chain((0..d).map(|j| (r[j] - mean[j]) / scale[j])).collect()).collect();
    let mut w = vec![0.0; d + 1];
    let accepted = y.iter().filter(|v| **v).count() as f64;
    w[0] = (accepted / (n as f64 - accepted)).ln();
    for step in 1..=steps.max(1) {
        let mut gradient = vec![0.0; d + 1];
        let mut hessian = vec![vec![0.0; d + 1]; d + 1];
        let mut loss = 0.0;
        for (row, label) in z.iter().zip(y) {
            let p = sigmoid(row.iter().zip(&w).map(|(a, b)| a * b).sum());
            let target = if *label { 1.0 } else { 0.0 };
            loss -= if *label { p.max(1e-15).ln() } else { (1.0 - p).max(1e-15).ln() };
            let curvature = (p * (1.0 - p)).max(1e-12);
            for (i, zi) in row.iter().enumerate() {
                gradient[i] += (p - target) * zi;
                let weighted = curvature * zi;
                for (h, zj) in hessian[i][i..].iter_mut().zip(&row[i..]) {
                    *h += weighted * zj;
                }
            }
        }
        for i in 1..=d {
            let (above, rest) = hessian.split_at_mut(i);
            for (j, row) in above.iter().enumerate() {
                rest[0][j] = row[i];
            }
        }
        for i in 1..d {
            gradient[i] += l2 * n as f64 * w[i];
            hessian[i][i] += l2 * n as f64;
            loss += 0.5 * l2 * n as f64 * w[i] * w[i];
        }
        let delta = solve(hessian, gradient)?;
        let change = delta.iter().skip(1).fold(0.0_f64, |m, v| m.max(v.abs()));
        for (wi, di) in w.iter_mut().zip(&delta) {
            *wi -= di;
        }
        progress(Step { step, loss: loss / n as f64, change });
        if change < 1e-8 {
            break;
        }
    }
    let weights: Vec<f64> = (0..d).map(|j| w[j + 1] / scale[j]).collect();
    let bias = w[0] - (0..d).map(|j| w[j + 1] * mean[j] / scale[j]).sum::<f64>();
    Ok(Logistic { weights, bias })
}

/// Solves `a · x = b` for a symmetric positive-definite `a` (Cholesky).
fn solve(mut a: Vec<Vec<f64>>, b: Vec<f64>) -> Result<Vec<f64>> {
    let n = b.len();
    for j in 0..n {
        let diagonal = a[j][j] - (0..j).map(|k| a[j][k] * a[j][k]).sum::<f64>();
        if diagonal <= 0.0 || !diagonal.is_finite() {
            return Err(DvaError::Model("the training system is not positive definite; raise --l2".into()));
        }
        a[j][j] = diagonal.sqrt();
        for i in j + 1..n {
            a[i][j] = (a[i][j] - (0..j).map(|k| a[i][k] * a[j][k]).sum::<f64>()) / a[j][j];
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| a[i][k] * y[k]).sum::<f64>()) / a[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| a[k][i] * x[k]).sum::<f64>()) / a[i][i];
    }
    Ok(x)
}

/// ROC AUC of `scores` for `labels` (ties count half); `None` without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let positives: Vec<f64> = scores.iter().zip(labels).filter(|(_, l)| **l).map(|(s, _)| *s).collect();
    let negatives: Vec<f64> = scores.iter().zip(labels).filter(|(_, l)| !**l).map(|(s, _)| *s).collect();
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let wins: f64 = positives
        .iter()
        .map(|p| {
            negatives
                .iter()
                .map(|n| {
                    if p > n {
                        1.0
                    } else if p == n {
                        0.5
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
        })
        .sum();
    Some(wins / (positives.len() * negatives.len()) as f64)
}

/// Precision and recall of accepting every score at or above `threshold`.
pub fn precision_recall(scores: &[f64], labels: &[bool], threshold: f64) -> (f64, f64) {
    let (mut tp, mut fp, mut positives) = (0.0, 0.0, 0.0);
    for (s, l) in scores.iter().zip(labels) {
        positives += f64::from(u8::from(*l));
        if *s >= threshold {
            if *l { tp += 1.0 } else { fp += 1.0 }
        }
    }
    let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 1.0 };
    (precision, if positives > 0.0 { tp / positives } else { 0.0 })
}

/// The highest threshold that still keeps at least `recall` of the accepted pairs, and the
/// precision there.
pub fn precision_at_recall(scores: &[f64], labels: &[bool], recall: f64) -> Option<(f64, f64)> {
    let mut candidates: Vec<f64> = scores.to_vec();
    candidates.sort_by(|a, b| b.total_cmp(a));
    candidates.dedup();
    candidates.into_iter().find_map(|t| {
        let (p, r) = precision_recall(scores, labels, t);
        (r >= recall).then_some((t, p))
    })
}

/// The lowest threshold whose accepted pairs reach `precision` (so recall is highest), or
/// `None` when no threshold does.
pub fn threshold_for_precision(scores: &[f64], labels: &[bool], precision: f64) -> Option<f64> {
    let mut candidates: Vec<f64> = scores.to_vec();
    candidates.sort_by(|a, b| a.total_cmp(b));
    candidates.dedup();
    candidates.into_iter().find(|t| precision_recall(scores, labels, *t).0 >= precision)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two features; the label is whether their sum is positive, with a few flipped.
    fn data() -> (Vec<Vec<f64>>, Vec<bool>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let a = ((i * 37) % 101) as f64 / 50.0 - 1.0;
            let b = ((i * 53) % 97) as f64 / 48.0 - 1.0;
            x.push(vec![a, b]);
            y.push((a + 0.5 * b > 0.0) != (i % 17 == 0));
        }
        (x, y)
    }

    #[test]
    fn newton_fits_a_separating_direction_deterministically() {
        let (x, y) = data();
        let mut steps = Vec::new();
        let model = fit(&x, &y, 1e-3, 50, |s| steps.push(s)).expect("fits");
        assert!(steps.len() < 50 && steps.last().expect("a step").change < 1e-8, "converged: {steps:?}");
        assert!(steps.windows(2).all(|w| w[1].loss <= w[0].loss + 1e-12), "loss falls: {steps:?}");
        assert!(model.weights[0] > 0.0 && model.weights[1] > 0.0);
        let ratio = model.weights[1] / model.weights[0];
        assert!((ratio - 0.5).abs() < 0.2, "the boundary a + b/2 = 0: ratio {ratio}");
        let scores: Vec<f64> = x.iter().map(|r| model.probability(r)).collect();
        assert!(auc(&scores, &y).expect("both classes") > 0.9);
        assert_eq!(fit(&x, &y, 1e-3, 50, |_| ()).expect("again"), model, "same data, same weights");
    }

    #[test]
    fn measures_match_hand_counts() {
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
        let labels = [true, true, false, true, false, false];
        // 8 of 9 positive-negative pairs ordered right.
        assert!((auc(&scores, &labels).expect("auc") - 8.0 / 9.0).abs() < 1e-12);
        assert_eq!(precision_recall(&scores, &labels, 0.6), (0.75, 1.0));
        assert_eq!(precision_at_recall(&scores, &labels, 0.6), Some((0.8, 1.0)));
        assert_eq!(threshold_for_precision(&scores, &labels, 0.75), Some(0.6));
        assert_eq!(threshold_for_precision(&scores, &labels, 1.0), Some(0.8));
        assert_eq!(auc(&scores, &[true; 6]), None);
    }

    #[test]
    fn one_class_or_ragged_rows_are_refused() {
        assert!(fit(&[vec![1.0], vec![2.0]], &[true, true], 1.0, 5, |_| ()).is_err());
        assert!(fit(&[vec![1.0], vec![2.0, 3.0]], &[true, false], 1.0, 5, |_| ()).is_err());
    }
}
