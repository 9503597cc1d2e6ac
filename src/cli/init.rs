use crate::config::StoreArgs;

/// Initializes an empty store; prints the admin API key as the only line.
pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let key = super::preflight::check(&args).await?;
    let service = crate::app::open_service_with_key(&args, key).await?;
    if service.organization_count().await? > 0 {
        anyhow::bail!("the store is already initialized; use `tessera org create NAME` to add an organization");
    }
    let token = service.create_organization("default").await?;
    println!("{}", token.token());
    Ok(())
}
