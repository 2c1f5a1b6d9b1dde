//! The traffic inspector (the bottom drawer): every packet both ways, decoded, filtered by
//! kind and text, requests paired with answers, pause, NDJSON export. The list renders
//! only the rows on screen, so thousands of entries scroll smoothly.

use leptos::prelude::*;

use super::keyed::{key_of, keyed};
use twinscope_proto::traffic::{to_ndjson, Filter, Kind};

use crate::client::{clock_label, download_text, Device, Entry, TrafficEntry};

/// Height of one row, in CSS pixels (the stylesheet's `.traffic-entry` matches it).
const ROW_PX: f64 = 22.0;
/// Rows rendered above and below the visible ones.
const OVERSCAN: usize = 8;

/// The rows `[first, last)` of `n` that a viewport of `height` px scrolled to `top` shows,
/// with some overscan.
fn window(n: usize, top: f64, height: f64) -> (usize, usize) {
    let first = ((top.max(0.0) / ROW_PX) as usize)
        .saturating_sub(OVERSCAN)
        .min(n);
    let count = (height.max(ROW_PX) / ROW_PX).ceil() as usize + 2 * OVERSCAN;
    (first, (first + count).min(n))
}

#[component]
pub fn TrafficDrawer() -> impl IntoView {
    let device = expect_context::<Device>();
    let view = device.view();
    let revision = Memo::new(move |_| view.with(|v| v.traffic.revision()));
    let text = RwSignal::new(String::new());
    let kind = RwSignal::new(String::new());
    // While paused: the newest id shown (later ones are recorded, not shown).
    let paused = RwSignal::new(None::<u64>);
    let selected = RwSignal::new(None::<u64>);
    let scroll_top = RwSignal::new(0.0f64);
    let viewport = RwSignal::new(240.0f64);
    // Follow the newest entry while the list is scrolled to its end.
    let follow = StoredValue::new(true);
    let list_ref = NodeRef::<leptos::html::Div>::new();
    let export_url = RwSignal::new(None::<(String, usize)>);

    let filter = Memo::new(move |_| Filter {
        kinds: Kind::from_label(&kind.get()).into_iter().collect(),
        text: text.get(),
    });
    // Ids of the entries that pass, oldest first.
    let ids = Memo::new(move |_| {
        let _ = revision.get();
        let f = filter.get();
        let until = paused.get();
        view.with_untracked(|v| {
            v.traffic
                .iter()
                .filter(|e| until.is_none_or(|u| e.id <= u) && f.matches(e.value.record()))
                .map(|e| e.id)
                .collect::<Vec<u64>>()
        })
    });
    // The rows on screen: (position in the filtered list, entry).
    let rows = move || {
        let _ = revision.get();
        let (a, b) = ids.with(|i| window(i.len(), scroll_top.get(), viewport.get()));
        let wanted: Vec<u64> = ids.with(|i| i[a..b].to_vec());
        view.with_untracked(|v| {
            wanted
                .iter()
                .enumerate()
                .filter_map(|(k, id)| v.traffic.get(*id).map(|e| (a + k, e.clone())))
                .collect::<Vec<(usize, Entry<TrafficEntry>)>>()
        })
    };
    // Keep the newest row in view while following.
    Effect::new(move |_| {
        let n = ids.with(Vec::len);
        if follow.get_value() {
            if let Some(el) = list_ref.get() {
                let bottom = (n as f64 * ROW_PX - el.client_height() as f64).max(0.0);
                el.set_scroll_top(bottom as i32);
                scroll_top.set(bottom);
            }
        }
    });
    let on_scroll = move |_| {
        if let Some(el) = list_ref.get() {
            let top = el.scroll_top() as f64;
            let h = el.client_height() as f64;
            scroll_top.set(top);
            viewport.set(h);
            follow.set_value(top + h >= el.scroll_height() as f64 - ROW_PX);
        }
    };
    let toggle_pause = move |_| {
        paused.update(|p| {
            *p = match p {
                Some(_) => None,
                None => view
                    .with_untracked(|v| v.traffic.iter().next_back().map(|e| e.id))
                    .or(Some(0)),
            }
        })
    };
    let export = move |_| {
        let (text, n) = view.with_untracked(|v| {
            let ids = ids.get_untracked();
            let items = ids
                .iter()
                .filter_map(|id| v.traffic.get(*id))
                .map(|e| (e.id, e.value.record(), e.value.pair.as_ref()));
            let text = to_ndjson(items);
            (text, ids.len())
        });
        if let Some((old, _)) = export_url.get_untracked() {
            let _ = web_sys::Url::revoke_object_url(&old);
        }
        export_url.set(
            download_text("twinscope-traffic.ndjson", "application/x-ndjson", &text)
                .map(|u| (u, n)),
        );
    };

    view! {
        <section class="drawer" aria-label="Traffic">
            <div class="drawer-bar">
                <h2 class="drawer-title">"Traffic"</h2>
                <select aria-label="Kind" data-testid="traffic-kind" bind:value=kind>
                    <option value="">"all kinds"</option>
                    {Kind::ALL.into_iter().map(|k| view! { <option value=k.label()>{k.label()}</option> }).collect_view()}
                </select>
                <input class="mono traffic-search" type="search" aria-label="Filter traffic" placeholder="filter: topic, property, payload…"
                    data-testid="traffic-filter" bind:value=text />
                <button type="button" class="btn btn--small" data-testid="traffic-pause" aria-pressed=move || paused.get().is_some().to_string()
                    on:click=toggle_pause>
                    {move || if paused.get().is_some() { "Resume" } else { "Pause" }}
                </button>
                <button type="button" class="btn btn--small" data-testid="traffic-export" on:click=export
                    title="Download the entries shown as NDJSON (one JSON object a line)">"Export NDJSON"</button>
                <span class="muted" data-testid="traffic-count">
                    {move || {
                        let shown = ids.with(Vec::len);
                        view.with(|v| {
                            let mut s = format!("{shown} of {} shown", v.traffic.len());
                            if v.traffic.dropped() > 0 {
                                s.push_str(&format!(", {} older dropped", v.traffic.dropped()));
                            }
                            if let Some(u) = paused.get() {
                                let newer = v.traffic.iter().rev().take_while(|e| e.id > u).count();
                                s.push_str(&format!(" · paused, {newer} new"));
                            }
                            s
                        })
                    }}
                </span>
                {move || export_url.get().map(|(url, n)| view! {
                    <a class="muted" data-testid="traffic-export-link" href=url download="twinscope-traffic.ndjson">
                        {format!("exported {n} entries")}
                    </a>
                })}
            </div>
            <div class="drawer-body">
                <div data-testid="traffic-log" class="traffic mono" node_ref=list_ref on:scroll=on_scroll
                    role="list" aria-label="Packets">
                    <Show when=move || view.with(|v| !v.traffic.is_empty()) fallback=|| view! {
                        <p class="muted traffic-empty">
                            "No traffic yet. Every MQTT packet between this device and the hub appears here, decoded."
                        </p>
                    }>
                        <div class="traffic-spacer" style=move || format!("height: {}px", ids.with(Vec::len) * ROW_PX as usize)>
                            {keyed(rows, |(pos, e)| key_of(&(*pos, e.id, e.value.pair.is_some())), move |row| view! {
                                <TrafficRow pos=row.0 entry=row.1 selected=selected />
                            })}
                        </div>
                    </Show>
                </div>
                <TrafficDetail selected=selected />
            </div>
        </section>
    }
}

/// One row: direction, time, packet, what it carries, and the paired time.
#[component]
fn TrafficRow(
    pos: usize,
    entry: Entry<TrafficEntry>,
    selected: RwSignal<Option<u64>>,
) -> impl IntoView {
    let r = entry.value.record();
    let id = entry.id;
    let summary = r
        .summary
        .strip_prefix(r.packet)
        .unwrap_or(&r.summary)
        .trim_start()
        .to_string();
    let pair = entry.value.pair.map(|p| {
        if p.answer == id {
            format!("{} ms", p.latency_ms)
        } else {
            format!("↳ {} ms", p.latency_ms)
        }
    });
    let outbound = r.outbound;
    view! {
        <div class="traffic-entry" class:out=outbound class:selected=move || selected.get() == Some(id)
            data-testid="traffic-entry" role="listitem" tabindex="0"
            style=format!("top: {}px", pos * ROW_PX as usize)
            on:click=move |_| selected.set(Some(id))
            on:keydown=move |ev: leptos::ev::KeyboardEvent| if ev.key() == "Enter" { selected.set(Some(id)) }>
            <span class="dir" aria-label=if outbound { "sent" } else { "received" }>{if outbound { "→" } else { "←" }}</span>
            <span class="time">{clock_label(entry.at)}</span>
            <span class="kind">{r.packet}</span>
            <span class="summary">{summary}</span>
            <span class="latency muted">{pair}</span>
        </div>
    }
}

/// The selected packet in full: fields, property table, payload, its pair.
#[component]
fn TrafficDetail(selected: RwSignal<Option<u64>>) -> impl IntoView {
    let device = expect_context::<Device>();
    let view = device.view();
    let entry = move || {
        selected
            .get()
            .and_then(|id| view.with(|v| v.traffic.get(id).cloned()))
    };
    view! {
        <aside class="traffic-detail" data-testid="traffic-detail" aria-label="Packet detail">
            {move || match entry() {
                None => view! { <p class="muted">"Select a packet to see it decoded."</p> }.into_any(),
                Some(e) => {
                    let r = e.value.record().clone();
                    let mut fields: Vec<(String, String)> = vec![
                        ("direction".into(), if r.outbound { "sent by the device".into() } else { "received from the hub".into() }),
                        ("time".into(), clock_label(e.at)),
                        ("packet".into(), r.packet.into()),
                        ("kind".into(), r.kind.label().into()),
                        ("size".into(), format!("{} B on the wire", r.size)),
                    ];
                    if let Some(w) = r.what { fields.push(("what".into(), w.into())); }
                    if let Some(t) = &r.topic { fields.push(("topic".into(), t.clone())); }
                    if let Some(q) = r.qos { fields.push(("QoS".into(), q.to_string())); }
                    if let Some(p) = r.pid { fields.push(("packet id".into(), p.to_string())); }
                    if let Some(rid) = &r.rid { fields.push(("$rid".into(), rid.clone())); }
                    if !r.flags.is_empty() { fields.push(("flags".into(), r.flags.join(", "))); }
                    let pair = e.value.pair.map(|p| {
                        let (label, other) = if p.answer == e.id { ("answers", p.request) } else { ("answered by", p.answer) };
                        view! {
                            <p class="pair">
                                {format!("{label} ")}
                                <button type="button" class="btn btn--small" on:click=move |_| selected.set(Some(other))>{format!("#{other}")}</button>
                                {format!(" after {} ms", p.latency_ms)}
                            </p>
                        }
                    });
                    let payload = (r.payload_len > 0).then(|| {
                        let note = if r.truncated() { format!("payload ({} B, first {} shown)", r.payload_len, r.payload.len()) } else { format!("payload ({} B)", r.payload_len) };
                        view! { <p class="field-label">{note}</p><pre class="mono body">{r.preview().text().to_string()}</pre> }
                    });
                    view! {
                        <p class="field-label">{format!("#{}", e.id)}</p>
                        <dl class="props-list mono">
                            {fields.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}
                        </dl>
                        {pair}
                        {(!r.props.is_empty()).then(|| view! {
                            <p class="field-label">"properties"</p>
                            <dl class="props-list mono" data-testid="traffic-props">
                                {r.props.iter().map(|(k, v)| view! { <dt>{k.clone()}</dt><dd>{v.clone()}</dd> }).collect_view()}
                            </dl>
                        })}
                        {payload}
                    }.into_any()
                }
            }}
        </aside>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_covers_the_viewport_with_overscan() {
        // 5000 rows, scrolled to row 1000, a 10-row viewport.
        let (a, b) = window(5000, 1000.0 * ROW_PX, 10.0 * ROW_PX);
        assert_eq!(
            (a, b),
            (1000 - OVERSCAN, 1000 - OVERSCAN + 10 + 2 * OVERSCAN)
        );
        assert_eq!(window(0, 0.0, 200.0), (0, 0));
        assert_eq!(window(5, 0.0, 200.0), (0, 5));
        // Scrolled past the end (a shrinking list): nothing out of range.
        let (a, b) = window(3, 10_000.0, 200.0);
        assert!(a <= b && b <= 3);
    }
}
