//! The app's one keyed list. Leptos's `<For>` is generic over the item, key and view types
//! and over its three closures, so every `<For>` compiled its own copy of the keyed diff
//! and its row bookkeeping: 5 to 8 KB of wasm each, 13 lists. Every list goes through
//! [`keyed`] instead, which makes `<For>` once, over [`Row`]s: a `u64` key and a boxed
//! function that makes the row's view. What stays per list is its own code: picking the
//! items, their keys, and each row's view.

use std::hash::{DefaultHasher, Hash, Hasher};

use leptos::prelude::*;

/// One row of a keyed list: its key, and what makes its view (called once, when the key
/// first appears).
pub struct Row {
    key: u64,
    make: Box<dyn FnOnce() -> AnyView + Send>,
}

/// A keyed list: `each` gives the items (it is re-run when a signal it reads changes),
/// `key` identifies an item across runs (a row whose key stays is kept, not rebuilt), and
/// `row` makes an item's view.
pub fn keyed<T, V>(
    each: impl Fn() -> Vec<T> + Send + 'static,
    key: impl Fn(&T) -> u64 + Send + 'static,
    row: impl Fn(T) -> V + Clone + Send + 'static,
) -> AnyView
where
    T: Send + 'static,
    V: IntoAny + 'static,
{
    rows(Box::new(move || {
        each()
            .into_iter()
            .map(|item| {
                let row = row.clone();
                Row {
                    key: key(&item),
                    make: Box::new(move || row(item).into_any()),
                }
            })
            .collect()
    }))
}

/// The one `<For>` of the app.
fn rows(each: Box<dyn Fn() -> Vec<Row> + Send>) -> AnyView {
    view! { <For each=move || each() key=|r: &Row| r.key children=|r: Row| (r.make)() /> }
        .into_any()
}

/// A key for an item whose identity is more than one number (a name, a tuple): the same
/// value always gives the same key. Two different values share a key with a chance of
/// about one in 2^64.
pub fn key_of(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::key_of;

    #[test]
    fn keys_are_stable_and_tell_values_apart() {
        assert_eq!(key_of(&("a", 1u64, true)), key_of(&("a", 1u64, true)));
        assert_ne!(key_of(&("a", 1u64, true)), key_of(&("a", 1u64, false)));
        assert_ne!(key_of(&(1usize, 2u64)), key_of(&(2usize, 1u64)));
        assert_ne!(key_of(&"ab"), key_of(&"a"));
    }
}
