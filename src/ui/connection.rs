//! The connection sidebar.

use leptos::prelude::*;

/// Connection string, endpoint override, connect and disconnect.
///
/// The device session is not built yet, so Connect stays disabled and says so; the fields
/// are real inputs and keep what the user types (in memory only: keys are never persisted).
#[component]
pub fn ConnectionPanel() -> impl IntoView {
    let conn_string = RwSignal::new(String::new());
    let endpoint = RwSignal::new(String::new());

    view! {
        <h2 class="side-title">"Connection"</h2>
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
                    placeholder="wss://{HostName}:443/$iothub/websocket"
                    bind:value=endpoint
                />
                <span class="field-hint">"Leave empty to use the hub named in the connection string."</span>
            </label>
        </details>
        <div class="actions">
            <button type="button" class="btn btn--primary" data-testid="connect" disabled=true>
                "Connect"
            </button>
            <button type="button" class="btn" data-testid="disconnect" disabled=true>
                "Disconnect"
            </button>
        </div>
        <p class="notice">
            "Connecting is not available yet: the device session is being built. "
            "Everything on this page is shown as it will be used, but nothing is sent."
        </p>
    }
}
