//! The page itself: its origin, and moving keyboard focus.

use leptos::wasm_bindgen::JsCast;

/// The page's origin (`http://127.0.0.1:8080`), or empty if unknown.
pub fn page_origin() -> String {
    web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default()
}

/// Moves keyboard focus to the element with this id, if there is one.
pub fn focus_element(id: &str) {
    let el = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(id));
    if let Some(el) = el.and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
        let _ = el.focus();
    }
}

/// Copies `text` to the clipboard; the returned message says whether it worked.
pub async fn copy_text(text: String) -> Result<(), String> {
    let clipboard = web_sys::window()
        .ok_or("no window")?
        .navigator()
        .clipboard();
    wasm_bindgen_futures::JsFuture::from(clipboard.write_text(&text))
        .await
        .map(|_| ())
        .map_err(|_| "the browser did not allow copying; select the text and copy it".to_string())
}
