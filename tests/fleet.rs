//! A fleet in headless Chromium against devhub: ten devices provisioned from one group key,
//! each over its own WebSocket, sending the template; every acknowledged message is stored
//! in devhub; one dropped through the fault API comes back.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;
use web_sys::HtmlElement;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::*;

const ID_SCOPE: &str = match option_env!("TWINSCOPE_DEVHUB_ID_SCOPE") {
    Some(s) => s,
    None => "0ne00DEVHUB",
};
const GROUP_KEY: &str = "ZmxlZXQtZ3JvdXAta2V5LWZvci10aGUtYnJvd3Nlci10ZXN0cy0wMTIzNDU2Nzg5";

fn summary_numbers(root: &HtmlElement) -> Vec<u64> {
    text_now(root, "fleet-summary")
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[wasm_bindgen_test]
async fn ten_devices_from_one_group_send_and_one_comes_back_after_a_drop() {
    let Some((base, service)) = devhub() else {
        return;
    };
    create_group(base, &service, "fleet-group", GROUP_KEY).await;
    let root = mount_app();
    leptos::task::tick().await;
    // The console knows devhub (for the drop button).
    el(&root, "tab-console").click();
    type_into(&el(&root, "console-conn-string"), SERVICE.unwrap());
    type_into(&el(&root, "console-base"), base);
    fire_change(&el(&root, "console-base"));

    el(&root, "tab-fleet").click();
    type_into(&el(&root, "fleet-id-scope"), ID_SCOPE);
    type_into(&el(&root, "fleet-group-key"), GROUP_KEY);
    type_into(&el(&root, "fleet-endpoint"), &ws_url(base));
    type_into(&el(&root, "fleet-pattern"), "fleet-{n}");
    type_into(&el(&root, "fleet-count"), "10");
    type_into(&el(&root, "fleet-interval"), "200");
    el(&root, "fleet-start").click();
    wait_until("ten connected", 30_000, || {
        summary_numbers(&root).get(..2) == Some(&[10, 10])
    })
    .await;
    assert_eq!(all(&root, "fleet-row").len(), 10);

    el(&root, "fleet-send").click();
    wait_until("messages from all", 30_000, || {
        all(&root, "fleet-counts").iter().all(|c| {
            c.text_content()
                .unwrap_or_default()
                .split(" / ")
                .nth(1)
                .and_then(|a| a.trim().parse::<u64>().ok())
                .unwrap_or(0)
                >= 3
        })
    })
    .await;

    // Drop the first through devhub's fault API: it reconnects by itself.
    wait_until("the drop button", 5_000, || {
        !all(&root, "fleet-drop").is_empty()
    })
    .await;
    all(&root, "fleet-drop")[0].click();
    wait_until("back after the drop", 20_000, || {
        let row = &all(&root, "fleet-row")[0];
        let t = row.text_content().unwrap_or_default();
        t.contains("connected (reconnected 1×)")
    })
    .await;

    el(&root, "fleet-stop").click();
    gloo_timers::future::TimeoutFuture::new(500).await;
    // Every acknowledged message is in devhub, each filled in for its device.
    let mut total_acked = 0;
    for (i, c) in all(&root, "fleet-counts").iter().enumerate() {
        let acked: u64 = c
            .text_content()
            .unwrap()
            .split(" / ")
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let device = format!("fleet-{}", i + 1);
        let (_, events) = call(
            base,
            &service,
            "GET",
            &format!("/devhub/events?device={device}"),
            None,
        )
        .await;
        let events = events.as_array().unwrap();
        assert!(
            events.len() as u64 >= acked,
            "{device}: {} stored, {acked} acknowledged",
            events.len()
        );
        let first: serde_json::Value =
            serde_json::from_str(events[0]["body"].as_str().unwrap()).unwrap();
        assert_eq!(first["device"], device.as_str());
        assert_eq!(first["n"], i as u64 + 1);
        total_acked += acked;
    }
    assert!(total_acked >= 30);
}
