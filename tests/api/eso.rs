//! What the External Secrets Operator recipe in docs/delivery.md relies on,
//! short of a cluster: the one-secret runtime route answers with the value
//! at `$.value` for any spelling of the name, with a static
//! `Authorization: Bearer` header, and 404 for a missing secret or one
//! outside a narrowed key.

use crate::common::{canary, Storage};
use crate::workload::Env;
use reqwest::Method;

async fn webhook_recipe_endpoint(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let value = format!("{}\nsecond line", canary("eso"));
    env.put("hf-token", &value).await;
    env.put("unrelated", "x").await;
    let key = env.read_key(&team, Some(&["hf_token"])).await;

    // The URL template `/runtime/v1/secrets/{{ .remoteRef.key }}`, any spelling.
    for spelling in ["hf_token", "hf-token", "hf.token"] {
        let body = env
            .call(
                &key,
                Method::GET,
                &format!("/runtime/v1/secrets/{spelling}"),
                None,
            )
            .await
            .ok();
        // `result.jsonPath: "$.value"`.
        assert_eq!(body["value"].as_str(), Some(value.as_str()), "{spelling}");
        assert_eq!(body["name"], "hf-token");
    }
    // Outside the key's names, or absent: alike.
    for name in ["unrelated", "missing"] {
        env.call(
            &key,
            Method::GET,
            &format!("/runtime/v1/secrets/{name}"),
            None,
        )
        .await
        .err(404, "NOT_FOUND");
    }
}

crate::on_both_engines!(crate::common::Storage::new => webhook_recipe_endpoint);
