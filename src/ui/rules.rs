//! Method rules: calls answered by rule (per method name or any), with a status, a payload
//! template and a delay; calls no rule matches wait for a manual answer as before.

use std::collections::HashSet;
use std::time::Duration;

use leptos::prelude::*;

use super::keyed::{key_of, keyed};

use super::panels::{alert, list, TextField};
use crate::client::{now_ms, Device};
use crate::tools::rules::{find, Rule};

#[component]
pub fn MethodRules() -> impl IntoView {
    let device = expect_context::<Device>();
    let rules = RwSignal::new(Vec::<Rule>::new());
    let next_id = StoredValue::new(1u64);
    let method = RwSignal::new(String::new());
    let status = RwSignal::new("200".to_string());
    let payload = RwSignal::new("{\"ok\": true, \"echo\": {{request}}}".to_string());
    let delay = RwSignal::new("0".to_string());
    let error = RwSignal::new(None::<String>);
    let answered = StoredValue::new(0u64);

    let add = move |_| {
        let id = next_id.get_value();
        match Rule::parse(
            id,
            &method.get_untracked(),
            &status.get_untracked(),
            &payload.get_untracked(),
            &delay.get_untracked(),
        ) {
            Ok(r) => {
                next_id.set_value(id + 1);
                rules.update(|v| v.push(r));
                error.set(None);
            }
            Err(e) => error.set(Some(e)),
        }
    };

    // Answer pending calls a rule matches (each call once; the rule's delay first).
    let pending = list(device, |v| &v.methods, false);
    let scheduled = StoredValue::new(HashSet::<String>::new());
    Effect::new(move |_| {
        let calls = pending();
        let rules_now = rules.get();
        let id = device
            .target
            .get_untracked()
            .unwrap_or_else(|| "device".into());
        for e in calls {
            let call = e.value;
            if scheduled.with_value(|s| s.contains(&call.rid)) {
                continue;
            }
            let Some((index, rule)) = find(&rules_now, &call.name) else {
                continue;
            };
            scheduled.update_value(|s| {
                s.insert(call.rid.clone());
            });
            let n = answered.get_value() + 1;
            answered.set_value(n);
            let (code, body) = rule.answer(&call.payload, n, now_ms(), &id);
            let label = rule.label(index);
            let rid = call.rid.clone();
            set_timeout(
                move || {
                    // A call answered by hand (or dropped) meanwhile is simply gone.
                    let _ = device.respond_method_by(&rid, code, &body, Some(label));
                },
                Duration::from_millis(rule.delay_ms),
            );
        }
    });

    let rule_rows = move || rules.get().into_iter().enumerate().collect::<Vec<_>>();
    view! {
        <details class="rules" open>
            <summary>
                {move || match rules.with(Vec::len) {
                    0 => "Rules: answer calls automatically".to_string(),
                    n => format!("Rules: {n} answering calls automatically"),
                }}
            </summary>
            <p class="hint">
                "The first rule for a call's method name answers it, else the first rule for any method (method * or empty). "
                "The payload may use the call's payload: "<code>"{{request.field}}"</code>", and "<code>"{{counter}} {{now}} {{uuid}}"</code>"."
            </p>
            <div class="form-grid">
                <TextField label="Method (* for any)" testid="rule-method" value=method placeholder="reboot" />
                <TextField label="Status" testid="rule-status" value=status />
                <TextField label="Delay (ms)" testid="rule-delay" value=delay />
                <label class="field field--wide">
                    <span class="field-label">"Payload (JSON template)"</span>
                    <textarea class="mono" rows="2" spellcheck="false" data-testid="rule-payload" bind:value=payload></textarea>
                </label>
            </div>
            <div class="actions">
                <button type="button" class="btn" data-testid="rule-add" on:click=add>"Add rule"</button>
            </div>
            {alert(move || error.get())}
            <ol class="rule-list">
                {keyed(rule_rows, |(i, r)| key_of(&(*i, r.id)), move |item| {
                        let (index, rule) = item;
                        let id = rule.id;
                        view! {
                            <li class="rule-item" data-testid="rule-item">
                                <span>{rule.label(index)}</span>
                                <span class="muted">{if rule.delay_ms > 0 { format!(" after {} ms", rule.delay_ms) } else { String::new() }}</span>
                                <code class="mono">{format!(" {}", rule.payload_text)}</code>
                                <button type="button" class="btn btn--small" data-testid="rule-remove" aria-label="Remove rule"
                                    on:click=move |_| rules.update(|v| v.retain(|r| r.id != id))>"✕"</button>
                            </li>
                        }
                })}
            </ol>
        </details>
    }
}
