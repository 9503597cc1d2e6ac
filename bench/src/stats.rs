//! Median and range over the runs of a measurement.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// None when there is no finite value (e.g. no successful request).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Stat> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// Nearest-rank percentile, `q` in (0, 1]: the smallest value with at least
/// a fraction `q` of the values at or below it. With 20 values, p99 is the
/// largest; with 100, the 99th. None when there is no finite value.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    // The epsilon keeps 0.99 * 100 (not exactly representable) at rank 99.
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64 - 1e-9).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::{percentile, Stat};

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Stat::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Stat::of([1.0, 4.0]).unwrap().median, 2.5);
    }

    #[test]
    fn ignores_values_that_are_not_numbers() {
        assert!(Stat::of([f64::NAN]).is_none());
        assert_eq!(Stat::of([f64::NAN, 5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&twenty, 0.99), Some(20.0));
        assert_eq!(percentile(&twenty, 0.50), Some(10.0));
        assert_eq!(percentile(&twenty, 0.95), Some(19.0));
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.99), Some(99.0));
        assert_eq!(percentile(&hundred, 1.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[3.0, f64::NAN, 1.0], 0.01), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[f64::NAN], 0.5), None);
    }
}
