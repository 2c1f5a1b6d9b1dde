//! One-line descriptions of packets for the traffic view.

use crate::iothub::Topic;
use crate::mqtt::{Packet, QosPid};

/// A short, human description of a packet: its type and what it carries.
pub fn summarize(p: &Packet) -> String {
    match p {
        Packet::Connect(c) => format!(
            "CONNECT client {} keep-alive {} s{}",
            c.client_id,
            c.keep_alive,
            if c.clean_session {
                ", clean session"
            } else {
                ""
            }
        ),
        Packet::ConnAck(a) => format!(
            "CONNACK {}{}",
            a.code.description(),
            if a.session_present {
                ", session present"
            } else {
                ""
            }
        ),
        Packet::Publish(p) => {
            let qos = match p.qospid {
                QosPid::AtMostOnce => "QoS 0".to_string(),
                QosPid::AtLeastOnce(id) => format!("QoS 1 pid {id}"),
                QosPid::ExactlyOnce(id) => format!("QoS 2 pid {id}"),
            };
            let what = match Topic::parse(&p.topic) {
                Ok(Topic::Telemetry { .. }) => "telemetry",
                Ok(Topic::C2d { .. }) => "C2D message",
                Ok(Topic::ModuleInput { .. }) => "module input",
                Ok(Topic::TwinGet { .. }) => "twin GET",
                Ok(Topic::TwinPatchReported { .. }) => "reported patch",
                Ok(Topic::TwinResponse { .. }) => "twin response",
                Ok(Topic::TwinDesired { .. }) => "desired update",
                Ok(Topic::MethodRequest { .. }) => "method call",
                Ok(Topic::MethodResponse { .. }) => "method response",
                Err(_) => "message",
            };
            format!(
                "PUBLISH {what} {}{} ({qos}, {} B)",
                p.topic,
                if p.dup { " DUP" } else { "" },
                p.payload.len()
            )
        }
        Packet::PubAck(id) => format!("PUBACK pid {id}"),
        Packet::PubRec(id) => format!("PUBREC pid {id}"),
        Packet::PubRel(id) => format!("PUBREL pid {id}"),
        Packet::PubComp(id) => format!("PUBCOMP pid {id}"),
        Packet::Subscribe(s) => format!(
            "SUBSCRIBE pid {}: {}",
            s.pkid,
            s.filters
                .iter()
                .map(|f| format!("{} (QoS {})", f.filter, f.qos as u8))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Packet::SubAck(s) => format!("SUBACK pid {} ({} filters)", s.pkid, s.return_codes.len()),
        Packet::Unsubscribe(u) => format!("UNSUBSCRIBE pid {}: {}", u.pkid, u.filters.join(", ")),
        Packet::UnsubAck(id) => format!("UNSUBACK pid {id}"),
        Packet::PingReq => "PINGREQ".into(),
        Packet::PingResp => "PINGRESP".into(),
        Packet::Disconnect => "DISCONNECT".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{ConnAck, ConnectReturnCode, PacketId, Publish};

    #[test]
    fn summaries_name_the_packet_and_what_it_carries() {
        let p = Packet::Publish(Publish {
            dup: true,
            qospid: QosPid::AtLeastOnce(PacketId::new(7).unwrap()),
            retain: false,
            topic: "devices/d/messages/events/$.ct=application%2Fjson".into(),
            payload: vec![0; 12],
        });
        assert_eq!(
            summarize(&p),
            "PUBLISH telemetry devices/d/messages/events/$.ct=application%2Fjson DUP (QoS 1 pid 7, 12 B)"
        );
        assert_eq!(
            summarize(&Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::NotAuthorized
            })),
            "CONNACK not authorized"
        );
        assert_eq!(
            summarize(&Packet::PubAck(PacketId::new(3).unwrap())),
            "PUBACK pid 3"
        );
    }
}
