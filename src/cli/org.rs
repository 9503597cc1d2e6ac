use crate::config::StoreArgs;
use crate::service::bootstrap;

/// Creates an organization; prints its admin API key as the only line.
pub async fn create(name: String, args: StoreArgs) -> anyhow::Result<()> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        anyhow::bail!("organization name must be 1 to 200 characters");
    }
    let service = crate::app::open_service(&args).await?;
    let token = bootstrap::create_organization(service.store.as_ref(), name).await?;
    println!("{}", token.token());
    Ok(())
}
