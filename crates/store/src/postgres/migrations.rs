//! PostgreSQL schema steps, embedded in the binary (the `.sql` files beside
//! this one, listed in `store::schema_steps`), and their runner.
//! Portable on purpose: no extensions, no advisory locks, types and
//! statements CockroachDB and YugabyteDB also accept, and PL/pgSQL
//! triggers (steps 7 and 10; see docs/operations-postgres.md).

use sqlx::{Connection, PgPool};

const MIGRATIONS: &[(i64, &str)] = crate::schema_steps!();

/// Applies every step not yet applied, each in its own transaction with its
/// record in `schema_migrations`.
pub async fn run(pool: &PgPool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    // Look first: `CREATE TABLE IF NOT EXISTS` on an existing table makes
    // PostgreSQL send a NOTICE ("already exists, skipping") that sqlx logs
    // at info on every start. The statement stays for nodes that race on a
    // new database.
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                        WHERE table_schema = current_schema() AND table_name = 'schema_migrations')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
    }
    for (version, sql) in MIGRATIONS {
        let mut tx = conn.begin().await?;
        let done: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
        )
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
        if !done {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            // A concurrent node applying the same step loses on this
            // primary key and rolls back; it then sees the step as done.
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(tessera_core::domain::time::now_micros())
                .execute(&mut *tx)
                .await?;
            tracing::info!(version, "applied PostgreSQL migration");
        }
        tx.commit().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn shipped_steps_are_unchanged() {
        crate::shipped_steps::assert_unchanged("postgres", super::MIGRATIONS);
    }
}
