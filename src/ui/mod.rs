//! Leptos components. They read plain models and hold no protocol logic.

mod connection;
mod console;
mod fleet;
mod generator;
mod keyed;
pub mod model;
mod panels;
mod profiles;
mod provision;
mod rules;
pub mod tabs;
mod traffic;

use leptos::prelude::*;

use crate::client::{Console, Device};
use connection::ConnectionPanel;
use console::ConsolePanel;
use fleet::FleetPanel;
use panels::{C2dPanel, MethodsPanel, TelemetryPanel, TwinPanel};
use provision::ProvisionPanel;
use tabs::Tab;
use traffic::TrafficDrawer;

/// A request to fill in the connection form and connect: (connection string, endpoint).
#[derive(Clone, Copy)]
pub struct ConnectRequest(pub RwSignal<Option<(String, String)>>);

/// The whole app: header, connection sidebar, tabbed main area, traffic drawer.
#[component]
pub fn App() -> impl IntoView {
    let device = Device::new();
    provide_context(device);
    provide_context(Console::new());
    provide_context(profiles::ProfileStore::load());
    provide_context(crate::client::Provisioner::new());
    provide_context(ConnectRequest(RwSignal::new(None)));
    on_cleanup(move || device.disconnect());
    let (tab, set_tab) = signal(Tab::Telemetry);

    view! {
        <div class="app">
            <Header />
            <aside class="sidebar" aria-label="Connection">
                <ConnectionPanel />
            </aside>
            <main class="main">
                <TabBar tab=tab set_tab=set_tab />
                <TabPanel tab=Tab::Telemetry current=tab>
                    <TelemetryPanel />
                </TabPanel>
                <TabPanel tab=Tab::C2d current=tab>
                    <C2dPanel />
                </TabPanel>
                <TabPanel tab=Tab::Twin current=tab>
                    <TwinPanel />
                </TabPanel>
                <TabPanel tab=Tab::Methods current=tab>
                    <MethodsPanel />
                </TabPanel>
                <TabPanel tab=Tab::Provision current=tab>
                    <ProvisionPanel />
                </TabPanel>
                <TabPanel tab=Tab::Fleet current=tab>
                    <FleetPanel />
                </TabPanel>
                <TabPanel tab=Tab::Console current=tab>
                    <ConsolePanel />
                </TabPanel>
                <TrafficDrawer />
            </main>
        </div>
    }
}

/// One tab's panel: in the DOM always, hidden unless its tab is selected.
#[component]
fn TabPanel(tab: Tab, current: ReadSignal<Tab>, children: Children) -> impl IntoView {
    view! {
        <section
            class="panel"
            id=format!("panel-{}", tab.slug())
            role="tabpanel"
            aria-labelledby=format!("tab-{}", tab.slug())
            hidden=move || current.get() != tab
        >
            {children()}
        </section>
    }
}

/// The always-visible header: identity, connection state, token countdown.
#[component]
fn Header() -> impl IntoView {
    let device = expect_context::<Device>();
    let view = device.view();
    let status = move || view.with(|v| v.status());
    view! {
        <header class="header">
            <span class="brand">"twinscope"</span>
            <span class="identity mono" title="Device identity and hub">
                {move || device.identity.get().unwrap_or_else(|| "no device".into())}
            </span>
            <span class="header-spacer"></span>
            <span
                class=move || status().css_class()
                data-testid="conn-status"
                role="status"
                aria-live="polite"
            >
                <span class="status-dot" aria-hidden="true"></span>
                {move || status().label()}
            </span>
            <span
                class="muted status-detail"
                data-testid="conn-detail"
                title=move || view.with(|v| v.status_text(device.now.get()))
            >
                {move || view.with(|v| {
                    let text = v.status_text(device.now.get());
                    (text != v.status().label()).then_some(text)
                })}
            </span>
            <span class="muted renewed" title="The SAS token is renewed before it expires">
                {move || view.with(|v| v.renewed_at).map(|at| format!("renewed {}", crate::client::clock_label(at)))}
            </span>
            <span class="token" data-testid="token-expiry" title="SAS token time left">
                "token "
                {move || model::countdown(view.with(|v| v.token_expiry), device.now.get())}
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
            crate::client::focus_element(&format!("tab-{}", next.slug()));
        }
    };
    view! {
        <nav class="tabs" role="tablist" aria-label="Device panels" on:keydown=on_key>
            {Tab::ALL
                .into_iter()
                .map(|t| {
                    let device = expect_context::<Device>();
                    let selected = move || tab.get() == t;
                    let count = move || match t {
                        Tab::C2d => device.view().with(|v| v.c2d.len()),
                        Tab::Methods => device.view().with(|v| v.methods.len()),
                        _ => 0,
                    };
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
                            <Show when=move || { count() > 0 }>
                                <span class="badge" aria-label="new">{count}</span>
                            </Show>
                        </button>
                    }
                })
                .collect_view()}
        </nav>
    }
}
