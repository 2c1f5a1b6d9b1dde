//! The hub console in headless Chromium against devhub: the cloud side played from the
//! page itself, through devhub's service REST API signed in the browser.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::*;

#[wasm_bindgen_test]
async fn the_console_sets_desired_sends_c2d_invokes_methods_and_drops_the_connection() {
    let Some((base, _)) = devhub() else {
        return;
    };
    let service = SERVICE.unwrap();
    let (_, policy) = devhub().unwrap();
    let cs = create_device(base, &policy, "console-1").await;
    let root = mount_app();
    connect_ui(&root, &cs, base).await;
    el(&root, "tab-console").click();
    leptos::task::tick().await;

    // The target follows the connected device; faults appear once the URL is devhub's.
    let target: web_sys::HtmlInputElement =
        leptos::wasm_bindgen::JsCast::unchecked_into(el(&root, "console-device"));
    assert_eq!(target.value(), "console-1");
    type_into(&el(&root, "console-conn-string"), service);
    type_into(&el(&root, "console-base"), base);
    assert!(all(&root, "console-fault-drop").is_empty());
    fire_change(&el(&root, "console-base"));
    wait_until("devhub detected", 5_000, || {
        !all(&root, "console-fault-drop").is_empty()
    })
    .await;

    // The twin as the service sees it: connection state and $metadata.
    el(&root, "console-twin-get").click();
    wait_until("service twin", 5_000, || {
        text_now(&root, "console-twin-summary").contains("Connected")
    })
    .await;
    assert!(text(&root, "console-twin").contains("$metadata"));

    // The twin panel shows the service's $metadata once the console knows the policy.
    el(&root, "twin-service-get").click();
    wait_until("$metadata in the twin panel", 5_000, || {
        text_now(&root, "twin-service").contains("$lastUpdated")
    })
    .await;

    // A desired patch reaches the device.
    type_into(&el(&root, "console-desired-editor"), r#"{"fan": "on"}"#);
    el(&root, "console-desired-send").click();
    wait_until("desired accepted", 5_000, || {
        text_now(&root, "console-desired-result").contains("accepted")
    })
    .await;
    wait_until("desired update on the device", 5_000, || {
        all(&root, "twin-desired-update")
            .iter()
            .any(|e| e.text_content().unwrap_or_default().contains("fan"))
    })
    .await;

    // A bad patch is refused in words before anything is sent.
    type_into(&el(&root, "console-desired-editor"), "[1, 2]");
    el(&root, "console-desired-send").click();
    wait_until("refusal", 2_000, || {
        text_now(&root, "console-desired-result").contains("must be a JSON object")
    })
    .await;

    // A C2D message with a property, rendered as text on the device.
    type_into(&el(&root, "console-c2d-body"), "<b>hello</b>");
    type_into(&el(&root, "console-c2d-content-type"), "text/plain");
    type_into(&el(&root, "console-c2d-prop-key"), "color");
    type_into(&el(&root, "console-c2d-prop-value"), "red");
    el(&root, "console-c2d-send").click();
    wait_until("C2D on the device", 5_000, || {
        !all(&root, "c2d-message").is_empty()
    })
    .await;
    let msg = text(&root, "c2d-message");
    assert!(
        msg.contains("<b>hello</b>") && msg.contains("color") && msg.contains("red"),
        "{msg}"
    );
    // The device may hear of the message before the page has the REST answer.
    wait_until("the C2D send result", 5_000, || {
        text_now(&root, "console-c2d-result").contains("message id")
    })
    .await;

    // A method invoked from the console, answered in the Methods panel.
    type_into(&el(&root, "console-method-name"), "blink");
    type_into(&el(&root, "console-method-payload"), r#"{"times": 3}"#);
    el(&root, "console-method-invoke").click();
    wait_until("the call on the device", 5_000, || {
        !all(&root, "method-request").is_empty()
    })
    .await;
    type_into(&el(&root, "method-status"), "202");
    type_into(&el(&root, "method-response"), r#"{"blinked": 3}"#);
    el(&root, "method-respond").click();
    wait_until("the answer in the console", 5_000, || {
        text_now(&root, "console-method-result").contains("status 202")
    })
    .await;
    assert!(text(&root, "console-method-result").contains("blinked"));

    // Dropping the connection from the console: the device comes back by itself.
    let connacks = traffic_count(&root, "CONNACK");
    el(&root, "console-fault-drop").click();
    wait_until("reconnected", 15_000, || {
        traffic_count(&root, "CONNACK") > connacks && status_is(&root, "connected")
    })
    .await;
    el(&root, "console-fault-clear").click();
    wait_until("cleared", 5_000, || {
        text_now(&root, "console-fault-result").contains("cleared")
    })
    .await;
}
