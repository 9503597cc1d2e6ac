use crate::config::StoreArgs;

/// Opening a store applies its embedded migrations.
pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    crate::store::open_with(&args.database_url(), &args.open_options()).await?;
    eprintln!("migrations applied");
    Ok(())
}
