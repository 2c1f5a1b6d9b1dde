//! The telemetry generator: the telemetry form sent again and again, every N ms, up to M
//! messages or until stopped, with its template fields filled in per message.

use gloo_timers::callback::Interval;
use leptos::prelude::*;

use super::model::TelemetryForm;
use super::panels::{alert, TextField};
use crate::client::{fresh_message_id, now_ms, Device};
use crate::tools::generator::{Billing, Plan, Schedule};
use crate::tools::template::Context;

/// `form` with its templates filled in for message number `counter`.
pub fn render_next(
    plan: &Plan,
    form: &TelemetryForm,
    counter: u64,
    device: Device,
) -> TelemetryForm {
    let mut random = || js_sys::Math::random();
    let id = device
        .target
        .get_untracked()
        .unwrap_or_else(|| "device".into());
    let now = now_ms();
    plan.render(
        form,
        &mut Context {
            counter,
            now_ms: now,
            start_ms: device.run_start().unwrap_or(now),
            device: &id,
            n: 1,
            request: None,
            random: &mut random,
        },
    )
}

/// The running generator: its timer and schedule (dropped to stop).
struct Running {
    _timer: Interval,
}

#[component]
pub fn GeneratorSection(
    form: Memo<TelemetryForm>,
    plan: Memo<Result<Plan, String>>,
    next: Memo<TelemetryForm>,
    counter: RwSignal<u64>,
) -> impl IntoView {
    let device = expect_context::<Device>();
    let interval = RwSignal::new("1000".to_string());
    let count = RwSignal::new("10".to_string());
    let error = RwSignal::new(None::<String>);
    let running = StoredValue::new_local(None::<Running>);
    let is_running = RwSignal::new(false);
    // Each run's number: a timer of an earlier run that still fires does nothing.
    let generation = StoredValue::new(0u64);

    let stop = move || {
        generation.update_value(|g| *g += 1);
        // The timer may be running this very callback: drop it after it returns.
        let mut timer = None;
        running.update_value(|r| timer = r.take());
        leptos::task::spawn_local(async move { drop(timer) });
        if is_running.get_untracked() {
            is_running.set(false);
            device.run_stopped();
        }
    };
    let start = move |_| {
        let schedule = Schedule::parse(&interval.get_untracked(), &count.get_untracked(), now_ms());
        let plan_now = plan.get_untracked();
        let (mut schedule, plan_now) = match (schedule, plan_now) {
            (Ok(s), Ok(p)) => (s, p),
            (Err(e), _) | (_, Err(e)) => {
                error.set(Some(e));
                return;
            }
        };
        // The form must make a valid message before anything is sent.
        if let Err(e) = render_next(&plan_now, &form.get_untracked(), 1, device).to_telemetry() {
            error.set(Some(e));
            return;
        }
        error.set(None);
        stop();
        counter.set(0);
        device.run_started();
        is_running.set(true);
        let mine = generation.get_value();
        let tick = move || {
            if generation.get_value() != mine {
                return;
            }
            let now = now_ms();
            for _ in 0..schedule.due(now) {
                let n = schedule.produced + 1;
                let msg = render_next(&plan_now, &form.get_untracked(), n, device)
                    .to_telemetry_with(fresh_message_id);
                // Refusals are counted as failed by the device; the run goes on.
                let _ = msg.map(|t| device.send_generated(t));
                schedule.produced = n;
                counter.set(n);
            }
            if schedule.finished() {
                stop();
            }
        };
        let mut tick = tick;
        tick();
        if is_running.get_untracked() {
            let every = schedule.interval_ms.min(1000) as u32;
            running.set_value(Some(Running {
                _timer: Interval::new(every, tick),
            }));
        }
    };

    let run = move || device.view().with(|v| v.run.clone());
    let billing = move || {
        let size = next.with(|f| f.counted_size());
        let ms = interval.get().trim().parse::<u64>().unwrap_or(0).max(1);
        let n = count.get().trim().parse::<u64>().ok();
        Billing::of(size, ms, n).describe()
    };

    view! {
        <fieldset class="generator">
            <legend>"Generator"</legend>
            <p class="hint">
                "Sends this form again and again. Template fields in the body and property values are filled in per message: "
                <code>"{{counter}} {{now}} {{uuid}} {{random(min,max)}} {{sine(period,amplitude)}} {{choice(a,b,c)}} {{device}}"</code>
            </p>
            <div class="form-grid">
                <TextField label="Every (ms)" testid="gen-interval" value=interval />
                <TextField label="Messages (empty: until stopped)" testid="gen-count" value=count />
            </div>
            <p class="field-label">"Next message"</p>
            <pre class="mono body" data-testid="gen-preview">
                {move || next.with(|f| {
                    let props: Vec<String> = f.props.iter().filter(|(k, _)| !k.trim().is_empty()).map(|(k, v)| format!("{k}={v}")).collect();
                    if props.is_empty() { f.body.clone() } else { format!("{}\n[{}]", f.body, props.join(", ")) }
                })}
            </pre>
            <p class="muted" data-testid="gen-billing">{billing}</p>
            <div class="actions">
                <button type="button" class="btn btn--primary" data-testid="gen-start" disabled=move || is_running.get() on:click=start>
                    "Start"
                </button>
                <button type="button" class="btn" data-testid="gen-stop" disabled=move || !is_running.get() on:click=move |_| stop()>
                    "Stop"
                </button>
                <span class="muted" role="status" data-testid="gen-state">
                    {move || match (is_running.get(), run()) {
                        (true, _) => format!("running: {} produced", counter.get()),
                        (false, Some(_)) => "stopped".to_string(),
                        (false, None) => String::new(),
                    }}
                </span>
            </div>
            <p class="gen-counts mono">
                <span data-testid="gen-sent">{move || format!("{} sent", run().map_or(0, |r| r.sent))}</span>
                " · "
                <span data-testid="gen-acked">{move || format!("{} acknowledged", run().map_or(0, |r| r.acked))}</span>
                " · "
                <span data-testid="gen-failed">{move || format!("{} failed", run().map_or(0, |r| r.failed))}</span>
                " · "
                <span data-testid="gen-rate">{move || format!("{} messages/s", crate::tools::num::fixed(run().map_or(0.0, |r| r.rate(device.now.get())), 1))}</span>
            </p>
            {alert(move || error.get())}
        </fieldset>
    }
}
