//! The outbox: telemetry waiting to go (bounded), QoS 1 messages in flight (bounded by the
//! window), packet ids (never reused while in flight, nor while a SUBSCRIBE waits for its
//! SUBACK), and the DUP resend after a reconnect. [`Outbox`] holds these invariants; the
//! `impl DeviceSession` below puts its messages on the wire.

use super::*;

/// Queued and in-flight telemetry.
pub(super) struct Outbox {
    next_pid: u16,
    next_msg: MessageId,
    inflight: BTreeMap<PacketId, (MessageId, Publish)>,
    queue: VecDeque<(MessageId, Telemetry)>,
}

impl Outbox {
    pub(super) fn new() -> Outbox {
        Outbox {
            next_pid: 1,
            next_msg: 1,
            inflight: BTreeMap::new(),
            queue: VecDeque::new(),
        }
    }

    pub(super) fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    pub(super) fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// A packet id not in flight and not `reserved` (the SUBSCRIBE awaiting its SUBACK).
    pub(super) fn take_pid(&mut self, reserved: Option<PacketId>) -> PacketId {
        loop {
            let pid = PacketId::new(self.next_pid).unwrap_or(PacketId::new(1).expect("1 is valid"));
            self.next_pid = pid.next().get();
            if !self.inflight.contains_key(&pid) && reserved != Some(pid) {
                return pid;
            }
        }
    }

    /// Queues a message (at most `max` waiting); returns its id.
    fn push(&mut self, t: Telemetry, max: usize) -> Result<MessageId, SendError> {
        if self.queue.len() >= max {
            return Err(SendError::QueueFull(self.queue.len()));
        }
        let id = self.next_msg;
        self.next_msg += 1;
        self.queue.push_back((id, t));
        Ok(id)
    }

    /// The next queued message the window lets go, as the PUBLISH to send (a QoS 1 one is
    /// now in flight under a fresh packet id).
    fn next_ready(
        &mut self,
        identity: &Identity,
        window: usize,
        reserved: Option<PacketId>,
    ) -> Option<(MessageId, Publish)> {
        let (_, t) = self.queue.front()?;
        let qos1 = t.qos == Some(QoS::AtLeastOnce);
        if qos1 && self.inflight.len() >= window {
            return None;
        }
        let (id, t) = self.queue.pop_front().expect("front exists");
        let topic = telemetry_topic(identity, &t.props, SysPrefix::Literal);
        let qospid = if qos1 {
            QosPid::AtLeastOnce(self.take_pid(reserved))
        } else {
            QosPid::AtMostOnce
        };
        let p = Publish {
            dup: false,
            qospid,
            retain: false,
            topic,
            payload: t.body,
        };
        if let QosPid::AtLeastOnce(pid) = qospid {
            self.inflight.insert(pid, (id, p.clone()));
        }
        Some((id, p))
    }

    /// The hub acknowledged `pid`: the message it carried, if it was in flight.
    pub(super) fn ack(&mut self, pid: PacketId) -> Option<MessageId> {
        self.inflight.remove(&pid).map(|(id, _)| id)
    }

    /// Every message in flight, marked DUP, in packet-id order, to send again after a
    /// reconnect.
    pub(super) fn resend(&self) -> Vec<Publish> {
        self.inflight
            .values()
            .map(|(_, p)| Publish {
                dup: true,
                ..p.clone()
            })
            .collect()
    }
}

impl DeviceSession {
    /// Sends telemetry now, or queues it until connected (bounded).
    pub fn publish_telemetry(&mut self, now: u64, t: Telemetry) -> Result<MessageId, SendError> {
        let qos = t.qos.unwrap_or(self.cfg.default_qos);
        if qos == QoS::ExactlyOnce {
            return Err(SendError::QoS2);
        }
        t.props.validate_d2c()?;
        let size = t.body.len() + t.props.counted_size();
        if size > MAX_D2C_MESSAGE_BYTES {
            return Err(SendError::TooLarge { size });
        }
        let id = self.outbox.push(
            Telemetry {
                qos: Some(qos),
                ..t
            },
            self.cfg.max_queued,
        )?;
        self.flush(now);
        Ok(id)
    }

    /// Moves queued telemetry onto the wire while connected and the window allows.
    pub(super) fn flush(&mut self, now: u64) {
        while self.state == State::Connected {
            let Some((id, p)) =
                self.outbox
                    .next_ready(&self.cfg.identity, self.cfg.max_inflight, self.suback)
            else {
                break;
            };
            self.send(now, Packet::Publish(p));
            self.events.push_back(Event::TelemetrySent(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iothub::DeviceId;

    fn msg() -> Telemetry {
        Telemetry {
            body: b"x".to_vec(),
            props: PropertyBag::default(),
            qos: Some(QoS::AtLeastOnce),
        }
    }

    #[test]
    fn ids_are_not_reused_while_in_flight_and_the_window_and_queue_hold() {
        let id = Identity::device(DeviceId::new("d").unwrap());
        let mut o = Outbox::new();
        o.next_pid = 65_534;
        for _ in 0..4 {
            o.push(msg(), 4).unwrap();
        }
        assert!(matches!(o.push(msg(), 4), Err(SendError::QueueFull(4))));
        let reserved = PacketId::new(1);
        let sent: Vec<Publish> = std::iter::from_fn(|| o.next_ready(&id, 3, reserved))
            .map(|(_, p)| p)
            .collect();
        assert_eq!(sent.len(), 3, "the window is 3");
        let pids: Vec<u16> = sent.iter().map(|p| p.qospid.pid().unwrap().get()).collect();
        assert_eq!(
            pids,
            vec![65_534, 65_535, 2],
            "wraps past 0 and the reserved id 1"
        );
        // Acknowledge one: the next message takes a free id, never one still in flight.
        assert_eq!(o.ack(PacketId::new(65_535).unwrap()), Some(2));
        let (_, p) = o.next_ready(&id, 3, None).unwrap();
        let pid = p.qospid.pid().unwrap().get();
        assert!(![65_534, 2].contains(&pid), "{pid}");
        assert!(o.resend().iter().all(|p| p.dup));
        assert_eq!(o.resend().len(), 3);
    }
}
