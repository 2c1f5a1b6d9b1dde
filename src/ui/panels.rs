//! The tab panels and the traffic drawer. Each shows an honest empty state until the
//! device session that feeds it exists.

use leptos::prelude::*;

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

#[component]
pub fn TelemetryPanel() -> impl IntoView {
    view! {
        <h2 class="sr-only">"Telemetry"</h2>
        <Empty title="Not connected">
            "Connect a device to send device-to-cloud messages with a body, application "
            "properties and system properties such as content type and message id."
        </Empty>
    }
}

#[component]
pub fn C2dPanel() -> impl IntoView {
    view! {
        <h2 class="sr-only">"Cloud-to-device inbox"</h2>
        <div data-testid="c2d-list" class="list">
            <Empty title="No C2D messages yet">
                "Connect, then send one from the hub console or the Azure portal. "
                "Messages appear here with their body and properties."
            </Empty>
        </div>
    }
}

#[component]
pub fn TwinPanel() -> impl IntoView {
    view! {
        <h2 class="sr-only">"Device twin"</h2>
        <Empty title="Not connected">
            "Connect to fetch the device twin, send reported-property patches and watch "
            "desired-property updates as the hub pushes them."
        </Empty>
    }
}

#[component]
pub fn MethodsPanel() -> impl IntoView {
    view! {
        <h2 class="sr-only">"Direct methods"</h2>
        <div data-testid="method-list" class="list">
            <Empty title="No method calls yet">
                "Connect, then invoke a direct method from the hub. Each call waits here "
                "with the time its caller has left, for you to answer with a status and payload."
            </Empty>
        </div>
    }
}

#[component]
pub fn TrafficDrawer() -> impl IntoView {
    view! {
        <section class="drawer" aria-label="Traffic">
            <h2 class="drawer-title">"Traffic"</h2>
            <div data-testid="traffic-log" class="traffic mono">
                <Empty title="No traffic yet">
                    "Every MQTT packet between this device and the hub appears here, decoded."
                </Empty>
            </div>
        </section>
    }
}
