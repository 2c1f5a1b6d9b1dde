//! Fault injection: fail the next operations with a chosen error, delay every answer, drop
//! connections now or at random.

use super::*;

pub use twinscope_proto::iothub::service::FaultOp;

#[derive(Default)]
pub(super) struct Faults {
    pub(super) fail: HashMap<FaultOp, (u32, ErrorCode)>,
    pub(super) delay_ms: u64,
    pub(super) drop_rate: f64,
    pub(super) rng: Option<StdRng>,
    /// Client ids whose next desired-property update is not pushed (a lost notification).
    pub(super) skip_desired: std::collections::HashSet<String>,
}

impl Faults {
    /// Consumes one failure for `op`, returning its error code.
    pub(super) fn take(&mut self, op: FaultOp) -> Option<ErrorCode> {
        let (left, status) = self.fail.get_mut(&op)?;
        let s = *status;
        *left -= 1;
        if *left == 0 {
            self.fail.remove(&op);
        }
        Some(s)
    }
}

impl Hub {
    /// Loses the next desired-property notification for `device` (or `device/module`): the
    /// twin changes, but the connected device is not told, so the update after it arrives
    /// with a version gap, as when a notification is lost on the way.
    pub fn skip_next_desired(&mut self, client_id: &str) {
        self.faults.skip_desired.insert(client_id.to_string());
    }

    /// The delay to apply before sending answers (fault injection).
    pub fn answer_delay_ms(&self) -> u64 {
        self.faults.delay_ms
    }

    /// Drops a device's (and its modules') connections now.
    pub fn drop_device(&mut self, device: &str, now_ms: u64) -> Vec<Action> {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.identity.device.as_str() == device)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for conn in conns {
            out.extend(self.close_with(conn, "fault injection: connection dropped", now_ms));
        }
        out
    }

    /// Sets faults: fail the next `count` operations of `op` with `code`.
    pub fn fail_next(&mut self, op: FaultOp, count: u32, code: ErrorCode) {
        if count == 0 {
            self.faults.fail.remove(&op);
        } else {
            self.faults.fail.insert(op, (count, code));
        }
    }

    /// Delays every answer by `ms`.
    pub fn set_delay(&mut self, ms: u64) {
        self.faults.delay_ms = ms;
    }

    /// Drops connections at random: each incoming packet closes its connection with
    /// probability `rate`, drawn from a generator seeded with `seed`.
    pub fn set_drop_rate(&mut self, rate: f64, seed: u64) {
        self.faults.drop_rate = rate.clamp(0.0, 1.0);
        self.faults.rng = Some(StdRng::seed_from_u64(seed));
    }

    /// Clears every fault.
    pub fn clear_faults(&mut self) {
        self.faults = Faults::default();
    }
}
