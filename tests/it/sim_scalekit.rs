//! The simulated Scalekit API over HTTP: token endpoint, bearer auth, MCP configs, connected
//! accounts, session tokens, magic links and account details — success and error shapes.

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::sim::{SimClient, SimConfig, spawn_sim, spawn_sim_with};

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
    )
    .unwrap()
}

async fn form(client: &SimClient, body: &str) -> (reqwest::StatusCode, Value) {
    let response = client
        .http
        .post(client.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn token_endpoint_accepts_only_the_configured_client() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let (status, body) = form(
        &client,
        "grant_type=client_credentials&client_id=sim-client-id&client_secret=sim-client-secret",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 3600);
    let (status, body) =
        form(&client, "grant_type=client_credentials&client_id=sim-client-id&client_secret=nope")
            .await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (401, Some("invalid_client")));
    let (status, body) = form(
        &client,
        "grant_type=password&client_id=sim-client-id&client_secret=sim-client-secret",
    )
    .await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("unsupported_grant_type")));
}

#[tokio::test]
async fn api_requires_a_valid_bearer_token_with_grpc_error_body() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let (status, body) = client.scalekit(Method::GET, "/api/v1/mcp/configs", "", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], 16);
    assert_eq!(body["details"][0]["@type"], "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo");
    assert_eq!(body["details"][0]["error_code"], "UNAUTHENTICATED");
    let (status, _) =
        client.scalekit(Method::GET, "/api/v1/mcp/configs", "forged.token.here", None).await;
    assert_eq!(status, 401);
    let token = client.scalekit_token().await;
    client.control(Method::POST, "/scalekit/revoke", None).await;
    let (status, body) = client.scalekit(Method::GET, "/api/v1/mcp/configs", &token, None).await;
    assert_eq!((status.as_u16(), body["message"].as_str()), (401, Some("Token revoked")));
}

#[tokio::test]
async fn configs_validate_create_list_and_get() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let sk = client.scalekit_token().await;
    let create =
        |body: Value| client.scalekit(Method::POST, "/api/v1/mcp/configs", &sk, Some(body));
    let (status, body) = create(json!({"name": "Bad Name"})).await;
    assert_eq!((status.as_u16(), body["code"].as_i64()), (400, Some(3)));
    assert_eq!(body["details"][0]["validation_error_info"]["field_violations"][0]["field"], "name");
    let (status, _) = create(json!({"config": {"name": "wrapped"}})).await;
    assert_eq!(status, 400, "a wrapped body loses its name");
    let (status, _) =
        create(json!({"name": "x", "connection_tool_mappings": [{"connection_name": "slack"}]}))
            .await;
    assert_eq!(status, 400);
    let (status, _) = create(json!({"name": "x", "connection_tool_mappings": [{"connection_name": "gmail", "tools": ["nope"]}]})).await;
    assert_eq!(status, 400);
    let (status, body) = create(json!({"name": "email-calendar-demo", "connectionToolMappings": [{"connectionName": "gmail", "tools": ["gmail_fetch_mails"]}]})).await;
    assert_eq!(status, 201, "{body}");
    let config = &body["config"];
    assert!(config["id"].as_str().unwrap().starts_with("cfg_"));
    assert!(config.get("description").is_none(), "proto3 omits empty strings");
    let url = config["mcp_server_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/mcp/v3/servers/", sim.base_url())));
    let (status, body) = create(json!({"name": "email-calendar-demo"})).await;
    assert_eq!((status.as_u16(), body["code"].as_i64()), (409, Some(6)));

    let id = config["id"].as_str().unwrap();
    for query in [
        format!("filter.id={id}"),
        "filter.name=EMAIL-calendar-demo".to_owned(),
        format!("filter.mcp_server_url={url}"),
    ] {
        let (status, body) =
            client.scalekit(Method::GET, &format!("/api/v1/mcp/configs?{query}"), &sk, None).await;
        assert_eq!(status, 200);
        assert_eq!(body["configs"][0]["id"], id, "{query}");
        assert_eq!(body["total_size"], 1);
    }
    let (_, body) =
        client.scalekit(Method::GET, "/api/v1/mcp/configs?filter.id=cfg_404", &sk, None).await;
    assert!(body.get("configs").is_none(), "empty list omitted: {body}");
    let (status, _) =
        client.scalekit(Method::GET, "/api/v1/mcp/configs?page_size=31", &sk, None).await;
    assert_eq!(status, 400);
    let (status, body) =
        client.scalekit(Method::GET, &format!("/api/v1/mcp/configs/{id}"), &sk, None).await;
    assert_eq!((status.as_u16(), &body["config"]["id"]), (200, &json!(id)));
    let (status, body) =
        client.scalekit(Method::GET, "/api/v1/mcp/configs/cfg_404", &sk, None).await;
    assert_eq!((status.as_u16(), body["code"].as_i64()), (404, Some(5)));
}

#[tokio::test]
async fn connected_accounts_tokens_links_and_details() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user("alice@example.com").await;
    let sk = client.scalekit_token().await;
    let path = format!("/api/v1/mcp/configs/{}/connected_accounts", setup.config_id);
    let (status, body) = client
        .scalekit(Method::POST, &path, &sk, Some(json!({"identifier": "alice@example.com"})))
        .await;
    assert_eq!(status, 200);
    let accounts = body["connected_accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2);
    assert!(accounts.iter().all(
        |a| a["connected_account_status"] == "ACTIVE" && a.get("authentication_link").is_none()
    ));

    // A user without accounts: the fields are absent; with links, pending accounts appear.
    client.set_connection("bob@example.com", "gmail", None).await;
    client.set_connection("bob@example.com", "googlecalendar", Some("EXPIRED")).await;
    let (_, body) = client
        .scalekit(Method::POST, &path, &sk, Some(json!({"identifier": "bob@example.com"})))
        .await;
    assert!(body["connected_accounts"][0].get("connected_account_id").is_none(), "{body}");
    assert_eq!(body["connected_accounts"][1]["connected_account_status"], "EXPIRED");
    let (_, body) = client
        .scalekit(
            Method::POST,
            &path,
            &sk,
            Some(json!({"identifier": "bob@example.com", "include_auth_link": true})),
        )
        .await;
    assert_eq!(body["connected_accounts"][0]["connected_account_status"], "PENDING_AUTH");
    let link = body["connected_accounts"][0]["authentication_link"].as_str().unwrap().to_owned();
    let (status, _) =
        client.scalekit(Method::POST, &path, &sk, Some(json!({"identifier": ""}))).await;
    assert_eq!(status, 400);
    let (status, _) = client
        .scalekit(
            Method::POST,
            "/api/v1/mcp/configs/cfg_404/connected_accounts",
            &sk,
            Some(json!({"identifier": "a"})),
        )
        .await;
    assert_eq!(status, 404);

    // Minting fails unless every mapped connection is ACTIVE.
    let tokens = format!("/api/v1/mcp/configs/{}/tokens", setup.config_id);
    let (status, body) = client
        .scalekit(
            Method::POST,
            &tokens,
            &sk,
            Some(json!({"identifier": "bob@example.com", "expiry": "3600s"})),
        )
        .await;
    assert_eq!((status.as_u16(), body["code"].as_i64()), (400, Some(9)));
    assert_eq!(
        client.http.get(&link).send().await.unwrap().status(),
        200,
        "visiting the link activates gmail"
    );
    client.set_connection("bob@example.com", "googlecalendar", Some("ACTIVE")).await;
    let (status, body) = client
        .scalekit(
            Method::POST,
            &tokens,
            &sk,
            Some(json!({"identifier": "bob@example.com", "expiry": "120.9s"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = claims(body["token"].as_str().unwrap());
    assert_eq!(claims["sub"], "bob@example.com");
    assert_eq!(claims["aud"], setup.server_url.as_str());
    assert_eq!(claims["mcp_cfg"], setup.config_id.as_str());
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 120);
    for expiry in ["59s", "86401s", "soon"] {
        let (status, _) = client
            .scalekit(
                Method::POST,
                &tokens,
                &sk,
                Some(json!({"identifier": "bob@example.com", "expiry": expiry})),
            )
            .await;
        assert_eq!(status, 400, "{expiry}");
    }
    let (status, _) = client
        .scalekit(Method::POST, &tokens, &sk, Some(json!({"identifier": "x".repeat(256)})))
        .await;
    assert_eq!(status, 400);

    // Magic link and details.
    let (status, body) = client
        .scalekit(
            Method::POST,
            "/api/v1/connected_accounts/magic_link",
            &sk,
            Some(json!({"connector": "gmail", "identifier": "carol@example.com"})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        body["link"].as_str().unwrap().starts_with(sim.base_url()) && body["expiry"].is_string()
    );
    let (status, body) = client
        .scalekit(
            Method::POST,
            "/api/v1/connected_accounts/magic_link",
            &sk,
            Some(json!({"connector": "slack", "identifier": "c"})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["details"][0]["error_code"].as_str()),
        (404, Some("RESOURCE_NOT_FOUND"))
    );
    let (status, _) = client
        .scalekit(
            Method::POST,
            "/api/v1/connected_accounts/magic_link",
            &sk,
            Some(json!({"connector": "gmail", "identifier": "x".repeat(101)})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = client
        .scalekit(
            Method::GET,
            "/api/v1/connected_accounts/details?connector=gmail&identifier=alice@example.com",
            &sk,
            None,
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["connected_account"]["status"].as_str()),
        (200, Some("ACTIVE"))
    );
    assert!(body["connected_account"].get("authorization_details").is_none());
    let (_, body) = client
        .scalekit(
            Method::GET,
            "/api/v1/connected_accounts/auth?connector=gmail&identifier=alice@example.com",
            &sk,
            None,
        )
        .await;
    assert!(
        body["connected_account"]["authorization_details"]["oauth_token"]["access_token"]
            .is_string()
    );
    let (status, _) = client
        .scalekit(
            Method::GET,
            "/api/v1/connected_accounts/details?connector=gmail&identifier=bob2",
            &sk,
            None,
        )
        .await;
    assert_eq!(status, 200, "unknown users get default ACTIVE accounts");
}

#[tokio::test]
async fn default_connection_status_none_means_no_account() {
    let sim =
        spawn_sim_with(SimConfig { default_connection_status: None, ..SimConfig::default() }).await;
    let client = SimClient::new(&sim);
    let sk = client.scalekit_token().await;
    let (status, body) = client
        .scalekit(
            Method::GET,
            "/api/v1/connected_accounts/details?connector=gmail&identifier=new@example.com",
            &sk,
            None,
        )
        .await;
    assert_eq!((status.as_u16(), body["code"].as_i64()), (404, Some(5)));
}

#[tokio::test]
async fn a_numeric_token_expiry_is_refused_as_protojson_refuses_it() {
    let sim = spawn_sim().await;
    let client = SimClient::new(&sim);
    let setup = client.setup_user("alice@example.com").await;
    let sk = client.scalekit_token().await;
    for path in [
        format!("/api/v1/mcp/configs/{}/tokens", setup.config_id),
        "/api/v1/mcp/connections/gmail/tokens".to_owned(),
    ] {
        let mint = |expiry: Value| {
            let body = json!({"identifier": "alice@example.com", "expiry": expiry});
            client.scalekit(Method::POST, &path, &sk, Some(body))
        };
        for expiry in [json!(3600), json!(3600.0), json!("3600")] {
            let (status, body) = mint(expiry.clone()).await;
            assert_eq!(
                (status.as_u16(), body["code"].as_i64()),
                (400, Some(3)),
                "{expiry}: {body}"
            );
            assert_eq!(body["details"][0]["error_code"], "INVALID_ARGUMENT", "{body}");
            let violation = &body["details"][0]["validation_error_info"]["field_violations"][0];
            assert_eq!(violation["field"], "expiry", "{body}");
        }
        // The form the SDK sends.
        let (status, body) = mint(json!("3600s")).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}
