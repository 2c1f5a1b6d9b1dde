//! The connection sidebar.

use leptos::prelude::*;

use crate::client::{fetch_demo, page_origin, ConnStatus, Device};

/// Connection string, endpoint override, token lifetime, connect and disconnect.
/// The connection string is kept in memory only: keys are never persisted.
#[component]
pub fn ConnectionPanel() -> impl IntoView {
    let device = expect_context::<Device>();
    let conn_string = RwSignal::new(String::new());
    let endpoint = RwSignal::new(String::new());
    let ttl_min = RwSignal::new("60".to_string());
    let form_error = RwSignal::new(None::<String>);
    let demo_note = RwSignal::new(false);

    // When devhub serves this page, offer its demo device.
    leptos::task::spawn_local(async move {
        if let Some(demo) = fetch_demo(&page_origin()).await {
            if conn_string.get_untracked().is_empty() {
                conn_string.set(demo.connection_string);
                endpoint.set(demo.websocket_url);
                demo_note.set(true);
            }
        }
    });

    let connect = move |_| {
        let ttl = match ttl_min.get_untracked().trim().parse::<u64>() {
            Ok(m) if (1..=525_600).contains(&m) => m * 60,
            _ => {
                form_error.set(Some(
                    "token lifetime must be a whole number of minutes, 1 to 525600".into(),
                ));
                return;
            }
        };
        let ep = endpoint.get_untracked();
        match device.connect(&conn_string.get_untracked(), Some(ep.as_str()), ttl) {
            Ok(()) => form_error.set(None),
            Err(e) => form_error.set(Some(e)),
        }
    };
    let busy = move || device.status() != ConnStatus::Disconnected;

    view! {
        <h2 class="side-title">"Connection"</h2>
        <Show when=move || demo_note.get()>
            <p class="hint">"devhub's demo device is filled in. Connect to try it."</p>
        </Show>
        <label class="field">
            <span class="field-label">"Device connection string"</span>
            <textarea
                class="mono"
                data-testid="conn-string"
                rows="4"
                spellcheck="false"
                autocomplete="off"
                placeholder="HostName=myhub.azure-devices.net;DeviceId=dev-01;SharedAccessKey=…"
                bind:value=conn_string
            ></textarea>
            <span class="field-hint">
                "Kept in this tab only. The key signs a SAS token in your browser and never leaves it."
            </span>
        </label>
        <details class="advanced">
            <summary>"Advanced"</summary>
            <label class="field">
                <span class="field-label">"WebSocket endpoint"</span>
                <input
                    class="mono"
                    type="url"
                    data-testid="conn-endpoint"
                    spellcheck="false"
                    placeholder="wss://{HostName}:443/$iothub/websocket?iothub-no-client-cert=true"
                    bind:value=endpoint
                />
                <span class="field-hint">"Leave empty to use the hub named in the connection string."</span>
            </label>
            <label class="field">
                <span class="field-label">"Token lifetime (minutes)"</span>
                <input type="number" min="1" data-testid="conn-ttl" bind:value=ttl_min />
                <span class="field-hint">"Renewed automatically at 80% of its life."</span>
            </label>
        </details>
        <div class="actions">
            <button
                type="button"
                class="btn btn--primary"
                data-testid="connect"
                disabled=busy
                on:click=connect
            >
                "Connect"
            </button>
            <button
                type="button"
                class="btn"
                data-testid="disconnect"
                disabled=move || !busy()
                on:click=move |_| device.disconnect()
            >
                "Disconnect"
            </button>
        </div>
        {move || {
            form_error
                .get()
                .or_else(|| device.view().with(|v| v.error.clone()))
                .map(|e| view! { <p class="error" data-testid="error" role="alert">{e}</p> })
        }}
    }
}
