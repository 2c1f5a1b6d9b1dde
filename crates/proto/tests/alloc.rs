//! Decoding copies a PUBLISH payload at most once: measured with a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use twinscope_proto::mqtt::{decode, Packet, PacketId, Publish, QosPid};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decode_allocates_one_payload_copy() {
    let payload = vec![0xa5u8; 200_000];
    let topic = "devices/d1/messages/events/$.ct=application%2Fjson".to_string();
    let bytes = Packet::Publish(Publish {
        dup: false,
        qospid: QosPid::AtLeastOnce(PacketId::new(1).unwrap()),
        retain: false,
        topic: topic.clone(),
        payload: payload.clone(),
    })
    .to_bytes()
    .unwrap();

    let before = ALLOCATED.load(Ordering::SeqCst);
    let (p, _) = decode(&bytes).unwrap().unwrap();
    let used = ALLOCATED.load(Ordering::SeqCst) - before;

    let Packet::Publish(p) = p else {
        panic!("not a publish")
    };
    assert_eq!(p.payload.len(), payload.len());
    // One payload copy plus the topic, with a little slack; a second copy would double it.
    assert!(
        used <= payload.len() + topic.len() + 256,
        "decoding a {}-byte payload allocated {used} bytes",
        payload.len()
    );
}
