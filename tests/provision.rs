//! The Provision panel in headless Chromium against devhub's DPS endpoint: a group key
//! turned into the device key in the page, registration, then the device connected and
//! saved as a profile (without its key).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::*;

/// devhub's ID scope (its default unless `cargo xtask test` says otherwise).
const ID_SCOPE: &str = match option_env!("TWINSCOPE_DEVHUB_ID_SCOPE") {
    Some(s) => s,
    None => "0ne00DEVHUB",
};
const GROUP_KEY: &str =
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";

#[wasm_bindgen_test]
async fn a_device_is_provisioned_from_a_group_key_then_connects() {
    let Some((base, service)) = devhub() else {
        return;
    };
    web_sys::window()
        .unwrap()
        .local_storage()
        .unwrap()
        .unwrap()
        .clear()
        .unwrap();
    create_group(base, &service, "browser-group", GROUP_KEY).await;

    let root = mount_app();
    leptos::task::tick().await;
    el(&root, "tab-provision").click();
    type_into(&el(&root, "prov-id-scope"), ID_SCOPE);
    type_into(&el(&root, "prov-registration-id"), "prov-browser-1");
    type_into(&el(&root, "prov-key"), GROUP_KEY);
    type_into(&el(&root, "prov-endpoint"), &ws_url(base));
    type_into(&el(&root, "prov-model-id"), "dtmi:com:example:Thermostat;1");

    // The group key itself as an individual key is refused, in words.
    el(&root, "prov-group-key").click();
    el(&root, "prov-register").click();
    wait_until("the refusal", 10_000, || {
        text_now(&root, "error").contains("refused")
    })
    .await;

    el(&root, "prov-group-key").click();
    el(&root, "prov-register").click();
    wait_until("assigned", 15_000, || {
        text_now(&root, "prov-device-id") == "prov-browser-1"
    })
    .await;
    assert_eq!(text(&root, "prov-assigned-hub"), "localhost");
    assert!(
        text(&root, "prov-progress").contains("assigning"),
        "202 then a poll"
    );

    // Saved as a profile without its key.
    el(&root, "prov-save").click();
    leptos::task::tick().await;
    assert!(text(&root, "prov-saved").contains("without its key"));
    let stored = web_sys::window()
        .unwrap()
        .local_storage()
        .unwrap()
        .unwrap()
        .get_item("twinscope.profiles")
        .unwrap()
        .unwrap();
    assert!(
        stored.contains("prov-browser-1") && stored.contains("SharedAccessKey=\""),
        "{stored}"
    );
    assert!(text(&root, "profile-list").contains("prov-browser-1"));

    // Connected with the derived key, and its telemetry reaches the hub.
    el(&root, "prov-connect").click();
    wait_until("connected", 10_000, || status_is(&root, "connected")).await;
    el(&root, "tab-telemetry").click();
    el(&root, "telemetry-send").click();
    wait_until("acknowledged", 10_000, || {
        text_now(&root, "telemetry-sent-count").contains("1 acknowledged")
    })
    .await;
    let (_, events) = call(
        base,
        &service,
        "GET",
        "/devhub/events?device=prov-browser-1",
        None,
    )
    .await;
    assert_eq!(events.as_array().map(Vec::len), Some(1));
    let (_, twin) = call(base, &service, "GET", "/twins/prov-browser-1", None).await;
    assert_eq!(twin["deviceId"], "prov-browser-1");
    web_sys::window()
        .unwrap()
        .local_storage()
        .unwrap()
        .unwrap()
        .clear()
        .unwrap();
}
