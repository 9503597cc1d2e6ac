//! What kind of workload a consumer is, as it declares itself in the
//! `X-Tessera-Consumer-Kind` header: it decides whether the consumer still
//! counts as holding what it received when nobody has heard from it lately.

use std::fmt;

/// How a consumer reports while it holds values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConsumerKind {
    /// `tessera agent`: long-polls, so it is seen while it lives.
    Agent,
    /// `tessera run --watch`: long-polls for as long as its command runs.
    Supervisor,
    /// `tessera run` without `--watch`: fetches once and execs its command,
    /// which may hold the values for as long as it runs, but nothing
    /// reports when it ends. Listed with a warning, never blocks a destroy,
    /// and leaves the consumers view unless seen again.
    OneShot,
    /// A client that did not say (curl, an older agent, an operator's
    /// webhook): treated like a long-lived one.
    #[default]
    Unspecified,
}

impl ConsumerKind {
    /// The values a client may send.
    pub const DECLARED: [ConsumerKind; 3] = [Self::Agent, Self::Supervisor, Self::OneShot];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Supervisor => "supervisor",
            Self::OneShot => "one-shot",
            Self::Unspecified => "unspecified",
        }
    }

    /// A stored or declared spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Agent,
            Self::Supervisor,
            Self::OneShot,
            Self::Unspecified,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Whether this consumer reports while it holds values, so that not
    /// hearing from it means it is gone. One-shot runs do not.
    pub fn reports_while_alive(self) -> bool {
        !matches!(self, Self::OneShot)
    }
}

impl std::str::FromStr for ConsumerKind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Self::parse(s).ok_or(())
    }
}

impl fmt::Display for ConsumerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for k in [
            ConsumerKind::Agent,
            ConsumerKind::Supervisor,
            ConsumerKind::OneShot,
            ConsumerKind::Unspecified,
        ] {
            assert_eq!(ConsumerKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ConsumerKind::parse("daemon"), None);
        assert!(!ConsumerKind::OneShot.reports_while_alive());
        assert!(ConsumerKind::Unspecified.reports_while_alive());
    }
}
