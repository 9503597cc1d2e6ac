use crate::config::StoreArgs;

/// Creates an organization; prints its admin API key as the only line.
pub async fn create(name: String, args: StoreArgs) -> anyhow::Result<()> {
    let name = crate::domain::names::display_name("organization name", &name, 200)?;
    let name = name.as_str();
    let key = super::preflight::check(&args).await?;
    let service = crate::app::open_service_with_key(&args, key).await?;
    let token = service.create_organization(name).await?;
    println!("{}", token.token());
    Ok(())
}
