//! The tab panels and the traffic drawer. Untrusted text (payloads, property names and
//! values) is always inserted as text nodes, never as HTML.

use leptos::prelude::*;

use super::generator::{render_next, GeneratorSection};
use super::keyed::{key_of, keyed};
use super::model::{body_text, method_wait, property_lines, TelemetryForm};
use super::rules::MethodRules;
use crate::client::{CallOutcome, ConnStatus, Console, Device, DeviceView, Entry, Ring};
use crate::tools::generator::Plan;
use crate::tools::num::fixed;
use twinscope_proto::session::C2dMessage;

/// An empty state: what will appear here and how to make it appear.
#[component]
fn Empty(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <div class="empty">
            <p class="empty-title">{title}</p>
            <p class="empty-body">{children()}</p>
        </div>
    }
}

/// A JSON value as a collapsible tree: objects and arrays fold (open at first), leaves
/// read as JSON (`"key": value`). Keys and strings are text nodes, never HTML.
pub(super) fn json_tree(key: Option<&str>, v: &serde_json::Value) -> AnyView {
    let label = key.map(|k| format!("{}: ", serde_json::Value::String(k.to_string())));
    match v {
        serde_json::Value::Object(o) if !o.is_empty() => {
            let children: Vec<AnyView> = o.iter().map(|(k, v)| json_tree(Some(k), v)).collect();
            view! {
                <details class="json-node" open>
                    <summary>{label.unwrap_or_default()}{format!("{{ {} }}", o.len())}</summary>
                    <div class="json-children">{children}</div>
                </details>
            }
            .into_any()
        }
        serde_json::Value::Array(a) if !a.is_empty() => {
            let children: Vec<AnyView> = a.iter().map(|v| json_tree(None, v)).collect();
            view! {
                <details class="json-node" open>
                    <summary>{label.unwrap_or_default()}{format!("[ {} ]", a.len())}</summary>
                    <div class="json-children">{children}</div>
                </details>
            }
            .into_any()
        }
        leaf => {
            view! { <div class="json-leaf">{label.unwrap_or_default()}{leaf.to_string()}</div> }
                .into_any()
        }
    }
}

/// One of the view's lists for a keyed list, re-read only when that list changed (its
/// revision), not on every session event.
pub(super) fn list<T: Clone + 'static>(
    device: Device,
    pick: fn(&DeviceView) -> &Ring<T>,
    newest_first: bool,
) -> impl Fn() -> Vec<Entry<T>> + Copy + 'static {
    let view = device.view();
    let revision = Memo::new(move |_| view.with(|v| pick(v).revision()));
    move || {
        // Read (not only track) the memo, so that it runs and follows the view.
        let _ = revision.get();
        view.with_untracked(|v| {
            let ring = pick(v);
            if newest_first {
                ring.newest_first()
            } else {
                ring.iter().cloned().collect()
            }
        })
    }
}

/// An error where it happened: `data-testid="error"`, `role="alert"`, as text.
pub(super) fn error_line(text: String) -> AnyView {
    view! { <p class="error" data-testid="error" role="alert">{text}</p> }.into_any()
}

/// An error line, shown while `text` gives one (a problem found as the user types, the
/// outcome of the last action). One function for every such line in the app.
pub(super) fn alert(text: impl Fn() -> Option<String> + Send + Sync + 'static) -> AnyView {
    alert_dyn(Box::new(text))
}

fn alert_dyn(text: Box<dyn Fn() -> Option<String> + Send + Sync>) -> AnyView {
    (move || text().map(error_line)).into_any()
}

/// What is wrong with `text` as a JSON value (empty is fine: no payload).
pub(super) fn json_problem(text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return None;
    }
    serde_json::from_slice::<serde_json::Value>(text.as_bytes())
        .err()
        .map(|e| format!("not valid JSON: {e}"))
}

/// A labelled one-line text field in monospace (ids, types, times).
#[component]
pub(super) fn TextField(
    label: &'static str,
    testid: &'static str,
    value: RwSignal<String>,
    #[prop(optional)] placeholder: &'static str,
) -> impl IntoView {
    view! {
        <label class="field">
            <span class="field-label">{label}</span>
            <input class="mono" type="text" data-testid=testid placeholder=placeholder bind:value=value />
        </label>
    }
}

/// One application-property row: (key for the list, name, value).
type PropRow = (u64, RwSignal<String>, RwSignal<String>);

/// The application-property rows of a form (telemetry, the console's C2D message): each
/// row is (key for the list, name, value).
#[derive(Clone, Copy)]
pub(super) struct PropRows {
    rows: RwSignal<Vec<PropRow>>,
    next: StoredValue<u64>,
}

impl PropRows {
    /// `blank` empty rows to start with.
    pub(super) fn new(blank: usize) -> PropRows {
        let rows = PropRows {
            rows: RwSignal::new(Vec::new()),
            next: StoredValue::new(0),
        };
        (0..blank).for_each(|_| rows.add());
        rows
    }

    fn add(self) {
        let id = self.next.get_value();
        self.next.set_value(id + 1);
        self.rows.update(|r| {
            r.push((
                id,
                RwSignal::new(String::new()),
                RwSignal::new(String::new()),
            ))
        });
    }

    /// The rows as typed, (name, value), tracked.
    pub(super) fn get(self) -> Vec<(String, String)> {
        self.rows
            .get()
            .iter()
            .map(|(_, k, v)| (k.get(), v.get()))
            .collect()
    }

    /// The rows as typed, (name, value), untracked.
    pub(super) fn get_untracked(self) -> Vec<(String, String)> {
        self.rows
            .get_untracked()
            .iter()
            .map(|(_, k, v)| (k.get_untracked(), v.get_untracked()))
            .collect()
    }
}

/// The property table of a form: a name and value per row, remove and add buttons. Test
/// ids are `{testid}-prop-key`, `{testid}-prop-value` and `{testid}-prop-add`.
#[component]
pub(super) fn PropertyRows(rows: PropRows, testid: &'static str) -> impl IntoView {
    let list = rows.rows;
    view! {
        <fieldset class="props">
            <legend>"Application properties"</legend>
            {keyed(move || list.get(), |(id, _, _)| *id, move |row| view! {
                <div class="prop-row">
                    <input class="mono" type="text" aria-label="Property name" placeholder="name" data-testid=format!("{testid}-prop-key") bind:value=row.1 />
                    <input class="mono" type="text" aria-label="Property value" placeholder="value" data-testid=format!("{testid}-prop-value") bind:value=row.2 />
                    <button type="button" class="btn btn--small" aria-label="Remove property"
                        on:click=move |_| list.update(|r| r.retain(|x| x.0 != row.0))>"✕"</button>
                </div>
            })}
            <button type="button" class="btn btn--small" data-testid=format!("{testid}-prop-add") on:click=move |_| rows.add()>"+ Add property"</button>
        </fieldset>
    }
}

fn connected(device: Device) -> impl Fn() -> bool + Copy {
    move || device.status() == ConnStatus::Connected
}

#[component]
pub fn TelemetryPanel() -> impl IntoView {
    let device = expect_context::<Device>();
    let body = RwSignal::new("{\"temperature\": 21.5}".to_string());
    let content_type = RwSignal::new("application/json".to_string());
    let content_encoding = RwSignal::new("utf-8".to_string());
    let message_id = RwSignal::new(String::new());
    let correlation_id = RwSignal::new(String::new());
    let component = RwSignal::new(String::new());
    let creation_time = RwSignal::new(String::new());
    let qos = RwSignal::new("1".to_string());
    let rows = PropRows::new(0);
    let error = RwSignal::new(None::<String>);

    // The form as typed, derived once per change and read by the meter, the checks and send.
    let form = Memo::new(move |_| TelemetryForm {
        body: body.get(),
        props: rows.get(),
        content_type: content_type.get(),
        content_encoding: content_encoding.get(),
        message_id: message_id.get(),
        correlation_id: correlation_id.get(),
        component: component.get(),
        creation_time: creation_time.get(),
        qos: qos.get().parse().unwrap_or(1),
    });
    // Template fields ({{counter}}, {{now}}, ...) in the body and property values, filled
    // in per message; `counter` counts the messages this form has produced.
    let counter = RwSignal::new(0u64);
    let plan = Memo::new(move |_| form.with(Plan::parse));
    // The next message as it would go out (the form itself when it has no fields).
    let next = Memo::new(move |_| {
        let f = form.get();
        match plan.get() {
            Ok(p) if p.has_fields() => {
                let c = counter.get() + 1;
                render_next(&p, &f, c, device)
            }
            _ => f,
        }
    });
    let send = move || {
        let result = plan
            .get_untracked()
            .map(|p| {
                render_next(
                    &p,
                    &form.get_untracked(),
                    counter.get_untracked() + 1,
                    device,
                )
            })
            .and_then(|f| f.to_telemetry_with(crate::client::fresh_message_id))
            .and_then(|t| device.send_telemetry(t));
        if result.is_ok() {
            counter.update(|c| *c += 1);
        }
        error.set(result.err());
    };
    let format_body = move |_| match form.get_untracked().formatted_body() {
        Ok(b) => {
            body.set(b);
            error.set(None);
        }
        Err(e) => error.set(Some(e)),
    };
    // Ctrl+Enter (Cmd+Enter on a Mac) sends from anywhere in the form.
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && (ev.ctrl_key() || ev.meta_key()) {
            ev.prevent_default();
            send();
        }
    };

    view! {
        <h2 class="sr-only">"Telemetry"</h2>
        <div class="form-grid" on:keydown=on_key>
            <label class="field field--wide">
                <span class="field-label">"Body"</span>
                <textarea class="mono" rows="5" spellcheck="false" data-testid="telemetry-body" bind:value=body></textarea>
            </label>
            <div class="field--wide body-tools">
                <button type="button" class="btn btn--small" on:click=format_body>"Format JSON"</button>
                <span class="muted" data-testid="telemetry-size">{move || next.with(TelemetryForm::size_meter)}</span>
            </div>
            {move || {
                // Checked as you type: the templates, the body (as it will go out), then
                // names, times and the rest.
                let f = next.get();
                plan.get().err()
                    .or_else(|| f.body_problem())
                    .or_else(|| f.to_telemetry().err())
                    .map(|e| view! { <p class="error field--wide" data-testid="error" role="alert">{e}</p> })
            }}
            <TextField label="Content type ($.ct)" testid="telemetry-content-type" value=content_type />
            <TextField label="Content encoding ($.ce)" testid="telemetry-content-encoding" value=content_encoding />
            <TextField label="Message id ($.mid)" testid="telemetry-message-id" value=message_id placeholder="a new one per message" />
            <TextField label="Correlation id ($.cid)" testid="telemetry-correlation-id" value=correlation_id placeholder="optional" />
            <TextField label="Component ($.sub)" testid="telemetry-component" value=component placeholder="optional" />
            <TextField label="Creation time ($.ctime)" testid="telemetry-creation-time" value=creation_time placeholder="2026-11-29T12:00:00Z (optional)" />
            <label class="field">
                <span class="field-label">"QoS"</span>
                <select data-testid="telemetry-qos" bind:value=qos>
                    <option value="1">"1 — acknowledged (PUBACK)"</option>
                    <option value="0">"0 — fire and forget"</option>
                </select>
            </label>
        </div>
        <PropertyRows rows=rows testid="telemetry" />
        <div class="actions">
            <button type="button" class="btn btn--primary" data-testid="telemetry-send" title="Ctrl+Enter" on:click=move |_| send()>
                {move || match device.status() {
                    ConnStatus::Connecting | ConnStatus::Reconnecting => "Queue (reconnecting)",
                    _ => "Send",
                }}
            </button>
            <span class="muted" data-testid="telemetry-sent-count">
                {move || device.view().with(|v| format!("{} sent, {} acknowledged, {} failed", v.sent, v.acked, v.failed))}
            </span>
        </div>
        <GeneratorSection form=form plan=plan next=next counter=counter />
        {move || form.with(TelemetryForm::warnings).into_iter().map(|w| view! { <p class="hint warning">{w}</p> }).collect_view()}
        {alert(move || {
            let live = plan.get().err().or_else(|| next.with(|f| f.to_telemetry().err()));
            error.get().filter(|e| Some(e) != live.as_ref())
        })}
        <h3 class="subhead">"Sent"</h3>
        <ol class="list history mono" data-testid="telemetry-history" reversed>
            {keyed(list(device, |v| &v.history, true), |e| key_of(&(e.id, e.value.sent, e.value.acked)), |e| view! {
                <li>
                    {format!(
                        "{}  {} B  {}  {}",
                        crate::client::clock_label(e.at),
                        e.value.size,
                        if e.value.acked { "acknowledged" } else if e.value.sent { "sent" } else { "queued" },
                        e.value.props,
                    )}
                </li>
            })}
        </ol>
    }
}

#[component]
pub fn C2dPanel() -> impl IntoView {
    let device = expect_context::<Device>();
    view! {
        <h2 class="sr-only">"Cloud-to-device inbox"</h2>
        <div class="actions">
            <span class="muted">
                {move || device.view().with(|v| match v.c2d.dropped() {
                    0 => format!("{} received, newest first", v.c2d.len()),
                    d => format!("{} kept, newest first ({d} older ones dropped)", v.c2d.len()),
                })}
            </span>
            <button type="button" class="btn btn--small" data-testid="c2d-clear"
                disabled=move || device.view().with(|v| v.c2d.is_empty())
                on:click=move |_| device.clear_c2d()>"Clear"</button>
        </div>
        <div data-testid="c2d-list" class="list">
            <Show
                when=move || device.view().with(|v| !v.c2d.is_empty())
                fallback=|| view! {
                    <Empty title="No C2D messages yet">
                        "Send one to this device from the Azure portal or a service SDK "
                        "(devhub: POST /devices/{id}/messages/deviceBound). "
                        "Messages appear here with their body and properties."
                    </Empty>
                }
            >
                {keyed(list(device, |v| &v.c2d, true), |e| e.id, |e| view! { <C2dCard entry=e /> })}
            </Show>
        </div>
    }
}

/// One received C2D message: body as text (or hex for binary), properties apart.
#[component]
fn C2dCard(entry: Entry<C2dMessage>) -> impl IntoView {
    let props = property_lines(&entry.value.props);
    view! {
        <article class="card" data-testid="c2d-message">
            <p class="muted card-meta">{format!("received {}", crate::client::clock_label(entry.at))}</p>
            <pre class="mono body">{body_text(&entry.value.body)}</pre>
            <dl class="props-list mono">
                {props.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}
            </dl>
        </article>
    }
}

#[component]
pub fn TwinPanel() -> impl IntoView {
    let device = expect_context::<Device>();
    let console = expect_context::<Console>();
    let fetch_service_twin = move || {
        if let Some(t) = device.target.get_untracked() {
            leptos::task::spawn_local(async move { console.fetch_twin(&t).await });
        }
    };
    let editor = RwSignal::new("{\n  \"firmware\": \"1.0.0\"\n}".to_string());
    let error = RwSignal::new(None::<String>);
    let start_from_reported = move |_| {
        let current = device.view().with_untracked(|v| {
            v.twin.as_ref().map(|t| {
                format!(
                    "{:#}",
                    serde_json::Value::Object(t.reported.properties.clone())
                )
            })
        });
        if let Some(text) = current {
            editor.set(text);
        }
    };
    let raw = RwSignal::new(false);
    let copied = RwSignal::new(None::<String>);
    let copy_twin = move |_| {
        let text = device
            .view()
            .with_untracked(|v| v.twin.as_ref().map(|t| format!("{:#}", t.to_json())));
        if let Some(text) = text {
            leptos::task::spawn_local(async move {
                copied.set(Some(match crate::client::copy_text(text).await {
                    Ok(()) => "copied".into(),
                    Err(e) => e,
                }));
            });
        }
    };
    let send = move |_| {
        let r = serde_json::from_slice::<serde_json::Value>(editor.get_untracked().as_bytes())
            .map_err(|e| format!("the patch is not valid JSON: {e}"))
            .and_then(|v| device.patch_reported(&v));
        error.set(r.err());
    };
    view! {
        <h2 class="sr-only">"Device twin"</h2>
        <div class="actions">
            <button type="button" class="btn" data-testid="twin-get" disabled=move || !connected(device)()
                on:click=move |_| {
                    error.set(device.get_twin().err());
                    if console.configured() {
                        fetch_service_twin();
                    }
                }>"Get twin"</button>
            <button type="button" class="btn btn--small" disabled=move || device.view().with(|v| v.twin.is_none())
                on:click=copy_twin>"Copy JSON"</button>
            <span class="muted" role="status">{move || copied.get()}</span>
            <Show when=move || device.view().with(|v| v.twin.is_some())>
                <span class="muted">
                    "reported $version "
                    <span class="mono" data-testid="twin-reported-version">
                        {move || device.view().with(|v| v.twin.as_ref().map(|t| t.reported.version.to_string()).unwrap_or_default())}
                    </span>
                    " · desired $version "
                    <span class="mono" data-testid="twin-desired-version">
                        {move || device.view().with(|v| v.twin.as_ref().map(|t| t.desired.version.to_string()).unwrap_or_default())}
                    </span>
                </span>
            </Show>
        </div>
        <label class="check">
            <input type="checkbox" bind:checked=raw />
            " Raw JSON"
        </label>
        <div class="mono body twin-doc" data-testid="twin-document">
            {move || device.view().with(|v| match &v.twin {
                None => "Connect to fetch the device twin.".into_any(),
                Some(t) if raw.get() => view! {
                    <pre>{format!("{:#}", t.to_json())}</pre>
                }.into_any(),
                Some(t) => json_tree(None, &t.to_json()),
            })}
        </div>
        <TwinCompare />
        <details class="service-twin" data-testid="twin-service">
            <summary>"$metadata and tags (the twin as the service sees it)"</summary>
            <Show
                when=move || console.configured()
                fallback=|| view! {
                    <p class="hint">
                        "IoT Hub leaves $metadata (when each property was last updated) and tags out of the twin a device reads. "
                        "Paste a service connection string in the Hub console tab to see them here."
                    </p>
                }
            >
                <div class="actions">
                    <button type="button" class="btn btn--small" data-testid="twin-service-get" on:click=move |_| fetch_service_twin()>
                        "Fetch through the service API"
                    </button>
                </div>
                <div class="mono body twin-doc">
                    {move || console.twin.with(|t| match t {
                        None => "Not fetched yet.".into_any(),
                        Some(Ok(t)) => json_tree(None, t.get("properties").unwrap_or(t)),
                        Some(Err(e)) => error_line(e.clone()),
                    })}
                </div>
            </Show>
        </details>
        <label class="field">
            <span class="field-label">"Reported patch (JSON object; null deletes)"</span>
            <textarea class="mono" rows="5" spellcheck="false" data-testid="twin-reported-editor" bind:value=editor></textarea>
        </label>
        {alert(move || json_problem(&editor.get()))}
        <div class="actions">
            <button type="button" class="btn btn--primary" data-testid="twin-reported-send" on:click=send>"Send reported patch"</button>
            <button type="button" class="btn btn--small" on:click=start_from_reported
                disabled=move || device.view().with(|v| v.twin.is_none())>"Start from current reported"</button>
            <span class="muted" role="status">
                {move || device.view().with(|v| match &v.last_patch {
                    Some(Ok(version)) => format!("accepted: reported $version {version}"),
                    Some(Err(e)) => e.clone(),
                    None => String::new(),
                })}
            </span>
        </div>
        {alert(move || error.get())}
        <h3 class="subhead">"Desired updates"</h3>
        <div data-testid="twin-desired-updates" class="list">
            {keyed(list(device, |v| &v.desired, true), |e| e.id, |e| view! {
                <div class="card" data-testid="twin-desired-update">
                    {e.value.gap.then(|| view! {
                        <p class="gap" data-testid="twin-desired-gap">
                            "versions were skipped before this one: the whole twin was fetched again"
                        </p>
                    })}
                    <pre class="mono">
                        {format!("$version {}  ·  {}\n{:#}", e.value.version, crate::client::clock_label(e.at), e.value.patch)}
                    </pre>
                </div>
            })}
        </div>
    }
}

#[component]
pub fn MethodsPanel() -> impl IntoView {
    let device = expect_context::<Device>();
    view! {
        <h2 class="sr-only">"Direct methods"</h2>
        <MethodRules />
        <div data-testid="method-list" class="list">
            <Show
                when=move || device.view().with(|v| !v.methods.is_empty())
                fallback=|| view! {
                    <Empty title="No method calls yet">
                        "Invoke a direct method on this device from the Azure portal or a service SDK "
                        "(devhub: POST /twins/{id}/methods). Each call waits here "
                        "for you to answer with a status and payload."
                    </Empty>
                }
            >
                {keyed(list(device, |v| &v.methods, false), |e| e.id, move |entry| {
                        let (arrived, call) = (entry.at, entry.value);
                        let status = RwSignal::new("200".to_string());
                        let response = RwSignal::new("{}".to_string());
                        let error = RwSignal::new(None::<String>);
                        let rid = call.rid.clone();
                        let respond = move |_| {
                            let r = status.get_untracked().trim().parse::<i32>()
                                .map_err(|_| "status must be a whole number".to_string())
                                .and_then(|s| device.respond_method(&rid, s, response.get_untracked().trim().as_bytes()));
                            error.set(r.err());
                        };
                        view! {
                            <article class="card" data-testid="method-request">
                                <p class="card-meta">
                                    <span class="mono" data-testid="method-name">{call.name.clone()}</span>
                                    <span class="muted mono">{format!("  request {}  ", call.rid)}</span>
                                    <span class="muted method-wait">
                                        {move || method_wait(arrived, device.now.get())}
                                    </span>
                                </p>
                                <pre class="mono body">{body_text(&call.payload)}</pre>
                                <div class="method-answer">
                                    <label class="field">
                                        <span class="field-label">"Status"</span>
                                        <input type="number" data-testid="method-status" bind:value=status />
                                    </label>
                                    <label class="field method-payload">
                                        <span class="field-label">"Response payload (JSON, may be empty)"</span>
                                        <textarea class="mono" rows="2" data-testid="method-response" bind:value=response></textarea>
                                    </label>
                                    {alert(move || json_problem(&response.get()))}
                                    <button type="button" class="btn btn--primary" data-testid="method-respond" on:click=respond>
                                        "Respond"
                                    </button>
                                </div>
                                {alert(move || error.get())}
                            </article>
                        }
                })}
            </Show>
        </div>
        <h3 class="subhead">"History"</h3>
        <div data-testid="method-history" class="list">
            {keyed(list(device, |v| &v.past_calls, true), |e| e.id, |e| view! {
                <article class="card" data-testid="method-answered">
                    <p class="card-meta">
                        <span class="mono">{e.value.call.name.clone()}</span>
                        <span class="muted">
                            {format!(
                                "  request {} · arrived {} · {}",
                                e.value.call.rid,
                                crate::client::clock_label(e.at.saturating_sub(e.value.waited_ms)),
                                match &e.value.outcome {
                                    CallOutcome::Answered { status, rule, .. } => format!(
                                        "answered {status} after {} s {}",
                                        fixed(e.value.waited_ms as f64 / 1000.0, 1),
                                        rule.as_ref().map_or("by hand".to_string(), |r| format!("by {r}"))
                                    ),
                                    CallOutcome::Dropped => format!(
                                        "not answered: the connection was lost after {} s, so the hub dropped the call",
                                        fixed(e.value.waited_ms as f64 / 1000.0, 1)
                                    ),
                                }
                            )}
                        </span>
                    </p>
                    <pre class="mono body">{body_text(&e.value.call.payload)}</pre>
                    {match &e.value.outcome {
                        CallOutcome::Answered { payload, .. } if !payload.is_empty() =>
                            Some(view! { <pre class="mono body">{format!("answer: {payload}")}</pre> }),
                        _ => None,
                    }}
                </article>
            })}
        </div>
    }
}

/// Desired and reported side by side, with Plug and Play acknowledgements in one click.
#[component]
fn TwinCompare() -> impl IntoView {
    use twinscope_proto::iothub::pnp::{ack_patch, compare, desired_properties, Agreement};
    let device = expect_context::<Device>();
    let ac = RwSignal::new("200".to_string());
    let ad = RwSignal::new("completed".to_string());
    let error = RwSignal::new(None::<String>);
    let twin = Memo::new(move |_| device.view().with(|v| v.twin.clone()));
    let rows = move || {
        twin.with(|t| {
            t.as_ref()
                .map(|t| compare(&t.desired.properties, &t.reported.properties))
                .unwrap_or_default()
        })
    };
    let acknowledge = move |path: String| {
        let Some(t) = twin.get_untracked() else {
            return;
        };
        let Some(p) = desired_properties(&t.desired.properties)
            .into_iter()
            .find(|p| {
                p.component
                    .as_ref()
                    .map_or(p.name.clone(), |c| format!("{c}.{}", p.name))
                    == path
            })
        else {
            return;
        };
        let r = ac
            .get_untracked()
            .trim()
            .parse::<i64>()
            .map_err(|_| "the acknowledgement status must be a number such as 200".to_string())
            .and_then(|code| {
                let patch = ack_patch(&p, t.desired.version, code, Some(ad.get_untracked().trim()));
                device.patch_reported(&patch)
            });
        error.set(r.err());
    };
    view! {
        <h3 class="subhead">"Desired vs reported"</h3>
        {move || device.model_id.get().map(|m| view! {
            <p class="muted">"Plug and Play model " <span class="mono" data-testid="twin-model-id">{m}</span></p>
        })}
        <Show
            when=move || twin.with(Option::is_some)
            fallback=|| view! { <p class="muted">"Get the twin to compare desired and reported properties."</p> }
        >
            <div class="actions ack-settings">
                <label class="field">
                    <span class="field-label">"Acknowledge with status (ac)"</span>
                    <select data-testid="twin-ack-status" bind:value=ac>
                        <option value="200">"200 accepted"</option>
                        <option value="202">"202 in progress"</option>
                        <option value="400">"400 rejected"</option>
                        <option value="500">"500 failed"</option>
                    </select>
                </label>
                <TextField label="Description (ad)" testid="twin-ack-description" value=ad />
            </div>
            <table class="diff mono" data-testid="twin-diff">
                <thead><tr><th>"property"</th><th>"desired"</th><th>"reported"</th><th></th></tr></thead>
                <tbody>
                    {keyed(rows, |r| key_of(&(&r.path, r.desired.as_ref().map(|v| v.to_string()), r.reported.as_ref().map(|v| v.to_string()), &r.ack)), move |r| {
                            let state = match r.agreement {
                                Agreement::Same => "same",
                                Agreement::Differs => "differs",
                                Agreement::NotReported => "not reported",
                                Agreement::OnlyReported => "reported only",
                            };
                            let reported = r.reported.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "—".into());
                            let ack = r.ack.as_ref().map(|(ac, av, ad)| {
                                format!(" (ac {ac}, av {av}{})", ad.as_ref().map(|d| format!(", {d}")).unwrap_or_default())
                            });
                            let path = r.path.clone();
                            let can_ack = r.desired.is_some();
                            view! {
                                <tr data-testid="twin-diff-row" class=format!("diff-{}", state.replace(' ', "-"))>
                                    <td>{r.path.clone()}</td>
                                    <td>{r.desired.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "—".into())}</td>
                                    <td>{reported}{ack}</td>
                                    <td>
                                        <span class="diff-state">{state}</span>
                                        {can_ack.then(|| view! {
                                            <button type="button" class="btn btn--small" data-testid="twin-ack"
                                                title="Report {value, ac, av, ad} for this desired property (Plug and Play)"
                                                on:click=move |_| acknowledge(path.clone())>"Acknowledge"</button>
                                        })}
                                    </td>
                                </tr>
                            }
                    })}
                </tbody>
            </table>
        </Show>
        {alert(move || error.get())}
    }
}
