use crate::config::StoreArgs;
use crate::service::bootstrap;

/// Initializes an empty store; prints the admin API key as the only line.
pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let service = crate::app::open_service(&args).await?;
    if service.store.organization_count().await? > 0 {
        anyhow::bail!("the store is already initialized; use `tessera org create NAME` to add an organization");
    }
    let token = bootstrap::create_organization(service.store.as_ref(), "default").await?;
    println!("{}", token.token());
    Ok(())
}
