//! The connection sidebar.

use leptos::prelude::*;

use super::model::{connection_fields, generate_sas, ConnectForm};
use super::panels::{alert, error_line, TextField};
use super::profiles::ProfilesSection;
use crate::client::{copy_text, fetch_demo, now_ms, page_origin, ConnStatus, Console, Device};

/// Connection string, endpoint override, token lifetime, connect and disconnect.
/// The connection string is kept in memory only: keys are never persisted.
#[component]
pub fn ConnectionPanel() -> impl IntoView {
    let device = expect_context::<Device>();
    let conn_string = RwSignal::new(String::new());
    let endpoint = RwSignal::new(String::new());
    let defaults = ConnectForm::default();
    let ttl_min = RwSignal::new(defaults.ttl_min);
    let clean_session = RwSignal::new(defaults.clean_session);
    let keep_alive = RwSignal::new(defaults.keep_alive);
    let api_version = RwSignal::new(defaults.api_version);
    let model_id = RwSignal::new(defaults.model_id);
    let will_body = RwSignal::new(defaults.will_body);
    let will_props = RwSignal::new(defaults.will_props);
    let form_error = RwSignal::new(None::<String>);
    // The demo device's connection string, while devhub offers one.
    let demo_cs = RwSignal::new(None::<String>);
    // The key is masked by default: the field is a password field and the parsed fields
    // show a mask, so the key is not in the page's text until the user asks.
    let show_key = RwSignal::new(false);

    // When devhub serves this page, offer its demo device (and its service string to the
    // hub console).
    let console = expect_context::<Console>();
    leptos::task::spawn_local(async move {
        if let Some(demo) = fetch_demo(&page_origin()).await {
            if let Some(service) = demo.service_connection_string.clone() {
                if console.conn.get_untracked().is_empty() {
                    console.conn.set(service);
                    console.base.set(page_origin());
                    console.devhub.set(true);
                }
            }
            if conn_string.get_untracked().is_empty() {
                conn_string.set(demo.connection_string.clone());
                endpoint.set(demo.websocket_url);
                demo_cs.set(Some(demo.connection_string));
            }
        }
    });

    // The form as one value (for connecting and for profiles), and back into the fields.
    let current = move || ConnectForm {
        endpoint: endpoint.get_untracked(),
        ttl_min: ttl_min.get_untracked(),
        clean_session: clean_session.get_untracked(),
        keep_alive: keep_alive.get_untracked(),
        api_version: api_version.get_untracked(),
        model_id: model_id.get_untracked(),
        will_body: will_body.get_untracked(),
        will_props: will_props.get_untracked(),
    };
    let fill = move |f: ConnectForm| {
        endpoint.set(f.endpoint);
        ttl_min.set(f.ttl_min);
        clean_session.set(f.clean_session);
        keep_alive.set(f.keep_alive);
        api_version.set(f.api_version);
        model_id.set(f.model_id);
        will_body.set(f.will_body);
        will_props.set(f.will_props);
    };
    let connect = move |_| {
        let form = current();
        let r = form
            .to_options()
            .and_then(|o| device.connect_with(&conn_string.get_untracked(), &o));
        form_error.set(r.err());
    };
    let busy = move || device.status() != ConnStatus::Disconnected;
    // Another panel (Provision) asks to connect a device: fill the form in and connect.
    let request = expect_context::<super::ConnectRequest>().0;
    Effect::new(move |_| {
        if let Some((cs, ep)) = request.get() {
            request.set(None);
            conn_string.set(cs.clone());
            endpoint.set(ep.clone());
            let r = current()
                .to_options()
                .and_then(|o| device.connect_with(&cs, &o));
            form_error.set(r.err());
        }
    });

    view! {
        <h2 class="side-title">"Connection"</h2>
        <Show when=move || demo_cs.with(|d| d.as_deref() == Some(conn_string.get().as_str()))>
            <p class="hint">"devhub's demo device is filled in. Connect to try it."</p>
        </Show>
        <label class="field">
            <span class="field-label">"Device connection string"</span>
            <span class="key-row">
                <input
                    class="mono"
                    type=move || if show_key.get() { "text" } else { "password" }
                    data-testid="conn-string"
                    spellcheck="false"
                    autocomplete="off"
                    placeholder="HostName=myhub.azure-devices.net;DeviceId=dev-01;SharedAccessKey=…"
                    bind:value=conn_string
                />
                <button
                    type="button"
                    class="btn btn--small"
                    data-testid="conn-key-toggle"
                    aria-pressed=move || show_key.get().to_string()
                    on:click=move |_| show_key.update(|s| *s = !*s)
                >
                    {move || if show_key.get() { "Hide key" } else { "Show key" }}
                </button>
            </span>
            <span class="field-hint">
                "Kept in this tab only. The key signs a SAS token in your browser and never leaves it."
            </span>
        </label>
        <div data-testid="conn-fields">
            {move || {
                let s = conn_string.get();
                if s.trim().is_empty() {
                    return None;
                }
                Some(match connection_fields(&s, show_key.get()) {
                    Ok(fields) => view! {
                        <dl class="props-list conn-fields">
                            {fields.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd class="mono">{v}</dd> }).collect_view()}
                        </dl>
                    }.into_any(),
                    Err(e) => view! { <p class="hint">{format!("Not a connection string yet: {e}")}</p> }.into_any(),
                })
            }}
        </div>
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
        {alert(move || form_error.get().or_else(|| device.view().with(|v| v.error.clone())))}
        <ProfilesSection
            conn_string=conn_string
            current=Callback::new(move |()| current())
            fill=Callback::new(fill)
        />
        <details class="advanced" open>
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
            <label class="check">
                <input type="checkbox" data-testid="conn-clean-session" bind:checked=clean_session />
                " CleanSession (forget subscriptions and unacknowledged C2D messages)"
            </label>
            <label class="field">
                <span class="field-label">"Keep-alive (seconds, at most 1177)"</span>
                <input type="number" min="0" max="1177" data-testid="conn-keepalive" bind:value=keep_alive />
            </label>
            <TextField label="api-version" testid="conn-api-version" value=api_version />
            <TextField label="Plug and Play model id" testid="conn-model-id" value=model_id placeholder="dtmi:com:example:Thermostat;1" />
            <label class="field">
                <span class="field-label">"Will message (sent by the hub as telemetry if the connection drops)"</span>
                <textarea class="mono" rows="2" data-testid="conn-will-body" placeholder="{\"online\": false}" bind:value=will_body></textarea>
            </label>
            <label class="field">
                <span class="field-label">"Will properties (name=value, one a line; $.ct sets the content type)"</span>
                <textarea class="mono" rows="2" data-testid="conn-will-props" placeholder="$.ct=application/json" bind:value=will_props></textarea>
            </label>
        </details>
        <SasGenerator conn_string=conn_string.read_only() />
    }
}

/// Makes a SAS token (and a connection string that carries it) from the connection string
/// above, for other tools, as the old Device Explorer did. Signed here; nothing is sent.
#[component]
fn SasGenerator(conn_string: ReadSignal<String>) -> impl IntoView {
    let ttl = RwSignal::new("60".to_string());
    let out = RwSignal::new(None::<Result<(String, String), String>>);
    let copied = RwSignal::new(None::<String>);
    let generate = move |_| {
        copied.set(None);
        out.set(Some(generate_sas(
            &conn_string.get_untracked(),
            &ttl.get_untracked(),
            now_ms() / 1000,
        )));
    };
    let copy = move |text: String, what: &'static str| {
        leptos::task::spawn_local(async move {
            copied.set(Some(match copy_text(text).await {
                Ok(()) => format!("{what} copied"),
                Err(e) => e,
            }));
        });
    };
    view! {
        <details class="advanced sas" open>
            <summary>"SAS token generator"</summary>
            <label class="field">
                <span class="field-label">"Lifetime (minutes)"</span>
                <input type="number" min="1" data-testid="sas-ttl" bind:value=ttl />
            </label>
            <button type="button" class="btn" data-testid="sas-generate" on:click=generate>"Generate"</button>
            {move || out.get().map(|r| match r {
                Ok((token, cs)) => {
                    let (t2, cs2) = (token.clone(), cs.clone());
                    view! {
                        <p class="field-label">"SAS token"</p>
                        <pre class="mono body" data-testid="sas-token">{token}</pre>
                        <button type="button" class="btn btn--small" on:click=move |_| copy(t2.clone(), "token")>"Copy token"</button>
                        <p class="field-label">"Connection string with SharedAccessSignature"</p>
                        <pre class="mono body" data-testid="sas-conn-string">{cs}</pre>
                        <button type="button" class="btn btn--small" on:click=move |_| copy(cs2.clone(), "connection string")>"Copy connection string"</button>
                        <p class="hint" role="status">{move || copied.get()}</p>
                    }.into_any()
                }
                Err(e) => error_line(e),
            })}
        </details>
    }
}
