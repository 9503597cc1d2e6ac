use crate::config::StoreArgs;

/// Opening a store applies its embedded migrations.
pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    crate::store::open(&args.database_url()).await?;
    eprintln!("migrations applied");
    Ok(())
}
