//! The power tools in headless Chromium against devhub: the telemetry generator (template
//! fields, counts, stop) and method rules (answered by rule, with the call's payload).
#![cfg(target_arch = "wasm32")]

use serde_json::{json, Value};
use wasm_bindgen_test::*;
use web_sys::HtmlElement;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::*;

fn number_in(root: &HtmlElement, id: &str) -> u64 {
    text_now(root, id)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[wasm_bindgen_test]
async fn the_generator_sends_templated_messages_all_acknowledged_and_stored() {
    let Some((base, service)) = devhub() else {
        return;
    };
    let cs = create_device(base, &service, "gen-1").await;
    let root = mount_app();
    connect_ui(&root, &cs, base).await;

    type_into(
        &el(&root, "telemetry-body"),
        r#"{"n": {{counter}}, "t": {{random(1,5)}}, "id": "{{uuid}}", "dev": "{{device}}"}"#,
    );
    el(&root, "telemetry-prop-add").click();
    leptos::task::tick().await;
    type_into(&el(&root, "telemetry-prop-key"), "seq");
    type_into(&el(&root, "telemetry-prop-value"), "{{counter}}");
    leptos::task::tick().await;
    // The preview is the next message, filled in; the form checks it as JSON.
    let preview = text(&root, "gen-preview");
    assert!(
        preview.contains(r#""n": 1"#) && preview.contains("seq=1"),
        "{preview}"
    );
    assert!(preview.contains(r#""dev": "gen-1""#), "{preview}");
    assert!(
        all(&root, "error").is_empty(),
        "a templated body is valid once filled in"
    );
    assert!(text(&root, "gen-billing").contains("1 × 4 KB unit"));

    // A bad interval is refused in words.
    type_into(&el(&root, "gen-interval"), "5");
    el(&root, "gen-start").click();
    leptos::task::tick().await;
    assert!(text(&root, "error").contains("at least 10"));

    // 100 messages, every 20 ms: all acknowledged, none failed.
    type_into(&el(&root, "gen-interval"), "20");
    type_into(&el(&root, "gen-count"), "100");
    el(&root, "gen-start").click();
    wait_until("100 acknowledged", 30_000, || {
        number_in(&root, "gen-acked") == 100
    })
    .await;
    assert_eq!(number_in(&root, "gen-sent"), 100);
    assert_eq!(number_in(&root, "gen-failed"), 0);
    wait_until("stopped", 2_000, || {
        text_now(&root, "gen-state") == "stopped"
    })
    .await;

    // devhub stored all 100, each filled in with its own counter, uuid and property.
    let (_, events) = call(base, &service, "GET", "/devhub/events?device=gen-1", None).await;
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 100);
    let mut ids = std::collections::HashSet::new();
    for (i, ev) in events.iter().enumerate() {
        let body: Value = serde_json::from_str(ev["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["n"], json!(i + 1));
        assert!((1..=5).contains(&body["t"].as_i64().unwrap()));
        assert_eq!(body["dev"], "gen-1");
        assert!(
            ids.insert(body["id"].as_str().unwrap().to_string()),
            "uuids differ"
        );
        assert_eq!(
            ev["properties"]["application"]["seq"],
            json!((i + 1).to_string())
        );
    }

    // Until stopped: it runs until Stop, then sends no more.
    type_into(&el(&root, "gen-count"), "");
    type_into(&el(&root, "gen-interval"), "50");
    leptos::task::tick().await;
    assert!(
        !el(&root, "gen-start").has_attribute("disabled"),
        "start is enabled again"
    );
    el(&root, "gen-start").click();
    leptos::task::tick().await;
    assert!(
        all(&root, "error").is_empty(),
        "{}",
        text_now(&root, "error")
    );
    wait_until("some sent", 10_000, || number_in(&root, "gen-sent") >= 5).await;
    assert!(
        !el(&root, "gen-stop").has_attribute("disabled"),
        "{} / {} / {:?}",
        text_now(&root, "gen-state"),
        text_now(&root, "gen-sent"),
        all(&root, "error")
            .iter()
            .map(|e| e.text_content())
            .collect::<Vec<_>>()
    );
    el(&root, "gen-stop").click();
    gloo_timers::future::TimeoutFuture::new(300).await;
    assert_eq!(text_now(&root, "gen-state"), "stopped");
    let after_stop = number_in(&root, "gen-sent");
    gloo_timers::future::TimeoutFuture::new(400).await;
    assert_eq!(
        number_in(&root, "gen-sent"),
        after_stop,
        "nothing sent after Stop"
    );
}

#[wasm_bindgen_test]
async fn method_rules_answer_calls_with_the_request_payload() {
    let Some((base, service)) = devhub() else {
        return;
    };
    let cs = create_device(base, &service, "rules-1").await;
    let root = mount_app();
    connect_ui(&root, &cs, base).await;
    el(&root, "tab-methods").click();

    // A rule that is not JSON once filled in is refused.
    type_into(&el(&root, "rule-method"), "reboot");
    type_into(&el(&root, "rule-payload"), "{\"a\": ");
    el(&root, "rule-add").click();
    leptos::task::tick().await;
    assert!(text(&root, "error").contains("not JSON"));
    assert!(all(&root, "rule-item").is_empty());

    type_into(&el(&root, "rule-status"), "201");
    type_into(
        &el(&root, "rule-payload"),
        r#"{"echo": {{request.delay}}, "n": {{counter}}}"#,
    );
    el(&root, "rule-add").click();
    type_into(&el(&root, "rule-method"), "*");
    type_into(&el(&root, "rule-status"), "404");
    type_into(
        &el(&root, "rule-payload"),
        r#"{"unknown": "{{request.name}}"}"#,
    );
    type_into(&el(&root, "rule-delay"), "200");
    el(&root, "rule-add").click();
    leptos::task::tick().await;
    assert_eq!(all(&root, "rule-item").len(), 2);

    let invoke = |name: &str, payload: Value| {
        let body = json!({"methodName": name, "payload": payload, "responseTimeoutInSeconds": 10});
        finish(request(
            base,
            &service,
            "POST",
            "/twins/rules-1/methods",
            Some(&body.to_string()),
            &[],
        ))
    };
    let (status, answer) = invoke("reboot", json!({"delay": 5})).await;
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer,
        json!({"status": 201, "payload": {"echo": 5, "n": 1}})
    );

    let t0 = js_sys::Date::now();
    let (_, answer) = invoke("other", json!({"name": "x"})).await;
    let waited = js_sys::Date::now() - t0;
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer, json!({"status": 404, "payload": {"unknown": "x"}}));
    assert!(waited >= 200.0, "the rule's delay: {waited} ms");

    // The history says which rule answered each call.
    wait_until("history", 2_000, || {
        all(&root, "method-answered").len() == 2
    })
    .await;
    let history: Vec<String> = all(&root, "method-answered")
        .iter()
        .map(|e| e.text_content().unwrap_or_default())
        .collect();
    assert!(
        history
            .iter()
            .any(|h| h.contains("reboot") && h.contains("by rule 1 (reboot → 201)")),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|h| h.contains("other") && h.contains("by rule 2 (any method → 404)")),
        "{history:?}"
    );

    // Removing the rules: calls wait for a manual answer again.
    for b in all(&root, "rule-remove") {
        b.click();
    }
    leptos::task::tick().await;
    let pending = request(
        base,
        &service,
        "POST",
        "/twins/rules-1/methods",
        Some(
            &json!({"methodName": "reboot", "payload": {}, "responseTimeoutInSeconds": 10})
                .to_string(),
        ),
        &[],
    );
    wait_until("a call waiting", 5_000, || {
        !all(&root, "method-request").is_empty()
    })
    .await;
    el(&root, "method-respond").click();
    let (status, answer) = finish(pending).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["status"],
        200
    );
    wait_until("by hand", 2_000, || {
        all(&root, "method-answered")
            .iter()
            .any(|e| e.text_content().unwrap_or_default().contains("by hand"))
    })
    .await;
}

#[wasm_bindgen_test]
async fn a_desired_property_is_acknowledged_the_plug_and_play_way() {
    let Some((base, service)) = devhub() else {
        return;
    };
    let cs = create_device(base, &service, "pnp-1").await;
    let root = mount_app();
    leptos::task::tick().await;
    type_into(&el(&root, "conn-model-id"), "dtmi:com:example:Thermostat;1");
    connect_ui(&root, &cs, base).await;
    el(&root, "tab-twin").click();
    assert_eq!(
        text(&root, "twin-model-id"),
        "dtmi:com:example:Thermostat;1"
    );

    let patch = json!({"properties": {"desired": {"targetTemperature": 22.5}}});
    let (status, twin) = call(
        base,
        &service,
        "PATCH",
        "/twins/pnp-1",
        Some(&patch.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{twin}");
    let version = twin["properties"]["desired"]["$version"].as_u64().unwrap();
    let row = |root: &HtmlElement| {
        all(root, "twin-diff-row").into_iter().find(|r| {
            r.text_content()
                .unwrap_or_default()
                .contains("targetTemperature")
        })
    };
    wait_until("the desired property in the comparison", 5_000, || {
        row(&root).is_some_and(|r| {
            r.text_content()
                .unwrap_or_default()
                .contains("not reported")
        })
    })
    .await;
    type_into(&el(&root, "twin-ack-description"), "set by twinscope");
    let button: HtmlElement = leptos::wasm_bindgen::JsCast::unchecked_into(
        row(&root)
            .unwrap()
            .query_selector("[data-testid=twin-ack]")
            .unwrap()
            .unwrap(),
    );
    button.click();
    wait_until("acknowledged", 5_000, || {
        row(&root).is_some_and(|r| {
            let t = r.text_content().unwrap_or_default();
            t.contains("same") && t.contains(&format!("ac 200, av {version}"))
        })
    })
    .await;
    let (_, twin) = call(base, &service, "GET", "/twins/pnp-1", None).await;
    assert_eq!(
        twin["properties"]["reported"]["targetTemperature"],
        json!({"value": 22.5, "ac": 200, "av": version, "ad": "set by twinscope"})
    );
    assert_eq!(
        twin["modelId"], "dtmi:com:example:Thermostat;1",
        "devhub keeps the model id"
    );
}
