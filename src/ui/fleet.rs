//! A small fleet from one page: N devices provisioned from a group key, each its own
//! `DeviceSession` over its own WebSocket, sending the telemetry template (with `{{device}}`
//! and `{{n}}`) every N ms. Each keeps counters and small lists only.

use gloo_timers::callback::Interval;
use leptos::prelude::*;

use super::keyed::{key_of, keyed};
use twinscope_proto::iothub::service::Fault;

use super::model::{countdown, TelemetryForm};
use super::panels::{alert, TextField};
use super::ConnectRequest;
use crate::client::{
    fetch_demo, now_ms, page_origin, ConnStatus, ConnectOptions, Console, Device, Limits,
    Provisioner,
};
use crate::tools::fleet::names;
use crate::tools::generator::Plan;
use crate::tools::provision::{connection_string, ProvisionForm};
use crate::tools::template::Context;

/// One device of the fleet.
#[derive(Clone)]
struct Member {
    n: u64,
    name: String,
    device: Device,
    prov: Provisioner,
    /// The device key (derived from the group key).
    key: String,
    /// The hub endpoint to connect through.
    endpoint: String,
    /// Connected once already (a later drop is the session's to repair).
    started: StoredValue<bool>,
    /// Messages this member produced (for `{{counter}}`).
    counter: StoredValue<u64>,
    /// Handed to the normal panels.
    opened: RwSignal<bool>,
}

#[component]
pub fn FleetPanel() -> impl IntoView {
    let console = expect_context::<Console>();
    let connect_request = expect_context::<ConnectRequest>().0;
    let owner = Owner::current().expect("a reactive owner");
    let id_scope = RwSignal::new(String::new());
    let group_key = RwSignal::new(String::new());
    let endpoint = RwSignal::new(String::new());
    let pattern = RwSignal::new("sensor-{n}".to_string());
    let count = RwSignal::new("10".to_string());
    let interval = RwSignal::new("1000".to_string());
    let body = RwSignal::new("{\"device\": \"{{device}}\", \"n\": {{n}}, \"seq\": {{counter}}, \"t\": {{random(18,25)}}}".to_string());
    let members = RwSignal::new(Vec::<Member>::new());
    let error = RwSignal::new(None::<String>);
    let sending = StoredValue::new_local(None::<Interval>);
    let is_sending = RwSignal::new(false);

    leptos::task::spawn_local(async move {
        if let Some(d) = fetch_demo(&page_origin()).await {
            if let (Some(scope), Some(group)) = (d.id_scope, d.demo_group) {
                if id_scope.get_untracked().is_empty() {
                    id_scope.set(scope);
                    group_key.set(group.key);
                    endpoint.set(d.websocket_url);
                }
            }
        }
    });

    // Connect each member once DPS has assigned it.
    Effect::new(move |_| {
        members.with(|ms| {
            for m in ms {
                let done = m.prov.view().with(|v| v.result.clone());
                if let Some(Ok(st)) = done {
                    if !m.started.get_value() {
                        m.started.set_value(true);
                        if let Some(cs) = connection_string(&st, &m.key) {
                            let o = ConnectOptions {
                                endpoint: (!m.endpoint.is_empty()).then(|| m.endpoint.clone()),
                                ..ConnectOptions::default()
                            };
                            let _ = m.device.connect_with(&cs, &o);
                        }
                    }
                }
            }
        })
    });

    let stop_sending = move || {
        let mut t = None;
        sending.update_value(|s| t = s.take());
        leptos::task::spawn_local(async move { drop(t) });
        is_sending.set(false);
    };
    let stop_all = move || {
        stop_sending();
        members.with_untracked(|ms| {
            for m in ms {
                m.prov.cancel();
                m.device.disconnect();
            }
        });
    };
    let start = move |_| {
        stop_all();
        let list = match names(&pattern.get_untracked(), &count.get_untracked()) {
            Ok(l) => l,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        let ep = endpoint.get_untracked();
        let mut created = Vec::new();
        for (n, name) in list {
            let form = ProvisionForm {
                id_scope: id_scope.get_untracked(),
                registration_id: name.clone(),
                key: group_key.get_untracked(),
                group_key: true,
                model_id: String::new(),
                endpoint: ep.clone(),
            };
            let reg = match form.registration(now_ms()) {
                Ok(r) => r,
                Err(e) => {
                    error.set(Some(e));
                    return;
                }
            };
            let m = owner.with(|| Member {
                n,
                name,
                device: Device::with_limits(Limits::small()),
                prov: Provisioner::new(),
                key: reg.device_key.clone(),
                endpoint: if ep.contains("azure-devices-provisioning.net") {
                    String::new()
                } else {
                    ep.clone()
                },
                started: StoredValue::new(false),
                counter: StoredValue::new(0),
                opened: RwSignal::new(false),
            });
            if let Err(e) = m.prov.start(&reg.url, reg.config) {
                error.set(Some(e));
                return;
            }
            created.push(m);
        }
        error.set(None);
        members.set(created);
    };
    let send_all = move |_| {
        let ms = match interval.get_untracked().trim().parse::<u64>() {
            Ok(ms) if ms >= 100 => ms,
            _ => {
                error.set(Some(
                    "the interval must be at least 100 ms for a fleet".into(),
                ));
                return;
            }
        };
        let form = TelemetryForm {
            body: body.get_untracked(),
            content_type: "application/json".into(),
            content_encoding: "utf-8".into(),
            qos: 1,
            ..TelemetryForm::default()
        };
        let plan = match Plan::parse(&form) {
            Ok(p) => p,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        error.set(None);
        stop_sending();
        let start_ms = now_ms();
        let tick = move || {
            members.with_untracked(|list| {
                for m in list {
                    if m.opened.get_untracked() || m.device.status() != ConnStatus::Connected {
                        continue;
                    }
                    let c = m.counter.get_value() + 1;
                    m.counter.set_value(c);
                    let mut random = || js_sys::Math::random();
                    let f = plan.render(
                        &form,
                        &mut Context {
                            counter: c,
                            now_ms: now_ms(),
                            start_ms,
                            device: &m.name,
                            n: m.n,
                            request: None,
                            random: &mut random,
                        },
                    );
                    if let Ok(t) = f.to_telemetry_with(crate::client::fresh_message_id) {
                        let _ = m.device.send_telemetry(t);
                    }
                }
            });
        };
        sending.set_value(Some(Interval::new(ms as u32, tick)));
        is_sending.set(true);
    };
    let totals = move || {
        members.with(|ms| {
            let connected = ms
                .iter()
                .filter(|m| m.device.status() == ConnStatus::Connected)
                .count();
            let (sent, acked) = ms.iter().fold((0, 0), |(s, a), m| {
                m.device.view().with(|v| (s + v.sent, a + v.acked))
            });
            format!(
                "{} devices, {connected} connected · {sent} sent, {acked} acknowledged",
                ms.len()
            )
        })
    };

    view! {
        <h2 class="sr-only">"Fleet"</h2>
        <p class="hint">
            "Provision and connect several devices from one enrollment group, each with its own connection, and send the template below from all of them. "
            "Fields: " <code>"{{device}} {{n}} {{counter}} {{now}} {{random(min,max)}}"</code>"."
        </p>
        <div class="form-grid">
            <TextField label="ID scope" testid="fleet-id-scope" value=id_scope />
            <label class="field">
                <span class="field-label">"Enrollment group key"</span>
                <input class="mono" type="password" data-testid="fleet-group-key" autocomplete="off" bind:value=group_key />
            </label>
            <TextField label="DPS endpoint" testid="fleet-endpoint" value=endpoint placeholder="wss://global.azure-devices-provisioning.net:443/$iothub/websocket" />
            <TextField label="Names" testid="fleet-pattern" value=pattern />
            <TextField label="Devices (1 to 100)" testid="fleet-count" value=count />
            <TextField label="Send every (ms)" testid="fleet-interval" value=interval />
            <label class="field field--wide">
                <span class="field-label">"Telemetry template"</span>
                <textarea class="mono" rows="2" spellcheck="false" data-testid="fleet-body" bind:value=body></textarea>
            </label>
        </div>
        <div class="actions">
            <button type="button" class="btn btn--primary" data-testid="fleet-start" on:click=start>"Provision and connect"</button>
            <button type="button" class="btn" data-testid="fleet-send" disabled=move || is_sending.get() on:click=send_all>"Start sending"</button>
            <button type="button" class="btn" data-testid="fleet-stop" on:click=move |_| stop_all()>"Stop all"</button>
            <span class="muted" data-testid="fleet-summary">{totals}</span>
        </div>
        {alert(move || error.get())}
        <table class="diff mono fleet" data-testid="fleet-table">
            <thead><tr><th>"device"</th><th>"state"</th><th>"sent / acked"</th><th>"token"</th><th>"last error"</th><th></th></tr></thead>
            <tbody>
                {keyed(move || members.get(), |m| key_of(&m.name), move |m| {
                        let (device, prov, name) = (m.device, m.prov, m.name.clone());
                        let opened = m.opened;
                        let state = move || {
                            if opened.get() {
                                return "opened in the panels".to_string();
                            }
                            match prov.view().with(|v| (v.running, v.result.clone())) {
                                (true, _) => "provisioning".to_string(),
                                (false, Some(Err(_))) => "not provisioned".to_string(),
                                _ => match (device.status(), device.view().with(|v| v.connects)) {
                                    (ConnStatus::Connected, n) if n > 1 => format!("connected (reconnected {}×)", n - 1),
                                    (s, _) => s.label().to_string(),
                                },
                            }
                        };
                        let last_error = move || {
                            prov.view().with(|v| match &v.result { Some(Err(e)) => Some(e.clone()), _ => None })
                                .or_else(|| device.view().with(|v| v.lost_because.clone().or_else(|| v.error.clone())))
                                .unwrap_or_default()
                        };
                        let open_name = name.clone();
                        let key = m.key.clone();
                        let ep = m.endpoint.clone();
                        let open = move |_| {
                            let st = prov.view().with_untracked(|v| v.result.clone().and_then(Result::ok));
                            if let Some(cs) = st.and_then(|st| connection_string(&st, &key)) {
                                device.disconnect();
                                opened.set(true);
                                connect_request.set(Some((cs, ep.clone())));
                            }
                            let _ = &open_name;
                        };
                        let drop_name = name.clone();
                        let drop_it = move |_| {
                            let d = drop_name.clone();
                            leptos::task::spawn_local(async move {
                                let _ = console.send(Fault::Drop { device: d }.request()).await;
                            });
                        };
                        view! {
                            <tr data-testid="fleet-row">
                                <td>{name.clone()}</td>
                                <td data-testid="fleet-state">{state}</td>
                                <td data-testid="fleet-counts">{move || device.view().with(|v| format!("{} / {}", v.sent, v.acked))}</td>
                                <td>{move || countdown(device.view().with(|v| v.token_expiry), device.now.get())}</td>
                                <td class="fleet-error">{last_error}</td>
                                <td>
                                    <button type="button" class="btn btn--small" data-testid="fleet-open" on:click=open>"Open"</button>
                                    <Show when=move || console.devhub.get()>
                                        <button type="button" class="btn btn--small" data-testid="fleet-drop" on:click=drop_it.clone()>"Drop"</button>
                                    </Show>
                                </td>
                            </tr>
                        }
                })}
            </tbody>
        </table>
    }
}
