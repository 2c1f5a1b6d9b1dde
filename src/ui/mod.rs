//! Leptos components. They read plain models and hold no protocol logic.

mod connection;
mod panels;
pub mod tabs;

use leptos::prelude::*;

use crate::client::ConnStatus;
use connection::ConnectionPanel;
use panels::{C2dPanel, MethodsPanel, TelemetryPanel, TrafficDrawer, TwinPanel};
use tabs::Tab;

/// The whole app: header, connection sidebar, tabbed main area, traffic drawer.
#[component]
pub fn App() -> impl IntoView {
    let status = RwSignal::new(ConnStatus::Disconnected);
    let (tab, set_tab) = signal(Tab::Telemetry);

    view! {
        <div class="app">
            <Header status=status.read_only() />
            <aside class="sidebar" aria-label="Connection">
                <ConnectionPanel />
            </aside>
            <main class="main">
                <TabBar tab=tab set_tab=set_tab />
                <section
                    class="panel"
                    id="panel-telemetry"
                    role="tabpanel"
                    aria-labelledby="tab-telemetry"
                    hidden=move || tab.get() != Tab::Telemetry
                >
                    <TelemetryPanel />
                </section>
                <section
                    class="panel"
                    id="panel-c2d"
                    role="tabpanel"
                    aria-labelledby="tab-c2d"
                    hidden=move || tab.get() != Tab::C2d
                >
                    <C2dPanel />
                </section>
                <section
                    class="panel"
                    id="panel-twin"
                    role="tabpanel"
                    aria-labelledby="tab-twin"
                    hidden=move || tab.get() != Tab::Twin
                >
                    <TwinPanel />
                </section>
                <section
                    class="panel"
                    id="panel-methods"
                    role="tabpanel"
                    aria-labelledby="tab-methods"
                    hidden=move || tab.get() != Tab::Methods
                >
                    <MethodsPanel />
                </section>
                <TrafficDrawer />
            </main>
        </div>
    }
}

/// The always-visible header: identity, connection state, token countdown.
#[component]
fn Header(status: ReadSignal<ConnStatus>) -> impl IntoView {
    view! {
        <header class="header">
            <span class="brand">"twinscope"</span>
            <span class="identity" title="Device identity and hub">
                "no device"
            </span>
            <span class="header-spacer"></span>
            <span
                class=move || status.get().css_class()
                data-testid="conn-status"
                role="status"
                aria-live="polite"
            >
                <span class="status-dot" aria-hidden="true"></span>
                {move || status.get().label()}
            </span>
            <span class="token" data-testid="token-expiry" title="SAS token time left">
                "token —"
            </span>
        </header>
    }
}

/// The tablist over the main area (WAI-ARIA tabs: arrows, Home, End).
#[component]
fn TabBar(tab: ReadSignal<Tab>, set_tab: WriteSignal<Tab>) -> impl IntoView {
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        if let Some(next) = tab.get_untracked().after_key(&ev.key()) {
            ev.prevent_default();
            set_tab.set(next);
            if let Some(el) = document().get_element_by_id(&format!("tab-{}", next.slug())) {
                use leptos::wasm_bindgen::JsCast;
                if let Ok(el) = el.dyn_into::<web_sys::HtmlElement>() {
                    let _ = el.focus();
                }
            }
        }
    };
    view! {
        <nav class="tabs" role="tablist" aria-label="Device panels" on:keydown=on_key>
            {Tab::ALL
                .into_iter()
                .map(|t| {
                    let selected = move || tab.get() == t;
                    view! {
                        <button
                            type="button"
                            role="tab"
                            class="tab"
                            id=format!("tab-{}", t.slug())
                            data-testid=format!("tab-{}", t.slug())
                            aria-controls=format!("panel-{}", t.slug())
                            aria-selected=move || selected().to_string()
                            tabindex=move || if selected() { "0" } else { "-1" }
                            on:click=move |_| set_tab.set(t)
                        >
                            {t.label()}
                        </button>
                    }
                })
                .collect_view()}
        </nav>
    }
}
