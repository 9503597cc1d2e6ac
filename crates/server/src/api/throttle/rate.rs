//! Rates (`50/s`, `60/min`) and the token bucket that enforces them.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// `N/s`, `N/min` or `N/h`: on average N per unit, in bursts of up to N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    fn per_second(self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }

    fn burst(self) -> f64 {
        f64::from(self.count)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a rate: expected N/s, N/min or N/h, e.g. 50/s");
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("`{s}`: the rate must be at least 1"));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Starts full; each request takes a token; tokens come back at the rate.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst(),
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second()).min(rate.burst());
        self.updated = now;
    }

    /// Takes a token, or says in how many whole seconds (at least 1) one
    /// will be there.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), u64> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate.per_second();
            Err((wait.ceil() as u64).max(1))
        }
    }

    /// Whether the bucket has refilled completely (its state can be
    /// forgotten without changing any future answer).
    pub fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let mut probe = self.clone();
        probe.refill(rate, now);
        probe.tokens >= rate.burst()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            "50/s".parse::<Rate>().unwrap(),
            Rate {
                count: 50,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!("60/min".parse::<Rate>().unwrap().per.as_secs(), 60);
        assert_eq!("3/h".parse::<Rate>().unwrap().to_string(), "3/h");
        for bad in ["", "50", "0/s", "x/s", "5/day", "-1/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let rate: Rate = "3/s".parse().unwrap();
        let t0 = Instant::now();
        let mut b = TokenBucket::full(rate, t0);
        assert!(b.take(rate, t0).is_ok());
        assert!(b.take(rate, t0).is_ok());
        assert!(b.take(rate, t0).is_ok());
        assert_eq!(b.take(rate, t0), Err(1));
        assert!(!b.is_full(rate, t0));
        let later = t0 + Duration::from_millis(400);
        assert!(b.take(rate, later).is_ok());
        assert!(b.is_full(rate, t0 + Duration::from_secs(2)));
        let slow: Rate = "1/min".parse().unwrap();
        let mut b = TokenBucket::full(slow, t0);
        assert!(b.take(slow, t0).is_ok());
        assert_eq!(b.take(slow, t0), Err(60));
    }
}
