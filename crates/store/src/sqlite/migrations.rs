//! SQLite schema steps, embedded in the binary (the `.sql` files beside
//! this one, listed in `store::schema_steps`), and their runner.

use rusqlite::{params, Connection};

const MIGRATIONS: &[(i64, &str)] = crate::schema_steps!();

/// Applies every step not yet applied, each in its own transaction with its
/// record in `schema_migrations`.
pub fn run(conn: &mut Connection) -> anyhow::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    for (version, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if !done {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, tessera_core::domain::time::now_micros()],
            )?;
            tracing::info!(version, "applied SQLite migration");
        }
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn shipped_steps_are_unchanged() {
        crate::shipped_steps::assert_unchanged("sqlite", super::MIGRATIONS);
    }
}
