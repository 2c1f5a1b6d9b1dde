//! The Provision panel: register with the Device Provisioning Service from the page (an
//! individual key, or a group key from which the device key is derived here), then connect
//! the assigned device or save it as a profile.

use leptos::prelude::*;
use twinscope_proto::text::Quoted;

use super::model::ConnectForm;
use super::panels::{alert, error_line, TextField};
use super::profiles::ProfileStore;
use super::ConnectRequest;
use crate::client::{fetch_demo, now_ms, page_origin, Provisioner};
use crate::tools::profiles::Profile;
use crate::tools::provision::{connection_string, global_url, ProvisionForm};

#[component]
pub fn ProvisionPanel() -> impl IntoView {
    let prov = expect_context::<Provisioner>();
    // DPS packets show in the traffic inspector, like the hub's.
    prov.show_traffic_in(expect_context::<crate::client::Device>());
    let profiles = expect_context::<ProfileStore>();
    let connect_request = expect_context::<ConnectRequest>().0;
    let id_scope = RwSignal::new(String::new());
    let registration_id = RwSignal::new("twinscope-device-1".to_string());
    let key = RwSignal::new(String::new());
    let group_key = RwSignal::new(true);
    let show_key = RwSignal::new(false);
    let model_id = RwSignal::new(String::new());
    let endpoint = RwSignal::new(String::new());
    let remember = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let saved = RwSignal::new(None::<String>);
    // The device key of the last registration started (derived or individual).
    let device_key = RwSignal::new(String::new());
    let demo = RwSignal::new(false);

    // When devhub serves the page, its ID scope and demo group are filled in.
    leptos::task::spawn_local(async move {
        if let Some(d) = fetch_demo(&page_origin()).await {
            if let (Some(scope), Some(group)) = (d.id_scope, d.demo_group) {
                if id_scope.get_untracked().is_empty() {
                    id_scope.set(scope);
                    key.set(group.key);
                    group_key.set(true);
                    endpoint.set(d.websocket_url);
                    demo.set(true);
                }
            }
        }
    });

    let form = move || ProvisionForm {
        id_scope: id_scope.get_untracked(),
        registration_id: registration_id.get_untracked(),
        key: key.get_untracked(),
        group_key: group_key.get_untracked(),
        model_id: model_id.get_untracked(),
        endpoint: endpoint.get_untracked(),
    };
    let register = move |_| {
        saved.set(None);
        let r = form().registration(now_ms()).and_then(|reg| {
            device_key.set(reg.device_key.clone());
            prov.start(&reg.url, reg.config)
        });
        error.set(r.err());
    };
    let assigned = move || prov.view().with(|v| v.result.clone().and_then(Result::ok));
    // The hub endpoint to connect the assigned device through: devhub's own page serves
    // both, so the DPS endpoint is the hub's too; a real hub is reached by its name.
    let hub_endpoint = move || {
        let ep = endpoint.get_untracked();
        if ep.trim().is_empty() || ep.contains("azure-devices-provisioning.net") {
            String::new()
        } else {
            ep
        }
    };
    let connect = move |_| {
        if let Some(cs) =
            assigned().and_then(|st| connection_string(&st, &device_key.get_untracked()))
        {
            connect_request.set(Some((cs, hub_endpoint())));
        }
    };
    let save = move |_| {
        let Some(st) = assigned() else { return };
        let Some(cs) = connection_string(&st, &device_key.get_untracked()) else {
            return;
        };
        let settings = ConnectForm {
            endpoint: hub_endpoint(),
            model_id: model_id.get_untracked(),
            ..ConnectForm::default()
        };
        let name = st
            .device_id
            .clone()
            .unwrap_or_else(|| st.registration_id.clone());
        let r = Profile::new(&name, &cs, remember.get_untracked(), settings)
            .and_then(|p| profiles.save(p))
            .map(|()| {
                if remember.get_untracked() {
                    format!("saved as profile {} with its key", Quoted(&name))
                } else {
                    format!("saved as profile {} without its key", Quoted(&name))
                }
            });
        match r {
            Ok(t) => saved.set(Some(t)),
            Err(e) => error.set(Some(e)),
        }
    };

    view! {
        <h2 class="sr-only">"Provision"</h2>
        <p class="hint">
            "Register with the Device Provisioning Service from this page, over MQTT on a WebSocket. "
            "With a group key the device key is derived here; the key never leaves the page, only a token signed with it."
        </p>
        <Show when=move || demo.get()>
            <p class="hint">"devhub's ID scope and demo enrollment group are filled in. Register to try it."</p>
        </Show>
        <div class="form-grid">
            <TextField label="ID scope" testid="prov-id-scope" value=id_scope placeholder="0ne00ABC123" />
            <TextField label="Registration id" testid="prov-registration-id" value=registration_id />
            <label class="field field--wide">
                <span class="field-label">"Enrollment key (primary key)"</span>
                <span class="key-row">
                    <input class="mono" data-testid="prov-key" spellcheck="false" autocomplete="off"
                        type=move || if show_key.get() { "text" } else { "password" } bind:value=key />
                    <button type="button" class="btn btn--small" aria-pressed=move || show_key.get().to_string()
                        on:click=move |_| show_key.update(|s| *s = !*s)>
                        {move || if show_key.get() { "Hide key" } else { "Show key" }}
                    </button>
                </span>
            </label>
            <label class="check field--wide">
                <input type="checkbox" data-testid="prov-group-key" bind:checked=group_key />
                <span>"This is an enrollment group key: derive the device key from it and the registration id"</span>
            </label>
            <TextField label="Plug and Play model id (sent as the payload)" testid="prov-model-id" value=model_id placeholder="dtmi:com:example:Thermostat;1 (optional)" />
            <label class="field">
                <span class="field-label">"Endpoint"</span>
                <input class="mono" type="url" data-testid="prov-endpoint" spellcheck="false"
                    placeholder=global_url() bind:value=endpoint />
            </label>
        </div>
        <div class="actions">
            <button type="button" class="btn btn--primary" data-testid="prov-register" disabled=move || prov.view().with(|v| v.running)
                on:click=register>"Register"</button>
            <button type="button" class="btn" data-testid="prov-cancel" disabled=move || !prov.view().with(|v| v.running)
                on:click=move |_| prov.cancel()>"Cancel"</button>
        </div>
        {alert(move || error.get())}
        <ol class="list history mono" data-testid="prov-progress">
            {move || prov.view().with(|v| v.progress.iter().map(|p| view! { <li>{p.clone()}</li> }).collect_view())}
        </ol>
        {move || prov.view().with(|v| match &v.result {
            None => None,
            Some(Err(e)) => Some(error_line(e.clone())),
            Some(Ok(st)) => Some(view! {
                <div class="card" data-testid="prov-result">
                    <dl class="props-list mono">
                        <dt>"assigned hub"</dt><dd data-testid="prov-assigned-hub">{st.assigned_hub.clone().unwrap_or_default()}</dd>
                        <dt>"device id"</dt><dd data-testid="prov-device-id">{st.device_id.clone().unwrap_or_default()}</dd>
                        <dt>"status"</dt><dd>{format!("{}{}", st.status, st.substatus.as_ref().map(|s| format!(" ({s})")).unwrap_or_default())}</dd>
                    </dl>
                    <div class="actions">
                        <button type="button" class="btn btn--primary" data-testid="prov-connect" on:click=connect>"Connect this device"</button>
                        <button type="button" class="btn" data-testid="prov-save" on:click=save>"Save as profile"</button>
                        <label class="check inline">
                            <input type="checkbox" data-testid="prov-remember-key" bind:checked=remember />
                            <span>"with its key (stored unencrypted in this browser)"</span>
                        </label>
                    </div>
                    <p class="muted" role="status" data-testid="prov-saved">{move || saved.get()}</p>
                </div>
            }.into_any()),
        })}
    }
}
