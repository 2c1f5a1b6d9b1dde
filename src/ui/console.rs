//! The hub console: the cloud side of the device, played from the same page through the
//! hub's service REST API (signed in the browser with the service policy's key). Faults
//! are offered when the hub is devhub.

use leptos::prelude::*;
use serde_json::Value;
use twinscope_proto::iothub::service::{self, Fault, FaultOp};
use twinscope_proto::iothub::Identity;

use super::model::{filled_rows, service_twin_summary};
use super::panels::{
    alert, error_line, json_problem, json_tree, PropRows, PropertyRows, TextField,
};
use crate::client::{fresh_message_id, Console, Device};

/// A result line: in progress, done (what happened), or failed (why).
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Busy(&'static str),
    Done(String),
    Failed(String),
}

fn outcome_view(o: RwSignal<Option<Outcome>>, testid: &'static str) -> impl IntoView {
    move || {
        o.get().map(|o| match o {
            Outcome::Busy(t) => view! { <p class="muted" data-testid=testid role="status">{t}</p> }.into_any(),
            Outcome::Done(t) => view! { <p class="ok" data-testid=testid role="status">{t}</p> }.into_any(),
            Outcome::Failed(t) => view! {
                <p class="error" data-testid=testid role="alert"><span data-testid="error">{t}</span></p>
            }
            .into_any(),
        })
    }
}

fn parse_json(text: &str, what: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(text.as_bytes())
        .map_err(|e| format!("the {what} is not valid JSON: {e}"))
}

#[component]
pub fn ConsolePanel() -> impl IntoView {
    let console = expect_context::<Console>();
    let device = expect_context::<Device>();
    let target = RwSignal::new(String::new());
    // Follow the connected device unless the user picks another.
    Effect::new(move |_| {
        if let Some(t) = device.target.get() {
            target.set(t);
        }
    });
    let show_key = RwSignal::new(false);
    let target_id = move || {
        Identity::from_client_id(&target.get_untracked()).map_err(|e| format!("target device: {e}"))
    };

    // Run `f` in the background, showing `busy` meanwhile and its outcome after.
    fn run<F>(out: RwSignal<Option<Outcome>>, busy: &'static str, f: F)
    where
        F: std::future::Future<Output = Result<String, String>> + 'static,
    {
        out.set(Some(Outcome::Busy(busy)));
        leptos::task::spawn_local(async move {
            out.set(Some(match f.await {
                Ok(t) => Outcome::Done(t),
                Err(e) => Outcome::Failed(e),
            }));
        });
    }

    // Twin as the service sees it.
    let refresh_twin = move || {
        let t = target.get_untracked();
        leptos::task::spawn_local(async move { console.fetch_twin(&t).await });
    };

    // Desired properties.
    let desired = RwSignal::new("{\n  \"interval\": 5\n}".to_string());
    let desired_out = RwSignal::new(None::<Outcome>);
    let send_desired = move |_| {
        let req = parse_json(&desired.get_untracked(), "desired patch").and_then(|patch| {
            target_id()
                .and_then(|id| service::patch_desired(&id, &patch).map_err(|e| e.to_string()))
        });
        run(desired_out, "sending…", async move {
            let body = console.send(req?).await?.ok()?;
            let twin: Value = serde_json::from_slice(body.as_bytes()).unwrap_or(Value::Null);
            let version = twin
                .pointer("/properties/desired/$version")
                .and_then(Value::as_u64);
            if twin.is_object() {
                console.twin.set(Some(Ok(twin)));
            }
            Ok(match version {
                Some(v) => format!("accepted: desired $version {v}"),
                None => "accepted".into(),
            })
        });
    };

    // Cloud-to-device message.
    let c2d_body = RwSignal::new("{\"command\": \"blink\"}".to_string());
    let c2d_type = RwSignal::new("application/json".to_string());
    let rows = PropRows::new(1);
    let c2d_out = RwSignal::new(None::<Outcome>);
    let send_c2d = move |_| {
        let props = filled_rows(&rows.get_untracked());
        let mid = fresh_message_id();
        let req = target_id().and_then(|id| {
            service::send_c2d(
                id.device.as_str(),
                c2d_body.get_untracked().as_bytes(),
                &props,
                &mid,
                Some(c2d_type.get_untracked().trim()),
            )
            .map_err(|e| e.to_string())
        });
        run(c2d_out, "sending…", async move {
            console.send(req?).await?.ok()?;
            Ok(format!("accepted by the hub: message id {mid}"))
        });
    };

    // Direct method.
    let method_name = RwSignal::new("reboot".to_string());
    let method_payload = RwSignal::new("{\"delay\": 0}".to_string());
    let method_timeout = RwSignal::new("30".to_string());
    let method_out = RwSignal::new(None::<Outcome>);
    let invoke = move |_| {
        let req = parse_json(&method_payload.get_untracked(), "payload").and_then(|p| {
            let timeout = method_timeout
                .get_untracked()
                .trim()
                .parse::<u64>()
                .map_err(|_| {
                    "the response timeout must be a number of seconds (5 to 300)".to_string()
                })?;
            target_id().and_then(|id| {
                service::invoke_method(&id, method_name.get_untracked().trim(), &p, timeout)
                    .map_err(|e| e.to_string())
            })
        });
        run(
            method_out,
            "waiting for the device to answer…",
            async move {
                let body = console.send(req?).await?.ok()?;
                let a = service::parse_method_answer(&body)?;
                Ok(format!("status {} · payload {}", a.status, a.payload))
            },
        );
    };

    // Faults (devhub only).
    let fault_op = RwSignal::new("twin".to_string());
    let fault_count = RwSignal::new("1".to_string());
    let fault_status = RwSignal::new("500".to_string());
    let fault_delay = RwSignal::new("2000".to_string());
    let fault_rate = RwSignal::new("0.1".to_string());
    let fault_out = RwSignal::new(None::<Outcome>);
    let fault = move |f: Result<Fault, String>, done: String| {
        run(fault_out, "asking devhub…", async move {
            console.send(f?.request()).await?.ok()?;
            Ok(done)
        });
    };
    let drop_now = move |_| {
        let f = target_id().map(|id| Fault::Drop {
            device: id.device.as_str().to_string(),
        });
        fault(f, "devhub dropped the device's connection".into());
    };
    let fail_next = move |_| {
        let op = match fault_op.get_untracked().as_str() {
            "method" => FaultOp::Method,
            "telemetry" => FaultOp::Telemetry,
            _ => FaultOp::Twin,
        };
        let f = (|| {
            let count = fault_count
                .get_untracked()
                .trim()
                .parse::<u32>()
                .map_err(|_| "the count must be a whole number".to_string())?;
            let status = fault_status
                .get_untracked()
                .trim()
                .parse::<u16>()
                .map_err(|_| "the status must be an HTTP status such as 500".to_string())?;
            Ok(Fault::Fail { op, count, status })
        })();
        let done = format!(
            "the next {} {} operation(s) will fail with {}",
            fault_count.get_untracked().trim(),
            fault_op.get_untracked(),
            fault_status.get_untracked().trim()
        );
        fault(f, done);
    };
    let set_delay = move |_| {
        let f = fault_delay
            .get_untracked()
            .trim()
            .parse::<u64>()
            .map(|ms| Fault::Delay { ms })
            .map_err(|_| "the delay must be a number of milliseconds".to_string());
        fault(
            f,
            format!(
                "every answer is delayed by {} ms",
                fault_delay.get_untracked().trim()
            ),
        );
    };
    let set_rate = move |_| {
        let f = crate::tools::num::parse_number(&fault_rate.get_untracked())
            .filter(|r| (0.0..=1.0).contains(r))
            .map(|rate| Fault::DropRate {
                rate,
                seed: crate::client::now_ms(),
            })
            .ok_or_else(|| "the drop rate must be a number from 0 to 1".to_string());
        fault(
            f,
            format!(
                "each packet drops its connection with probability {}",
                fault_rate.get_untracked().trim()
            ),
        );
    };
    let clear = move |_| fault(Ok(Fault::Clear), "every fault cleared".into());

    view! {
        <h2 class="sr-only">"Hub console"</h2>
        <div data-testid="console">
            <p class="hint">
                "Play the cloud side: the requests go to the hub's service REST API, signed here with the service policy's key. "
                <Show when=move || console.devhub.get() fallback=|| view! {
                    "Azure IoT Hub's REST API sends no CORS headers, so against a real hub the browser blocks these calls; they work against devhub."
                }>
                    "This hub is devhub: fault injection is available below."
                </Show>
            </p>
            <div class="form-grid">
                <label class="field field--wide">
                    <span class="field-label">"Service connection string (a policy with service connect, e.g. iothubowner)"</span>
                    <span class="key-row">
                        <input class="mono" data-testid="console-conn-string" spellcheck="false" autocomplete="off"
                            type=move || if show_key.get() { "text" } else { "password" }
                            placeholder="HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=…"
                            bind:value=console.conn />
                        <button type="button" class="btn btn--small" aria-pressed=move || show_key.get().to_string()
                            on:click=move |_| show_key.update(|s| *s = !*s)>
                            {move || if show_key.get() { "Hide" } else { "Show" }}
                        </button>
                    </span>
                </label>
                <label class="field">
                    <span class="field-label">"REST API URL"</span>
                    <input class="mono" type="text" data-testid="console-base" placeholder="https://{HostName}"
                        bind:value=console.base
                        on:change=move |_| leptos::task::spawn_local(async move { console.probe().await }) />
                </label>
                <TextField label="Target device (device or device/module)" testid="console-device" value=target />
            </div>

            <h3 class="subhead">"Twin as the service sees it"</h3>
            <div class="actions">
                <button type="button" class="btn" data-testid="console-twin-get" on:click=move |_| refresh_twin()>"Get twin"</button>
                <span class="muted" data-testid="console-twin-summary">
                    {move || console.twin.with(|t| match t {
                        Some(Ok(t)) => service_twin_summary(t),
                        _ => String::new(),
                    })}
                </span>
            </div>
            <div class="mono body twin-doc" data-testid="console-twin">
                {move || console.twin.with(|t| match t {
                    None => "Get the twin to see its tags, versions, $metadata and connection state.".into_any(),
                    Some(Ok(t)) => json_tree(None, t),
                    Some(Err(e)) => error_line(e.clone()),
                })}
            </div>

            <h3 class="subhead">"Set desired properties"</h3>
            <label class="field">
                <span class="field-label">"Desired patch (JSON object; null deletes)"</span>
                <textarea class="mono" rows="4" spellcheck="false" data-testid="console-desired-editor" bind:value=desired></textarea>
            </label>
            {alert(move || json_problem(&desired.get()))}
            <div class="actions">
                <button type="button" class="btn btn--primary" data-testid="console-desired-send" on:click=send_desired>"Send desired patch"</button>
            </div>
            {outcome_view(desired_out, "console-desired-result")}

            <h3 class="subhead">"Send a cloud-to-device message"</h3>
            <label class="field">
                <span class="field-label">"Body"</span>
                <textarea class="mono" rows="3" spellcheck="false" data-testid="console-c2d-body" bind:value=c2d_body></textarea>
            </label>
            <TextField label="Content type" testid="console-c2d-content-type" value=c2d_type />
            <PropertyRows rows=rows testid="console-c2d" />
            <div class="actions">
                <button type="button" class="btn btn--primary" data-testid="console-c2d-send" on:click=send_c2d>"Send C2D message"</button>
            </div>
            {outcome_view(c2d_out, "console-c2d-result")}

            <h3 class="subhead">"Invoke a direct method"</h3>
            <div class="form-grid">
                <TextField label="Method name" testid="console-method-name" value=method_name />
                <TextField label="Response timeout (s, 5 to 300)" testid="console-method-timeout" value=method_timeout />
                <label class="field field--wide">
                    <span class="field-label">"Payload (JSON)"</span>
                    <textarea class="mono" rows="3" spellcheck="false" data-testid="console-method-payload" bind:value=method_payload></textarea>
                </label>
            </div>
            {alert(move || json_problem(&method_payload.get()))}
            <div class="actions">
                <button type="button" class="btn btn--primary" data-testid="console-method-invoke" on:click=invoke>"Invoke"</button>
            </div>
            {outcome_view(method_out, "console-method-result")}

            <Show when=move || console.devhub.get()>
                <h3 class="subhead">"Faults (devhub)"</h3>
                <div class="actions">
                    <button type="button" class="btn" data-testid="console-fault-drop" on:click=drop_now>"Drop the connection"</button>
                    <button type="button" class="btn" data-testid="console-fault-clear" on:click=clear>"Clear all faults"</button>
                </div>
                <div class="form-grid">
                    <label class="field">
                        <span class="field-label">"Fail the next"</span>
                        <select data-testid="console-fault-op" bind:value=fault_op>
                            <option value="twin">"twin GET / reported PATCH"</option>
                            <option value="method">"method invocations"</option>
                            <option value="telemetry">"telemetry messages"</option>
                        </select>
                    </label>
                    <TextField label="How many" testid="console-fault-count" value=fault_count />
                    <TextField label="With status" testid="console-fault-status" value=fault_status />
                    <div class="field actions">
                        <button type="button" class="btn" data-testid="console-fault-fail" on:click=fail_next>"Fail next"</button>
                    </div>
                    <TextField label="Delay every answer (ms)" testid="console-fault-delay-ms" value=fault_delay />
                    <div class="field actions">
                        <button type="button" class="btn" data-testid="console-fault-delay" on:click=set_delay>"Set delay"</button>
                    </div>
                    <TextField label="Random drop rate (0 to 1)" testid="console-fault-rate" value=fault_rate />
                    <div class="field actions">
                        <button type="button" class="btn" data-testid="console-fault-rate-set" on:click=set_rate>"Set drop rate"</button>
                    </div>
                </div>
                {outcome_view(fault_out, "console-fault-result")}
            </Show>
        </div>
    }
}
