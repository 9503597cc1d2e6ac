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

#[cfg(test)]
mod tests {
    use super::Stat;

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
}
