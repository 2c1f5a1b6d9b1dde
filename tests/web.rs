//! Browser tests: mount the app into a fresh element in headless Chromium and assert on the DOM.
#![cfg(target_arch = "wasm32")]

use leptos::prelude::*;
use leptos::wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::HtmlElement;

wasm_bindgen_test_configure!(run_in_browser);

/// Mounts the app into a new element of its own and returns that element.
fn mount_app() -> HtmlElement {
    let root: HtmlElement = document().create_element("div").unwrap().unchecked_into();
    document().body().unwrap().append_child(&root).unwrap();
    let handle = leptos::mount::mount_to(root.clone(), twinscope::App);
    // The app lives until the page ends; the test owns `root`.
    handle.forget();
    root
}

fn by_testid(root: &HtmlElement, id: &str) -> HtmlElement {
    root.query_selector(&format!("[data-testid=\"{id}\"]"))
        .unwrap()
        .unwrap_or_else(|| panic!("no element with data-testid={id}"))
        .unchecked_into()
}

/// Types into an input or textarea as a user does (value, then an input event).
fn type_into(e: &HtmlElement, value: &str) {
    if let Some(t) = e.dyn_ref::<web_sys::HtmlTextAreaElement>() {
        t.set_value(value);
    } else {
        e.unchecked_ref::<web_sys::HtmlInputElement>()
            .set_value(value);
    }
    let init = web_sys::EventInit::new();
    init.set_bubbles(true);
    e.dispatch_event(&web_sys::Event::new_with_event_init_dict("input", &init).unwrap())
        .unwrap();
}

#[wasm_bindgen_test]
async fn bad_connection_strings_get_clear_errors_and_nothing_connects() {
    let root = mount_app();
    leptos::task::tick().await;

    let status = by_testid(&root, "conn-status");
    assert_eq!(status.text_content().unwrap().trim(), "disconnected");
    assert!(!by_testid(&root, "connect").has_attribute("disabled"));
    assert!(by_testid(&root, "disconnect").has_attribute("disabled"));
    // Nothing is restored from storage: keys are not persisted.
    let conn: web_sys::HtmlInputElement = by_testid(&root, "conn-string").unchecked_into();
    assert_eq!(conn.value(), "");

    let error_after = |input: &'static str| {
        let root = root.clone();
        async move {
            type_into(&by_testid(&root, "conn-string"), input);
            by_testid(&root, "connect").click();
            leptos::task::tick().await;
            by_testid(&root, "error").text_content().unwrap()
        }
    };
    assert!(error_after("").await.contains("empty"));
    let e = error_after("HostName=hub.azure-devices.net;DeviceId=d1;SharedAccessKey=abc!").await;
    assert!(e.contains("SharedAccessKey is not valid base64"), "{e}");
    let e = error_after(
        "HostName=hub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5",
    )
    .await;
    assert!(e.contains("DeviceId is missing"), "{e}");
    let e = error_after("HostName=hub.azure-devices.net;DeviceId=a#b;SharedAccessKey=a2V5").await;
    assert!(e.contains("MQTT wildcard"), "{e}");
    // The key is never echoed back in an error.
    let e = error_after("HostName=h;c2VjcmV0LWtleS1tdXN0LW5vdC1sZWFr").await;
    assert!(!e.contains("c2VjcmV0"), "{e}");
    assert_eq!(status.text_content().unwrap().trim(), "disconnected");
}

#[wasm_bindgen_test]
async fn tabs_switch_panels_by_click_and_keyboard() {
    let root = mount_app();
    leptos::task::tick().await;

    let panel = |slug: &str| -> HtmlElement {
        root.query_selector(&format!("#panel-{slug}"))
            .unwrap()
            .unwrap()
            .unchecked_into()
    };
    assert!(!panel("telemetry").hidden());
    assert!(panel("twin").hidden());

    by_testid(&root, "tab-twin").click();
    leptos::task::tick().await;
    assert!(panel("telemetry").hidden());
    assert!(!panel("twin").hidden());
    assert_eq!(
        by_testid(&root, "tab-twin")
            .get_attribute("aria-selected")
            .as_deref(),
        Some("true")
    );

    // ArrowRight on the tablist moves to the next tab (Methods).
    let init = web_sys::KeyboardEventInit::new();
    init.set_key("ArrowRight");
    init.set_bubbles(true);
    let ev = web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init).unwrap();
    by_testid(&root, "tab-twin").dispatch_event(&ev).unwrap();
    leptos::task::tick().await;
    assert!(!panel("methods").hidden());
    assert!(panel("twin").hidden());
}

#[wasm_bindgen_test]
async fn empty_states_explain_what_will_appear() {
    let root = mount_app();
    leptos::task::tick().await;
    let c2d = by_testid(&root, "c2d-list").text_content().unwrap();
    assert!(c2d.contains("No C2D messages yet"), "c2d list said {c2d:?}");
    // Nothing is listed yet: no message entries.
    assert!(root
        .query_selector("[data-testid=\"c2d-message\"]")
        .unwrap()
        .is_none());
    let traffic = by_testid(&root, "traffic-log").text_content().unwrap();
    assert!(
        traffic.contains("No traffic yet"),
        "traffic said {traffic:?}"
    );
}

#[wasm_bindgen_test]
async fn the_key_is_masked_and_the_sas_generator_signs_in_the_browser() {
    use twinscope_proto::iothub::{ConnectionString, SasToken};
    let root = mount_app();
    leptos::task::tick().await;
    let key = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";
    let cs = format!("HostName=hub.azure-devices.net;DeviceId=dev-01;SharedAccessKey={key}");
    let input: web_sys::HtmlInputElement = by_testid(&root, "conn-string").unchecked_into();
    type_into(&input, &cs);
    leptos::task::tick().await;
    // Masked: a password field, and the parsed fields show a mask, not the key.
    assert_eq!(input.type_(), "password");
    let fields = by_testid(&root, "conn-fields").text_content().unwrap();
    assert!(
        fields.contains("hub.azure-devices.net") && fields.contains("dev-01"),
        "{fields}"
    );
    let page = root.text_content().unwrap();
    assert!(
        !page.contains("XLy"),
        "the key is in the page text while masked"
    );
    // Shown on request, hidden again.
    by_testid(&root, "conn-key-toggle").click();
    leptos::task::tick().await;
    assert_eq!(input.type_(), "text");
    assert!(by_testid(&root, "conn-fields")
        .text_content()
        .unwrap()
        .contains(key));
    by_testid(&root, "conn-key-toggle").click();
    leptos::task::tick().await;
    assert!(!root.text_content().unwrap().contains("XLy"));

    // The generator signs a token with the key, here, and builds a connection string.
    type_into(&by_testid(&root, "sas-ttl"), "30");
    by_testid(&root, "sas-generate").click();
    leptos::task::tick().await;
    let token = by_testid(&root, "sas-token").text_content().unwrap();
    let parsed = SasToken::parse(token.trim()).expect("a SAS token");
    let k = ConnectionString::parse(&cs)
        .unwrap()
        .shared_access_key
        .unwrap();
    parsed
        .verify_signature(&k)
        .expect("signed with the device key");
    parsed
        .check_resource("hub.azure-devices.net/devices/dev-01")
        .unwrap();
    let now = (js_sys::Date::now() / 1000.0) as u64;
    assert!((now + 29 * 60..=now + 31 * 60).contains(&parsed.expiry));
    let with_sas = by_testid(&root, "sas-conn-string").text_content().unwrap();
    let again = ConnectionString::parse(with_sas.trim()).unwrap();
    assert_eq!(again.shared_access_signature.as_deref(), Some(token.trim()));
    assert!(
        again.shared_access_key.is_none(),
        "the key is not in the generated string"
    );
}

#[wasm_bindgen_test]
async fn the_telemetry_form_meters_size_and_checks_json_as_you_type() {
    let root = mount_app();
    leptos::task::tick().await;
    let body = by_testid(&root, "telemetry-body");
    type_into(&body, "{\"t\": 1");
    leptos::task::tick().await;
    let alert = root
        .query_selector("[data-testid=\"error\"]")
        .unwrap()
        .expect("a JSON error while typing")
        .text_content()
        .unwrap();
    assert!(alert.contains("not valid JSON"), "{alert}");
    type_into(&body, &"x".repeat(5000));
    type_into(&by_testid(&root, "telemetry-content-type"), "text/plain");
    leptos::task::tick().await;
    let meter = by_testid(&root, "telemetry-size").text_content().unwrap();
    // 5000 body + 10 ("text/plain") + 5 ("utf-8") bytes: two 4 KB units.
    assert!(meter.starts_with("5015 B of 256 KB"), "{meter}");
    assert!(meter.contains("2 × 4 KB billing units"), "{meter}");
    assert!(root
        .query_selector("[data-testid=\"error\"]")
        .unwrap()
        .is_none());
}

#[wasm_bindgen_test]
async fn property_problems_show_as_you_type() {
    let root = mount_app();
    leptos::task::tick().await;
    by_testid(&root, "telemetry-prop-add").click();
    leptos::task::tick().await;
    type_into(&by_testid(&root, "telemetry-prop-key"), "$.mid");
    type_into(&by_testid(&root, "telemetry-prop-value"), "x");
    leptos::task::tick().await;
    let alert = root
        .query_selector("[data-testid=\"error\"]")
        .unwrap()
        .expect("a property error while typing")
        .text_content()
        .unwrap();
    assert!(alert.contains("reserved"), "{alert}");
    type_into(&by_testid(&root, "telemetry-prop-key"), "alert");
    leptos::task::tick().await;
    assert!(root
        .query_selector("[data-testid=\"error\"]")
        .unwrap()
        .is_none());
}

#[wasm_bindgen_test]
async fn keyboard_focus_follows_the_page_order_and_is_visible() {
    // The app's own stylesheet, as trunk links it.
    let style = document().create_element("style").unwrap();
    style.set_text_content(Some(include_str!("../style/main.css")));
    document().head().unwrap().append_child(&style).unwrap();
    let root = mount_app();
    leptos::task::tick().await;
    // No positive tabindex: the tab order is the reading order (header, connection,
    // tabs, panel, traffic).
    let list = root.query_selector_all("[tabindex]").unwrap();
    for i in 0..list.length() {
        let e: HtmlElement = list.item(i).unwrap().unchecked_into();
        let t: i32 = e.get_attribute("tabindex").unwrap().parse().unwrap();
        assert!(t <= 0, "tabindex {t} on {}", e.outer_html());
    }
    // Only the selected tab is in the tab order; the arrows move between tabs.
    let tabs = root.query_selector_all("[role=tab]").unwrap();
    let in_order = (0..tabs.length())
        .filter(|i| {
            let e: HtmlElement = tabs.item(*i).unwrap().unchecked_into();
            e.get_attribute("tabindex").as_deref() == Some("0")
        })
        .count();
    assert_eq!(in_order, 1);
    // Every control a user needs is focusable (not taken out of the order), and the
    // focused one draws a visible outline.
    for id in [
        "conn-string",
        "connect",
        "tab-telemetry",
        "telemetry-body",
        "telemetry-send",
    ] {
        let e = by_testid(&root, id);
        assert_ne!(e.get_attribute("tabindex").as_deref(), Some("-1"), "{id}");
        e.focus().unwrap();
        let active = document().active_element().unwrap();
        assert_eq!(active.get_attribute("data-testid").as_deref(), Some(id));
        let style = window().get_computed_style(&e).unwrap().unwrap();
        let outline = style.get_property_value("outline-style").unwrap();
        let width = style.get_property_value("outline-width").unwrap();
        assert!(
            outline == "solid" && width != "0px",
            "{id} focused: outline {outline} {width}"
        );
    }
}

fn local_storage() -> web_sys::Storage {
    window().local_storage().unwrap().unwrap()
}

#[wasm_bindgen_test]
async fn profiles_save_switch_and_import_keeping_keys_only_when_asked() {
    local_storage().clear().unwrap();
    let root = mount_app();
    leptos::task::tick().await;
    let key = "c2VjcmV0LWRldmljZS1rZXk=";
    let cs = format!("HostName=lab.azure-devices.net;DeviceId=sensor-1;SharedAccessKey={key}");
    type_into(&by_testid(&root, "conn-string"), &cs);
    type_into(&by_testid(&root, "profile-name"), "lab");
    by_testid(&root, "profile-save").click();
    leptos::task::tick().await;
    let stored = local_storage()
        .get_item("twinscope.profiles")
        .unwrap()
        .unwrap();
    assert!(
        stored.contains("sensor-1") && !stored.contains(key),
        "no key unless asked: {stored}"
    );
    assert!(by_testid(&root, "profile-status")
        .text_content()
        .unwrap()
        .contains("without its key"));

    type_into(&by_testid(&root, "profile-name"), "lab with key");
    by_testid(&root, "profile-remember-key").click();
    by_testid(&root, "profile-save").click();
    leptos::task::tick().await;
    let stored = local_storage()
        .get_item("twinscope.profiles")
        .unwrap()
        .unwrap();
    assert!(stored.contains(key), "remembered when asked");
    let items = root
        .query_selector_all("[data-testid=profile-item]")
        .unwrap();
    assert_eq!(items.length(), 2);

    // One click fills the form: without the key, the user is told where to paste it.
    type_into(&by_testid(&root, "conn-string"), "");
    let first: HtmlElement = items.item(0).unwrap().unchecked_into();
    first
        .query_selector("button")
        .unwrap()
        .unwrap()
        .unchecked_into::<HtmlElement>()
        .click();
    leptos::task::tick().await;
    let conn: web_sys::HtmlInputElement = by_testid(&root, "conn-string").unchecked_into();
    assert_eq!(
        conn.value(),
        "HostName=lab.azure-devices.net;DeviceId=sensor-1;SharedAccessKey="
    );
    assert!(by_testid(&root, "profile-status")
        .text_content()
        .unwrap()
        .contains("paste the key"));
    let second: HtmlElement = items.item(1).unwrap().unchecked_into();
    second
        .query_selector("button")
        .unwrap()
        .unwrap()
        .unchecked_into::<HtmlElement>()
        .click();
    leptos::task::tick().await;
    assert_eq!(conn.value(), cs);

    // Import merges a file's profiles by name; a bad file is refused in words.
    let import = |text: &str| {
        let parts = js_sys::Array::of1(&text.into());
        let file = web_sys::File::new_with_str_sequence(&parts, "profiles.json").unwrap();
        let dt = web_sys::DataTransfer::new().unwrap();
        dt.items().add_with_file(&file).unwrap();
        let input: web_sys::HtmlInputElement = by_testid(&root, "profile-import").unchecked_into();
        input.set_files(dt.files().as_ref());
        let init = web_sys::EventInit::new();
        init.set_bubbles(true);
        input
            .dispatch_event(&web_sys::Event::new_with_event_init_dict("change", &init).unwrap())
            .unwrap();
    };
    import(
        r#"{"version":1,"profiles":[{"name":"field","connectionString":"HostName=f.azure-devices.net;DeviceId=pump-2;SharedAccessKey="}]}"#,
    );
    let mut waited = 0;
    while root
        .query_selector_all("[data-testid=profile-item]")
        .unwrap()
        .length()
        < 3
    {
        assert!(waited < 2000, "import did not add the profile");
        gloo_timers::future::TimeoutFuture::new(20).await;
        waited += 20;
    }
    assert!(by_testid(&root, "profile-list")
        .text_content()
        .unwrap()
        .contains("pump-2 @ f.azure-devices.net"));
    import("[1, 2]");
    gloo_timers::future::TimeoutFuture::new(200).await;
    assert!(by_testid(&root, "error")
        .text_content()
        .unwrap()
        .contains("not a twinscope profiles file"));
    local_storage().clear().unwrap();
}
