//! A result row read the same way on both engines, by column index, so each
//! aggregate maps its rows to domain types once (`team_row`, `key_row`, …)
//! and each engine holds only its SQL and driver calls.

use std::str::FromStr;

/// What a column can be read as on both engines.
pub(crate) trait Value:
    rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>
{
}

impl<T> Value for T where
    T: rusqlite::types::FromSql
        + for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
{
}

pub(crate) trait Row {
    /// The driver's error (converted into a `StoreError` by the engine).
    type Error;

    fn col<T: Value>(&self, i: usize) -> Result<T, Self::Error>;

    /// The error for a column holding text Tessera does not know.
    fn unknown(i: usize, value: &str) -> Self::Error;

    /// An enum stored as its text.
    fn parse<T: FromStr>(&self, i: usize) -> Result<T, Self::Error> {
        let text: String = self.col(i)?;
        text.parse().map_err(|_| Self::unknown(i, &text))
    }
}

/// `a.x, a.y` for the columns `x, y`.
pub(crate) fn qualified(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|col| format!("{alias}.{}", col.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many columns a column list names.
pub(crate) fn width(columns: &str) -> usize {
    columns.split(", ").count()
}
