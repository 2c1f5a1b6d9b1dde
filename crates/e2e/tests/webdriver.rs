//! The release app, served by devhub, driven in headless Chromium through WebDriver
//! (chromedriver) as a new user would: paste a connection string, connect, check the key
//! is masked, send telemetry with a property, patch reported properties, receive a
//! desired update and a C2D message, answer a method, generate a SAS token. Every step is
//! checked against devhub's service and events APIs. Screenshots (light and dark) go to
//! `docs/`, where the README shows them.
//!
//! `cargo xtask test` builds the app, starts devhub (`--app dist --demo`) and chromedriver,
//! and sets TWINSCOPE_E2E_URL, TWINSCOPE_E2E_SERVICE, TWINSCOPE_E2E_WEBDRIVER (and
//! TWINSCOPE_REQUIRE_E2E, so that a missing setup fails instead of skipping).

use std::time::{Duration, Instant};

use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use twinscope_proto::iothub::{ConnectionString, SasToken};

struct Env {
    url: String,
    service: ConnectionString,
    webdriver: String,
}

fn env() -> Option<Env> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        get("TWINSCOPE_E2E_URL"),
        get("TWINSCOPE_E2E_SERVICE"),
        get("TWINSCOPE_E2E_WEBDRIVER"),
    ) {
        (Some(url), Some(service), Some(webdriver)) => Some(Env {
            url,
            service: ConnectionString::parse(&service).expect("service connection string"),
            webdriver,
        }),
        _ => {
            assert!(
                std::env::var_os("TWINSCOPE_REQUIRE_E2E").is_none(),
                "TWINSCOPE_E2E_URL, _SERVICE and _WEBDRIVER must be set (cargo xtask test sets them)"
            );
            println!("skipping: no app, devhub or chromedriver (run cargo xtask test)");
            None
        }
    }
}

impl Env {
    fn auth(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.service.sas_token(now + 600).unwrap()
    }

    fn rest(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .header("Authorization", self.auth())
            .header("Content-Type", "application/json")
    }
}

async fn browser(env: &Env, dark: bool) -> Client {
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,860",
    ];
    if dark {
        args.push("--force-dark-mode");
        args.push("--blink-settings=preferredColorScheme=0");
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": args, "binary": "/usr/bin/chromium"}),
    );
    ClientBuilder::rustls()
        .expect("rustls")
        .capabilities(caps)
        .connect(&env.webdriver)
        .await
        .expect("a chromedriver session")
}

fn css(testid: &str) -> String {
    format!("[data-testid=\"{testid}\"]")
}

async fn el(c: &Client, testid: &str) -> Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(&css(testid)))
        .await
        .unwrap_or_else(|e| panic!("no element {testid}: {e}"))
}

async fn text(c: &Client, testid: &str) -> String {
    el(c, testid).await.text().await.unwrap()
}

/// Waits until `check` holds, polling every 100 ms.
async fn until<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn type_into(c: &Client, testid: &str, value: &str) {
    let e = el(c, testid).await;
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn create_device(env: &Env, id: &str) -> (String, String) {
    let r = env
        .rest(reqwest::Method::PUT, &format!("/devices/{id}"))
        .body(json!({"deviceId": id}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dev: Value = r.json().await.unwrap();
    let key = dev["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    (
        format!(
            "HostName={};DeviceId={id};SharedAccessKey={key}",
            env.service.host_name
        ),
        key,
    )
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_tries_every_panel() {
    let Some(env) = env() else { return };
    for (dark, device) in [(false, "e2e-light"), (true, "e2e-dark")] {
        run(&env, dark, device).await;
    }
}

/// The power tools as a user meets them: a method answered by a rule, a generator run of
/// 100 messages (all acknowledged and stored in devhub), a C2D message and a dropped
/// connection from the hub console (the page reconnects), and a traffic export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_power_tools_need_nothing_but_the_page() {
    let Some(env) = env() else { return };
    let device = "e2e-tools";
    let c = browser(&env, false).await;
    c.goto(&format!("{}/", env.url)).await.unwrap();
    until("the demo prefill", 10, || async {
        el(&c, "conn-string")
            .await
            .prop("value")
            .await
            .unwrap()
            .is_some_and(|v| v.contains("demo-device"))
    })
    .await;
    let (cs, _) = create_device(&env, device).await;
    type_into(&c, "conn-string", &cs).await;
    el(&c, "connect").await.click().await.unwrap();
    until("connected", 15, || async {
        text(&c, "conn-status").await.trim() == "connected"
    })
    .await;

    // A rule answers "reboot" with the call's own payload.
    el(&c, "tab-methods").await.click().await.unwrap();
    type_into(&c, "rule-method", "reboot").await;
    type_into(&c, "rule-status", "200").await;
    type_into(&c, "rule-payload", r#"{"ok": {{request.in}}}"#).await;
    el(&c, "rule-add").await.click().await.unwrap();
    until("the rule listed", 5, || async {
        text(&c, "rule-item").await.contains("rule 1 (reboot")
    })
    .await;
    let answer: Value = env
        .rest(reqwest::Method::POST, &format!("/twins/{device}/methods"))
        .body(
            json!({"methodName": "reboot", "payload": {"in": 5}, "responseTimeoutInSeconds": 10})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, json!({"status": 200, "payload": {"ok": 5}}));
    until("the history names the rule", 5, || async {
        text(&c, "method-answered").await.contains("by rule 1")
    })
    .await;

    // A generator run of 100 messages, all acknowledged and stored.
    el(&c, "tab-telemetry").await.click().await.unwrap();
    type_into(&c, "telemetry-body", r#"{"n": {{counter}}}"#).await;
    type_into(&c, "gen-interval", "20").await;
    type_into(&c, "gen-count", "100").await;
    el(&c, "gen-start").await.click().await.unwrap();
    until("100 acknowledged", 60, || async {
        text(&c, "gen-acked").await.trim() == "100 acknowledged"
    })
    .await;
    assert_eq!(text(&c, "gen-failed").await.trim(), "0 failed");
    let events: Value = env
        .rest(
            reqwest::Method::GET,
            &format!("/devhub/events?device={device}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bodies: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies.len(), 100);
    assert_eq!(bodies[0], r#"{"n": 1}"#);
    assert_eq!(bodies[99], r#"{"n": 100}"#);

    // The hub console (filled in because devhub serves the page) sends a C2D message.
    el(&c, "tab-console").await.click().await.unwrap();
    until("the console targets the device", 5, || async {
        el(&c, "console-device")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref()
            == Some(device)
    })
    .await;
    type_into(&c, "console-c2d-body", "hello from the console").await;
    el(&c, "console-c2d-send").await.click().await.unwrap();
    until("accepted", 5, || async {
        text(&c, "console-c2d-result").await.contains("accepted")
    })
    .await;
    el(&c, "tab-c2d").await.click().await.unwrap();
    until("the C2D message", 10, || async {
        c.find(Locator::Css(&css("c2d-message"))).await.is_ok()
            && text(&c, "c2d-message")
                .await
                .contains("hello from the console")
    })
    .await;

    // A fault from the console drops the connection; the page reconnects by itself.
    el(&c, "tab-console").await.click().await.unwrap();
    type_into(&c, "traffic-filter", "CONNACK").await;
    until("one CONNACK", 5, || async {
        text(&c, "traffic-count").await.starts_with("1 of")
    })
    .await;
    el(&c, "console-fault-drop").await.click().await.unwrap();
    until("reconnected", 30, || async {
        text(&c, "traffic-count").await.starts_with("2 of")
            && text(&c, "conn-status").await.trim() == "connected"
    })
    .await;
    screenshot(&c, "screenshot-tools.png").await;

    // Export what the filter shows: NDJSON, one line per entry, no token.
    el(&c, "traffic-export").await.click().await.unwrap();
    let href = el(&c, "traffic-export-link")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let body = c
        .execute_async(
            "const [url, done] = arguments; fetch(url).then(r => r.text()).then(done);",
            vec![json!(href)],
        )
        .await
        .unwrap();
    let body = body.as_str().unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{body}");
    assert!(lines
        .iter()
        .all(|l| l["packet"] == "CONNACK" && l["latencyMs"].is_number()));
    assert!(!body.contains("sig="));
    c.close().await.unwrap();
}

/// Provisioning from the page with devhub's demo group, then a fleet of ten devices whose
/// messages all reach devhub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_provisioned_from_a_group_and_a_fleet_of_ten() {
    let Some(env) = env() else { return };
    let c = browser(&env, false).await;
    c.goto(&format!("{}/", env.url)).await.unwrap();
    el(&c, "tab-provision").await.click().await.unwrap();
    until("the demo group filled in", 10, || async {
        el(&c, "prov-id-scope")
            .await
            .prop("value")
            .await
            .unwrap()
            .is_some_and(|v| !v.is_empty())
    })
    .await;
    type_into(&c, "prov-registration-id", "e2e-prov-1").await;
    el(&c, "prov-register").await.click().await.unwrap();
    until("assigned", 20, || async {
        c.find(Locator::Css(&css("prov-device-id"))).await.is_ok()
            && text(&c, "prov-device-id").await == "e2e-prov-1"
    })
    .await;
    el(&c, "prov-connect").await.click().await.unwrap();
    until("connected as the provisioned device", 15, || async {
        text(&c, "conn-status").await.trim() == "connected"
            && text(&c, "conn-fields").await.contains("e2e-prov-1")
    })
    .await;

    el(&c, "tab-fleet").await.click().await.unwrap();
    type_into(&c, "fleet-pattern", "e2e-fleet-{n}").await;
    type_into(&c, "fleet-count", "10").await;
    type_into(&c, "fleet-interval", "300").await;
    el(&c, "fleet-start").await.click().await.unwrap();
    until("ten connected", 60, || async {
        text(&c, "fleet-summary")
            .await
            .starts_with("10 devices, 10 connected")
    })
    .await;
    el(&c, "fleet-send").await.click().await.unwrap();
    until("three messages from each", 60, || async {
        let rows = c
            .find_all(Locator::Css(&css("fleet-counts")))
            .await
            .unwrap();
        let mut ok = rows.len() == 10;
        for r in rows {
            let t = r.text().await.unwrap();
            ok &= t
                .split(" / ")
                .nth(1)
                .and_then(|a| a.trim().parse::<u64>().ok())
                .unwrap_or(0)
                >= 3;
        }
        ok
    })
    .await;
    el(&c, "fleet-stop").await.click().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = c
        .find_all(Locator::Css(&css("fleet-counts")))
        .await
        .unwrap();
    for (i, r) in rows.into_iter().enumerate() {
        let acked: usize = r
            .text()
            .await
            .unwrap()
            .split(" / ")
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let device = format!("e2e-fleet-{}", i + 1);
        let events: Value = env
            .rest(
                reqwest::Method::GET,
                &format!("/devhub/events?device={device}"),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            events.as_array().unwrap().len() >= acked,
            "{device}: every acknowledged message is stored"
        );
    }
    c.close().await.unwrap();
}

async fn run(env: &Env, dark: bool, device: &str) {
    let c = browser(env, dark).await;
    c.goto(&format!("{}/", env.url)).await.unwrap();
    // devhub's demo device is filled in; the user pastes their own instead.
    until("the demo prefill", 10, || async {
        el(&c, "conn-string")
            .await
            .prop("value")
            .await
            .unwrap()
            .is_some_and(|v| v.contains("demo-device"))
    })
    .await;
    let (cs, key) = create_device(env, device).await;
    type_into(&c, "conn-string", &cs).await;

    // The key is masked: a password field, a mask in the parsed fields, not in the page.
    assert_eq!(
        el(&c, "conn-string")
            .await
            .attr("type")
            .await
            .unwrap()
            .as_deref(),
        Some("password")
    );
    let fields = text(&c, "conn-fields").await;
    assert!(fields.contains(device), "{fields}");
    let body = c
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!body.contains(&key), "the key is in the page while masked");

    el(&c, "connect").await.click().await.unwrap();
    until("connected", 15, || async {
        text(&c, "conn-status").await.trim() == "connected"
    })
    .await;

    // Telemetry with an application property, as devhub stored it.
    type_into(&c, "telemetry-body", r#"{"temperature": 30}"#).await;
    el(&c, "telemetry-prop-add").await.click().await.unwrap();
    type_into(&c, "telemetry-prop-key", "alert").await;
    type_into(&c, "telemetry-prop-value", "too hot").await;
    el(&c, "telemetry-send").await.click().await.unwrap();
    until("telemetry acknowledged", 10, || async {
        text(&c, "telemetry-sent-count")
            .await
            .contains("1 acknowledged")
    })
    .await;
    let events: Value = env
        .rest(
            reqwest::Method::GET,
            &format!("/devhub/events?device={device}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events[0]["body"], r#"{"temperature": 30}"#);
    assert_eq!(events[0]["properties"]["application"]["alert"], "too hot");
    assert!(text(&c, "telemetry-history").await.contains("acknowledged"));

    // Reported patch, read back through the service API.
    el(&c, "tab-twin").await.click().await.unwrap();
    type_into(&c, "twin-reported-editor", r#"{"firmware": "2.0.1"}"#).await;
    el(&c, "twin-reported-send").await.click().await.unwrap();
    until("the patch applied", 10, || async {
        text(&c, "twin-document").await.contains("2.0.1")
    })
    .await;
    let twin: Value = env
        .rest(reqwest::Method::GET, &format!("/twins/{device}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(twin["properties"]["reported"]["firmware"], "2.0.1");

    // A desired update from the service arrives.
    let r = env
        .rest(reqwest::Method::PATCH, &format!("/twins/{device}"))
        .body(json!({"properties": {"desired": {"interval": 42}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    until("the desired update", 10, || async {
        c.find(Locator::Css(&css("twin-desired-update")))
            .await
            .is_ok()
            && text(&c, "twin-document").await.contains("\"interval\": 42")
    })
    .await;

    // A C2D message with a property, shown as text.
    let r = env
        .rest(
            reqwest::Method::POST,
            &format!("/devices/{device}/messages/deviceBound"),
        )
        .header("iothub-app-color", "blue")
        .body("<b>hello</b> from the cloud")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    el(&c, "tab-c2d").await.click().await.unwrap();
    until("the C2D message", 10, || async {
        c.find(Locator::Css(&css("c2d-message"))).await.is_ok()
    })
    .await;
    let m = text(&c, "c2d-message").await;
    assert!(
        m.contains("<b>hello</b> from the cloud") && m.contains("blue"),
        "{m}"
    );

    // A method call answered from the UI.
    let call = env
        .rest(reqwest::Method::POST, &format!("/twins/{device}/methods"))
        .body(
            json!({"methodName": "reboot", "payload": {"in": 5}, "responseTimeoutInSeconds": 30})
                .to_string(),
        )
        .send();
    let call = tokio::spawn(call);
    el(&c, "tab-methods").await.click().await.unwrap();
    until("the method call", 10, || async {
        c.find(Locator::Css(&css("method-request"))).await.is_ok()
    })
    .await;
    assert_eq!(text(&c, "method-name").await, "reboot");
    screenshot(
        &c,
        if dark {
            "screenshot-dark.png"
        } else {
            "screenshot-light.png"
        },
    )
    .await;
    type_into(&c, "method-status", "201").await;
    type_into(&c, "method-response", r#"{"rebooting": true}"#).await;
    el(&c, "method-respond").await.click().await.unwrap();
    let answer: Value = call.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(
        answer,
        json!({"status": 201, "payload": {"rebooting": true}})
    );

    // A SAS token made in the browser, signed with the device's key (the generator is
    // open by default, so its controls are visible).
    el(&c, "sas-generate").await.click().await.unwrap();
    let token = text(&c, "sas-token").await;
    let parsed = SasToken::parse(token.trim()).expect("a SAS token");
    let k = ConnectionString::parse(&cs)
        .unwrap()
        .shared_access_key
        .unwrap();
    parsed
        .verify_signature(&k)
        .expect("signed with the device key");
    assert!(text(&c, "sas-conn-string")
        .await
        .contains("SharedAccessSignature=SharedAccessSignature sr="));

    el(&c, "disconnect").await.click().await.unwrap();
    until("disconnected", 10, || async {
        text(&c, "conn-status").await.trim() == "disconnected"
    })
    .await;
    c.close().await.unwrap();
}
