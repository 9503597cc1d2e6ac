//! Issue 9, finding 5 and per-key rate limits: failed authentication is
//! counted, logged once per address per interval, and throttled per
//! address without ever slowing a valid key; keys can be rate limited.

use crate::common::{Backend, ServerProcess, Storage};
use reqwest::StatusCode;
use serde_json::Value;

async fn serve(extra: &[&str]) -> (Storage, ServerProcess, String) {
    let storage = Storage::new(Backend::Sqlite).await.unwrap();
    let data = storage.dir.path().join("data");
    let server = ServerProcess::start(&data, extra, &[]).expect("server starts");
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    (storage, server, key)
}

/// A client whose connections come from `source` (a loopback address).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn get(
    http: &reqwest::Client,
    url: &str,
    auth: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>, Value) {
    let mut req = http.get(format!("{url}/v1/secrets"));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, retry, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_are_counted_logged_once_and_throttled_without_touching_valid_keys() {
    let (_s, server, admin) = serve(&["--auth-failure-limit", "5/min"]).await;
    let url = server.url.clone();
    let bad = client_from("127.0.0.1");
    // A well-formed key that does not exist, and a wrong secret for the
    // admin key's real prefix; neither may ever show in the log.
    let unknown = format!("Bearer ZZZZZZZZ.{}", "q".repeat(43));
    let prefix = admin.split('.').next().unwrap();
    let wrong_secret = format!("{prefix}.{}", "w".repeat(43));
    let wrong = format!("Bearer {wrong_secret}");
    let attempts: Vec<Option<&str>> = vec![
        None,
        Some("Basic abc"),
        Some("Bearer not-a-key"),
        Some(&unknown),
        Some(&wrong),
    ];
    for a in &attempts {
        let (status, _, body) = get(&bad, &url, *a, &[]).await;
        assert_eq!(status, 401, "{a:?}: {body}");
        assert_eq!(body["code"], "UNAUTHORIZED");
    }
    let mut throttled = 0;
    for i in 0..200 {
        let (status, retry, body) = get(&bad, &url, Some(attempts[3 + i % 2].unwrap()), &[]).await;
        assert_eq!(status, 429, "{body}");
        let retry: u64 = retry.expect("Retry-After header").parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(body["code"], "RATE_LIMITED");
        assert_eq!(body["retry_after"], retry);
        assert!(body["message"].is_string());
        assert_eq!(body["error"], body["message"]);
        throttled += 1;
        // A valid key from the same address is never refused or throttled.
        if i % 20 == 0 {
            let (status, _, body) = get(&bad, &url, Some(&format!("Bearer {admin}")), &[]).await;
            assert_eq!(status, 200, "{body}");
        }
    }
    assert_eq!(throttled, 200);
    // Another address has its own budget.
    let other = client_from("127.0.0.2");
    assert_eq!(get(&other, &url, Some(&unknown), &[]).await.0, 401);

    let metrics = reqwest::get(format!("{}/metrics", server.metrics_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (reason, n) in [
        ("missing", 1),
        ("malformed", 2),
        ("unknown_key", 1 + 100 + 1),
        ("wrong_secret", 1 + 100),
    ] {
        let line = format!("tessera_auth_failures_total{{reason=\"{reason}\"}} {n}");
        assert!(metrics.contains(&line), "missing `{line}` in:\n{metrics}");
    }
    assert!(metrics.contains("tessera_rate_limited_total{limit=\"auth_failures\"} 200"));
    assert!(!metrics.contains(prefix) && !metrics.contains("ZZZZZZZZ"));

    // 206 failures from 127.0.0.1 and one from 127.0.0.2: one line each.
    let log = server.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("client=127.0.0.1")));
    assert!(lines.iter().any(|l| l.contains("client=127.0.0.2")));
    let q = "q".repeat(43);
    for secret_part in [wrong_secret.as_str(), q.as_str(), "not-a-key", "ZZZZZZZZ"] {
        assert!(!log.contains(secret_part), "key material in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_failures_count_per_forwarded_address() {
    let (_s, server, admin) = serve(&[
        "--auth-failure-limit",
        "2/min",
        "--trusted-proxies",
        "127.0.0.1",
    ])
    .await;
    let proxy = client_from("127.0.0.1");
    let url = &server.url;
    let bad = Some("Bearer nope");
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    assert_eq!(get(&proxy, url, bad, &from("203.0.113.1")).await.0, 401);
    assert_eq!(get(&proxy, url, bad, &from("203.0.113.1")).await.0, 401);
    assert_eq!(get(&proxy, url, bad, &from("203.0.113.1")).await.0, 429);
    // Another client behind the same proxy is not affected...
    assert_eq!(get(&proxy, url, bad, &from("203.0.113.2")).await.0, 401);
    // ...nor is a valid key from the throttled one.
    let good = format!("Bearer {admin}");
    assert_eq!(
        get(&proxy, url, Some(&good), &from("203.0.113.1")).await.0,
        200
    );
    // A spoofed entry left of the real client is not believed.
    assert_eq!(
        get(&proxy, url, bad, &from("198.51.100.9, 203.0.113.1"))
            .await
            .0,
        429
    );
    // An untrusted peer's header is ignored: it counts as itself.
    let direct = client_from("127.0.0.5");
    for _ in 0..2 {
        assert_eq!(get(&direct, url, bad, &from("203.0.113.77")).await.0, 401);
    }
    assert_eq!(get(&direct, url, bad, &from("203.0.113.78")).await.0, 429);
    assert!(server.log_text().contains("client=203.0.113.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_rate_limit_answers_429_with_retry_after() {
    let (_s, server, admin) = serve(&["--rate-limit", "PERSONAL=4/min"]).await;
    let http = reqwest::Client::new();
    let url = &server.url;
    let auth = format!("Bearer {admin}");
    // One of the four: a team key, which the limit (PERSONAL only) spares.
    let created: Value = http
        .post(format!("{url}/v1/api_keys"))
        .header("Authorization", &auth)
        .json(&serde_json::json!({"type": "WORKSPACE_MANAGE_ALL", "name": "ci"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let team_key = created["api_key"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    for _ in 0..3 {
        assert_eq!(get(&http, url, Some(&auth), &[]).await.0, 200);
    }
    let (status, retry, body) = get(&http, url, Some(&auth), &[]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "RATE_LIMITED");
    let retry: u64 = retry.unwrap().parse().unwrap();
    assert!((1..=15).contains(&retry), "{retry}");
    assert_eq!(body["retry_after"], retry);
    let team_auth = format!("Bearer {team_key}");
    for _ in 0..10 {
        assert_eq!(get(&http, url, Some(&team_auth), &[]).await.0, 200);
    }
}

#[test]
fn bad_limit_flags_are_refused_at_start() {
    for (flag, value) in [
        ("--rate-limit", "PERSONAL=fast"),
        ("--rate-limit", "NOT_A_TYPE=1/s"),
        ("--auth-failure-limit", "1/day"),
        ("--trusted-proxies", "10.0.0.0/33"),
        ("--header-read-timeout", "0s"),
    ] {
        let out = crate::common::run_cli(&["serve", flag, value], &[]);
        assert!(!out.status.success(), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag.trim_start_matches("--")), "{err}");
    }
}

/// Issue 24, finding 11: a key the server recognises is never throttled as
/// a bad key. A read key is revoked (by its revocation, and one by its
/// creator's deletion); while another client on the same address has used
/// up the address's budget with bad keys, the revoked keys still hear 401
/// (so an agent can wipe its files), and spend none of the budget.
async fn revoked_keys_are_never_throttled_as_bad_keys(storage: crate::common::Storage) {
    let data = storage.dir.path().join("data");
    let mut args = storage.db_args();
    args.extend(["--auth-failure-limit".to_owned(), "3/min".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&data, &args, &[]).expect("server starts");
    let admin = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    let url = server.url.clone();
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let (http, url, admin) = (http.clone(), url.clone(), admin.clone());
        async move {
            let mut req = http
                .request(method, format!("{url}{path}"))
                .bearer_auth(admin);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            resp.json::<Value>().await.unwrap()
        }
    };
    let teams = call(reqwest::Method::GET, "/v1/teams".into(), None).await;
    let team = teams["teams"][0]["id"].as_str().unwrap().to_owned();
    let new_reader = || {
        call(
            reqwest::Method::POST,
            format!("/v1/teams/{team}/api_keys"),
            Some(serde_json::json!({"type": "WORKSPACE_READ_SECRETS"})),
        )
    };
    let revoked = new_reader().await["api_key"].as_str().unwrap().to_owned();
    let prefix = revoked.split('.').next().unwrap().to_owned();
    call(
        reqwest::Method::DELETE,
        format!("/v1/api_keys/{prefix}"),
        None,
    )
    .await;
    // A team admin's read key, revoked with its creator's deletion.
    let user = call(
        reqwest::Method::POST,
        "/v1/users".into(),
        Some(serde_json::json!({"email": "ana@example.com"})),
    )
    .await["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    call(
        reqwest::Method::PUT,
        format!("/v1/teams/{team}/members/{user}"),
        Some(serde_json::json!({"role": "ADMIN"})),
    )
    .await;
    let hers = call(
        reqwest::Method::POST,
        format!("/v1/users/{user}/api_keys"),
        Some(serde_json::json!({})),
    )
    .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let with_her = http
        .post(format!("{url}/v1/teams/{team}/api_keys"))
        .bearer_auth(&hers)
        .json(&serde_json::json!({"type": "WORKSPACE_READ_SECRETS"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    call(
        reqwest::Method::DELETE,
        format!("/v1/users/{user}?revoke_keys=true"),
        None,
    )
    .await;

    let same_address = client_from("127.0.0.1");
    let runtime = |key: String| {
        let (http, url) = (same_address.clone(), url.clone());
        async move {
            let resp = http
                .get(format!("{url}/runtime/v1/secrets"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            resp.status()
        }
    };
    // The revoked keys, many times over: 401 each time, no budget spent.
    for _ in 0..10 {
        assert_eq!(runtime(revoked.clone()).await, 401);
        assert_eq!(runtime(with_her.clone()).await, 401);
    }
    // Another client on the address sends bad keys until it is throttled.
    let bad = format!("ZZZZZZZZ.{}", "q".repeat(43));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(runtime(bad.clone()).await.as_u16());
    }
    assert_eq!(
        statuses,
        vec![401, 401, 401, 429, 429],
        "the budget is 3 a minute"
    );
    // A wrong secret for a revoked key's prefix is a bad key like any other.
    let guessed = format!("{prefix}.{}", "w".repeat(43));
    assert_eq!(runtime(guessed).await, 429);
    // The revoked keys still hear 401, not 429.
    for _ in 0..10 {
        assert_eq!(runtime(revoked.clone()).await, 401);
        assert_eq!(runtime(with_her.clone()).await, 401);
    }
    drop(server);
}

crate::on_both_engines!(
    crate::common::Storage::new =>
    revoked_keys_are_never_throttled_as_bad_keys,
);
