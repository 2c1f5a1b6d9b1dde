//! Provisioning from the browser: a [`ProvisioningSession`] pumped over the same WebSocket
//! transport as the device. The key never leaves the page: only the token signed with it.

use std::cell::RefCell;
use std::rc::Rc;

use leptos::prelude::*;
use twinscope_proto::provisioning::{
    ProvisioningConfig, ProvisioningEvent, ProvisioningSession, RegistrationState,
};

use super::now_ms;
use super::transport::{arm_timer, attach, retire, ArmedTimer, Socket, SocketOwner};

/// What the Provision panel shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProvisionView {
    /// A registration is under way.
    pub running: bool,
    /// Progress lines, oldest first.
    pub progress: Vec<String>,
    /// How the last registration ended.
    pub result: Option<Result<RegistrationState, String>>,
}

struct Inner {
    session: ProvisioningSession,
    url: String,
    socket: Option<Socket>,
    timer: ArmedTimer,
    generation: u64,
}

/// The handle the Provision panel uses (`Copy`).
#[derive(Clone, Copy)]
pub struct Provisioner {
    view: RwSignal<ProvisionView>,
    /// Where DPS packets are shown (the main device's traffic inspector), if anywhere.
    traffic: StoredValue<Option<super::Device>>,
    inner: StoredValue<Option<Rc<RefCell<Inner>>>, LocalStorage>,
}

impl Default for Provisioner {
    fn default() -> Self {
        Provisioner::new()
    }
}

impl Provisioner {
    /// Nothing running.
    pub fn new() -> Provisioner {
        Provisioner {
            view: RwSignal::new(ProvisionView::default()),
            traffic: StoredValue::new(None),
            inner: StoredValue::new_local(None),
        }
    }

    /// Shows this provisioner's packets in `device`'s traffic inspector.
    pub fn show_traffic_in(&self, device: super::Device) {
        self.traffic.set_value(Some(device));
    }

    /// What the panel shows (read-only).
    pub fn view(&self) -> ReadSignal<ProvisionView> {
        self.view.read_only()
    }

    /// Starts a registration at `url`.
    pub fn start(&self, url: &str, cfg: ProvisioningConfig) -> Result<(), String> {
        self.cancel();
        let mut session = ProvisioningSession::new(cfg);
        session.start(now_ms())?;
        self.view.set(ProvisionView {
            running: true,
            ..ProvisionView::default()
        });
        let rc = Rc::new(RefCell::new(Inner {
            session,
            url: url.to_string(),
            socket: None,
            timer: None,
            generation: 0,
        }));
        self.inner.set_value(Some(rc.clone()));
        self.pump(&rc);
        Ok(())
    }

    /// Stops a registration under way.
    pub fn cancel(&self) {
        let mut taken = None;
        self.inner.update_value(|i| taken = i.take());
        if let Some(rc) = taken {
            let mut i = rc.borrow_mut();
            i.generation += 1;
            retire(i.socket.take());
            i.timer = None;
            if !i.session.is_done() {
                self.view.update(|v| {
                    v.running = false;
                    v.progress.push("cancelled".into());
                });
            }
        }
    }

    fn pump(&self, rc: &Rc<RefCell<Inner>>) {
        loop {
            let (bytes, events) = {
                let mut i = rc.borrow_mut();
                let b: Vec<Vec<u8>> = std::iter::from_fn(|| i.session.poll_transmit()).collect();
                let e: Vec<ProvisioningEvent> =
                    std::iter::from_fn(|| i.session.poll_event()).collect();
                (b, e)
            };
            if bytes.is_empty() && events.is_empty() {
                break;
            }
            if let Some(s) = &rc.borrow().socket {
                for b in &bytes {
                    s.send(b);
                }
            }
            for e in events {
                match e {
                    ProvisioningEvent::OpenTransport => self.open(rc),
                    ProvisioningEvent::CloseTransport => {
                        let mut i = rc.borrow_mut();
                        i.generation += 1;
                        retire(i.socket.take());
                    }
                    ProvisioningEvent::Progress(p) => self.view.update(|v| v.progress.push(p)),
                    ProvisioningEvent::Assigned(st) => self.view.update(|v| {
                        v.running = false;
                        v.progress.push(format!(
                            "assigned to {} as {}",
                            st.assigned_hub.as_deref().unwrap_or("?"),
                            st.device_id.as_deref().unwrap_or("?")
                        ));
                        v.result = Some(Ok(st));
                    }),
                    ProvisioningEvent::Failed(why) => self.view.update(|v| {
                        v.running = false;
                        v.result = Some(Err(why));
                    }),
                    ProvisioningEvent::Traffic(out, p) => {
                        if let Some(d) = self.traffic.get_value() {
                            d.note_traffic(out, p);
                        }
                    }
                }
            }
        }
        let me = *self;
        arm_timer(rc, now_ms, move |rc| me.pump(rc));
    }

    fn open(&self, rc: &Rc<RefCell<Inner>>) {
        let url = rc.borrow().url.clone();
        let me = *self;
        let on_abnormal = move |code: u16, _reason: String| {
            me.view.update(|v| {
                v.progress
                    .push(format!("the WebSocket closed (code {code})"))
            });
        };
        if let Err(e) = attach(rc, &url, now_ms, move |rc| me.pump(rc), on_abnormal) {
            self.view.update(|v| v.progress.push(e));
        }
    }
}

impl SocketOwner for Inner {
    fn socket(&mut self) -> &mut Option<Socket> {
        &mut self.socket
    }
    fn generation(&mut self) -> &mut u64 {
        &mut self.generation
    }
    fn opened(&mut self, now: u64) {
        self.session.handle_opened(now);
    }
    fn bytes(&mut self, now: u64, bytes: &[u8]) {
        self.session.handle_bytes(now, bytes);
    }
    fn closed(&mut self, now: u64) {
        self.session.handle_closed(now);
    }
    fn next_timeout(&self) -> Option<u64> {
        self.session.poll_timeout()
    }
    fn timeout(&mut self, now: u64) {
        self.session.handle_timeout(now);
    }
    fn timer(&mut self) -> &mut ArmedTimer {
        &mut self.timer
    }
}
