//! Splitting a sale's price among contributors.

use gata_contract::RevenueShare;

/// Splits `price` among `accepted` (contributor, accepted rows) in proportion to the rows,
/// in integer base units, summing to `price` exactly: each gets the floor of their exact share,
/// and the units left over go one each to the largest remainders (ties: contributor id order).
/// Contributors with no rows are left out; `None` when nobody has any.
pub fn split(price: u64, accepted: &[(String, u64)]) -> Option<Vec<RevenueShare>> {
    let mut rows: Vec<(&String, u64)> = accepted.iter().filter(|(_, n)| *n > 0).map(|(c, n)| (c, *n)).collect();
    rows.sort();
    rows.dedup_by(|a, b| a.0 == b.0);
    let total: u128 = rows.iter().map(|(_, n)| u128::from(*n)).sum();
    if total == 0 {
        return None;
    }
    let mut shares: Vec<(RevenueShare, u128)> = rows
        .iter()
        .map(|(c, n)| {
            let exact = u128::from(price) * u128::from(*n);
            let share = RevenueShare {
                contributor_id: (*c).clone(),
                accepted: *n,
                amount: u64::try_from(exact / total).unwrap_or(u64::MAX),
            };
            (share, exact % total)
        })
        .collect();
    let given: u64 = shares.iter().map(|(s, _)| s.amount).sum();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    // Largest remainder first; the sort is stable, so equal remainders keep contributor order.
    order.sort_by(|a, b| shares[*b].1.cmp(&shares[*a].1));
    for i in order.into_iter().take(usize::try_from(price - given).unwrap_or(usize::MAX)) {
        shares[i].0.amount += 1;
    }
    Some(shares.into_iter().map(|(s, _)| s).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    }

    #[test]
    fn shares_are_proportional_and_sum_to_the_price() {
        let s = split(10, &rows(&[("b", 1), ("a", 2), ("c", 0)])).expect("split");
        let got: Vec<(&str, u64, u64)> = s.iter().map(|r| (r.contributor_id.as_str(), r.accepted, r.amount)).collect();
        // 10 * 2/3 = 6.67 -> 6 (+1: remainder 2/3), 10 * 1/3 = 3.33 -> 3.
        assert_eq!(got, [("a", 2, 7), ("b", 1, 3)]);
    }

    #[test]
    fn leftover_units_go_to_the_largest_remainders_then_by_id() {
        let s = split(2, &rows(&[("z", 1), ("y", 1), ("x", 1)])).expect("split");
        let amounts: Vec<(&str, u64)> = s.iter().map(|r| (r.contributor_id.as_str(), r.amount)).collect();
        assert_eq!(amounts, [("x", 1), ("y", 1), ("z", 0)]);
    }

    #[test]
    fn every_split_sums_exactly_whatever_the_numbers() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        for _ in 0..500 {
            let n = (next() % 40 + 1) as usize;
            let accepted: Vec<(String, u64)> = (0..n).map(|i| (format!("c{i}"), next() % 1000)).collect();
            let price = next() * next() % 10_000_000_000_000;
            match split(price, &accepted) {
                Some(s) => assert_eq!(s.iter().map(|r| r.amount).sum::<u64>(), price),
                None => assert!(accepted.iter().all(|(_, n)| *n == 0)),
            }
        }
        assert_eq!(
            split(u64::MAX, &rows(&[("a", u64::MAX), ("b", 1)])).expect("split").iter().map(|r| r.amount).sum::<u64>(),
            u64::MAX
        );
    }

    #[test]
    fn nobody_with_rows_means_no_split() {
        assert!(split(100, &rows(&[("a", 0)])).is_none());
        assert!(split(100, &[]).is_none());
    }
}
